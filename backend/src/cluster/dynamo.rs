//! [`Leases`] in production: the lease table and membership records in DynamoDB (session
//! leases: one heartbeat renews them all), hand-overs over HTTP to the other replica's backend
//! port.

use std::time::Duration;

use async_trait::async_trait;

use super::{
    ForwardedSnapshots, HandOverError, Held, Holder, LeaseError, LeaseTable, Leases, Member,
};
use crate::channel::ChannelId;

pub struct DynamoLeases {
    table: LeaseTable,
    http: reqwest::Client,
    /// Sent with every hand-over: the other replica's `/internal/*` requires it.
    secret: crate::config::Secret,
}

impl DynamoLeases {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: &str,
        owner: &str,
        ttl: Duration,
        secret: crate::config::Secret,
    ) -> DynamoLeases {
        DynamoLeases {
            table: LeaseTable::new(client, table, owner, ttl),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("reqwest client"),
            secret,
        }
    }
}

#[async_trait]
impl Leases for DynamoLeases {
    fn owner(&self) -> &str {
        self.table.owner()
    }

    fn ttl(&self) -> Duration {
        self.table.ttl()
    }

    async fn acquire(&self, channel: &ChannelId) -> Result<Option<Held>, LeaseError> {
        self.table.acquire(channel).await
    }

    async fn renew(&self, held: &Held) -> Result<Option<Held>, LeaseError> {
        self.table.renew(held).await
    }

    async fn release(&self, held: &Held) -> Result<bool, LeaseError> {
        self.table.release(held).await
    }

    async fn holder(&self, channel: &ChannelId) -> Result<Option<Holder>, LeaseError> {
        self.table.holder(channel).await
    }

    async fn heartbeat(&self, me: &Member) -> Result<(), LeaseError> {
        self.table.heartbeat(me).await
    }

    async fn live(&self) -> Result<Vec<Member>, LeaseError> {
        self.table.members().live().await
    }

    async fn leave(&self, me: &Member) -> Result<(), LeaseError> {
        self.table.members().leave(&me.id).await
    }

    async fn hand_over(
        &self,
        to: &Member,
        batch: &ForwardedSnapshots,
    ) -> Result<(), HandOverError> {
        let url = format!("{}/internal/snapshot", to.url.trim_end_matches('/'));
        let response = self
            .http
            .post(&url)
            .header(crate::edge::cluster_secret::HEADER, self.secret.expose())
            .json(batch)
            .send()
            .await
            .map_err(|source| HandOverError::Unreachable {
                url: url.clone(),
                source,
            })?;
        match response.status() {
            s if s.is_success() => Ok(()),
            s => Err(HandOverError::Refused {
                url,
                status: s.as_u16(),
            }),
        }
    }

    async fn publish_to(
        &self,
        to: &Member,
        channel: &ChannelId,
        batch: &crate::push::PushBatch,
    ) -> Result<Result<crate::push::PushReceipt, crate::push::PushError>, HandOverError> {
        let url = format!("{}{}", to.url.trim_end_matches('/'), super::PUBLISH_PATH);
        let response = self
            .http
            .post(&url)
            // A commit (a large batch, a slow store) may take longer than a hand-over.
            .timeout(Duration::from_secs(30))
            .header(crate::edge::cluster_secret::HEADER, self.secret.expose())
            .json(&super::ForwardedPublish::new(channel, batch))
            .send()
            .await
            .map_err(|source| HandOverError::Unreachable {
                url: url.clone(),
                source,
            })?;
        super::publish_wire::read_answer(url, response).await
    }
}
