# Security groups: only the client port is public. The backend (5000) and Pushpin's publish
# and stats ports (5560-5564) live inside the task and are never exposed, not even to the VPC.

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
  description = "Pushpin and backend tasks: Pushpin client port from the load balancer only"
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

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to upstream APIs and AWS endpoints (DynamoDB, S3, Lambda, ECR, logs)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}
