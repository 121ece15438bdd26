# Security groups. The world reaches only the load balancer's client port (and, with a
# certificate, port 80, which only redirects to 443). The tasks accept Pushpin's client port
# from the load balancer, the cluster ports from each other (the tasks' own group, nothing else
# in the VPC), and the metrics port from the operator's scrapers only. Pushpin's command (5563)
# and SUB (5562) sockets are never opened.

locals {
  # Ports the tasks serve each other (ecs.tf): backend (snapshot hand-overs), Pushpin publish,
  # HTTP publish and stats.
  cluster_ports = { backend = 5000, publish = 5560, http_publish = 5561, stats = 5564 }
  metrics_port  = 9100
}

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "Public WebSocket listener only"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "alb_clients" {
  for_each          = toset(var.allowed_client_cidrs)
  security_group_id = aws_security_group.alb.id
  description       = "WebSocket clients"
  ip_protocol       = "tcp"
  from_port         = local.public_port
  to_port           = local.public_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "alb_redirect" {
  for_each          = local.https ? toset(var.allowed_client_cidrs) : toset([])
  security_group_id = aws_security_group.alb.id
  description       = "HTTP, redirected to HTTPS"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_pushpin" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To Pushpin in the tasks"
  ip_protocol                  = "tcp"
  from_port                    = 7999
  to_port                      = 7999
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_security_group" "tasks" {
  name        = "${var.name}-tasks"
  description = "Pushpin and backend tasks: client port from the load balancer, cluster ports from each other, metrics from scrapers"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Pushpin client port from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = 7999
  to_port                      = 7999
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_ingress_rule" "tasks_cluster" {
  for_each                     = local.cluster_ports
  security_group_id            = aws_security_group.tasks.id
  description                  = "Cluster ${each.key} port from the other tasks"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_cluster" {
  for_each                     = local.cluster_ports
  security_group_id            = aws_security_group.tasks.id
  description                  = "Cluster ${each.key} port of the other tasks"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_ingress_rule" "tasks_metrics_cidr" {
  for_each          = toset(var.metrics_scrape_cidrs)
  security_group_id = aws_security_group.tasks.id
  description       = "Prometheus scrape of the backend's /metrics"
  ip_protocol       = "tcp"
  from_port         = local.metrics_port
  to_port           = local.metrics_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "tasks_metrics_sg" {
  for_each                     = toset(var.metrics_scrape_security_group_ids)
  security_group_id            = aws_security_group.tasks.id
  description                  = "Prometheus scrape of the backend's /metrics"
  ip_protocol                  = "tcp"
  from_port                    = local.metrics_port
  to_port                      = local.metrics_port
  referenced_security_group_id = each.value
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to upstream APIs and AWS endpoints (DynamoDB, S3, Lambda, ECR, logs, Secrets Manager)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}
