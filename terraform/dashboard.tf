# One dashboard per environment: the functions on top, then a row per
# receiver in var.monitored_receivers (messages, suppressed and skipped,
# errors and quarantine, plugin time, DLQ depth).

locals {
  ns = local.metrics_namespace

  function_widgets = [
    {
      type = "metric", x = 0, y = 0, width = 8, height = 6
      properties = {
        title  = "Stream lag (IteratorAge, ms)"
        region = local.region
        stat   = "Maximum"
        period = 60
        metrics = [
          ["AWS/Lambda", "IteratorAge", "FunctionName", local.function_name],
          ["AWS/Lambda", "IteratorAge", "FunctionName", local.mapper_function_name],
        ]
      }
    },
    {
      type = "metric", x = 8, y = 0, width = 8, height = 6
      properties = {
        title  = "Errors and throttles"
        region = local.region
        stat   = "Sum"
        period = 60
        metrics = [
          ["AWS/Lambda", "Errors", "FunctionName", local.function_name],
          ["AWS/Lambda", "Throttles", "FunctionName", local.function_name],
          ["AWS/Lambda", "Errors", "FunctionName", local.mapper_function_name],
          ["AWS/Lambda", "Throttles", "FunctionName", local.mapper_function_name],
          [local.ns, "FailedRecords"],
          [local.ns, "UnreadableRecords"],
        ]
      }
    },
    {
      type = "metric", x = 16, y = 0, width = 8, height = 6
      properties = {
        title  = "Spool: changes waiting, lanes"
        region = local.region
        stat   = "Maximum"
        period = 60
        metrics = [
          [local.ns, "SpoolWaiting"],
          [local.ns, "SpoolLanes"],
          [local.ns, "UnavailableReceivers"],
        ]
      }
    },
  ]

  receiver_widgets = flatten([
    for i, r in sort(keys(var.monitored_receivers)) : [
      {
        type = "metric", x = 0, y = 6 * (i + 1), width = 6, height = 6
        properties = {
          title  = "${r}: messages"
          region = local.region
          stat   = "Sum"
          period = 300
          metrics = [
            [local.ns, "Messages", "Receiver", r],
            [local.ns, "MessagesSuppressed", "Receiver", r],
            [local.ns, "ChangesSkipped", "Receiver", r],
            [local.ns, "CallsSkipped", "Receiver", r],
          ]
        }
      },
      {
        type = "metric", x = 6, y = 6 * (i + 1), width = 6, height = 6
        properties = {
          title  = "${r}: errors"
          region = local.region
          stat   = "Sum"
          period = 300
          metrics = [
            [local.ns, "Errors", "Receiver", r],
            [local.ns, "ChangesQuarantined", "Receiver", r],
            [local.ns, "ChangesDeferred", "Receiver", r],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 6 * (i + 1), width = 6, height = 6
        properties = {
          title   = "${r}: plugin time (ms)"
          region  = local.region
          stat    = "Sum"
          period  = 300
          metrics = [[local.ns, "PluginTime", "Receiver", r]]
        }
      },
      {
        type = "metric", x = 18, y = 6 * (i + 1), width = 6, height = 6
        properties = {
          title  = "${r}: DLQ depth"
          region = local.region
          stat   = "Maximum"
          period = 300
          metrics = [[
            "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName",
            "${local.receiver_queue_prefix}${r}-dlq${var.monitored_receivers[r].fifo ? ".fifo" : ""}",
          ]]
        }
      },
    ]
  ])
}

resource "aws_cloudwatch_dashboard" "main" {
  dashboard_name = local.name
  dashboard_body = jsonencode({ widgets = concat(local.function_widgets, local.receiver_widgets) })
}
