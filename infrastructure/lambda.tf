# The fetchers' execution role (always: `apex deploy` uses it too, see the fetcher_role_arn
# output and scripts/apex-project.sh) and, optionally (deploy_functions), the fetchers
# themselves as Lambda functions, for users who do not deploy with Apex (archived upstream).
# Names follow Apex's {project}_{function}, e.g. restreamables_nyt_top. A folder is the whole
# deployment package: the shipped fetchers use the standard library only, and a folder with a
# requirements.txt (the original restream's shape) carries its site-packages/, built for the
# Lambda runtime by `python3 scripts/fetcher_deps.py --lambda functions` before `apply` (Apex
# runs the same as its build hook, project.json). A missing or stale build stops the plan.

data "archive_file" "fetcher" {
  for_each    = var.deploy_functions ? toset(var.functions) : toset([])
  type        = "zip"
  source_dir  = "${path.module}/../functions/${each.value}"
  output_path = "${path.module}/.build/${each.value}.zip"
  # Tests and recorded upstream answers stay out of the package (exact names: every provider
  # version matches them, and a matching folder is skipped whole).
  excludes = ["test_main.py", "testdata", "__pycache__", ".site-packages.new", ".site-packages.old"]
}

locals {
  # Per function with a requirements.txt: the marker scripts/fetcher_deps.py --lambda writes
  # into its site-packages, and the one it has.
  fetcher_deps = {
    for f in(var.deploy_functions ? var.functions : []) : f => {
      want = "sha256=${filesha256("${path.module}/../functions/${f}/requirements.txt")} target=lambda"
      have = trimspace(try(file("${path.module}/../functions/${f}/site-packages/.restream-requirements"), ""))
    } if fileexists("${path.module}/../functions/${f}/requirements.txt")
  }
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "fetcher" {
  name               = "${var.name}-fetcher"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "fetcher_logs" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["arn:${local.partition}:logs:${var.region}:${local.account}:log-group:/aws/lambda/${var.lambda_prefix}*:*"]
  }
}

resource "aws_iam_role_policy" "fetcher_logs" {
  name   = "${var.name}-fetcher-logs"
  role   = aws_iam_role.fetcher.id
  policy = data.aws_iam_policy_document.fetcher_logs.json
}

# Always, like the role: the role may not create log groups, so a function deployed with Apex
# logs only into a group made here (a new fetcher goes into var.functions).
resource "aws_cloudwatch_log_group" "fetcher" {
  #checkov:skip=CKV_AWS_158:CloudWatch encrypts logs by default; log_kms_key_arn opts into a customer managed key.
  #checkov:skip=CKV_AWS_338:Retention is a variable (default 30 days) so small deployments stay cheap.
  for_each          = toset(var.functions)
  name              = "/aws/lambda/${var.lambda_prefix}${each.value}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn == "" ? null : var.log_kms_key_arn
}

resource "aws_lambda_function" "fetcher" {
  #checkov:skip=CKV_AWS_117:Fetchers call public APIs on the internet; a VPC adds a NAT cost and no protection.
  #checkov:skip=CKV_AWS_116:Invoked synchronously by the backend, which handles failures; a DLQ applies to async invokes only.
  #checkov:skip=CKV_AWS_173:The functions hold no secrets in their environment; API keys arrive per call from the keys object.
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile; deployments come from this repository.
  #checkov:skip=CKV_AWS_50:X-Ray tracing is optional and costs extra.
  for_each                       = data.archive_file.fetcher
  function_name                  = "${var.lambda_prefix}${each.key}"
  role                           = aws_iam_role.fetcher.arn
  runtime                        = var.lambda_runtime
  handler                        = "main.lambda_function"
  filename                       = each.value.output_path
  source_code_hash               = each.value.output_base64sha256
  memory_size                    = 128
  timeout                        = 10
  reserved_concurrent_executions = 5
  depends_on                     = [aws_cloudwatch_log_group.fetcher]

  lifecycle {
    precondition {
      condition     = !contains(keys(local.fetcher_deps), each.key) || try(local.fetcher_deps[each.key].want == local.fetcher_deps[each.key].have, false)
      error_message = "functions/${each.key} has a requirements.txt but no site-packages built from it for Lambda: run python3 scripts/fetcher_deps.py --lambda functions, then plan again."
    }
  }
}
