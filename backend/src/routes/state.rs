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
    /// Which channels need a token, and the keys to check one with.
    pub auth: Arc<crate::auth::Auth>,
    /// Closes SSE streams whose token expires (a GRIP close on the stream's private channel).
    pub publisher: Arc<dyn crate::pushpin::publisher::Publisher>,
}
