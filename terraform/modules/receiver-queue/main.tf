# A receiver's queue and dead-letter queue, named so that the environment's
# dispatcher may send to both without any IAM change:
#   <prefix>-<env>-rcv-<receiver>[.fifo] and <prefix>-<env>-rcv-<receiver>-dlq[.fifo]
# The DLQ takes both the messages the consumer fails on (redrive) and the
# changes the dispatcher parks (rejected, too large, plugin unavailable).

locals {
  base   = "${var.prefix}-${var.env}-rcv-${var.receiver}"
  suffix = var.fifo ? ".fifo" : ""
}

resource "aws_sqs_queue" "dlq" {
  name                        = "${local.base}-dlq${local.suffix}"
  fifo_queue                  = var.fifo
  content_based_deduplication = false
  message_retention_seconds   = 1209600
  kms_master_key_id           = var.kms_key_arn
}

resource "aws_sqs_queue" "main" {
  name                        = "${local.base}${local.suffix}"
  fifo_queue                  = var.fifo
  content_based_deduplication = false
  message_retention_seconds   = var.retention_seconds
  visibility_timeout_seconds  = var.visibility_timeout_seconds
  kms_master_key_id           = var.kms_key_arn

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.main.arn]
  })
}
