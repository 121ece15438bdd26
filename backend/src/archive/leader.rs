//! The archiving replica (cluster mode): whoever holds the lease on [`LEASE_ID`], taken and
//! renewed at each archiver pass like a channel's.

use std::sync::Arc;

use tokio::time::Instant;

use crate::channel::ChannelId;
use crate::cluster::{Held, Leases};

/// The reserved lease id the archiving replica holds (channel leases live beside it; no
/// fetcher is expected to be named so).
pub const LEASE_ID: &str = "restream-archiver";
/// Whether this replica is the one that archives (cluster mode).
pub struct Leader {
    leases: Arc<dyn Leases>,
    held: Option<Held>,
}

impl Leader {
    pub fn new(leases: Arc<dyn Leases>) -> Leader {
        Leader { leases, held: None }
    }

    pub fn ttl(&self) -> std::time::Duration {
        self.leases.ttl()
    }

    pub(super) fn valid(&self) -> bool {
        self.held
            .as_ref()
            .is_some_and(|h| h.valid_until > Instant::now())
    }

    /// Takes or renews the archiver's lease; true while it is ours.
    pub async fn hold(&mut self) -> bool {
        let id = ChannelId::parse(LEASE_ID).expect("a valid id");
        let result = match &self.held {
            Some(held) => self.leases.renew(held).await,
            None => self.leases.acquire(&id).await,
        };
        match result {
            Ok(held) => self.held = held,
            Err(e) => {
                tracing::warn!(error = %e, "archive: cannot take or renew the archiver lease")
            }
        }
        if !self.valid() {
            self.held = None;
        }
        self.held.is_some()
    }

    pub(super) async fn release(&mut self) {
        if let Some(held) = self.held.take() {
            let _ = self.leases.release(&held).await;
        }
    }
}
