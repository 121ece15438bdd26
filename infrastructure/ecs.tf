# One Fargate task = Pushpin + backend sharing localhost: the backend publishes to Pushpin on
# 127.0.0.1:5560 and reads its stats on 127.0.0.1:5564, and Pushpin forwards WebSockets to
# 127.0.0.1:5000. Nothing but Pushpin's client port (7999) is reachable from outside the task:
# Pushpin's publish, command and stats sockets bind 127.0.0.1. Both containers get the Grip-Sig
# key from Secrets Manager (secrets.tf).

resource "aws_ecs_cluster" "main" {
  name = var.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "backend" {
  #checkov:skip=CKV_AWS_158:CloudWatch encrypts logs by default; log_kms_key_arn opts into a customer managed key.
  #checkov:skip=CKV_AWS_338:Retention is a variable (default 30 days) so small deployments stay cheap.
  name              = "/ecs/${var.name}/backend"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn == "" ? null : var.log_kms_key_arn
}

resource "aws_cloudwatch_log_group" "pushpin" {
  #checkov:skip=CKV_AWS_158:CloudWatch encrypts logs by default; log_kms_key_arn opts into a customer managed key.
  #checkov:skip=CKV_AWS_338:Retention is a variable (default 30 days) so small deployments stay cheap.
  name              = "/ecs/${var.name}/pushpin"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn == "" ? null : var.log_kms_key_arn
}

locals {
  backend_environment = [
    { name = "RESTREAM_SERVER__LISTEN", value = "127.0.0.1:5000" },
    { name = "RESTREAM_STORE__KIND", value = "dynamodb" },
    { name = "RESTREAM_STORE__DYNAMODB_TABLE", value = aws_dynamodb_table.items.name },
    { name = "RESTREAM_KEYS__KIND", value = "s3" },
    { name = "RESTREAM_KEYS__S3_BUCKET", value = aws_s3_bucket.keys.id },
    { name = "RESTREAM_KEYS__S3_KEY", value = var.keys_object_key },
    { name = "RESTREAM_FETCHERS__KINDS", value = "[\"lambda\", \"http\"]" },
    { name = "RESTREAM_FETCHERS__LAMBDA_PREFIX", value = var.lambda_prefix },
    { name = "RESTREAM_LOG__FORMAT", value = "json" },
    { name = "AWS_REGION", value = var.region },
  ]
}

resource "aws_ecs_task_definition" "restream" {
  #checkov:skip=CKV_AWS_336:The backend's root filesystem is read-only; Pushpin writes its IPC sockets and logs under its run dir.
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }
  container_definitions = jsonencode([
    {
      name                   = "pushpin"
      image                  = var.pushpin_image
      essential              = true
      readonlyRootFilesystem = false
      portMappings           = [{ containerPort = 7999, protocol = "tcp" }]
      # The ALB appends each client's address to X-Forwarded-For; Pushpin passes it on as is,
      # so the backend's per-address limits count clients, not ALB nodes (docs/security/limits.md).
      environment = [
        { name = "RESTREAM_BACKEND", value = "127.0.0.1:5000" },
        { name = "RESTREAM_PUSHPIN_INTERNAL_ADDR", value = "127.0.0.1" },
        { name = "PUSHPIN_X_FORWARDED_FOR", value = "" },
      ]
      secrets = [
        { name = "RESTREAM_SIG_KEY", valueFrom = aws_secretsmanager_secret.pushpin_sig_key.arn },
      ]
      dependsOn = [{ containerName = "backend", condition = "HEALTHY" }]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.pushpin.name
          awslogs-region        = var.region
          awslogs-stream-prefix = "pushpin"
        }
      }
    },
    {
      name                   = "backend"
      image                  = var.backend_image
      essential              = true
      readonlyRootFilesystem = true
      environment            = local.backend_environment
      secrets = [
        { name = "RESTREAM_PUSHPIN__SIG_KEY", valueFrom = aws_secretsmanager_secret.pushpin_sig_key.arn },
      ]
      healthCheck = {
        command     = ["CMD", "restream", "health"]
        interval    = 10
        timeout     = 5
        retries     = 3
        startPeriod = 10
      }
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.backend.name
          awslogs-region        = var.region
          awslogs-stream-prefix = "backend"
        }
      }
    },
  ])
}

resource "aws_ecs_service" "restream" {
  name                               = var.name
  cluster                            = aws_ecs_cluster.main.id
  task_definition                    = aws_ecs_task_definition.restream.arn
  desired_count                      = var.desired_count
  launch_type                        = "FARGATE"
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 30
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }
  load_balancer {
    target_group_arn = aws_lb_target_group.pushpin.arn
    container_name   = "pushpin"
    container_port   = 7999
  }
  depends_on = [aws_lb_listener.https, aws_lb_listener.plain, aws_secretsmanager_secret_version.pushpin_sig_key]
}
