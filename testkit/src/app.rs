//! The backend's HTTP state with nothing behind it (no scheduler, a memory store, every
//! channel public, no Pushpin key), for tests that call the routes in-process: override the
//! fields a test is about with `AppState { edge: …, ..app::state() }`.

use std::sync::Arc;
use std::time::Duration;

use restream::connection::Limits;
use restream::demand::Demand;
use restream::fetcher::{Registry, SharedRegistry};
use restream::routes::AppState;
use restream::scheduler::SchedulerHandle;

/// Built-in defaults: 20 subscriptions per connection, the abuse limits' defaults over the
/// state's own `Demand`, the settings' Pushpin and SSE keep-alives, no client pings.
pub fn state() -> AppState {
    let demand = Arc::new(Demand::new(Duration::from_secs(60)));
    let registry = Arc::new(SharedRegistry::new(Registry::default()));
    AppState {
        publishing: restream::push::Publishing::new(
            SchedulerHandle::disconnected(),
            registry.clone(),
            Default::default(),
        ),
        registry,
        demand: demand.clone(),
        scheduler: SchedulerHandle::disconnected(),
        limits: Limits {
            max_subscriptions: 20,
            client_keep_alive: None,
        },
        keep_alive_interval: Duration::from_secs(25),
        sse_keep_alive: Duration::from_secs(20),
        store: Arc::new(restream::store::MemoryStore::new(10)),
        status: Default::default(),
        budgets: Default::default(),
        pushpin_control_urls: Vec::new(),
        read_cache: Arc::new(restream::read_cache::ReadCache::new(100)),
        snapshots: Default::default(),
        items_page_default: 100,
        items_page_max: 1000,
        edge: Default::default(),
        guard: Arc::new(restream::abuse::Guard::new(Default::default(), demand)),
        auth: Arc::new(restream::auth::Auth::public()),
        publisher: Arc::new(restream::pushpin::publisher::HttpPublisher::new(&[])),
        // A file that does not exist: no keys at all.
        keys: Arc::new(restream::keys::FileKeyStore::new(
            "/nonexistent/restream-testkit-keys.json",
        )),
        history: restream::history::HistoryService::new(Default::default()),
        // Off: no admin token.
        admin: Default::default(),
    }
}
