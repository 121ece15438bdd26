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
  description = "ACM certificate for wss:// on 443 (port 80 redirects to it); empty serves plain ws:// on 7999, for evaluation only."
  type        = string
  default     = ""
}

variable "allowed_client_cidrs" {
  description = "Who may connect to the public WebSocket port."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "alb_idle_timeout" {
  description = "Seconds the load balancer keeps an idle connection open. Must stay above the keep-alives sent to clients (WebSocket 30 s, SSE 20 s: server.client_keep_alive_secs, server.sse_keep_alive_secs)."
  type        = number
  default     = 120
  validation {
    condition     = var.alb_idle_timeout >= 60 && var.alb_idle_timeout <= 4000
    error_message = "alb_idle_timeout must be 60..4000 seconds: at least twice the 30 s client keep-alive."
  }
}

variable "metrics_scrape_cidrs" {
  description = "IPv4 CIDRs (e.g. your Prometheus' subnet) that may scrape the backend's /metrics on port 9100 of each task; empty = nobody."
  type        = list(string)
  default     = []
}

variable "metrics_scrape_security_group_ids" {
  description = "Security groups (e.g. your Prometheus' or ADOT collector's) that may scrape port 9100 of each task; empty = none."
  type        = list(string)
  default     = []
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
  description = "Number of tasks (one Pushpin + one backend each, in cluster mode: one poller per channel across all tasks). 2 or more is the production setup (a task can fail or be replaced without a pause); 1 is fine for evaluation."
  type        = number
  default     = 2
  validation {
    condition     = var.desired_count >= 1 && floor(var.desired_count) == var.desired_count
    error_message = "desired_count must be a whole number of at least 1 (2 or more in production)."
  }
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
  description = "The folders of functions/: each gets its log group (whoever deploys it) and, with deploy_functions, its Lambda function."
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

variable "metrics_namespace" {
  description = "CloudWatch namespace of the backend's embedded metric format lines (log.emf_namespace) and of the alarms on them."
  type        = string
  default     = "restream"
}

variable "alarm_sns_topic_arn" {
  description = "SNS topic the alarms notify (alarm and OK); empty = alarms without actions (visible in the console only)."
  type        = string
  default     = ""
}

variable "alarm_failing_channels_threshold" {
  description = "Alarm when more channels than this (on one task) have failed their last poll for 15 minutes."
  type        = number
  default     = 0
}

variable "alarm_target_5xx_threshold" {
  description = "Alarm when Pushpin answers more 5xx than this through the load balancer in 5 minutes."
  type        = number
  default     = 10
}

variable "sqs_queue_arns" {
  description = "ARNs of the SQS queues push channels read ([queue] in channels/*.toml): the task role may receive, delete and read attributes there. Empty = no SQS access."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for arn in var.sqs_queue_arns : startswith(arn, "arn:aws:sqs:")])
    error_message = "Each entry is an SQS queue ARN (arn:aws:sqs:<region>:<account>:<name>)."
  }
}

variable "sqs_dead_letter_queue_arns" {
  description = "ARNs of the push channels' dead-letter queues (dead_letter_url): the task role may send there. Empty = none."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for arn in var.sqs_dead_letter_queue_arns : startswith(arn, "arn:aws:sqs:")])
    error_message = "Each entry is an SQS queue ARN (arn:aws:sqs:<region>:<account>:<name>)."
  }
}

variable "archive_bucket" {
  description = "Name of an existing S3 bucket for archive sinks ([archive] s3_bucket, docs/history.md): the task role may put, get and list objects there and the backend archives to it. Empty = no S3 archive (and no permission)."
  type        = string
  default     = ""
  validation {
    condition     = var.archive_bucket == "" || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.archive_bucket))
    error_message = "An S3 bucket name (3 to 63 lower-case letters, digits, dots and hyphens), or empty."
  }
}
