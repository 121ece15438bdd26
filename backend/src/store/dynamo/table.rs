//! The table itself: checked at startup, created (on-demand billing, TTL on `expires_at`)
//! only when asked to — production tables come from terraform.

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification,
};

use super::{DynamoItemStore, TTL_ATTRIBUTE};
use crate::store::StoreError;

/// Makes sure the store's table exists with the expected keys.
pub async fn ensure(store: &DynamoItemStore, create_if_missing: bool) -> Result<(), StoreError> {
    match describe(store).await? {
        Some(status) => wait_active(store, status).await,
        None if create_if_missing => create(store).await,
        None => Err(StoreError::Backend(format!(
            "DynamoDB table {} does not exist; create it (terraform in infrastructure/ does, \
             see docs/storage.md) or set store.dynamodb_create_table = true",
            store.table
        ))),
    }
}

/// The table's status, `None` when it does not exist; wrong keys are an error.
async fn describe(store: &DynamoItemStore) -> Result<Option<TableStatus>, StoreError> {
    let out = match store
        .client
        .describe_table()
        .table_name(&store.table)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) if e.code() == Some("ResourceNotFoundException") => return Ok(None),
        Err(e) => return Err(store.error("DescribeTable", e)),
    };
    let Some(table) = out.table else {
        return Ok(None);
    };
    let keys: Vec<(String, KeyType)> = table
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name().to_string(), k.key_type().clone()))
        .collect();
    let expected = vec![
        ("pk".to_string(), KeyType::Hash),
        ("sk".to_string(), KeyType::Range),
    ];
    if keys != expected {
        return Err(StoreError::Backend(format!(
            "DynamoDB table {} has keys {keys:?}; restream needs hash key pk (S) and range key \
             sk (S) (docs/storage.md)",
            store.table
        )));
    }
    Ok(Some(table.table_status.unwrap_or(TableStatus::Active)))
}

async fn wait_active(store: &DynamoItemStore, mut status: TableStatus) -> Result<(), StoreError> {
    for _ in 0..120 {
        if status == TableStatus::Active || status == TableStatus::Updating {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        status = describe(store).await?.ok_or_else(|| {
            StoreError::Backend(format!("DynamoDB table {} disappeared", store.table))
        })?;
    }
    Err(StoreError::Backend(format!(
        "DynamoDB table {} is not active after 60 s (status {status})",
        store.table
    )))
}

fn key_element(name: &str, key_type: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .expect("name and type are set")
}

fn string_attribute(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("name and type are set")
}

async fn create(store: &DynamoItemStore) -> Result<(), StoreError> {
    tracing::info!(table = %store.table, "creating the DynamoDB table");
    let created = store
        .client
        .create_table()
        .table_name(&store.table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key_element("pk", KeyType::Hash))
        .key_schema(key_element("sk", KeyType::Range))
        .attribute_definitions(string_attribute("pk"))
        .attribute_definitions(string_attribute("sk"))
        .send()
        .await;
    match created {
        Ok(_) => {}
        // Another replica created it first.
        Err(e) if e.code() == Some("ResourceInUseException") => {}
        Err(e) => return Err(store.error("CreateTable", e)),
    }
    wait_active(store, TableStatus::Creating).await?;
    store
        .client
        .update_time_to_live()
        .table_name(&store.table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(TTL_ATTRIBUTE)
                .build()
                .expect("fields are set"),
        )
        .send()
        .await
        .map_err(|e| store.error("UpdateTimeToLive", e))?;
    Ok(())
}
