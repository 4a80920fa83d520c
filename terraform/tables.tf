# All tables are on-demand (PAY_PER_REQUEST): there is no provisioned
# capacity for an autoscaler to change behind Terraform's back. Each has
# point-in-time recovery and is encrypted with the environment's key.

# The product model: the dispatcher's input, through its stream.
resource "aws_dynamodb_table" "model" {
  name             = "${local.name}-product-model"
  billing_mode     = "PAY_PER_REQUEST"
  hash_key         = "pk"
  stream_enabled   = true
  stream_view_type = "NEW_AND_OLD_IMAGES"

  attribute {
    name = "pk"
    type = "S"
  }

  point_in_time_recovery {
    enabled = var.point_in_time_recovery
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}

# The receiver registry: head items (version 0) and history (1, 2, ...).
resource "aws_dynamodb_table" "registry" {
  name         = "${local.name}-registry"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "receiver"
  range_key    = "version"

  attribute {
    name = "receiver"
    type = "S"
  }

  attribute {
    name = "version"
    type = "N"
  }

  point_in_time_recovery {
    enabled = var.point_in_time_recovery
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}

# The retry ledger: which receivers already handled a record of a batch
# that is being retried. Entries expire through TTL.
resource "aws_dynamodb_table" "ledger" {
  name         = "${local.name}-ledger"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "record"

  attribute {
    name = "record"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = var.point_in_time_recovery
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}

# Output dedup: the hash and sequence of the last output delivered to each
# (receiver, product key).
resource "aws_dynamodb_table" "outputs" {
  name         = "${local.name}-outputs"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "receiver"
  range_key    = "key"

  attribute {
    name = "receiver"
    type = "S"
  }

  attribute {
    name = "key"
    type = "S"
  }

  point_in_time_recovery {
    enabled = var.point_in_time_recovery
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}

# The spool: batched receivers' buffers and per-product retry lanes, with an
# index of open lanes and each lane's claim (see host/aws/src/spool.rs).
resource "aws_dynamodb_table" "spool" {
  name         = "${local.name}-spool"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "lane"
  range_key    = "entry"

  attribute {
    name = "lane"
    type = "S"
  }

  attribute {
    name = "entry"
    type = "S"
  }

  # Done marks (what a lane handled, so a retried stream batch cannot bring
  # it back) expire after two days, past the stream's retention.
  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = var.point_in_time_recovery
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}

# Master-data shadow tables, one per source entity, mirroring the master
# system's own model.
resource "aws_dynamodb_table" "shadow" {
  for_each = var.shadow_tables

  name             = "${local.shadow_prefix}${each.key}"
  billing_mode     = "PAY_PER_REQUEST"
  hash_key         = each.value.hash_key
  range_key        = each.value.range_key
  stream_enabled   = true
  stream_view_type = "NEW_AND_OLD_IMAGES"

  attribute {
    name = each.value.hash_key
    type = "S"
  }

  dynamic "attribute" {
    for_each = setsubtract(toset(concat(each.value.range_key == null ? [] : [each.value.range_key], values(each.value.indexes))), [each.value.hash_key])
    content {
      name = attribute.value
      type = "S"
    }
  }

  # The mapper's declared indexes (e.g. all products of a brand, for a
  # cascade), projecting whole items: the mapper reads them as rows.
  dynamic "global_secondary_index" {
    for_each = each.value.indexes
    content {
      name            = global_secondary_index.key
      hash_key        = global_secondary_index.value
      projection_type = "ALL"
    }
  }

  point_in_time_recovery {
    enabled = var.point_in_time_recovery
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}
