# The model builder: a second Lambda from the same crate (bin prism-mapper)
# on every shadow table's stream. It runs the mapper plugin named by the
# manifest in the plugin bucket (`prism mapper publish`), and it alone may
# write the model table, whose stream drives the dispatcher.
#
# Why a function of its own: least privilege (the dispatcher cannot write
# the model), its own timeout and memory for cascades, and a mapper backlog
# never stalls deliveries (nor the other way round).

resource "aws_cloudwatch_log_group" "mapper" {
  name              = "/aws/lambda/${local.mapper_function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

# Shadow changes the mapper rejects or fails on (a trap, a limit), with the
# reason and the raw stream record, to replay once fixed.
resource "aws_sqs_queue" "mapper_dead_letters" {
  name                      = "${local.name}-mapper-dlq"
  message_retention_seconds = 1209600
  kms_master_key_id         = aws_kms_key.main.arn
}

resource "aws_lambda_function" "mapper" {
  # checkov:skip=CKV_AWS_117:The mapper talks only to AWS APIs (DynamoDB, S3, SQS); a VPC would add NAT or endpoints and nothing to isolate.
  # checkov:skip=CKV_AWS_272:The zip is built and deployed by CI from a reviewed commit; AWS Signer can be added with a code_signing_config where required.
  function_name    = local.mapper_function_name
  description      = "prism mapper: shadow streams -> mapper plugin -> product model"
  role             = aws_iam_role.mapper.arn
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  handler          = "bootstrap"
  filename         = var.mapper_lambda_zip
  source_code_hash = filebase64sha256(var.mapper_lambda_zip)
  memory_size      = var.mapper_memory_mb
  timeout          = var.mapper_timeout_seconds
  kms_key_arn      = aws_kms_key.main.arn

  reserved_concurrent_executions = var.mapper_reserved_concurrency

  ephemeral_storage {
    size = 1024
  }

  environment {
    variables = {
      PRISM_MAPPER_MANIFEST    = var.mapper_manifest_key
      PRISM_PLUGIN_BUCKET      = aws_s3_bucket.plugins.bucket
      PRISM_MODEL_TABLE        = aws_dynamodb_table.model.name
      PRISM_SHADOW_PREFIX      = local.shadow_prefix
      PRISM_MAPPER_DLQ         = aws_sqs_queue.mapper_dead_letters.url
      PRISM_MAPPER_CONCURRENCY = tostring(var.mapper_concurrency)
      PRISM_RELOAD_SECS        = tostring(var.registry_reload_seconds)
      PRISM_CACHE_DIR          = "/tmp/prism"
      PRISM_LOG                = var.log_level
      PRISM_METRICS_NAMESPACE  = local.metrics_namespace
    }
  }

  tracing_config {
    mode = "Active"
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.stream_failures.arn
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.mapper.name
  }

  depends_on = [aws_iam_role_policy.mapper, aws_cloudwatch_log_group.mapper]
}

# One mapping per shadow table: each table's stream is ordered per item,
# and the mapper's writes are conditioned per source, so tables need no
# ordering between them.
resource "aws_lambda_event_source_mapping" "shadow_streams" {
  for_each = aws_dynamodb_table.shadow

  function_name     = aws_lambda_function.mapper.arn
  event_source_arn  = each.value.stream_arn
  starting_position = "TRIM_HORIZON"

  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = var.batching_window_seconds
  parallelization_factor             = var.parallelization_factor

  # The mapper reports the first record it could not map (a failed read or
  # write, a timeout); Lambda retries from there, and what it maps again is
  # stale or unchanged. Rejections are parked in the mapper's DLQ instead.
  function_response_types        = ["ReportBatchItemFailures"]
  bisect_batch_on_function_error = true
  maximum_retry_attempts         = var.max_retries
  maximum_record_age_in_seconds  = var.max_record_age_seconds

  destination_config {
    on_failure {
      destination_arn = aws_sqs_queue.stream_failures.arn
    }
  }

  lifecycle {
    # Drift on purpose, as for the dispatcher: operators pause the mapper in
    # an incident, and a routine apply must not resume it.
    ignore_changes = [enabled]
  }
}

resource "aws_iam_role" "mapper" {
  name               = local.mapper_function_name
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

data "aws_iam_policy_document" "mapper" {
  statement {
    sid       = "ReadTheShadowStreams"
    actions   = ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"]
    resources = [for t in aws_dynamodb_table.shadow : "${t.arn}/stream/*"]
  }

  # aws::shadow::ACTIONS: keys and declared indexes, read only.
  statement {
    sid       = "ReadTheShadowTables"
    actions   = ["dynamodb:BatchGetItem", "dynamodb:Query"]
    resources = flatten([for t in aws_dynamodb_table.shadow : [t.arn, "${t.arn}/index/*"]])
  }

  # aws::model_store::ACTIONS: the only writer of the model.
  statement {
    sid       = "WriteTheModel"
    actions   = ["dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"]
    resources = [aws_dynamodb_table.model.arn]
  }

  statement {
    sid       = "ReadTheMapper"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.plugins.arn}/mappers/*"]
  }

  statement {
    sid       = "ParkFailedShadowChanges"
    actions   = ["sqs:GetQueueUrl", "sqs:SendMessage"]
    resources = [aws_sqs_queue.mapper_dead_letters.arn, aws_sqs_queue.stream_failures.arn]
  }

  statement {
    sid       = "UseTheEnvironmentKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }

  statement {
    sid       = "WriteItsLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.mapper.arn}:*"]
  }

  statement {
    sid       = "Trace"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "mapper" {
  name   = "mapper"
  role   = aws_iam_role.mapper.id
  policy = data.aws_iam_policy_document.mapper.json
}
