variable "prefix" {
  description = "The environment's prefix (the prism module's `prefix`)."
  type        = string
  default     = "prism"
}

variable "env" {
  description = "The environment (the prism module's `env`)."
  type        = string
}

variable "receiver" {
  description = "The receiver id as registered (`prism plugin register --receiver`)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,39}$", var.receiver)) && !contains(split("-", var.receiver), "rcv") && !endswith(var.receiver, "-dlq")
    error_message = "receiver must be lowercase letters, digits or '-' (at most 40), without the word \"rcv\" or a \"-dlq\" ending, as the registry requires."
  }
}

variable "fifo" {
  description = "A FIFO queue: per-product order (MessageGroupId) and deduplication of retried deliveries."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "The environment's key (the prism module's `kms_key_arn` output)."
  type        = string
}

variable "max_receive_count" {
  description = "Receives before a message moves to the DLQ."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "max_receive_count must be between 1 and 1000."
  }
}

variable "visibility_timeout_seconds" {
  description = "How long a consumer has to process a message."
  type        = number
  default     = 60
}

variable "retention_seconds" {
  description = "How long messages are kept (the DLQ keeps them 14 days)."
  type        = number
  default     = 345600

  validation {
    condition     = var.retention_seconds >= 60 && var.retention_seconds <= 1209600
    error_message = "retention_seconds must be between 60 and 1209600."
  }
}

variable "alarm_topic_arn" {
  description = "The environment's alarm topic (the prism module's `alarm_topic_arn` output). The receiver's alarms notify it."
  type        = string
}

variable "metrics_namespace" {
  description = "The environment's metrics namespace (the prism module's `metrics_namespace` output)."
  type        = string
}

variable "oldest_message_alarm_seconds" {
  description = "Alarm when the oldest message in the receiver's queue is older than this: its consumer is not keeping up."
  type        = number
  default     = 3600
}

variable "error_rate_alarm_percent" {
  description = "Alarm when more than this share of the changes the receiver saw failed (rejected, trapped, parked) over 15 minutes."
  type        = number
  default     = 5
}
