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
  description = "The one receiver id this role may register, enable, disable and roll back."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,39}$", var.receiver)) && !contains(split("-", var.receiver), "rcv") && !endswith(var.receiver, "-dlq")
    error_message = "receiver must be lowercase letters, digits or '-' (at most 40), without the word \"rcv\" or a \"-dlq\" ending, as the registry requires."
  }
}

variable "registry_table_arn" {
  description = "The registry table's ARN (the prism module's `registry_table_arn` output)."
  type        = string
}

variable "plugin_bucket_arn" {
  description = "The plugin bucket's ARN (the prism module's `plugin_bucket_arn` output)."
  type        = string
}

variable "kms_key_arn" {
  description = "The environment's key (the prism module's `kms_key_arn` output)."
  type        = string
}

variable "trusted_principal_arns" {
  description = "Who may assume the role: the team's CI role(s)."
  type        = list(string)

  validation {
    condition     = length(var.trusted_principal_arns) > 0 && alltrue([for a in var.trusted_principal_arns : can(regex("^arn:", a))])
    error_message = "trusted_principal_arns must list at least one ARN."
  }
}
