# API keys: one private JSON object ({"<channel>": {"<key name>": "<value>"}}), uploaded by
# the operator (docs/deploy.md), read by the backend only.

resource "aws_s3_bucket" "keys" {
  #checkov:skip=CKV_AWS_18:Access logging needs a separate log bucket; reads are by one task role only.
  #checkov:skip=CKV_AWS_144:Cross-region replication is not needed for a small, re-uploadable keys object.
  #checkov:skip=CKV2_AWS_62:No consumer needs event notifications; the backend polls by ETag.
  #checkov:skip=CKV_AWS_145:SSE-S3 (AES256) is enforced below; use a KMS key if your policy requires one.
  bucket = var.keys_bucket_name
}

resource "aws_s3_bucket_public_access_block" "keys" {
  bucket                  = aws_s3_bucket.keys.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "keys" {
  bucket = aws_s3_bucket.keys.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "keys" {
  bucket = aws_s3_bucket.keys.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "keys" {
  bucket = aws_s3_bucket.keys.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "keys" {
  bucket = aws_s3_bucket.keys.id
  rule {
    id     = "old-key-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 90
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "keys_bucket" {
  statement {
    sid     = "TlsOnly"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.keys.arn,
      "${aws_s3_bucket.keys.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "keys" {
  bucket = aws_s3_bucket.keys.id
  policy = data.aws_iam_policy_document.keys_bucket.json
}
