# The key Pushpin signs every request it forwards with (Grip-Sig) and the backend verifies
# (docs/security/edge.md): generated here, kept in Secrets Manager, handed to both containers
# of the task as an environment variable by ECS (never in the task definition in clear). It is
# also in the terraform state (random_password is sensitive there): keep the state private.
# A new key: `terraform apply -replace=random_password.pushpin_sig_key`, then redeploy.

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

# ECS (the execution role) reads it when it starts the task; the containers never can.
data "aws_iam_policy_document" "execution_secrets" {
  statement {
    sid       = "PushpinSigKey"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.pushpin_sig_key.arn]
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  name   = "${var.name}-execution-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_secrets.json
}
