//! Small named records (the archive sinks' state) in the item table: `pk` = `record#<ns>`,
//! `sk` = the key, the text in `value`; one item per record, a namespace read with one Query.

use super::records::*;
use super::DynamoItemStore;
use crate::store::{RecordWrite, StoreError};

fn record_pk(ns: &str) -> String {
    format!("record#{ns}")
}

impl DynamoItemStore {
    pub(super) async fn get_named(&self, ns: &str, k: &str) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(&record_pk(ns), k)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        out.item()
            .map(|r| get_s(r, "value", "record").map(str::to_string))
            .transpose()
    }

    pub(super) async fn put_named(
        &self,
        ns: &str,
        k: &str,
        value: &str,
        when: RecordWrite,
    ) -> Result<bool, StoreError> {
        let mut r = key(&record_pk(ns), k);
        r.insert("value".into(), s(value));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(r));
        let put = match when {
            RecordWrite::Upsert => put,
            RecordWrite::IfPresent => put.condition_expression("attribute_exists(pk)"),
            RecordWrite::IfAbsent => put.condition_expression("attribute_not_exists(pk)"),
        };
        self.applied("PutItem", put.send().await)
    }

    pub(super) async fn delete_named(&self, ns: &str, k: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(&record_pk(ns), k)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| self.error("DeleteItem", e))?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }

    pub(super) async fn list_named(&self, ns: &str) -> Result<Vec<(String, String)>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(record_pk(ns)))
            .consistent_read(true);
        let mut records = Vec::new();
        self.each_page(query, |page| records.extend(page.items.unwrap_or_default()))
            .await?;
        records
            .iter()
            .map(|r| {
                let k = get_s(r, "sk", "record")?.to_string();
                Ok((k, get_s(r, "value", "record")?.to_string()))
            })
            .collect()
    }
}
