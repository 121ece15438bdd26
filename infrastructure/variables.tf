variable "name" {
  description = "Name prefix of every resource."
  type        = string
  default     = "restream"
}

variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "us-east-1"
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

variable "vpc_id" {
  description = "Existing VPC to deploy into."
  type        = string
}

variable "public_subnet_ids" {
  description = "Existing public subnets (at least two AZs) for the load balancer."
  type        = list(string)
}

variable "private_subnet_ids" {
  description = "Existing private subnets (with a NAT route to reach upstream APIs) for the ECS tasks."
  type        = list(string)
}

variable "certificate_arn" {
  description = "ACM certificate for wss:// on 443; empty serves ws:// on 7999."
  type        = string
  default     = ""
}

variable "allowed_client_cidrs" {
  description = "Who may connect to the public WebSocket port."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "backend_image" {
  description = "Backend image (built from backend/Dockerfile), e.g. <account>.dkr.ecr.<region>.amazonaws.com/restream-backend:1.0.0. Roll out a new version by changing the tag."
  type        = string
}

variable "pushpin_image" {
  description = "Pushpin image (built from pushpin/Dockerfile)."
  type        = string
}

variable "desired_count" {
  description = "Number of tasks (one Pushpin + one backend each). Keep 1 until the lease-based scale-out lands."
  type        = number
  default     = 1
}

variable "task_cpu" {
  description = "Fargate task CPU units (both containers)."
  type        = number
  default     = 512
}

variable "task_memory" {
  description = "Fargate task memory in MiB (both containers)."
  type        = number
  default     = 1024
}

variable "table_name" {
  description = "DynamoDB table for item state (store.dynamodb_table)."
  type        = string
  default     = "restream"
}

variable "dynamodb_billing_mode" {
  description = "PAY_PER_REQUEST (on demand) or PROVISIONED."
  type        = string
  default     = "PAY_PER_REQUEST"
  validation {
    condition     = contains(["PAY_PER_REQUEST", "PROVISIONED"], var.dynamodb_billing_mode)
    error_message = "dynamodb_billing_mode must be PAY_PER_REQUEST or PROVISIONED."
  }
}

variable "dynamodb_read_capacity" {
  description = "Read capacity units with PROVISIONED billing."
  type        = number
  default     = 5
}

variable "dynamodb_write_capacity" {
  description = "Write capacity units with PROVISIONED billing."
  type        = number
  default     = 5
}

variable "keys_bucket_name" {
  description = "Private bucket holding the API keys object (globally unique name)."
  type        = string
}

variable "keys_object_key" {
  description = "Key of the API keys JSON object in the bucket (keys.s3_key)."
  type        = string
  default     = "keys.json"
}

variable "lambda_prefix" {
  description = "Fetcher functions are named <prefix><dir> (Apex: {project}_{function})."
  type        = string
  default     = "restreamables_"
}

variable "deploy_functions" {
  description = "Create the Lambda fetchers from functions/ with terraform (for users without Apex)."
  type        = bool
  default     = false
}

variable "functions" {
  description = "With deploy_functions: the folders of functions/ to deploy."
  type        = list(string)
  default     = ["coingecko_price", "nyt_newswire", "nyt_top", "open_meteo", "twitter_status"]
}

variable "lambda_runtime" {
  description = "Python runtime of the fetchers."
  type        = string
  default     = "python3.12"
}

variable "log_retention_days" {
  description = "CloudWatch log retention."
  type        = number
  default     = 30
}

variable "log_kms_key_arn" {
  description = "Optional KMS key for the log groups; empty uses CloudWatch's own encryption."
  type        = string
  default     = ""
}
