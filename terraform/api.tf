# The read API: API Gateway (HTTP API) in front of a second Lambda built
# from the same crate (bin prism-api, lambda_http). Routes are the ones
# host/core/src/api/route.rs serves (tests/all/terraform.rs checks both agree).
#
# Authorization is IAM (SigV4): callers are services with IAM roles (shop
# backends, the leaflet generator), access is granted with an
# execute-api:Invoke policy per caller and route, and there is no shared
# secret to hand out or rotate. (HTTP APIs have no API keys; those are a REST
# API feature, and API keys identify rather than authenticate.)

resource "aws_cloudwatch_log_group" "api" {
  name              = "/aws/lambda/${local.api_function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_cloudwatch_log_group" "api_access" {
  name              = "/aws/apigateway/${local.name}-read"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_iam_role" "api" {
  name               = local.api_function_name
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

data "aws_iam_policy_document" "api" {
  statement {
    sid       = "ReadTheModel"
    actions   = ["dynamodb:DescribeTable", "dynamodb:GetItem"]
    resources = [aws_dynamodb_table.model.arn]
  }

  statement {
    sid       = "ReadTheRegistry"
    actions   = ["dynamodb:Scan"]
    resources = [aws_dynamodb_table.registry.arn]
  }

  # Read-only on the bucket: precompiled artifacts are native code that
  # dispatchers run, so only the dispatcher and operators may write them.
  statement {
    sid     = "ReadPlugins"
    actions = ["s3:GetObject"]
    resources = [
      "${aws_s3_bucket.plugins.arn}/plugins/*",
      "${aws_s3_bucket.plugins.arn}/precompiled/*",
    ]
  }

  statement {
    sid       = "UseTheEnvironmentKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }

  statement {
    sid       = "WriteItsLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.api.arn}:*"]
  }

  statement {
    sid       = "Trace"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "api" {
  name   = "api"
  role   = aws_iam_role.api.id
  policy = data.aws_iam_policy_document.api.json
}

resource "aws_lambda_function" "api" {
  # checkov:skip=CKV_AWS_117:The API talks only to AWS APIs (DynamoDB, S3); a VPC would add NAT or endpoints and nothing to isolate.
  # checkov:skip=CKV_AWS_272:The zip is built and deployed by CI from a reviewed commit; AWS Signer can be added with a code_signing_config where required.
  # checkov:skip=CKV_AWS_116:Invoked synchronously by API Gateway only: a failed request is answered to its caller, there is no event to keep.
  function_name    = local.api_function_name
  description      = "prism read API: model documents and receiver renderings"
  role             = aws_iam_role.api.arn
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  handler          = "bootstrap"
  filename         = var.api_lambda_zip
  source_code_hash = filebase64sha256(var.api_lambda_zip)
  memory_size      = var.api_memory_mb
  timeout          = 10
  kms_key_arn      = aws_kms_key.main.arn

  reserved_concurrent_executions = var.api_reserved_concurrency

  environment {
    variables = {
      PRISM_MODEL_TABLE    = aws_dynamodb_table.model.name
      PRISM_REGISTRY_TABLE = aws_dynamodb_table.registry.name
      PRISM_PLUGIN_BUCKET  = aws_s3_bucket.plugins.bucket
      PRISM_RELOAD_SECS    = tostring(var.registry_reload_seconds)
      PRISM_CACHE_DIR      = "/tmp/prism"
      PRISM_LOG            = var.log_level
    }
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.api.name
  }

  depends_on = [aws_iam_role_policy.api, aws_cloudwatch_log_group.api]
}

resource "aws_apigatewayv2_api" "read" {
  name          = "${local.name}-read"
  description   = "prism read API"
  protocol_type = "HTTP"
}

resource "aws_apigatewayv2_integration" "read" {
  api_id                 = aws_apigatewayv2_api.read.id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_function.api.invoke_arn
  payload_format_version = "2.0"
}

resource "aws_apigatewayv2_route" "read" {
  for_each = toset([
    "GET /v1/products/{key}",
    "GET /v1/receivers/{receiver}/products/{key}",
  ])

  api_id             = aws_apigatewayv2_api.read.id
  route_key          = each.value
  authorization_type = "AWS_IAM"
  target             = "integrations/${aws_apigatewayv2_integration.read.id}"
}

resource "aws_apigatewayv2_stage" "read" {
  api_id      = aws_apigatewayv2_api.read.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_burst_limit = var.api_burst_limit
    throttling_rate_limit  = var.api_rate_limit
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api_access.arn
    format = jsonencode({
      requestId = "$context.requestId"
      caller    = "$context.identity.caller"
      route     = "$context.routeKey"
      status    = "$context.status"
      latency   = "$context.integrationLatency"
    })
  }
}

resource "aws_lambda_permission" "read" {
  statement_id  = "AllowReadApi"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.api.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.read.execution_arn}/*/*"
}
