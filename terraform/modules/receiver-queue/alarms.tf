# The receiver's alarms, all to the environment's alarm topic: its DLQ holds
# something, its queue's consumer is falling behind, its plugin fails too
# often, or the dispatcher quarantined it. The prism metrics are the EMF
# lines with dimension Receiver (host/core/src/stream/metrics.rs).

resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  alarm_name          = "${local.base}-dlq-not-empty"
  alarm_description   = "${aws_sqs_queue.dlq.name} holds messages. `prism dlq list --receiver ${var.receiver}` groups them by kind and error; fix, then `prism dlq redrive`."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
}

resource "aws_cloudwatch_metric_alarm" "oldest_message" {
  alarm_name          = "${local.base}-consumer-behind"
  alarm_description   = "The oldest message in ${aws_sqs_queue.main.name} is older than ${var.oldest_message_alarm_seconds} s: the receiver's consumer is down or too slow. Messages expire after ${var.retention_seconds} s."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.main.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.oldest_message_alarm_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
}

resource "aws_cloudwatch_metric_alarm" "error_rate" {
  alarm_name          = "${local.base}-error-rate"
  alarm_description   = "More than ${var.error_rate_alarm_percent} % of the changes ${var.receiver} saw failed for 15 minutes. `prism status` shows its last error."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.error_rate_alarm_percent
  evaluation_periods  = 3
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]

  metric_query {
    id          = "rate"
    expression  = "IF(seen > 0, 100 * errors / seen, 0)"
    label       = "errors per change seen, %"
    return_data = true
  }

  metric_query {
    id = "errors"
    metric {
      namespace   = var.metrics_namespace
      metric_name = "Errors"
      dimensions  = { Receiver = var.receiver }
      stat        = "Sum"
      period      = 300
    }
  }

  metric_query {
    id = "seen"
    metric {
      namespace   = var.metrics_namespace
      metric_name = "ChangesSeen"
      dimensions  = { Receiver = var.receiver }
      stat        = "Sum"
      period      = 300
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "quarantined" {
  alarm_name          = "${local.base}-quarantined"
  alarm_description   = "The dispatcher quarantined ${var.receiver}: its plugin kept failing, and its changes wait in its lane. `prism status`, fix, re-enable."
  namespace           = var.metrics_namespace
  metric_name         = "ChangesQuarantined"
  dimensions          = { Receiver = var.receiver }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
}
