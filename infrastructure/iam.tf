# Least privilege: the backend task reads only the keys object, reads/writes only the items
# table, and invokes only the fetcher functions.

data "aws_iam_policy_document" "ecs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

# Pulls images and writes logs (ECS itself).
resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

# What the containers may do.
resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

locals {
  fetcher_functions_arn = "arn:${local.partition}:lambda:${var.region}:${local.account}:function:${var.lambda_prefix}*"
}

data "aws_iam_policy_document" "task" {
  statement {
    sid = "ItemTable"
    actions = [
      "dynamodb:DescribeTable",
      "dynamodb:GetItem",
      "dynamodb:Query",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:BatchWriteItem",
      "dynamodb:ConditionCheckItem",
    ]
    resources = [aws_dynamodb_table.items.arn]
  }

  statement {
    sid       = "KeysObject"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.keys.arn}/${var.keys_object_key}"]
  }

  statement {
    sid       = "InvokeFetchers"
    actions   = ["lambda:InvokeFunction"]
    resources = [local.fetcher_functions_arn]
  }

  # ListFunctions has no resource-level permissions in IAM: "*" is the only valid resource.
  # It reveals function names and configuration only; the backend keeps those with the prefix.
  statement {
    sid       = "DiscoverFetchers"
    actions   = ["lambda:ListFunctions"]
    resources = ["*"]
  }

  # Push channels fed by SQS (docs/publishing-queue.md): receive and delete on their queues,
  # send on their dead-letter queues; nothing when no queue is listed.
  dynamic "statement" {
    for_each = length(var.sqs_queue_arns) > 0 ? [1] : []
    content {
      sid       = "ConsumePushQueues"
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
      resources = var.sqs_queue_arns
    }
  }

  # Archive sinks (docs/history.md): objects are written (replaced on a retry), read back for
  # history and listed by channel and hour; nothing when no archive bucket is named.
  dynamic "statement" {
    for_each = var.archive_bucket != "" ? [1] : []
    content {
      sid       = "ArchiveObjects"
      actions   = ["s3:PutObject", "s3:GetObject"]
      resources = ["arn:aws:s3:::${var.archive_bucket}/*"]
    }
  }

  dynamic "statement" {
    for_each = var.archive_bucket != "" ? [1] : []
    content {
      sid       = "ArchiveListing"
      actions   = ["s3:ListBucket"]
      resources = ["arn:aws:s3:::${var.archive_bucket}"]
    }
  }

  dynamic "statement" {
    for_each = length(var.sqs_dead_letter_queue_arns) > 0 ? [1] : []
    content {
      sid       = "DeadLetterPushQueues"
      actions   = ["sqs:SendMessage"]
      resources = var.sqs_dead_letter_queue_arns
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "${var.name}-task"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}
