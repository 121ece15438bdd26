//! Wiring: builds every part from settings and runs the HTTP server, stats reader and scheduler
//! under one cancellation tree.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::{FetcherKind, KeysKind, PublishVia, Settings, StoreKind};
use crate::connection::Limits;
use crate::demand::Demand;
use crate::discovery::Discovery;
use crate::fetcher::{LoadReport, Registry, SharedRegistry};
use crate::keys::{FileKeyStore, KeyStore, S3KeyStore};
use crate::poller::PollerContext;
use crate::pushpin::publisher::{HttpPublisher, Metered, Publisher, ZmqPublisher};
use crate::pushpin::stats;
use crate::routes::{self, AppState};
use crate::scheduler::Scheduler;
use crate::store::{DynamoItemStore, ItemStore, MemoryStore, RedbStore};
use crate::supervisor::Essentials;

/// The shared AWS SDK configuration, loaded only when some part runs on AWS.
pub async fn aws_config(settings: &Settings) -> Option<aws_config::SdkConfig> {
    let uses_aws = settings.store.kind == StoreKind::Dynamodb
        || settings.keys.kind == KeysKind::S3
        || settings.fetchers.kinds.contains(&FetcherKind::Lambda);
    match uses_aws {
        true => Some(crate::aws::load(&settings.aws).await),
        false => None,
    }
}

/// How fetchers are found, with a Lambda client when `fetchers.kinds` has `lambda`.
pub fn discovery(settings: &Settings, sdk: Option<&aws_config::SdkConfig>) -> Discovery {
    let lambda = sdk
        .filter(|_| settings.fetchers.kinds.contains(&FetcherKind::Lambda))
        .map(|sdk| {
            crate::aws::lambda(
                sdk,
                &settings.aws,
                Duration::from_secs_f64(settings.fetchers.timeout_secs),
            )
        });
    Discovery::new(&settings.fetchers, lambda)
}

/// Every fetcher named by the settings, with a load report per fetcher (for the CLI).
pub async fn load_registry_reporting(
    settings: &Settings,
) -> anyhow::Result<(Registry, LoadReport)> {
    let sdk = aws_config(settings).await;
    discovery(settings, sdk.as_ref()).load().await
}

/// The item store named by `store.kind`.
pub async fn item_store(
    settings: &Settings,
    sdk: Option<&aws_config::SdkConfig>,
) -> anyhow::Result<Arc<dyn ItemStore>> {
    let s = &settings.store;
    Ok(match s.kind {
        StoreKind::Embedded => Arc::new(
            RedbStore::open(&s.path, s.log_capacity)
                .context("cannot open the item store (store.path)")?,
        ),
        StoreKind::Memory => Arc::new(MemoryStore::new(s.log_capacity)),
        StoreKind::Dynamodb => {
            let sdk = sdk.context("store.kind = dynamodb needs the AWS configuration")?;
            let store = DynamoItemStore::connect(
                crate::aws::dynamodb(sdk, &settings.aws),
                &s.dynamodb_table,
                s.log_capacity,
                Duration::from_secs(s.dynamodb_log_ttl_secs),
                s.dynamodb_create_table,
            )
            .await
            .context("cannot use the DynamoDB item store (store.dynamodb_table)")?;
            tracing::info!(table = %s.dynamodb_table, "item store: dynamodb");
            Arc::new(store)
        }
    })
}

/// The key store named by `keys.kind`; an S3 one refreshes until `shutdown`.
pub async fn key_store(
    settings: &Settings,
    sdk: Option<&aws_config::SdkConfig>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<dyn KeyStore>> {
    let k = &settings.keys;
    Ok(match k.kind {
        KeysKind::File => {
            Arc::new(FileKeyStore::open(&k.file).context("cannot use the keys file (keys.file)")?)
        }
        KeysKind::S3 => {
            let sdk = sdk.context("keys.kind = s3 needs the AWS configuration")?;
            Arc::new(
                S3KeyStore::start(
                    crate::aws::s3(sdk, &settings.aws),
                    &k.s3_bucket,
                    &k.s3_key,
                    Duration::from_secs_f64(k.refresh_secs),
                    shutdown.child_token(),
                )
                .await,
            )
        }
    })
}

/// Cluster mode's view of the other replicas (`None` on a single node); it heartbeats until
/// `shutdown`.
async fn cluster(
    settings: &Settings,
    sdk: Option<&aws_config::SdkConfig>,
    listener: &TcpListener,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Arc<crate::cluster::Cluster>>> {
    let c = &settings.cluster;
    if !c.enabled {
        return Ok(None);
    }
    let sdk = sdk.context("cluster mode needs the AWS configuration")?;
    let id = if c.replica_id.is_empty() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "replica".into());
        format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
    } else {
        c.replica_id.clone()
    };
    let url = if c.advertise_url.is_empty() {
        format!("http://{}", listener.local_addr()?)
    } else {
        c.advertise_url.clone()
    };
    let leases = crate::cluster::DynamoLeases::new(
        crate::aws::dynamodb(sdk, &settings.aws),
        &settings.store.dynamodb_table,
        &id,
        Duration::from_secs_f64(c.lease_ttl_secs),
    );
    let cluster = Arc::new(crate::cluster::Cluster::new(
        Arc::new(leases),
        crate::cluster::Member { id, url },
    ));
    if let Err(e) = cluster.refresh_members().await {
        tracing::warn!(error = %e, "cannot join the cluster yet; retrying in the background");
    }
    tracing::info!(replica = %cluster.me().id, url = %cluster.me().url, "cluster mode");
    tokio::spawn(cluster.clone().run_membership(shutdown.clone()));
    Ok(Some(cluster))
}

