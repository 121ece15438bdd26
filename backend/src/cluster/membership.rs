//! Replica membership records in DynamoDB (feature `aws`): one record per replica under
//! `pk` = `replicas`, heartbeated, read by everyone, deleted on a graceful stop. The record
//! also carries the replica's session (`session`): its leases live while it does.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck};
use aws_sdk_dynamodb::Client;

use super::lease::{now_ms, LeaseError};
use super::members::{AdvertisedPushpin, Member};
use super::session::Beat;

const MEMBERS_PK: &str = "replicas";
/// The attribute holding the replica's current session id.
const SESSION: &str = "session";

/// The record attributes of [`AdvertisedPushpin`]'s fields.
const PUBLISH_SPEC: &str = "pushpin_publish_spec";
const HTTP_URL: &str = "pushpin_http_url";
const STATS_SPEC: &str = "pushpin_stats_spec";

pub struct Membership {
    client: Client,
    table: String,
}

impl Membership {
    pub fn new(client: Client, table: &str) -> Membership {
        Membership {
            client,
            table: table.to_string(),
        }
    }

    fn error(&self, op: &'static str, detail: String) -> LeaseError {
        LeaseError::new(&self.table, op, detail)
    }

    /// Records `me` alive for `ttl_ms` more under `beat`'s session (the record expires by TTL
    /// an hour after that). A renewal must find the record still holding that session, alive;
    /// `Ok(false)` when it does not (the session lapsed).
    pub async fn heartbeat(
        &self,
        me: &Member,
        ttl_ms: u64,
        beat: Beat,
    ) -> Result<bool, LeaseError> {
        let now = now_ms();
        let until = now + ttl_ms;
        let mut item = HashMap::from([
            ("pk".to_string(), AttributeValue::S(MEMBERS_PK.into())),
            ("sk".to_string(), AttributeValue::S(me.id.clone())),
            ("url".to_string(), AttributeValue::S(me.url.clone())),
            (
                "alive_until".to_string(),
                AttributeValue::N(until.to_string()),
            ),
            (
                SESSION.to_string(),
                AttributeValue::N(beat.session.to_string()),
            ),
            (
                crate::store::TTL_ATTRIBUTE.to_string(),
                AttributeValue::N((until / 1000 + 3600).to_string()),
            ),
        ]);
        let p = &me.pushpin;
        for (name, value) in [
            (PUBLISH_SPEC, &p.publish_spec),
            (HTTP_URL, &p.http_url),
            (STATS_SPEC, &p.stats_spec),
        ] {
            if let Some(v) = value {
                item.insert(name.to_string(), AttributeValue::S(v.clone()));
            }
        }
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        if beat.renewal {
            put = put
                .condition_expression("#session = :session AND alive_until > :now")
                .expression_attribute_names("#session", SESSION)
                .expression_attribute_values(
                    ":session",
                    AttributeValue::N(beat.session.to_string()),
                )
                .expression_attribute_values(":now", AttributeValue::N(now.to_string()));
        }
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(self.error("PutItem (heartbeat)", DisplayErrorContext(&e).to_string())),
        }
    }

    /// Until when (unix ms) replica `id`'s `session` is alive: 0 when its record is gone or
    /// holds another session.
    pub async fn session_alive_until(&self, id: &str, session: u64) -> Result<u64, LeaseError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(MEMBERS_PK.into()))
            .key("sk", AttributeValue::S(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem (member)", DisplayErrorContext(&e).to_string()))?;
        let n = |r: &HashMap<String, AttributeValue>, name: &str| {
            r.get(name)?.as_n().ok()?.parse::<u64>().ok()
        };
        Ok(match out.item() {
            Some(r) if n(r, SESSION) == Some(session) => n(r, "alive_until").unwrap_or(0),
            _ => 0,
        })
    }

    /// The condition, for a transaction taking over a lease of replica `id`'s `session`, that
    /// this session is over: the record is gone, ran out, or holds another session.
    pub fn session_over(&self, id: &str, session: u64, now: u64) -> ConditionCheck {
        ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(MEMBERS_PK.into()))
            .key("sk", AttributeValue::S(id.to_string()))
            .condition_expression(
                "attribute_not_exists(sk) OR alive_until <= :now OR #session <> :session",
            )
            .expression_attribute_names("#session", SESSION)
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":session", AttributeValue::N(session.to_string()))
            .build()
            .expect("table, key and condition are set")
    }

    /// Every replica whose heartbeat has not run out, sorted by id.
    pub async fn live(&self) -> Result<Vec<Member>, LeaseError> {
        let now = now_ms();
        let mut out = Vec::new();
        // DynamoDB answers at most 1 MB per call: the SDK's paginator follows the pages.
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(MEMBERS_PK.into()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(r) = pages.next().await {
            let r =
                r.map_err(|e| self.error("Query (members)", DisplayErrorContext(&e).to_string()))?;
            let alive_until = r
                .get("alive_until")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let (Some(id), Some(url)) = (
                r.get("sk").and_then(|v| v.as_s().ok()),
                r.get("url").and_then(|v| v.as_s().ok()),
            ) else {
                continue;
            };
            if alive_until > now {
                let text = |name: &str| r.get(name).and_then(|v| v.as_s().ok()).cloned();
                out.push(Member {
                    id: id.clone(),
                    url: url.clone(),
                    // Absent in records of replicas that advertise no Pushpin (or predate it).
                    pushpin: AdvertisedPushpin {
                        publish_spec: text(PUBLISH_SPEC),
                        http_url: text(HTTP_URL),
                        stats_spec: text(STATS_SPEC),
                    },
                });
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Deletes replica `id`'s record: the others stop counting on it at their next refresh
    /// instead of after its heartbeat runs out.
    pub async fn leave(&self, id: &str) -> Result<(), LeaseError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(MEMBERS_PK.into()))
            .key("sk", AttributeValue::S(id.to_string()))
            .send()
            .await
            .map_err(|e| self.error("DeleteItem (leave)", DisplayErrorContext(&e).to_string()))?;
        Ok(())
    }
}
