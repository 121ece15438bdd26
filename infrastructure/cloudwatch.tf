# Alarms on what means users are hurt (docs/deploy.md, "What to watch"). The backend writes one
# CloudWatch embedded metric format line to its log every minute (log.emf_interval_secs = 60,
# ecs.tf): namespace var.metrics_namespace, dimension Service = var.name, so every task's line
# lands in one series per metric. Gauges are per task (Maximum over tasks, or Sum for pollers,
# which no two tasks share); counters are the increase since the task's previous line (Sum).
# The load balancer alarms catch what the backend cannot report: no task answering at all.

locals {
  alarm_actions = var.alarm_sns_topic_arn == "" ? [] : [var.alarm_sns_topic_arn]
  emf_dimensions = {
    Service = var.name
  }
  alb_dimensions = {
    LoadBalancer = aws_lb.public.arn_suffix
    TargetGroup  = aws_lb_target_group.pushpin.arn_suffix
  }
}

# Subscribers wait for events no task is polling for: every lease holder is gone and nobody
# took over (DynamoDB unreachable, every backend failing), or no backend emits metrics at all.
resource "aws_cloudwatch_metric_alarm" "no_active_pollers" {
  alarm_name          = "${var.name}-no-active-pollers"
  alarm_description   = "Channels have subscribers but no task polls anything (3 minutes). See docs/deploy.md, What to watch."
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  # No line from any backend means no poller either.
  treat_missing_data = "breaching"
  alarm_actions      = local.alarm_actions
  ok_actions         = local.alarm_actions

  metric_query {
    id          = "stalled"
    expression  = "IF(subscribed > 0 AND pollers == 0, 1, 0)"
    label       = "Channels with subscribers and no poller"
    return_data = true
  }
  metric_query {
    id = "subscribed"
    metric {
      namespace   = var.metrics_namespace
      metric_name = "ChannelsWithSubscribers"
      dimensions  = local.emf_dimensions
      period      = 60
      stat        = "Maximum"
    }
  }
  metric_query {
    id = "pollers"
    metric {
      namespace   = var.metrics_namespace
      metric_name = "ActivePollers"
      dimensions  = local.emf_dimensions
      period      = 60
      stat        = "Sum"
    }
  }
}

# Events computed but not delivered to some Pushpin: its clients miss live events (they get them
# only when they reconnect with `since`). A rolling deployment can cause a few for seconds.
resource "aws_cloudwatch_metric_alarm" "publish_failures" {
  alarm_name          = "${var.name}-publish-failures"
  alarm_description   = "Publishing to a Pushpin failed in each of 3 consecutive minutes. See docs/deploy.md, What to watch."
  namespace           = var.metrics_namespace
  metric_name         = "PublishFailures"
  dimensions          = local.emf_dimensions
  statistic           = "Sum"
  period              = 60
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Channels whose last poll failed (upstream down, rate limit, missing key, fetcher crash):
# their subscribers get no news. The channel's status says why (GET /status, logs).
resource "aws_cloudwatch_metric_alarm" "failing_channels" {
  alarm_name          = "${var.name}-failing-channels"
  alarm_description   = "More than ${var.alarm_failing_channels_threshold} channels on a task failed their last poll for 15 minutes. See docs/deploy.md, What to watch."
  namespace           = var.metrics_namespace
  metric_name         = "FailingChannels"
  dimensions          = local.emf_dimensions
  statistic           = "Maximum"
  period              = 300
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_failing_channels_threshold
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# A task lost leases it held (paused, cut off from DynamoDB, renewals too slow): its channels
# paused for up to a lease TTL. Once is an incident; again and again is a sick task or table.
resource "aws_cloudwatch_metric_alarm" "lease_churn" {
  alarm_name          = "${var.name}-lease-churn"
  alarm_description   = "Tasks lost channel leases in 2 of the last 3 five-minute periods. See docs/deploy.md, What to watch."
  namespace           = var.metrics_namespace
  metric_name         = "LeasesLost"
  dimensions          = local.emf_dimensions
  statistic           = "Sum"
  period              = 300
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 3
  datapoints_to_alarm = 2
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# No task passes the load balancer's health check (/healthz through Pushpin): nobody can connect.
resource "aws_cloudwatch_metric_alarm" "no_healthy_task" {
  alarm_name          = "${var.name}-no-healthy-task"
  alarm_description   = "No task is healthy behind the load balancer for 2 minutes. See docs/deploy.md, What to watch."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HealthyHostCount"
  dimensions          = local.alb_dimensions
  statistic           = "Minimum"
  period              = 60
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Some task fails its health check for 3 minutes (ECS replaces it; this says it keeps failing).
resource "aws_cloudwatch_metric_alarm" "unhealthy_task" {
  alarm_name          = "${var.name}-unhealthy-task"
  alarm_description   = "A task fails the load balancer's health check for 3 minutes. See docs/deploy.md, What to watch."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = local.alb_dimensions
  statistic           = "Maximum"
  period              = 60
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Pushpin answered 5xx (its backend unreachable or failing): handshakes and HTTP calls fail.
resource "aws_cloudwatch_metric_alarm" "target_5xx" {
  alarm_name          = "${var.name}-target-5xx"
  alarm_description   = "More than ${var.alarm_target_5xx_threshold} 5xx answers from the tasks in 5 minutes. See docs/deploy.md, What to watch."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_Target_5XX_Count"
  dimensions          = local.alb_dimensions
  statistic           = "Sum"
  period              = 300
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_target_5xx_threshold
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}
