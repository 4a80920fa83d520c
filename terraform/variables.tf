variable "prefix" {
  description = "First part of every name (<prefix>-<env>-...). Short, lowercase."
  type        = string
  default     = "prism"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,11}$", var.prefix))
    error_message = "prefix must be 2-12 lowercase letters or digits, starting with a letter."
  }
}

variable "env" {
  description = "Environment name (prod, staging, dev, or a throwaway test name): the second part of every name."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.env)) && !endswith(var.env, "-")
    error_message = "env must be 2-20 lowercase letters, digits or '-', starting with a letter and not ending with '-'."
  }

  # The dispatcher of env "prod" may send to every prism-prod-rcv-* queue and
  # the mapper reads every prism-prod-shadow-* table: an env named
  # "prod-rcv-x" or "prod-shadow-x" would put its own resources inside them.
  validation {
    condition     = !contains(split("-", var.env), "rcv") && !contains(split("-", var.env), "shadow")
    error_message = "env may not contain the words \"rcv\" or \"shadow\": they would make its names overlap another environment's receiver queues or shadow tables."
  }
}

variable "shadow_tables" {
  description = "Master-data shadow tables, one per source entity: name => key attributes and global secondary indexes (index name => its partition attribute; all strings). They must match the mapper manifest's [[tables]]. Each gets a NEW_AND_OLD_IMAGES stream that drives the mapper."
  type = map(object({
    hash_key  = string
    range_key = optional(string)
    indexes   = optional(map(string), {})
  }))
  default = {}

  validation {
    condition     = alltrue([for name in keys(var.shadow_tables) : can(regex("^[a-z][a-z0-9-]{0,39}$", name))])
    error_message = "shadow table names must be lowercase letters, digits or '-' (at most 40)."
  }
}

variable "lambda_zip" {
  description = "Path to the dispatcher zip that `cargo lambda build --release --arm64 --bin prism-lambda --output-format zip` writes (target/lambda/prism-lambda/bootstrap.zip)."
  type        = string
}

variable "mapper_lambda_zip" {
  description = "Path to the mapper zip that `cargo lambda build --release --arm64 --bin prism-mapper --output-format zip` writes (target/lambda/prism-mapper/bootstrap.zip)."
  type        = string
}

variable "mapper_manifest_key" {
  description = "The mapper manifest's key in the plugin bucket, as `prism mapper publish` writes it (mappers/<name>.toml)."
  type        = string
  default     = "mappers/catalog.toml"

  validation {
    condition     = can(regex("^mappers/[a-z0-9-]+\\.toml$", var.mapper_manifest_key))
    error_message = "mapper_manifest_key must be mappers/<name>.toml."
  }
}

variable "mapper_memory_mb" {
  description = "Mapper memory (MB): a cascade over thousands of products holds their documents."
  type        = number
  default     = 1769

  validation {
    condition     = var.mapper_memory_mb >= 256 && var.mapper_memory_mb <= 10240
    error_message = "mapper_memory_mb must be between 256 and 10240."
  }
}

variable "mapper_timeout_seconds" {
  description = "Mapper timeout per batch: longer than the dispatcher's, since one brand change rewrites all its products."
  type        = number
  default     = 300

  validation {
    condition     = var.mapper_timeout_seconds >= 10 && var.mapper_timeout_seconds <= 900
    error_message = "mapper_timeout_seconds must be between 10 and 900."
  }
}

variable "mapper_concurrency" {
  description = "Shadow items one mapper invocation maps at once (PRISM_MAPPER_CONCURRENCY)."
  type        = number
  default     = 8

  validation {
    condition     = var.mapper_concurrency >= 1 && var.mapper_concurrency <= 64
    error_message = "mapper_concurrency must be between 1 and 64."
  }
}

variable "mapper_reserved_concurrency" {
  description = "Reserved concurrent executions for the mapper: at least (shards of all shadow streams) x parallelization_factor."
  type        = number
  default     = 50

  validation {
    condition     = var.mapper_reserved_concurrency >= 1
    error_message = "mapper_reserved_concurrency must be at least 1."
  }
}

variable "api_lambda_zip" {
  description = "Path to the read API zip that `cargo lambda build --release --arm64 --bin prism-api --output-format zip` writes (target/lambda/prism-api/bootstrap.zip)."
  type        = string
}

variable "api_memory_mb" {
  description = "Read API Lambda memory (MB)."
  type        = number
  default     = 1024

  validation {
    condition     = var.api_memory_mb >= 128 && var.api_memory_mb <= 10240
    error_message = "api_memory_mb must be between 128 and 10240."
  }
}

variable "api_reserved_concurrency" {
  description = "Concurrent executions reserved for the read API (caps what it can cost and what it takes from the account)."
  type        = number
  default     = 20

  validation {
    condition     = var.api_reserved_concurrency >= 1
    error_message = "api_reserved_concurrency must be at least 1."
  }
}

variable "api_rate_limit" {
  description = "Read API steady-state requests per second (stage throttling)."
  type        = number
  default     = 100
}

