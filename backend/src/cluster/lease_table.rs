//! The channel lease table in DynamoDB (feature `aws`), with session leases: a lease taken by a
//! replica names its session (the record layout is in `lease`), and lives while that session
//! does. Renewing every lease a replica holds is its one heartbeat per renewal period
//! (`membership`); taking a lease over is a transaction that checks the holder's session is over.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use tokio::time::Instant;

use super::lease::{lease_pk, now_ms, Held, Holder, LeaseError, LEASE_SK};
use super::members::Member;
use super::membership::Membership;
use super::session::Session;
use crate::channel::ChannelId;

/// Lease operations and the session of one replica (`owner`).
pub struct LeaseTable {
    client: Client,
    table: String,
    owner: String,
    ttl: Duration,
    members: Membership,
    session: Session,
}

type Record = HashMap<String, AttributeValue>;

fn key(channel: &ChannelId) -> Record {
    HashMap::from([
        (
            "pk".to_string(),
            AttributeValue::S(lease_pk(channel.as_str())),
        ),
        ("sk".to_string(), AttributeValue::S(LEASE_SK.into())),
    ])
}

fn num(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_n(r: &Record, name: &str) -> Option<u64> {
    r.get(name)?.as_n().ok()?.parse().ok()
}

/// The parts of an update that makes a lease ours.
struct Take {
    expression: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

/// A lease record as read.
struct Stored {
    owner: Option<String>,
    epoch: u64,
    /// `None`: a lease with its own `lease_until` (released, or written before sessions).
    session: Option<u64>,
    lease_until: u64,
}

impl Stored {
    fn from_record(r: &Record) -> Stored {
        Stored {
            owner: r.get("owner").and_then(|v| v.as_s().ok()).cloned(),
            epoch: get_n(r, "epoch").unwrap_or(0),
            session: get_n(r, "session"),
            lease_until: get_n(r, "lease_until").unwrap_or(0),
        }
    }
}

impl LeaseTable {
    pub fn new(client: Client, table: &str, owner: &str, ttl: Duration) -> LeaseTable {
        LeaseTable {
            members: Membership::new(client.clone(), table),
            client,
            table: table.to_string(),
            owner: owner.to_string(),
            ttl,
            session: Session::new(ttl),
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn members(&self) -> &Membership {
        &self.members
    }

    fn error<E, R>(&self, op: &'static str, e: SdkError<E, R>) -> LeaseError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        LeaseError::new(&self.table, op, DisplayErrorContext(&e).to_string())
    }

    /// `Ok(None)` when only the condition failed (for a transaction: it was cancelled because
    /// a condition failed).
    fn conditional<T, E, R>(
        &self,
        op: &'static str,
        result: Result<T, SdkError<E, R>>,
    ) -> Result<Option<T>, LeaseError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        match result {
            Ok(v) => Ok(Some(v)),
            Err(e)
                if matches!(
                    e.code(),
                    Some("ConditionalCheckFailedException" | "TransactionCanceledException")
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.error(op, e)),
        }
    }

    /// Records `me` alive and renews this replica's session, so every lease taken under it:
    /// one write. A session that ran out (a heartbeat too late) is replaced by a new one; the
    /// leases of the old one are lost and must be taken again, under new epochs.
    pub async fn heartbeat(&self, me: &Member) -> Result<(), LeaseError> {
        let ttl_ms = self.ttl.as_millis() as u64;
        let sent = Instant::now();
        let mut beat = self.session.beat();
        if !self.members.heartbeat(me, ttl_ms, beat).await? {
            tracing::warn!(
                replica = %me.id,
                "cluster session ran out (a heartbeat came too late); its leases are given up"
            );
            crate::metrics::get()
                .lease_events
                .with_label_values(&["session_lapsed"])
                .inc();
            beat = self.session.lapsed();
            self.members.heartbeat(me, ttl_ms, beat).await?;
        }
        self.session.written(beat, sent);
        tracing::debug!(
            session = beat.session,
            renewal = beat.renewal,
            "session heartbeat"
        );
        Ok(())
    }

    async fn read(&self, channel: &ChannelId) -> Result<Option<Stored>, LeaseError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(channel)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem (lease)", e))?;
        Ok(out.item().map(Stored::from_record))
    }

    /// Takes `channel`'s lease under this replica's session if nobody else holds it (free,
    /// released, its holder's session over, or ours), with a new epoch. `Ok(None)` when another
    /// replica holds it; an error when this replica has no live session (no heartbeat yet).
    pub async fn acquire(&self, channel: &ChannelId) -> Result<Option<Held>, LeaseError> {
        let (session, valid_until) = self.session.live().ok_or_else(|| {
            LeaseError::new(
                &self.table,
                "acquire",
                "this replica has no live session (its heartbeat has not landed)".into(),
            )
        })?;
        let now = now_ms();
        let epoch = match self.read(channel).await? {
            Some(Stored {
                owner: Some(owner),
                epoch,
                session: Some(theirs),
                ..
            }) => {
                // Ours under this session (given up locally): taken again under a new epoch,
                // which fences its old poller's late commits.
                let ours = owner == self.owner && theirs == session;
                match ours {
                    true => self.take_own(channel, session, epoch).await?,
                    false => {
                        self.take_over(channel, session, &owner, theirs, epoch, now)
                            .await?
                    }
                }
            }
            _ => self.take_free(channel, session, now).await?,
        };
        Ok(epoch.map(|epoch| Held {
            channel: channel.clone(),
            epoch,
            session,
            valid_until,
        }))
    }

    /// The update that makes the lease ours under `session`, at `epoch` (`None`: one more
    /// than stored). `lease_until` is kept for replicas of versions before sessions.
    fn take(&self, session: u64, epoch: Option<u64>) -> Take {
        let epoch_expr = match epoch {
            Some(_) => ":epoch",
            None => "if_not_exists(epoch, :zero) + :one",
        };
        let mut values = HashMap::from([
            (":me".to_string(), AttributeValue::S(self.owner.clone())),
            (":session".to_string(), num(session)),
            (
                ":until".to_string(),
                num(now_ms() + self.ttl.as_millis() as u64),
            ),
        ]);
        match epoch {
            Some(e) => {
                values.insert(":epoch".into(), num(e));
            }
            None => {
                values.insert(":zero".into(), num(0));
                values.insert(":one".into(), num(1));
            }
        }
        Take {
            expression: format!(
                "SET #owner = :me, #session = :session, lease_until = :until, epoch = {epoch_expr}"
            ),
            names: HashMap::from([
                ("#owner".to_string(), "owner".to_string()),
                ("#session".to_string(), "session".to_string()),
            ]),
            values,
        }
    }

    /// An `UpdateItem` applying `t` to `channel`'s lease.
    fn take_update(&self, channel: &ChannelId, t: Take) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(channel)))
            .update_expression(t.expression)
            .set_expression_attribute_names(Some(t.names))
            .set_expression_attribute_values(Some(t.values))
    }

    /// A lease without a session (never taken, released, or written before sessions): free
    /// once its own `lease_until` has passed, or when it names us.
    async fn take_free(
        &self,
        channel: &ChannelId,
        session: u64,
        now: u64,
    ) -> Result<Option<u64>, LeaseError> {
        let t = self.take(session, None);
        let result = self
            .take_update(channel, t)
            .condition_expression(
                "attribute_not_exists(pk) OR (attribute_not_exists(#session) \
                 AND (lease_until <= :now OR #owner = :me))",
            )
            .expression_attribute_values(":now", num(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        self.epoch_of(self.conditional("UpdateItem (acquire)", result)?)
    }

    /// Our own lease under this session, taken again with a new epoch.
    async fn take_own(
        &self,
        channel: &ChannelId,
        session: u64,
        epoch: u64,
    ) -> Result<Option<u64>, LeaseError> {
        let t = self.take(session, Some(epoch + 1));
        let result = self
            .take_update(channel, t)
            .condition_expression("#owner = :me AND #session = :session AND epoch = :old")
            .expression_attribute_values(":old", num(epoch))
            .send()
            .await;
        Ok(self
            .conditional("UpdateItem (acquire own)", result)?
            .map(|_| epoch + 1))
    }

    /// Another session's lease: taken in one transaction that also checks that session is
    /// over (its replica's record gone, run out, or holding a newer session).
    async fn take_over(
        &self,
        channel: &ChannelId,
        session: u64,
        owner: &str,
        theirs: u64,
        epoch: u64,
        now: u64,
    ) -> Result<Option<u64>, LeaseError> {
        let mut t = self.take(session, Some(epoch + 1));
        t.values
            .insert(":owner".into(), AttributeValue::S(owner.to_string()));
        t.values.insert(":theirs".into(), num(theirs));
        t.values.insert(":old".into(), num(epoch));
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(channel)))
            .update_expression(t.expression)
            .condition_expression("#owner = :owner AND #session = :theirs AND epoch = :old")
            .set_expression_attribute_names(Some(t.names))
            .set_expression_attribute_values(Some(t.values))
            .build()
            .expect("table, key and expression are set");
        let result = self
            .client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .condition_check(self.members.session_over(owner, theirs, now))
                    .build(),
            )
            .transact_items(TransactWriteItem::builder().update(update).build())
            .send()
            .await;
        Ok(self
            .conditional("TransactWriteItems (take over)", result)?
            .map(|_| epoch + 1))
    }

    fn epoch_of<T: EpochAnswer>(&self, answer: Option<T>) -> Result<Option<u64>, LeaseError> {
        let Some(answer) = answer else {
            return Ok(None);
        };
        answer.epoch().map(Some).ok_or_else(|| {
            LeaseError::new(
                &self.table,
                "UpdateItem (acquire)",
                "the answer holds no epoch".into(),
            )
        })
    }

    /// A held lease stays ours while the session it was taken under is live: no write.
    /// `Ok(None)` when that session is over (this replica may have lost the lease).
    pub async fn renew(&self, held: &Held) -> Result<Option<Held>, LeaseError> {
        Ok(match self.session.live() {
            Some((session, valid_until)) if session == held.session => Some(Held {
                valid_until,
                ..held.clone()
            }),
            _ => None,
        })
    }

    /// Gives a held lease up at once (its epoch stays). Returns whether it was still ours.
    pub async fn release(&self, held: &Held) -> Result<bool, LeaseError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&held.channel)))
            .update_expression("SET lease_until = :zero REMOVE #session")
            .condition_expression("#owner = :me AND epoch = :epoch")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#session", "session")
            .expression_attribute_values(":me", AttributeValue::S(self.owner.clone()))
            .expression_attribute_values(":epoch", num(held.epoch))
            .expression_attribute_values(":zero", num(0))
            .send()
            .await;
        Ok(self.conditional("UpdateItem (release)", result)?.is_some())
    }

    /// The lease as stored, if the channel ever had one; a session lease runs until its
    /// session's heartbeat runs out (0 once the session is over).
    pub async fn holder(&self, channel: &ChannelId) -> Result<Option<Holder>, LeaseError> {
        let Some(stored) = self.read(channel).await? else {
            return Ok(None);
        };
        let Some(owner) = stored.owner else {
            return Ok(None);
        };
        let lease_until = match stored.session {
            Some(session) => self.members.session_alive_until(&owner, session).await?,
            None => stored.lease_until,
        };
        Ok(Some(Holder {
            owner,
            epoch: stored.epoch,
            lease_until,
        }))
    }
}

/// An update's answer that carries the record after it.
trait EpochAnswer {
    fn epoch(&self) -> Option<u64>;
}

impl EpochAnswer for aws_sdk_dynamodb::operation::update_item::UpdateItemOutput {
    fn epoch(&self) -> Option<u64> {
        self.attributes().and_then(|a| get_n(a, "epoch"))
    }
}
