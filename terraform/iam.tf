# The dispatcher's role: exactly what the host crates call, on exactly these
# resources (tests/all/terraform.rs checks it against the code).

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "dispatcher" {
  name               = local.function_name
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

data "aws_iam_policy_document" "dispatcher" {
  statement {
    sid       = "ReadTheModelStream"
    actions   = ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"]
    resources = ["${aws_dynamodb_table.model.arn}/stream/*"]
  }

  # A backfill event ({"prism": "backfill", ...}) scans the model table
  # and checks each page against it with consistent reads.
  statement {
    sid       = "BackfillFromTheModel"
    actions   = ["dynamodb:DescribeTable", "dynamodb:Scan", "dynamodb:BatchGetItem"]
    resources = [aws_dynamodb_table.model.arn]
  }

  statement {
    sid       = "ReadTheRegistry"
    actions   = ["dynamodb:Scan", "dynamodb:GetItem", "dynamodb:Query"]
    resources = [aws_dynamodb_table.registry.arn]
  }

  # `prism status` shows each receiver's last error, a quarantine outlives
  # the process that opened it (`quarantine`), and a plugin compiled
  # at a cold start is vouched for (`cwasm#<engine>#<wasm sha256>`) so the
  # next cold start loads it precompiled: the dispatcher may set those
  # attributes and nothing else (never `entry`, `revision` or `current`).
  statement {
    sid       = "RecordLastErrorsAndCompiledPlugins"
    actions   = ["dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.registry.arn]
    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:Attributes"
      values   = ["receiver", "version", "last_error", "quarantine", "cwasm#*"]
    }
  }

  statement {
    sid       = "UseTheRetryLedger"
    actions   = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"]
    resources = [aws_dynamodb_table.ledger.arn]
  }

  statement {
    sid       = "KeepOutputDedupState"
    actions   = ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"]
    resources = [aws_dynamodb_table.outputs.arn]
  }

  statement {
    sid = "KeepTheSpool"
    actions = [
      "dynamodb:Query",
      "dynamodb:GetItem",
      "dynamodb:BatchGetItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:BatchWriteItem",
    ]
    resources = [aws_dynamodb_table.spool.arn]
  }

  statement {
    sid     = "ReadPlugins"
    actions = ["s3:GetObject"]
    resources = [
      "${aws_s3_bucket.plugins.arn}/plugins/*",
      "${aws_s3_bucket.plugins.arn}/precompiled/*",
    ]
  }

  # A plugin compiled at a cold start is shared for the next one.
  statement {
    sid       = "SharePrecompiledPlugins"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.plugins.arn}/precompiled/*"]
  }

  # Claim checks (prism_aws::claims): a change or dead letter too big for
  # a DynamoDB item or an SQS message waits here, content-addressed.
  statement {
    sid       = "ClaimChecks"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.plugins.arn}/claims/*"]
  }

  # Any receiver queue of this environment, by name: a new receiver's queue
  # needs no change here.
  statement {
    sid       = "DeliverToReceiverQueues"
    actions   = ["sqs:GetQueueUrl", "sqs:SendMessage"]
    resources = [local.receiver_queue_arns]
  }

  statement {
    sid       = "ParkUnreadableAndFailedBatches"
    actions   = ["sqs:GetQueueUrl", "sqs:SendMessage"]
    resources = [aws_sqs_queue.unreadable.arn, aws_sqs_queue.stream_failures.arn]
  }

  statement {
    sid       = "UseTheEnvironmentKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }

  statement {
    sid       = "WriteItsLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.dispatcher.arn}:*"]
  }

  statement {
    sid       = "Trace"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "dispatcher" {
  name   = "dispatcher"
  role   = aws_iam_role.dispatcher.id
  policy = data.aws_iam_policy_document.dispatcher.json
}
