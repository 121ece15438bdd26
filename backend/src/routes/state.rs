//! What every HTTP handler shares.

use std::sync::Arc;
use std::time::Duration;

use crate::budget::Budgets;
use crate::connection::Limits;
use crate::demand::Demand;
use crate::fetcher::SharedRegistry;
use crate::scheduler::SchedulerHandle;
use crate::status::StatusBoard;
use crate::store::ItemStore;

/// Shared, read-mostly state of the HTTP side.
pub struct AppState {
    pub registry: Arc<SharedRegistry>,
    pub demand: Arc<Demand>,
    pub scheduler: SchedulerHandle,
    pub limits: Limits,
    /// Between Pushpin's keep-alive requests on a WebSocket connection (whole seconds).
    pub keep_alive_interval: Duration,
    /// Silence before an SSE stream gets a keep-alive comment (whole seconds).
    pub sse_keep_alive: Duration,
    pub store: Arc<dyn ItemStore>,
    pub status: Arc<StatusBoard>,
    pub budgets: Arc<Budgets>,
    /// Pushpin HTTP control endpoints, one per instance; `/readyz` checks each answers.
    pub pushpin_control_urls: Vec<String>,
    /// The items and status API's cache of reads per channel and seq.
    pub read_cache: Arc<crate::read_cache::ReadCache>,
    /// Channels' current snapshots, sent inline to fresh WebSocket subscribers.
    pub snapshots: Arc<crate::snapshot_cache::SnapshotCache>,
    /// Items per page of the items API: unless `limit` says, and at most.
    pub items_page_default: usize,
    pub items_page_max: usize,
    /// Who may call: allowed origins, Pushpin's signing key, the cluster secret.
    pub edge: crate::edge::EdgeTrust,
    /// Abuse bounds on subscribes and SSE opens.
    pub guard: Arc<crate::abuse::Guard>,
    /// Which channels need a token, and the keys to check one with.
    pub auth: Arc<crate::auth::Auth>,
    /// Closes SSE streams whose token expires (a GRIP close on the stream's private channel).
    pub publisher: Arc<dyn crate::pushpin::publisher::Publisher>,
    /// Push channels: batches from the publish API go through it to the channel's writer.
    pub publishing: crate::push::Publishing,
    /// The key store: push channels' `producer_key` entries (the publish API's other
    /// credential besides a token).
    pub keys: Arc<dyn crate::keys::KeyStore>,
    /// The history API's settings, retentions and archive reader.
    pub history: crate::history::HistoryService,
    /// The admin API's token and reach (`[admin]`).
    pub admin: crate::config::Admin,
}
