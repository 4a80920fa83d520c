# Who changed the control plane, as AWS saw it. A team's deploy role writes
# its own registry items and components directly, so the `registered_by` and
# `updated_by` it writes are a claim, not a record. This trail logs every
# write to the registry table and to the plugin bucket's component prefixes
# with the IAM principal that made it (and prism's app name, from the SDK's
# user agent): written by AWS, validated by digest files, in a bucket no
# prism role can write. docs/security.md, "Who changed what".

resource "aws_cloudtrail" "control_plane" {
  # checkov:skip=CKV_AWS_67:A data-event trail for this environment's own table and bucket; the account's management-event trail is the organisation's, not prism's.
  # checkov:skip=CKV2_AWS_10:The trail is read when an entry is questioned, not streamed: CloudWatch Logs delivery would cost per event for nothing that alarms on it.
  # checkov:skip=CKV_AWS_252:Nothing subscribes to delivery notifications.
  name                          = "${local.name}-control-plane"
  s3_bucket_name                = aws_s3_bucket.audit.id
  include_global_service_events = false
  enable_log_file_validation    = true
  kms_key_id                    = aws_kms_key.main.arn

  advanced_event_selector {
    name = "registry writes"
    field_selector {
      field  = "eventCategory"
      equals = ["Data"]
    }
    field_selector {
      field  = "resources.type"
      equals = ["AWS::DynamoDB::Table"]
    }
    field_selector {
      field  = "resources.ARN"
      equals = [aws_dynamodb_table.registry.arn]
    }
    field_selector {
      field  = "readOnly"
      equals = ["false"]
    }
  }

  advanced_event_selector {
    name = "component writes"
    field_selector {
      field  = "eventCategory"
      equals = ["Data"]
    }
    field_selector {
      field  = "resources.type"
      equals = ["AWS::S3::Object"]
    }
    field_selector {
      field       = "resources.ARN"
      starts_with = ["${aws_s3_bucket.plugins.arn}/plugins/", "${aws_s3_bucket.plugins.arn}/mappers/"]
    }
    field_selector {
      field  = "readOnly"
      equals = ["false"]
    }
  }

  depends_on = [aws_s3_bucket_policy.audit]
}

resource "aws_s3_bucket" "audit" {
  # checkov:skip=CKV_AWS_18:This is the log bucket; logging its reads into itself would loop.
  # checkov:skip=CKV_AWS_144:The trail is one environment's audit; an organisation replicates trails centrally.
  # checkov:skip=CKV2_AWS_62:Nothing reacts to new log files.
  bucket        = "${local.name}-audit-${local.account_id}"
  force_destroy = false
}

resource "aws_s3_bucket_versioning" "audit" {
  bucket = aws_s3_bucket.audit.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "audit" {
  bucket = aws_s3_bucket.audit.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "audit" {
  bucket                  = aws_s3_bucket.audit.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "audit" {
  bucket = aws_s3_bucket.audit.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "audit" {
  bucket = aws_s3_bucket.audit.id

  rule {
    id     = "keep-then-expire"
    status = "Enabled"
    filter {}

    expiration {
      days = var.audit_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = var.audit_retention_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

resource "aws_s3_bucket_policy" "audit" {
  bucket = aws_s3_bucket.audit.id
  policy = data.aws_iam_policy_document.audit_bucket.json
}

data "aws_iam_policy_document" "audit_bucket" {
  statement {
    sid       = "CloudTrailChecksTheBucket"
    actions   = ["s3:GetBucketAcl"]
    resources = [aws_s3_bucket.audit.arn]
    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceArn"
      values   = [local.trail_arn]
    }
  }

  statement {
    sid       = "CloudTrailWritesLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.audit.arn}/AWSLogs/${local.account_id}/*"]
    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceArn"
      values   = [local.trail_arn]
    }
  }

  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.audit.arn, "${aws_s3_bucket.audit.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

locals {
  # Known before the trail exists (the bucket policy must come first).
  trail_arn = "arn:${local.partition}:cloudtrail:${local.region}:${local.account_id}:trail/${local.name}-control-plane"
}
