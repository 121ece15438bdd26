output "websocket_url" {
  description = "Where clients connect."
  value       = local.https ? "wss://${aws_lb.public.dns_name}/ws" : "ws://${aws_lb.public.dns_name}:7999/ws"
}

output "table_name" {
  description = "The DynamoDB items table."
  value       = aws_dynamodb_table.items.name
}

output "keys_bucket" {
  description = "Upload the API keys object here (docs/deploy.md)."
  value       = aws_s3_bucket.keys.id
}

output "keys_object" {
  description = "The S3 URI of the keys object."
  value       = "s3://${aws_s3_bucket.keys.id}/${var.keys_object_key}"
}

output "cluster" {
  description = "ECS cluster name (for `aws ecs update-service --force-new-deployment`)."
  value       = aws_ecs_cluster.main.name
}

output "service" {
  description = "ECS service name (for `aws ecs update-service` and `aws ecs describe-services`)."
  value       = aws_ecs_service.restream.name
}

output "region" {
  description = "The region everything is in (scripts/apex-project.sh writes it into project.aws.json)."
  value       = var.region
}

output "fetcher_role_arn" {
  description = "Execution role of the fetcher Lambda functions: the `role` Apex needs (scripts/apex-project.sh)."
  value       = aws_iam_role.fetcher.arn
}

output "backend_log_group" {
  description = "CloudWatch log group of the backend's JSON logs and metric lines (`aws logs tail`)."
  value       = aws_cloudwatch_log_group.backend.name
}

output "tasks_security_group_id" {
  description = "The tasks' security group (port 9100 is open to metrics_scrape_cidrs and metrics_scrape_security_group_ids)."
  value       = aws_security_group.tasks.id
}
