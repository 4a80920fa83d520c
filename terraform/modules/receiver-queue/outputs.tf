output "queue_name" {
  description = "Pass to `prism plugin register --queue`."
  value       = aws_sqs_queue.main.name
}

output "queue_url" {
  description = "The receiver's queue URL (for its consumer)."
  value       = aws_sqs_queue.main.url
}

output "queue_arn" {
  description = "The receiver's queue ARN (for its consumer's IAM)."
  value       = aws_sqs_queue.main.arn
}

output "dead_letter_queue_name" {
  description = "Pass to `prism plugin register --dead-letter-queue`."
  value       = aws_sqs_queue.dlq.name
}

output "dead_letter_queue_url" {
  description = "The receiver's DLQ URL."
  value       = aws_sqs_queue.dlq.url
}
