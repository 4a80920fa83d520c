# The dispatcher: one Lambda on the model table's stream, running every
# receiver's plugin. New receivers and new plugin versions come from the
# registry table at run time; nothing here changes for them.

resource "aws_cloudwatch_log_group" "dispatcher" {
  name              = "/aws/lambda/${local.function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_lambda_function" "dispatcher" {
  # checkov:skip=CKV_AWS_117:The dispatcher talks only to AWS APIs (DynamoDB, S3, SQS); a VPC would add NAT or endpoints and nothing to isolate.
  # checkov:skip=CKV_AWS_272:The zip is built and deployed by CI from a reviewed commit; AWS Signer can be added with a code_signing_config where required.
  function_name    = local.function_name
  description      = "prism dispatcher: model stream -> receiver plugins -> SQS"
  role             = aws_iam_role.dispatcher.arn
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  handler          = "bootstrap"
  filename         = var.lambda_zip
  source_code_hash = filebase64sha256(var.lambda_zip)
  memory_size      = var.lambda_memory_mb
  timeout          = var.lambda_timeout_seconds
  kms_key_arn      = aws_kms_key.main.arn

  reserved_concurrent_executions = var.reserved_concurrency

  # /tmp keeps downloaded and compiled plugins while the instance is warm.
  ephemeral_storage {
    size = 1024
  }

  environment {
    variables = {
      PRISM_REGISTRY_TABLE    = aws_dynamodb_table.registry.name
      PRISM_PLUGIN_BUCKET     = aws_s3_bucket.plugins.bucket
      PRISM_LEDGER_TABLE      = aws_dynamodb_table.ledger.name
      PRISM_UNREADABLE_QUEUE  = aws_sqs_queue.unreadable.url
      PRISM_OUTPUTS_TABLE     = aws_dynamodb_table.outputs.name
      PRISM_SPOOL_TABLE       = aws_dynamodb_table.spool.name
      PRISM_MODEL_TABLE       = aws_dynamodb_table.model.name
      PRISM_RELOAD_SECS       = tostring(var.registry_reload_seconds)
      PRISM_CACHE_DIR         = "/tmp/prism"
      PRISM_LOG               = var.log_level
      PRISM_METRICS_NAMESPACE = local.metrics_namespace
      PRISM_MEMORY_MB         = tostring(var.lambda_memory_mb)
      PRISM_LAMBDA_TIMEOUT    = tostring(var.lambda_timeout_seconds)
    }
  }

  tracing_config {
    mode = "Active"
  }

  # Asynchronous invocations (the scheduled flush) that fail end up here.
  dead_letter_config {
    target_arn = aws_sqs_queue.stream_failures.arn
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.dispatcher.name
  }

  depends_on = [aws_iam_role_policy.dispatcher, aws_cloudwatch_log_group.dispatcher]
}

resource "aws_lambda_event_source_mapping" "model_stream" {
  function_name     = aws_lambda_function.dispatcher.arn
  event_source_arn  = aws_dynamodb_table.model.stream_arn
  starting_position = "TRIM_HORIZON"

  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = var.batching_window_seconds
  parallelization_factor             = var.parallelization_factor

  # The dispatcher reports the first record it could not deliver (and all
  # after it); Lambda retries from there. An invocation error splits the
  # batch to isolate a poison record.
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
    # Drift on purpose: in an incident, operators pause the dispatcher with
    # `aws lambda update-event-source-mapping --no-enabled` (README runbook).
    # A routine `terraform apply` must not resume it behind their back; they
    # resume it the same way when the incident is over.
    ignore_changes = [enabled]
  }
}

# The tick: one schedule for all receivers. It calls the dispatcher with
# {"prism": "tick"}: batch buffers that are due are flushed, retry lanes are
# retried in order. New receivers need nothing here.
resource "aws_cloudwatch_event_rule" "tick" {
  name                = "${local.name}-tick"
  description         = "prism: flush due batch buffers and retry retry lanes"
  schedule_expression = "rate(${var.tick_minutes} ${var.tick_minutes == 1 ? "minute" : "minutes"})"
}

resource "aws_cloudwatch_event_target" "tick" {
  rule  = aws_cloudwatch_event_rule.tick.name
  arn   = aws_lambda_function.dispatcher.arn
  input = jsonencode({ prism = "tick" })

  retry_policy {
    maximum_retry_attempts       = 0
    maximum_event_age_in_seconds = 60
  }
}

resource "aws_lambda_permission" "tick" {
  statement_id  = "AllowTickSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.dispatcher.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.tick.arn
}