variable "api_burst_limit" {
  description = "Read API burst (stage throttling)."
  type        = number
  default     = 200
}

variable "lambda_memory_mb" {
  description = "Dispatcher memory (MB). CPU grows with it; 1769 MB is one full vCPU."
  type        = number
  default     = 1769

  validation {
    condition     = var.lambda_memory_mb >= 256 && var.lambda_memory_mb <= 10240
    error_message = "lambda_memory_mb must be between 256 and 10240."
  }
}

variable "lambda_timeout_seconds" {
  description = "Dispatcher timeout per batch."
  type        = number
  default     = 60

  validation {
    condition     = var.lambda_timeout_seconds >= 10 && var.lambda_timeout_seconds <= 900
    error_message = "lambda_timeout_seconds must be between 10 and 900."
  }
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions for the dispatcher: at least shards x parallelization_factor of the model stream."
  type        = number
  default     = 50

  validation {
    condition     = var.reserved_concurrency >= 1
    error_message = "reserved_concurrency must be at least 1."
  }
}

variable "batch_size" {
  description = "Stream records per dispatcher invocation."
  type        = number
  default     = 100

  validation {
    condition     = var.batch_size >= 1 && var.batch_size <= 10000
    error_message = "batch_size must be between 1 and 10000."
  }
}

variable "batching_window_seconds" {
  description = "How long the event source mapping may wait to fill a batch."
  type        = number
  default     = 1

  validation {
    condition     = var.batching_window_seconds >= 0 && var.batching_window_seconds <= 300
    error_message = "batching_window_seconds must be between 0 and 300."
  }
}

variable "parallelization_factor" {
  description = "Concurrent batches per stream shard (order per product key is kept)."
  type        = number
  default     = 2

  validation {
    condition     = var.parallelization_factor >= 1 && var.parallelization_factor <= 10
    error_message = "parallelization_factor must be between 1 and 10."
  }
}

variable "max_retries" {
  description = "Retries of a failed batch before it goes to the on-failure queue."
  type        = number
  default     = 100

  validation {
    condition     = var.max_retries >= 0 && var.max_retries <= 10000
    error_message = "max_retries must be between 0 and 10000."
  }
}

variable "max_record_age_seconds" {
  description = "Records older than this go to the on-failure queue instead of being retried. At most 18 h, so that a record the on-failure queue names can still be read from the stream (24 h retention) and replayed for at least 6 h."
  type        = number
  default     = 21600

  validation {
    condition     = var.max_record_age_seconds >= 60 && var.max_record_age_seconds <= 64800
    error_message = "max_record_age_seconds must be between 60 and 64800 (18 h): older records could no longer be replayed from the stream's 24 h retention."
  }
}

variable "registry_reload_seconds" {
  description = "How long a warm dispatcher trusts its copy of the registry (hot reload TTL)."
  type        = number
  default     = 30

  validation {
    condition     = var.registry_reload_seconds >= 0
    error_message = "registry_reload_seconds must not be negative."
  }
}

variable "log_retention_days" {
  description = "Retention of the dispatcher's log group (logs and EMF metrics)."
  type        = number
  default     = 365

  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch retention of at least a year (365, 400, 545, 731, ...)."
  }
}

variable "tick_minutes" {
  description = "How often the tick runs (minutes): batch buffers past their max age are flushed and retry lanes retried at this pace."
  type        = number
  default     = 1

  validation {
    condition     = var.tick_minutes >= 1 && var.tick_minutes <= 60 && floor(var.tick_minutes) == var.tick_minutes
    error_message = "tick_minutes must be a whole number from 1 to 60."
  }
}

variable "log_level" {
  description = "The dispatcher's log filter (PRISM_LOG, tracing syntax)."
  type        = string
  default     = "info"
}

variable "point_in_time_recovery" {
  description = "Point-in-time recovery on every table. Switch off only for throwaway test environments."
  type        = bool
  default     = true
}

variable "alarm_subscribers" {
  description = "Who the alarms notify: SNS subscriptions to the alarm topic (protocol email, https, sqs, lambda, …, and its endpoint)."
  type = list(object({
    protocol = string
    endpoint = string
  }))
  default = []
}

variable "monitored_receivers" {
  description = "Receivers that get a row on the dashboard (receiver id => whether its queues are FIFO). Their alarms come with their modules/receiver-queue."
  type = map(object({
    fifo = optional(bool, false)
  }))
  default = {}
}

variable "iterator_age_alarm_ms" {
  description = "Alarm when the dispatcher or the mapper falls this far behind its stream (IteratorAge, milliseconds)."
  type        = number
  default     = 300000
}

variable "api_5xx_alarm_percent" {
  description = "Alarm when more than this share of the read API's requests fail with 5xx over 10 minutes."
  type        = number
  default     = 1
}

variable "audit_retention_days" {
  description = "Days the control-plane trail's log files (who wrote which registry item and component) are kept."
  type        = number
  default     = 400

  validation {
    condition     = var.audit_retention_days >= 90
    error_message = "audit_retention_days must be at least 90: the trail is the record of who registered what."
  }
}
