//! What every HTTP handler shares.

use std::sync::Arc;

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
    /// Seconds between Pushpin's keep-alive requests on a WebSocket connection.
    pub keep_alive_interval: u32,
    /// Seconds of silence before an SSE stream gets a keep-alive comment.
    pub sse_keep_alive_secs: u32,
    pub store: Arc<dyn ItemStore>,
    pub status: Arc<StatusBoard>,
    pub budgets: Arc<Budgets>,
    /// Pushpin HTTP control endpoints, one per instance; `/readyz` checks each answers.
    pub pushpin_control_urls: Vec<String>,
}
