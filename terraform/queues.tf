# The dispatcher's own queues. Receivers' queues come from
# modules/receiver-queue.

# Where the event source mapping sends a batch it gave up on (after
# max_retries or max_record_age_seconds): shard, sequence range and reason,
# enough to replay from the stream.
resource "aws_sqs_queue" "stream_failures" {
  name                      = "${local.name}-stream-failures"
  message_retention_seconds = 1209600
  kms_master_key_id         = aws_kms_key.main.arn
}

# Stream records the dispatcher cannot read, raw, with the reason.
resource "aws_sqs_queue" "unreadable" {
  name                      = "${local.name}-unreadable"
  message_retention_seconds = 1209600
  kms_master_key_id         = aws_kms_key.main.arn
}
