# Alarms for the environment's functions, its own queues and the read API.
# Each receiver's alarms (DLQ, oldest message, error rate, quarantine) come
# with its modules/receiver-queue, which takes this topic's ARN. Every alarm
# notifies the topic; var.alarm_subscribers subscribe to it.
#
# prism's own metrics are the EMF lines host/core/src/stream/metrics.rs
# writes, in the namespace local.metrics_namespace; tests/all/terraform_alarms.rs
# checks that every name and dimension used here is one the code writes.

resource "aws_sns_topic" "alarms" {
  name              = "${local.name}-alarms"
  kms_master_key_id = aws_kms_key.main.arn
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms_topic.json
}

data "aws_iam_policy_document" "alarms_topic" {
  statement {
    sid       = "CloudWatchAlarmsOfThisEnvironmentPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:cloudwatch:${local.region}:${local.account_id}:alarm:${local.name}-*"]
    }
  }
}

resource "aws_sns_topic_subscription" "alarms" {
  for_each  = { for s in var.alarm_subscribers : "${s.protocol}:${s.endpoint}" => s }
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = each.value.protocol
  endpoint  = each.value.endpoint
}

locals {
  # The two stream-driven functions.
  stream_functions = {
    dispatcher = local.function_name
    mapper     = local.mapper_function_name
  }

  # Queues where the environment parks what it could not handle: each holds
  # something to look at and replay, so one message is worth an alarm.
  parking_queues = {
    stream-failures     = aws_sqs_queue.stream_failures.name
    unreadable          = aws_sqs_queue.unreadable.name
    mapper-dead-letters = aws_sqs_queue.mapper_dead_letters.name
  }
}

resource "aws_cloudwatch_metric_alarm" "function_errors" {
  for_each            = local.stream_functions
  alarm_name          = "${each.value}-errors"
  alarm_description   = "The ${each.key} Lambda failed invocations: see its log group, then `prism status`."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "function_throttles" {
  for_each            = local.stream_functions
  alarm_name          = "${each.value}-throttles"
  alarm_description   = "The ${each.key} Lambda was throttled: its reserved concurrency or the account's limit is too low for the stream."
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "function_iterator_age" {
  for_each            = local.stream_functions
  alarm_name          = "${each.value}-behind"
  alarm_description   = "The ${each.key} is more than ${var.iterator_age_alarm_ms} ms behind its stream for 15 minutes. Records older than 24 h leave the stream."
  namespace           = "AWS/Lambda"
  metric_name         = "IteratorAge"
  dimensions          = { FunctionName = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.iterator_age_alarm_ms
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# Changes waiting in retry lanes and batch buffers, growing in each of three
# 5-minute periods in a row: a receiver is failing and its lane is not
# draining. (A burst that drains does not alarm.)
resource "aws_cloudwatch_metric_alarm" "spool_growing" {
  alarm_name          = "${local.function_name}-spool-growing"
  alarm_description   = "SpoolWaiting grew for 15 minutes: `prism status` shows which receiver's lanes wait, and why."
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 3
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "growth"
    expression  = "DIFF(waiting)"
    label       = "SpoolWaiting growth"
    return_data = true
  }

  metric_query {
    id = "waiting"
    metric {
      namespace   = local.metrics_namespace
      metric_name = "SpoolWaiting"
      stat        = "Maximum"
      period      = 300
    }
  }
}

# A receiver the dispatcher could not load: its plugin would not compile or
# fit, its artifact is missing or oversized, its limits cannot fit an
# invocation, or two registry items claim it (both are refused, and the
# log names both). Its changes wait; prism status says why.
resource "aws_cloudwatch_metric_alarm" "unavailable_receivers" {
  alarm_name          = "${local.function_name}-unavailable-receivers"
  alarm_description   = "A registered receiver is not running (refused at load): `prism status` and the dispatcher's log (\"receiver refused\", \"duplicate registry entries\") name it and why."
  namespace           = local.metrics_namespace
  metric_name         = "UnavailableReceivers"
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "parked" {
  for_each            = local.parking_queues
  alarm_name          = "${local.name}-${each.key}-not-empty"
  alarm_description   = "${each.value} holds messages: each is a batch or record prism could not handle, with the reason, waiting to be replayed."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "api_5xx" {
  alarm_name          = "${local.name}-read-api-5xx"
  alarm_description   = "More than ${var.api_5xx_alarm_percent} % of the read API's requests failed with 5xx for 10 minutes."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.api_5xx_alarm_percent
  evaluation_periods  = 2
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "rate"
    expression  = "IF(requests > 0, 100 * errors / requests, 0)"
    label       = "5xx %"
    return_data = true
  }

  metric_query {
    id = "errors"
    metric {
      namespace   = "AWS/ApiGateway"
      metric_name = "5xx"
      dimensions  = { ApiId = aws_apigatewayv2_api.read.id, Stage = aws_apigatewayv2_stage.read.name }
      stat        = "Sum"
      period      = 300
    }
  }

  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApiGateway"
      metric_name = "Count"
      dimensions  = { ApiId = aws_apigatewayv2_api.read.id, Stage = aws_apigatewayv2_stage.read.name }
      stat        = "Sum"
      period      = 300
    }
  }
}
