# Item state (docs/storage.md): one table, pk/sk, TTL on expires_at for the change log and,
# with store.retention_secs, for inactive channels (meta and items).

resource "aws_dynamodb_table" "items" {
  #checkov:skip=CKV_AWS_119:Encrypted at rest with the AWS owned key by default; set a customer managed KMS key here if your policy requires one.
  name           = var.table_name
  billing_mode   = var.dynamodb_billing_mode
  read_capacity  = var.dynamodb_billing_mode == "PROVISIONED" ? var.dynamodb_read_capacity : null
  write_capacity = var.dynamodb_billing_mode == "PROVISIONED" ? var.dynamodb_write_capacity : null
  hash_key       = "pk"
  range_key      = "sk"

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }

  deletion_protection_enabled = true
}
