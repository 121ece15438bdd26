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
