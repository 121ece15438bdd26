//! Wiring: builds every part from settings and runs the HTTP server, stats reader and scheduler
//! under one cancellation tree.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::{PublishVia, Settings, StoreKind};
use crate::connection::Limits;
use crate::demand::Demand;
use crate::fetcher::{http, registry, Fetcher, Registry, SharedRegistry};
use crate::keys::FileKeyStore;
use crate::poller::PollerContext;
use crate::publisher::{HttpPublisher, Publisher, ZmqPublisher};
use crate::routes::{self, AppState};
use crate::scheduler::Scheduler;
use crate::stats;
use crate::store::{ItemStore, MemoryStore, RedbStore};

/// Loads the fetchers named by the settings.
pub async fn load_registry(settings: &Settings) -> anyhow::Result<Registry> {
    Ok(load_registry_reporting(settings).await?.0)
}

/// Every fetcher (code and declarative) named by the settings, with a load report per fetcher.
pub async fn load_registry_reporting(
    settings: &Settings,
) -> anyhow::Result<(Registry, Vec<(String, Result<String, String>)>)> {
    let f = &settings.fetchers;
    let timeout = Duration::from_secs_f64(f.timeout_secs);
    let mut fetchers = registry::discover_process_fetchers(&f.dir, &f.python, timeout)
        .with_context(|| format!("cannot read fetchers folder {}", f.dir.display()))?;
    // Declarative channels come after code fetchers: on a name clash the code fetcher wins.
    fetchers.extend(
        http::discover(&f.channels_dir, timeout)
            .into_iter()
            .map(|h| Arc::new(h) as Arc<dyn Fetcher>),
    );
    let (registry, report) = Registry::load_reporting(fetchers, &f.poll_interval_overrides).await;
    if registry.is_empty() {
        tracing::warn!(dir = %f.dir.display(), "no fetchers loaded; every subscribe will get unknown_channel");
    }
    Ok((registry, report))
}

fn publisher(settings: &Settings) -> anyhow::Result<Arc<dyn Publisher>> {
    Ok(match settings.pushpin.publish {
        PublishVia::Zmq => Arc::new(ZmqPublisher::connect(&settings.pushpin.zmq_push_specs)?),
        PublishVia::Http => Arc::new(HttpPublisher::new(&settings.pushpin.http_publish_urls)),
    })
}

/// Runs the service on `listener` until `shutdown` is cancelled, then drains: the HTTP server
/// stops accepting, pollers finish their current step, the stats reader exits.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let registry = Arc::new(SharedRegistry::new(load_registry(&settings).await?));
    let demand = Arc::new(Demand::new(Duration::from_secs(
        settings.demand.hint_ttl_secs,
    )));
    let store: Arc<dyn ItemStore> = match settings.store.kind {
        StoreKind::Embedded => Arc::new(
            RedbStore::open(&settings.store.path, settings.store.log_capacity)
                .context("cannot open the item store (store.path)")?,
        ),
        StoreKind::Memory => Arc::new(MemoryStore::new(settings.store.log_capacity)),
        StoreKind::Dynamodb => anyhow::bail!("store.kind = \"dynamodb\" is not wired yet"),
    };
    let ctx = PollerContext {
        keys: Arc::new(
            FileKeyStore::open(&settings.keys.file)
                .context("cannot use the keys file (keys.file)")?,
        ),
        publisher: publisher(&settings)?,
        store,
        max_backoff: Duration::from_secs_f64(settings.fetchers.max_backoff_secs),
        budgets: Default::default(),
        last_polls: Default::default(),
    };
    let stats_thread = stats::spawn_reader(
        settings.pushpin.stats_specs.clone(),
        demand.clone(),
        shutdown.clone(),
    );
    let (scheduler, scheduler_handle) = Scheduler::new(registry.clone(), demand.clone(), ctx);
    let scheduler = tokio::spawn(scheduler.run(shutdown.clone()));

    let state = web::Data::new(AppState {
        registry,
        demand,
        scheduler: scheduler_handle,
        limits: Limits {
            max_subscriptions: settings.server.max_subscriptions_per_connection,
        },
        keep_alive_interval: settings.server.keep_alive_interval,
    });
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(1024 * 1024))
            .configure(routes::configure)
    })
    .workers(settings.server.workers.max(1))
    .disable_signals()
    // Pushpin (zurl) keeps idle keep-alive connections open; do not wait 30 s for them.
    .shutdown_timeout(3)
    .listen(listener)
    .context("cannot serve on the listener")?
    .run();
    tracing::info!(%addr, "restream backend listening");
    let handle = server.handle();
    let server_task = tokio::spawn(server);
    shutdown.cancelled().await;
    tracing::info!("shutting down");
    handle.stop(true).await;
    let _ = server_task.await;
    let _ = scheduler.await;
    let _ = tokio::task::spawn_blocking(move || stats_thread.join()).await;
    Ok(())
}

/// Cancels `token` on SIGINT or SIGTERM; a second signal exits at once.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::info!("signal received; draining (signal again to exit now)");
        token.cancel();
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        std::process::exit(130);
    });
}
