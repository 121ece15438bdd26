//! Replica membership: each replica heartbeats one record (`pk` = `replicas`, `sk` = its id,
//! with `alive_until`, the URL other replicas reach it at and the endpoints of the Pushpin it
//! advertises) and reads everyone's, so all agree who is alive, which of them a channel
//! prefers (rendezvous hashing) and which Pushpins to publish to. A replica that stops
//! gracefully deletes its record.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::lease::{now_ms, LeaseError};

const MEMBERS_PK: &str = "replicas";

/// A live replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// Its backend's base URL, for handing over snapshot requests.
    pub url: String,
    /// Its own Pushpin as the other replicas reach it (nothing when it advertises none).
    pub pushpin: AdvertisedPushpin,
}

impl Member {
    /// A replica that advertises no Pushpin.
    pub fn new(id: &str, url: &str) -> Member {
        Member {
            id: id.to_string(),
            url: url.to_string(),
            pushpin: AdvertisedPushpin::default(),
        }
    }
}

/// A replica's Pushpin endpoints as the other replicas reach them; `None` = not advertised.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct AdvertisedPushpin {
    /// Its ZeroMQ PULL socket (`tcp://…:5560`).
    pub publish_spec: Option<String>,
    /// Its HTTP publish base URL (`http://…:5561`).
    pub http_url: Option<String>,
    /// Its stats PUB socket (`tcp://…:5564`).
    pub stats_spec: Option<String>,
}

/// The record attributes of [`AdvertisedPushpin`]'s fields.
const PUBLISH_SPEC: &str = "pushpin_publish_spec";
const HTTP_URL: &str = "pushpin_http_url";
const STATS_SPEC: &str = "pushpin_stats_spec";

/// The replica among `members` that `channel` prefers: the highest hash of (channel, replica)
/// wins, so each channel's choice moves only when its winner leaves or a better one joins.
pub fn preferred<'a>(channel: &str, members: &'a [Member]) -> Option<&'a Member> {
    members.iter().max_by_key(|m| {
        // SipHash with fixed keys: the same on every replica and every run.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (channel, m.id.as_str()).hash(&mut h);
        (h.finish(), m.id.clone())
    })
}

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

    /// Records `me` alive for `ttl_ms` more (the record expires by TTL an hour after that).
    pub async fn heartbeat(&self, me: &Member, ttl_ms: u64) -> Result<(), LeaseError> {
        let until = now_ms() + ttl_ms;
        let mut item = HashMap::from([
            ("pk".to_string(), AttributeValue::S(MEMBERS_PK.into())),
            ("sk".to_string(), AttributeValue::S(me.id.clone())),
            ("url".to_string(), AttributeValue::S(me.url.clone())),
            (
                "alive_until".to_string(),
                AttributeValue::N(until.to_string()),
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
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.error("PutItem (heartbeat)", DisplayErrorContext(&e).to_string()))?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn members(ids: &[&str]) -> Vec<Member> {
        ids.iter()
            .map(|id| Member::new(id, &format!("http://{id}")))
            .collect()
    }

    #[test]
    fn channels_spread_over_replicas_and_move_only_when_their_replica_leaves() {
        let three = members(&["a", "b", "c"]);
        let channels: Vec<String> = (0..300).map(|i| format!("ch?n={i}")).collect();
        let mut counts = HashMap::new();
        for c in &channels {
            *counts
                .entry(preferred(c, &three).unwrap().id.clone())
                .or_insert(0) += 1;
        }
        for id in ["a", "b", "c"] {
            let n = counts[id];
            assert!(
                (60..=140).contains(&n),
                "{id} prefers {n} of 300: {counts:?}"
            );
        }
        let two = members(&["a", "c"]);
        for c in &channels {
            let before = &preferred(c, &three).unwrap().id;
            let after = &preferred(c, &two).unwrap().id;
            if before != "b" {
                assert_eq!(before, after, "{c} moved although its replica stayed");
            }
        }
        assert!(preferred("x", &[]).is_none());
    }
}
