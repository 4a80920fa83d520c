output "name" {
  description = "The environment's name prefix (<prefix>-<env>)."
  value       = local.name
}

output "model_table" {
  description = "The product-model table (the dispatcher's stream source)."
  value       = aws_dynamodb_table.model.name
}

output "model_stream_arn" {
  description = "The model table's stream (for `prism dev --stream-arn`)."
  value       = aws_dynamodb_table.model.stream_arn
}

output "registry_table" {
  description = "The receiver registry (PRISM_REGISTRY_TABLE for `prism plugin ...`)."
  value       = aws_dynamodb_table.registry.name
}

output "ledger_table" {
  description = "The dispatcher's retry ledger."
  value       = aws_dynamodb_table.ledger.name
}

output "outputs_table" {
  description = "The output dedup state (for `prism dev --outputs-table`)."
  value       = aws_dynamodb_table.outputs.name
}

output "spool_table" {
  description = "Batch buffers and retry lanes (for `prism flush --spool-table` and `prism dev --spool-table`)."
  value       = aws_dynamodb_table.spool.name
}

output "shadow_tables" {
  description = "Shadow table names by entity."
  value       = { for k, t in aws_dynamodb_table.shadow : k => t.name }
}

output "registry_table_arn" {
  description = "The registry's ARN (for modules/receiver-deployer)."
  value       = aws_dynamodb_table.registry.arn
}

output "plugin_bucket_arn" {
  description = "The plugin bucket's ARN (for modules/receiver-deployer)."
  value       = aws_s3_bucket.plugins.arn
}

output "plugin_bucket" {
  description = "The plugin bucket (PRISM_PLUGIN_BUCKET for `prism plugin register`)."
  value       = aws_s3_bucket.plugins.bucket
}

output "kms_key_arn" {
  description = "The environment's key; pass it to modules/receiver-queue."
  value       = aws_kms_key.main.arn
}

output "receiver_queue_prefix" {
  description = "Receiver queues must be named with this prefix for the dispatcher to send to them."
  value       = local.receiver_queue_prefix
}

output "dispatcher_function" {
  description = "The dispatcher Lambda's name."
  value       = aws_lambda_function.dispatcher.function_name
}

output "stream_failures_queue_url" {
  description = "Batches the event source mapping gave up on."
  value       = aws_sqs_queue.stream_failures.url
}

output "unreadable_queue_url" {
  description = "Stream records the dispatcher could not read."
  value       = aws_sqs_queue.unreadable.url
}

output "api_endpoint" {
  description = "The read API's base URL (IAM-authorized: sign requests with SigV4 for execute-api)."
  value       = aws_apigatewayv2_stage.read.invoke_url
}

output "mapper_function" {
  description = "The mapper Lambda (on the shadow tables' streams)."
  value       = aws_lambda_function.mapper.function_name
}

output "mapper_dead_letter_queue" {
  description = "Shadow changes the mapper rejected or failed on, with the reason."
  value       = aws_sqs_queue.mapper_dead_letters.name
}

output "shadow_prefix" {
  description = "Shadow tables are named this + their name (for `prism dev --shadow-prefix`)."
  value       = local.shadow_prefix
}

output "alarm_topic_arn" {
  description = "The alarm topic: pass to each modules/receiver-queue as `alarm_topic_arn`."
  value       = aws_sns_topic.alarms.arn
}

output "metrics_namespace" {
  description = "The CloudWatch namespace of prism's metrics in this environment: pass to each modules/receiver-queue as `metrics_namespace`."
  value       = local.metrics_namespace
}

output "audit_trail_arn" {
  description = "The CloudTrail trail that records every write to the registry and to plugins/ and mappers/, with the IAM principal that made it."
  value       = aws_cloudtrail.control_plane.arn
}

output "audit_bucket" {
  description = "Where the control-plane trail's log files are (no prism role can write or delete them)."
  value       = aws_s3_bucket.audit.id
}
