//! One channel's poller: fetch, decide what changed, persist, then publish in `seq` order. It
//! also answers snapshot and resume requests for new subscribers, so that everything a
//! channel sends goes out in one order.
//!
//! - [`plan`]: the pure decision of one poll (what to commit, what to announce);
//! - `shell`: the [`ChannelPoller`] and its loop (timing, keys, budget, shutdown);
//! - `poll`: one poll's I/O around the plan (fetch, persist with recovery, publish);
//! - `answers`: snapshots, resumes and statuses for subscribers;
//! - `failure`: backoff, the degraded state and the status board;
//! - `push_loop`: a push channel's writer (batches instead of polls, same persistence and
//!   answers);
//! - `state`: what a poller keeps in memory;
//! - [`requests`]: the queue of snapshot requests from the scheduler.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::budget::Budgets;
use crate::channel::{ChannelId, GripChannel};
use crate::keys::KeyStore;
use crate::pushpin::publisher::Publisher;
use crate::status::StatusBoard;
use crate::store::ItemStore;

mod answers;
mod failure;
pub mod plan;
mod poll;
mod push_loop;
pub mod requests;
mod shell;
mod state;

pub use failure::{backoff, PollError};
pub use plan::{plan, Announce, ChannelState, Plan, PlanInput, Report};
pub use push_loop::{run_push, PublishRequest, PushWiring};
pub use shell::{run, ChannelPoller};

/// What a poller needs from the rest of the service.
#[derive(Clone)]
pub struct PollerContext {
    pub keys: Arc<dyn KeyStore>,
    pub publisher: Arc<dyn Publisher>,
    pub store: Arc<dyn ItemStore>,
    /// Longest wait between attempts while an upstream keeps failing.
    pub max_backoff: Duration,
    /// Upstream rate limits, shared by key set across channels.
    pub budgets: Arc<Budgets>,
    /// When each channel was last polled, so a channel reactivated within its interval is not
    /// fetched early (new subscribers get the stored snapshot meanwhile).
    pub last_polls: Arc<std::sync::Mutex<HashMap<ChannelId, Instant>>>,
    /// What each poller last did, for the status API.
    pub status: Arc<StatusBoard>,
    /// How much history each channel kind keeps (`[history]`); set on every commit.
    pub retentions: crate::history::Retentions,
    /// Snapshots answered to fresh subscribers, for later ones to get inline.
    pub snapshots: Arc<crate::snapshot_cache::SnapshotCache>,
}

/// A subscriber that needs the channel's state (or the events it missed).
#[derive(Debug, Clone)]
pub struct SnapshotRequest {
    /// The private GRIP channel that reaches only that subscriber.
    pub connection_channel: GripChannel,
    /// Resume point from the client's `since`.
    pub since: Option<u64>,
    /// How that connection receives messages: `WebSocket` or `Sse`.
    pub transport: crate::pushpin::grip::Transports,
    /// When the subscribe was handled; the answer waits a moment so Pushpin has applied the
    /// GRIP subscription before anything is published after the snapshot.
    pub requested_at: Instant,
}

/// Delay between a subscribe and the snapshot publish (Pushpin applies control messages
/// within about a millisecond on loopback).
pub const SNAPSHOT_DELAY: Duration = Duration::from_millis(100);
