# A complete dev environment: the prism module and one receiver's queue.
#
#   cargo lambda build --release --arm64 --bin prism-lambda --bin prism-mapper --bin prism-api --output-format zip
#   terraform init && terraform apply -var env=dev -var owner=you@example.com
#   prism plugin register website.wasm --receiver website-de \
#     --table "$(terraform output -raw registry_table)" --bucket "$(terraform output -raw plugin_bucket)" \
#     --queue "$(terraform output -raw website_queue)" --dead-letter-queue "$(terraform output -raw website_dlq)"
#   prism mapper publish --manifest catalog.toml --bucket "$(terraform output -raw plugin_bucket)"

terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60, < 7.0"
    }
  }
}

variable "env" {
  description = "Environment name."
  type        = string
  default     = "dev"
}

variable "owner" {
  description = "Who answers for this environment (a team address)."
  type        = string
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-central-1"
}

variable "lambda_zip" {
  description = "The dispatcher zip."
  type        = string
  default     = "../../../target/lambda/prism-lambda/bootstrap.zip"
}

variable "mapper_lambda_zip" {
  description = "The mapper zip."
  type        = string
  default     = "../../../target/lambda/prism-mapper/bootstrap.zip"
}

variable "api_lambda_zip" {
  description = "The read API zip."
  type        = string
  default     = "../../../target/lambda/prism-api/bootstrap.zip"
}

provider "aws" {
  region = var.region

  # Every resource gets these; scripts/cleanup-env finds an environment by them.
  default_tags {
    tags = {
      env          = var.env
      owner        = var.owner
      "managed-by" = "terraform"
      app          = "prism"
    }
  }

  # Drift on purpose: cost-allocation tooling adds `cost:*` tags outside
  # Terraform; a plan must neither remove them nor show them as changes.
  ignore_tags {
    key_prefixes = ["cost:"]
  }
}

module "prism" {
  source = "../.."

  env               = var.env
  lambda_zip        = var.lambda_zip
  api_lambda_zip    = var.api_lambda_zip
  mapper_lambda_zip = var.mapper_lambda_zip

  # Who hears the alarms, and which receivers get a dashboard row.
  alarm_subscribers   = [{ protocol = "email", endpoint = var.owner }]
  monitored_receivers = { website-de = {} }

  # The example catalog mapper's tables (plugins/catalog; the manifest's [[tables]]).
  shadow_tables = {
    brands    = { hash_key = "brand_id" }
    logistics = { hash_key = "class_id" }
    products = {
      hash_key = "article_no"
      indexes  = { by-brand = "brand_id", by-logistics-class = "logistics_class" }
    }
    prices = { hash_key = "article_no", range_key = "market" }
    texts  = { hash_key = "article_no", range_key = "language" }
  }
}

# The website receiver's team owns this; the dispatcher needs no change for it.
module "website_queue" {
  source = "../../modules/receiver-queue"

  env               = var.env
  receiver          = "website-de"
  kms_key_arn       = module.prism.kms_key_arn
  alarm_topic_arn   = module.prism.alarm_topic_arn
  metrics_namespace = module.prism.metrics_namespace
}

output "registry_table" {
  description = "For prism plugin --table."
  value       = module.prism.registry_table
}

output "plugin_bucket" {
  description = "For prism plugin register --bucket."
  value       = module.prism.plugin_bucket
}

output "model_table" {
  description = "For prism dev --model-table."
  value       = module.prism.model_table
}

output "website_queue" {
  description = "For prism plugin register --queue."
  value       = module.website_queue.queue_name
}

output "website_dlq" {
  description = "For prism plugin register --dead-letter-queue."
  value       = module.website_queue.dead_letter_queue_name
}
