# One prism environment: the tables, the plugin bucket, the dispatcher Lambda
# on the model table's stream, its queues and its role. Receivers' queues are
# not here: each receiver team creates its own with modules/receiver-queue,
# and the dispatcher may send to them by their names alone.
#
# Tags: the calling root sets env, owner and managed-by through the
# provider's default_tags (see examples/dev), so every resource carries them.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  # Every name starts with this: environments cannot collide, and the
  # cleanup script finds an environment by it.
  name       = "${var.prefix}-${var.env}"
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition

  # Receiver queues are named <prefix>-<env>-rcv-<receiver>[-dlq][.fifo]
  # (modules/receiver-queue); the dispatcher may send to exactly those.
  receiver_queue_prefix = "${local.name}-rcv-"
  receiver_queue_arns   = "arn:${local.partition}:sqs:${local.region}:${local.account_id}:${local.receiver_queue_prefix}*"

  function_name        = "${local.name}-dispatcher"
  api_function_name    = "${local.name}-api"
  mapper_function_name = "${local.name}-mapper"

  # The EMF metrics' CloudWatch namespace: one per environment, so the
  # alarms of two environments in one account never add each other's numbers.
  metrics_namespace = local.name

  # Shadow tables are <prefix>-<env>-shadow-<name>; the mapper sees <name>.
  shadow_prefix = "${local.name}-shadow-"
}
