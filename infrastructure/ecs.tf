# One Fargate task = Pushpin + backend. Inside the task they share localhost: Pushpin forwards
# WebSockets to 127.0.0.1:5000 and the backend publishes to its own Pushpin on 127.0.0.1:5560
# (stats :5564, HTTP publish :5561: the backend's defaults). Cluster mode (docs/scaling.md):
# every backend also publishes to, and reads the stats of, the Pushpin of every other live task,
# and hands snapshot requests to the task polling the channel. So each task advertises its
# private IP (the ECS task metadata endpoint, `advertise_host = ecs`) in its membership record,
# and the task security group (network.tf) lets tasks reach each other on 5000, 5560, 5561 and
# 5564, and nothing else; only Pushpin's 7999 is reachable from the load balancer, and the
# metrics port 9100 only from the operator's scrapers. Secrets (secrets.tf) come from Secrets
# Manager.

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
    { name = "RESTREAM_SERVER__LISTEN", value = "0.0.0.0:5000" },
    { name = "RESTREAM_SERVER__METRICS_LISTEN", value = "0.0.0.0:9100" },
    { name = "RESTREAM_STORE__KIND", value = "dynamodb" },
    { name = "RESTREAM_STORE__DYNAMODB_TABLE", value = aws_dynamodb_table.items.name },
    { name = "RESTREAM_KEYS__KIND", value = "s3" },
    { name = "RESTREAM_KEYS__S3_BUCKET", value = aws_s3_bucket.keys.id },
    { name = "RESTREAM_KEYS__S3_KEY", value = var.keys_object_key },
    { name = "RESTREAM_FETCHERS__KINDS", value = "[\"lambda\", \"http\"]" },
    { name = "RESTREAM_FETCHERS__LAMBDA_PREFIX", value = var.lambda_prefix },
    { name = "RESTREAM_LOG__FORMAT", value = "json" },
    { name = "RESTREAM_LOG__EMF_INTERVAL_SECS", value = "60" },
    { name = "RESTREAM_LOG__EMF_NAMESPACE", value = var.metrics_namespace },
    { name = "RESTREAM_LOG__EMF_SERVICE", value = var.name },
    { name = "RESTREAM_CLUSTER__ENABLED", value = "true" },
    { name = "RESTREAM_CLUSTER__ADVERTISE_HOST", value = "ecs" },
    { name = "RESTREAM_CLUSTER__PUSHPIN_PUBLISH_SPEC", value = "tcp://{host}:5560" },
    { name = "RESTREAM_CLUSTER__PUSHPIN_HTTP_URL", value = "http://{host}:5561" },
    { name = "RESTREAM_CLUSTER__PUSHPIN_STATS_SPEC", value = "tcp://{host}:5564" },
    # The root filesystem is read-only: no local archive; S3 when archive_bucket is set.
    { name = "RESTREAM_ARCHIVE__LOCAL_DIR", value = "" },
    { name = "RESTREAM_ARCHIVE__S3_BUCKET", value = var.archive_bucket },
    { name = "AWS_REGION", value = var.region },
  ]
  # Seconds ECS waits after SIGTERM before SIGKILL (Pushpin first, as it depends on the
  # backend, then the backend). The backend stops its pollers, releases its leases and deletes
  # its membership record (one DynamoDB write per lease it holds), so the other tasks take its
  # channels at once instead of one lease TTL (10 s) later. Waiting much longer than a lease TTL
  # gains nothing: its leases have run out by then anyway.
  stop_timeout = 30
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
      # In awsvpc mode the security group, not these, decides what is reachable; they list what
      # the container serves: clients (7999, the load balancer's target) and, for the other
      # tasks' backends, publish (5560), HTTP publish (5561) and stats (5564).
      portMappings = [
        { containerPort = 7999, protocol = "tcp" },
        { containerPort = 5560, protocol = "tcp" },
        { containerPort = 5561, protocol = "tcp" },
        { containerPort = 5564, protocol = "tcp" },
      ]
      stopTimeout = local.stop_timeout
      # The ALB appends each client's address to X-Forwarded-For; Pushpin passes it on as is,
      # so the backend's per-address limits count clients, not ALB nodes (docs/security/limits.md).
      environment = [
        { name = "RESTREAM_BACKEND", value = "127.0.0.1:5000" },
        # Publish and stats sockets on the task's address too: the other tasks' backends publish
        # here. The command (5563) and SUB (5562) sockets stay on loopback (pushpin.conf).
        { name = "RESTREAM_PUSHPIN_INTERNAL_ADDR", value = "0.0.0.0" },
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
      # The backend port, for Pushpin and for the other tasks' snapshot hand-overs, and the
      # metrics port for the operator's scrapers (never routed by Pushpin or the load balancer).
      portMappings = [
        { containerPort = 5000, protocol = "tcp" },
        { containerPort = 9100, protocol = "tcp" },
      ]
      stopTimeout = local.stop_timeout
      environment = local.backend_environment
      secrets = [
        { name = "RESTREAM_PUSHPIN__SIG_KEY", valueFrom = aws_secretsmanager_secret.pushpin_sig_key.arn },
        { name = "RESTREAM_CLUSTER__SECRET", valueFrom = aws_secretsmanager_secret.cluster_secret.arn },
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
  # Pushpin starts once the backend is healthy (dependsOn), so allow for both starts.
  health_check_grace_period_seconds = 60
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
  depends_on = [
    aws_lb_listener.https,
    aws_lb_listener.plain,
    aws_secretsmanager_secret_version.pushpin_sig_key,
    aws_secretsmanager_secret_version.cluster_secret,
  ]
}
