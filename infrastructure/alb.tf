# The public entry, forwarding to Pushpin: with a certificate, HTTPS on 443 (wss://) and an
# HTTP listener on 80 that only redirects to it; without one, plain HTTP on 7999 (ws://, for
# evaluation only: tokens and data cross the internet in clear).

resource "aws_lb" "public" {
  #checkov:skip=CKV_AWS_91:Access logs need a dedicated log bucket; enable them with your own bucket if required.
  #checkov:skip=CKV2_AWS_28:A WAF is optional for a WebSocket fan-out service; attach one if your threat model needs it.
  #checkov:skip=CKV2_AWS_20:With certificate_arn port 80 redirects to HTTPS (aws_lb_listener.redirect); without one, plain 7999 is the evaluation-only setup.
  name                       = var.name
  load_balancer_type         = "application"
  internal                   = false
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.public_subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = true
  # WebSocket and SSE connections stay open while idle: the backend has Pushpin send a keep-alive
  # to every client (WebSocket ping every 30 s, SSE comment every 20 s) well within this.
  idle_timeout = var.alb_idle_timeout
}

resource "aws_lb_target_group" "pushpin" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; the hop to Pushpin stays inside the VPC, open only to the load balancer's security group.
  name        = "${var.name}-pushpin"
  port        = 7999
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = var.vpc_id
  # Seconds a deregistered task keeps its connections (default 300). A replaced task's clients
  # reconnect and resume with `since`; waiting longer only slows a rolling deployment.
  deregistration_delay = 30
  # A new task counts as healthy after 2 checks 10 s apart (the defaults, 5 × 30 s, would keep
  # every rolling deployment waiting 2.5 minutes per task).
  health_check {
    path                = "/healthz"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "https" {
  count             = local.https ? 1 : 0
  load_balancer_arn = aws_lb.public.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.pushpin.arn
  }
}

resource "aws_lb_listener" "redirect" {
  count             = local.https ? 1 : 0
  load_balancer_arn = aws_lb.public.arn
  port              = 80
  protocol          = "HTTP"
  default_action {
    type = "redirect"
    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }
}

resource "aws_lb_listener" "plain" {
  #checkov:skip=CKV_AWS_2:Plain ws:// on 7999 is only used when no certificate_arn is given (evaluation setups); set certificate_arn for wss:// on 443.
  #checkov:skip=CKV_AWS_103:Same listener: TLS applies when certificate_arn is set.
  count             = local.https ? 0 : 1
  load_balancer_arn = aws_lb.public.arn
  port              = 7999
  protocol          = "HTTP"
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.pushpin.arn
  }
}
