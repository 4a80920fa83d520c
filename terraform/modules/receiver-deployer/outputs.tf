output "role_arn" {
  description = "The deploy role's ARN, for the team's pipeline to assume."
  value       = aws_iam_role.this.arn
}

output "role_name" {
  description = "The deploy role's name."
  value       = aws_iam_role.this.name
}