fn publisher(settings: &Settings) -> anyhow::Result<Arc<dyn Publisher>> {
    Ok(match settings.pushpin.publish {
        PublishVia::Zmq => Arc::new(Metered(ZmqPublisher::connect(
            &settings.pushpin.zmq_push_specs,
        )?)),
        PublishVia::Http => Arc::new(Metered(HttpPublisher::new(
            &settings.pushpin.http_publish_urls,
        ))),
    })
}

/// Runs the service on `listener` until `shutdown` is cancelled, then drains: the HTTP server
/// stops accepting, pollers finish their current step, the stats reader exits.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let sdk = aws_config(&settings).await;
    let store = item_store(&settings, sdk.as_ref()).await?;
    let keys = key_store(&settings, sdk.as_ref(), &shutdown).await?;
    let discovery = discovery(&settings, sdk.as_ref());
    let (loaded, found) = match discovery.load().await {
        Ok((registry, _)) => (registry, true),
        // Lambda may be briefly unreachable: serve what else there is and keep trying.
        Err(e) if discovery.refreshes() => {
            tracing::error!(
                error = format!("{e:#}"),
                "fetcher discovery failed at startup; retrying in the background"
            );
            (Registry::default(), false)
        }
        Err(e) => return Err(e),
    };
    let registry = Arc::new(SharedRegistry::new(loaded));
    if discovery.refreshes() {
        tokio::spawn(discovery.refresh_periodically(registry.clone(), shutdown.clone(), found));
    }
    let demand = Arc::new(Demand::new(Duration::from_secs(
        settings.demand.hint_ttl_secs,
    )));
    let status = Arc::new(crate::status::StatusBoard::default());
    let budgets: Arc<crate::budget::Budgets> = Default::default();
    let ctx = PollerContext {
        keys,
        publisher: publisher(&settings)?,
        store: store.clone(),
        max_backoff: Duration::from_secs_f64(settings.fetchers.max_backoff_secs),
        budgets: budgets.clone(),
        last_polls: Default::default(),
        status: status.clone(),
    };
    // Without any of these the service answers but serves nothing: see `supervisor`.
    let essentials = Essentials::default();
    let stats_reader = essentials.spawn(
        "stats reader",
        stats::run_reader(
            settings.pushpin.stats_specs.clone(),
            demand.clone(),
            shutdown.clone(),
        ),
        &shutdown,
    );
    let cluster = cluster(&settings, sdk.as_ref(), &listener, &shutdown).await?;
    let (scheduler, scheduler_handle) =
        Scheduler::new(registry.clone(), demand.clone(), ctx, cluster);
    let scheduler = essentials.spawn("scheduler", scheduler.run(shutdown.clone()), &shutdown);

    let state = web::Data::new(AppState {
        registry,
        demand,
        scheduler: scheduler_handle,
        limits: Limits {
            max_subscriptions: settings.server.max_subscriptions_per_connection,
        },
        keep_alive_interval: settings.server.keep_alive_interval,
        sse_keep_alive_secs: settings.server.sse_keep_alive_secs,
        store,
        status,
        budgets,
        pushpin_control_urls: settings.pushpin.http_publish_urls.clone(),
    });
    let addr = listener.local_addr()?;
    let readiness = web::Data::new(essentials.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(readiness.clone())
            .app_data(web::PayloadConfig::new(1024 * 1024))
            .wrap(actix_web::middleware::from_fn(routes::request_span))
            .configure(routes::configure)
            .default_service(web::to(routes::not_found))
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
    let server_task = essentials.spawn(
        "HTTP server",
        async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        },
        &shutdown,
    );
    shutdown.cancelled().await;
    tracing::info!("shutting down");
    handle.stop(true).await;
    let _ = server_task.await;
    let _ = scheduler.await;
    let _ = stats_reader.await;
    essentials.check()?;
    Ok(())
}

/// Asks the backend listening on `listen` for `/healthz` (a wildcard address is reached on
/// loopback); an error unless it answers 200 within 3 s.
pub async fn check_health(addr: &std::net::SocketAddr) -> anyhow::Result<()> {
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let url = format!(
        "http://{}/healthz",
        std::net::SocketAddr::new(host, addr.port())
    );
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("no answer from {url}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "{url} answered {}",
        response.status()
    );
    println!("ok");
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
