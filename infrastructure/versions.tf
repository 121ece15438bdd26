# restream on AWS: an ECS Fargate service of N tasks (Pushpin + backend in each, in cluster
# mode), an ALB with only the public WebSocket listener, DynamoDB for item state and leases, a
# private S3 object for API keys, CloudWatch alarms, the fetchers' role and (optionally) the
# Lambda fetchers. See docs/deploy.md.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.4"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = merge({ Project = var.name }, var.tags)
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  https     = var.certificate_arn != ""
  # The one public port: 443 with a certificate, else Pushpin's own 7999.
  public_port = local.https ? 443 : 7999
}
