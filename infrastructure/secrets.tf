# Two secrets, generated here, kept in Secrets Manager and handed to the containers as
# environment variables by ECS (never in the task definition in clear):
# - the key Pushpin signs every request it forwards with (Grip-Sig) and the backend verifies
#   (docs/security/edge.md), given to both containers;
# - the cluster secret the backends present to each other on /internal/* (docs/scaling.md).
# Both are also in the terraform state (random_password is sensitive there): keep the state
# private. A new value: `terraform apply -replace=random_password.pushpin_sig_key` (or
# `random_password.cluster_secret`) stores a new secret version; tasks read it when they start,
# so follow with `aws ecs update-service --force-new-deployment` (docs/deploy.md). A task's
# Pushpin forwards only to its own backend, so a new sig key is safe; with a new cluster secret,
# snapshot hand-overs between old and new tasks are refused during that rolling deployment (a
# subscriber whose channel is polled on a task of the other version waits, then retries).

resource "random_password" "pushpin_sig_key" {
  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "pushpin_sig_key" {
  #checkov:skip=CKV_AWS_149:Secrets Manager encrypts with the AWS managed key; only this task's execution role may read it.
  #checkov:skip=CKV2_AWS_57:Rotating means replacing random_password and redeploying both containers together (see the comment above), not a Lambda rotation.
  name_prefix             = "${var.name}-pushpin-sig-key-"
  description             = "Key Pushpin signs forwarded requests with (Grip-Sig); the backend verifies it."
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "pushpin_sig_key" {
  secret_id     = aws_secretsmanager_secret.pushpin_sig_key.id
  secret_string = random_password.pushpin_sig_key.result
}

resource "random_password" "cluster_secret" {
  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "cluster_secret" {
  #checkov:skip=CKV_AWS_149:Secrets Manager encrypts with the AWS managed key; only this task's execution role may read it.
  #checkov:skip=CKV2_AWS_57:Rotating means replacing random_password and redeploying (see the comment above), not a Lambda rotation.
  name_prefix             = "${var.name}-cluster-secret-"
  description             = "Shared by the backend replicas on their /internal/* requests (cluster.secret)."
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "cluster_secret" {
  secret_id     = aws_secretsmanager_secret.cluster_secret.id
  secret_string = random_password.cluster_secret.result
}

# ECS (the execution role) reads them when it starts the task; the containers never can.
data "aws_iam_policy_document" "execution_secrets" {
  statement {
    sid       = "TaskSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.pushpin_sig_key.arn, aws_secretsmanager_secret.cluster_secret.arn]
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  name   = "${var.name}-execution-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_secrets.json
}
