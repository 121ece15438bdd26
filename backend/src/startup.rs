//! Wiring: builds every part from settings and runs the HTTP server, stats reader and scheduler
//! under one cancellation tree.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::auth::{Auth, LiveKeys, Policy, Rules, JWT_SECRET, SECRETS_ENTRY};
use crate::aws::Aws;
use crate::config::{DynamodbSettings, KeysSettings, PublishVia, Settings, StoreKind};
use crate::connection::Limits;
use crate::demand::Demand;
use crate::discovery::Discovery;
use crate::fetcher::{LoadReport, Registry, SharedRegistry};
use crate::keys::{FileKeyStore, KeyStore};
use crate::poller::PollerContext;
use crate::pushpin::publisher::{HttpPublisher, Metered, Paced, Publisher, ZmqPublisher};
use crate::pushpin::stats;
use crate::routes::{self, AppState};
use crate::scheduler::Scheduler;
use crate::store::{ItemStore, MemoryStore, RedbStore};
use crate::supervisor::Essentials;

/// How fetchers are found, with a Lambda client when `fetchers.kinds` has `lambda`.
pub async fn discovery(settings: &Settings, aws: &Aws) -> Discovery {
    #[cfg(feature = "aws")]
    let lambda = match settings
        .fetchers
        .kinds
        .contains(&crate::config::FetcherKind::Lambda)
    {
        true => Some(aws.lambda(settings.fetchers.timeout).await),
        false => None,
    };
    // Without AWS, settings with Lambda fetchers are refused when they are read.
    #[cfg(not(feature = "aws"))]
    let (lambda, _) = (None, aws);
    Discovery::new(&settings.fetchers, lambda)
        .with_free_params(settings.limits.free_params())
        .with_declarative(&settings.declarative)
}

/// Every fetcher named by the settings, with a load report per fetcher (for the CLI).
pub async fn load_registry_reporting(
    settings: &Settings,
) -> anyhow::Result<(Registry, LoadReport)> {
    let aws = Aws::new(&settings.aws);
    discovery(settings, &aws).await.load().await
}

/// The item store named by `store.kind`.
pub async fn item_store(settings: &Settings, aws: &Aws) -> anyhow::Result<Arc<dyn ItemStore>> {
    let capacity = settings.store.log_capacity;
    let retention = settings.store.retention;
    Ok(match &settings.store.kind {
        StoreKind::Embedded { path } => Arc::new(
            RedbStore::open(path, capacity)
                .context("cannot open the item store (store.path)")?
                .with_retention(retention),
        ),
        StoreKind::Memory => Arc::new(MemoryStore::new(capacity).with_retention(retention)),
        #[cfg(not(feature = "aws"))]
        StoreKind::Dynamodb(_) => {
            let _ = aws;
            anyhow::bail!(crate::aws::unavailable("store.kind = \"dynamodb\""))
        }
        #[cfg(feature = "aws")]
        StoreKind::Dynamodb(d) => {
            let store = crate::store::DynamoItemStore::connect(
                aws.dynamodb().await,
                &d.table,
                capacity,
                d.log_ttl,
                d.create_table,
            )
            .await
            .context("cannot use the DynamoDB item store (store.dynamodb_table)")?
            .with_retention(retention);
            tracing::info!(table = %d.table, "item store: dynamodb");
            Arc::new(store)
        }
    })
}

/// The key store named by `keys.kind`; an S3 one refreshes until `shutdown`.
pub async fn key_store(
    settings: &Settings,
    aws: &Aws,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<dyn KeyStore>> {
    Ok(match &settings.keys {
        KeysSettings::File { file } => {
            Arc::new(FileKeyStore::open(file).context("cannot use the keys file (keys.file)")?)
        }
        #[cfg(not(feature = "aws"))]
        KeysSettings::S3 { .. } => {
            let _ = (aws, shutdown);
            anyhow::bail!(crate::aws::unavailable("keys.kind = \"s3\""))
        }
        #[cfg(feature = "aws")]
        KeysSettings::S3 {
            bucket,
            key,
            refresh,
        } => Arc::new(
            crate::keys::S3KeyStore::start(
                aws.s3().await,
                bucket,
                key,
                *refresh,
                shutdown.child_token(),
            )
            .await,
        ),
    })
}

/// Cluster mode's view of the other replicas (`None` on a single node); it heartbeats until
/// `shutdown`, keeping `pushpins` on the Pushpins the other replicas advertise.
#[cfg(feature = "aws")]
async fn cluster(
    settings: &Settings,
    aws: &Aws,
    listener: &TcpListener,
    shutdown: &CancellationToken,
    pushpins: crate::cluster::RemotePushpins,
) -> anyhow::Result<Option<Arc<crate::cluster::Cluster>>> {
    let StoreKind::Dynamodb(DynamodbSettings {
        table,
        cluster: Some(c),
        ..
    }) = &settings.store.kind
    else {
        return Ok(None);
    };
    let member = member(c, listener).await?;
    let leases = crate::cluster::DynamoLeases::new(
        aws.dynamodb().await,
        table,
        &member.id,
        c.lease_ttl,
        c.secret.clone(),
    );
    let cluster = crate::cluster::Cluster::new(Arc::new(leases), member).with_pushpins(pushpins);
    let cluster = Arc::new(cluster);
    // Before the HTTP server answers (so before a Pushpin waiting for this backend to be
    // healthy takes clients): the others learn of this replica and its Pushpin.
    if let Err(e) = cluster.refresh_members().await {
        tracing::warn!(error = %e, "cannot join the cluster yet; retrying in the background");
    }
    let me = cluster.me();
    tracing::info!(replica = %me.id, url = %me.url, pushpin = ?me.pushpin, "cluster mode");
    tokio::spawn(cluster.clone().run_membership(shutdown.clone()));
    Ok(Some(cluster))
}

/// Cluster mode needs DynamoDB: settings asking for it are refused when they are read.
#[cfg(not(feature = "aws"))]
async fn cluster(
    _settings: &Settings,
    _aws: &Aws,
    _listener: &TcpListener,
    _shutdown: &CancellationToken,
    _pushpins: crate::cluster::RemotePushpins,
) -> anyhow::Result<Option<Arc<crate::cluster::Cluster>>> {
    Ok(None)
}

/// This replica as the others see it; unset names and URLs get defaults.
#[cfg(feature = "aws")]
async fn member(
    c: &crate::config::ClusterSettings,
    listener: &TcpListener,
) -> anyhow::Result<crate::cluster::Member> {
    let id = c.replica_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "replica".into());
        format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
    });
    Ok(crate::cluster::advertise::me(id, c, listener.local_addr()?).await?)
}

/// The access policy and the token keys (the key store's `_restream.jwt_secret`, the JWKS),
/// loaded now and refreshed until `shutdown`.
pub async fn auth(
    settings: &Settings,
    keys: Arc<dyn KeyStore>,
    shutdown: &CancellationToken,
) -> Arc<Auth> {
    let a = &settings.auth;
    let live = Arc::new(LiveKeys::new(Some(keys), a.jwks.clone(), a.min_refresh));
    live.refresh().await;
    let needs_tokens = a.default_access == crate::auth::Access::Token
        || a.access.values().any(|x| *x == crate::auth::Access::Token);
    if live.current().is_empty() {
        let hint = "set the key store's _restream.jwt_secret, auth.jwks_file or auth.jwks_url";
        match needs_tokens {
            true => tracing::warn!(
                hint,
                "channels need tokens but no key is loaded: every token is refused"
            ),
            false => tracing::debug!(hint, "no token keys loaded"),
        }
    }
    tokio::spawn(live.clone().run_refresher(a.refresh, shutdown.clone()));
    Arc::new(Auth {
        policy: Policy {
            default_access: a.default_access,
            overrides: a.access.clone(),
        },
        keys: live,
        rules: Rules {
            audience: a.audience.clone(),
            issuer: a.issuer.clone(),
        },
        verified: Default::default(),
    })
}

/// `restream token`: an HS256 token for `channels` (patterns) valid for `ttl`, signed with
/// the key store's `_restream.jwt_secret`.
pub async fn mint_token(
    settings: &Settings,
    channels: &[String],
    publish: &[String],
    sub: Option<&str>,
    ttl: Duration,
) -> anyhow::Result<String> {
    use secrecy::ExposeSecret;
    let shutdown = CancellationToken::new();
    let store = key_store(settings, &Aws::new(&settings.aws), &shutdown).await?;
    let keys = store.keys_for(SECRETS_ENTRY).await;
    shutdown.cancel();
    let keys = keys.context("cannot read the key store")?;
    let secret = keys.get(JWT_SECRET).with_context(|| {
        format!("the key store has no {{\"{SECRETS_ENTRY}\": {{\"{JWT_SECRET}\": \"...\"}}}} entry")
    })?;
    let exp = crate::auth::now_unix() + ttl.as_secs();
    crate::auth::mint::hs256_with_publish(
        secret.expose_secret().as_bytes(),
        sub,
        channels,
        publish,
        exp,
    )
    .map_err(anyhow::Error::msg)
}

fn publisher(settings: &Settings) -> anyhow::Result<Arc<dyn Publisher>> {
    // Long bursts go in paced chunks: Pushpin drops WebSocket messages a connection's buffer
    // cannot take at once (`pushpin/publisher/paced.rs`).
    let burst = settings.pushpin.ws_burst_bytes;
    Ok(match settings.pushpin.publish {
        PublishVia::Zmq => Arc::new(Paced::new(
            Metered(ZmqPublisher::connect(&settings.pushpin.zmq_push_specs)?),
            burst,
        )),
        PublishVia::Http => Arc::new(Paced::new(
            Metered(HttpPublisher::new(&settings.pushpin.http_publish_urls)),
            burst,
        )),
    })
}

/// Who may call, from the settings: Pushpin's key is required (see docs/security/edge.md).
fn edge_trust(settings: &Settings) -> anyhow::Result<crate::edge::EdgeTrust> {
    let key = settings.pushpin.sig_key.as_ref().context(
        "pushpin.sig_key (or pushpin.sig_key_file) is required: Pushpin signs every request it \
         proxies with this key (its sig_key) and the backend trusts only signed ones. Generate \
         one (openssl rand -hex 32) and give the same value to Pushpin and the backend; \
         `restream dev` makes one per run",
    )?;
    let cluster_secret = match &settings.store.kind {
        StoreKind::Dynamodb(DynamodbSettings {
            cluster: Some(c), ..
        }) => Some(crate::edge::ClusterSecret::new(c.secret.clone())),
        _ => None,
    };
    Ok(crate::edge::EdgeTrust {
        origins: settings.server.cors_origins.clone(),
        grip_sig: Some(crate::edge::GripSigKey::new(&key.load()?)),
        cluster_secret,
    })
}

/// The archive sinks `[archive]` configures and their archiver, running until `shutdown`
/// (in cluster mode only while this replica holds the archiver lease); `None` without any
/// sink target.
async fn archive(
    settings: &Settings,
    store: Arc<dyn ItemStore>,
    aws: &Aws,
    cluster: Option<&crate::cluster::Cluster>,
    shutdown: &CancellationToken,
) -> Option<(crate::archive::Setup, tokio::task::JoinHandle<()>)> {
    let targets = crate::archive::Setup::targets(&settings.archive, aws).await;
    let setup = crate::archive::Setup::new(&settings.archive, store, targets)?;
    let mut archiver = setup.archiver();
    if let Some(cluster) = cluster {
        archiver = archiver.with_leader(crate::archive::Leader::new(cluster.leases_arc()));
    }
    let kinds: Vec<&str> = setup.targets.keys().map(|k| k.as_str()).collect();
    tracing::info!(sinks = ?kinds, read_from = ?settings.archive.read_sink(), "archive sinks");
    let task = tokio::spawn(archiver.run(shutdown.clone()));
    // Every replica reads the sinks' checkpoints: its pollers hold back what is not archived.
    tokio::spawn(
        setup
            .holds
            .clone()
            .run(setup.book.clone(), shutdown.clone()),
    );
    Some((setup, task))
}

/// Runs the service on `listener` until `shutdown` is cancelled, then drains: the HTTP server
/// stops accepting, pollers finish their current step, the stats reader exits.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let aws = Aws::new(&settings.aws);
    let edge = edge_trust(&settings)?;
    // Bound first: a port in use is a startup error, not a replica without metrics.
    let metrics_listener = settings
        .server
        .metrics_listen
        .map(routes::private::bind)
        .transpose()?;
    let store = item_store(&settings, &aws).await?;
    let keys = key_store(&settings, &aws, &shutdown).await?;
    let auth = auth(&settings, keys.clone(), &shutdown).await;
    let publisher = publisher(&settings)?;
    let discovery = discovery(&settings, &aws).await;
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
    let demand = Arc::new(Demand::new(settings.demand.hint_ttl));
    let status = Arc::new(crate::status::StatusBoard::default());
    let budgets: Arc<crate::budget::Budgets> = Default::default();
    let last_polls: Arc<std::sync::Mutex<_>> = Default::default();
    tokio::spawn(
        crate::janitor::Janitor {
            status: status.clone(),
            last_polls: Arc::clone(&last_polls),
            store: store.clone(),
            keep: settings.state.inactive_channel_memory,
        }
        .run(shutdown.clone()),
    );
    let snapshots = Arc::new(crate::snapshot_cache::SnapshotCache::new(
        settings.state.snapshot_cache_bytes,
    ));
    let mut ctx = PollerContext {
        keys: keys.clone(),
        publisher: publisher.clone(),
        store: store.clone(),
        max_backoff: settings.fetchers.max_backoff,
        budgets: budgets.clone(),
        last_polls,
        status: status.clone(),
        retentions: crate::history::Retentions::from_settings(
            &settings.history,
            settings.store.log_capacity,
        ),
        snapshots: snapshots.clone(),
    };
    // Without any of these the service answers but serves nothing: see `supervisor`.
    let essentials = Essentials::default();
    // Cluster mode joins before the stats reader starts: joining can fail (the advertise host),
    // and a running reader thread would keep the process from exiting with the error.
    let (remote_stats, remote_stats_receiver) = stats::remote_stats();
    let pushpins =
        crate::cluster::RemotePushpins::new(&settings.pushpin, publisher.clone(), remote_stats);
    let cluster = cluster(&settings, &aws, &listener, &shutdown, pushpins).await?;
    let stats_reader = essentials.spawn(
        "stats reader",
        stats::run_reader(
            settings.pushpin.stats_specs.clone(),
            remote_stats_receiver,
            demand.clone(),
            shutdown.clone(),
        ),
        &shutdown,
    );
    let (archive, archiver) = match archive(
        &settings,
        store.clone(),
        &aws,
        cluster.as_deref(),
        &shutdown,
    )
    .await
    {
        Some((setup, task)) => (Some(setup), Some(task)),
        None => (None, None),
    };
    ctx.retentions.holds = archive.as_ref().map(|setup| setup.holds.clone());
    let (scheduler, scheduler_handle) =
        Scheduler::new(registry.clone(), demand.clone(), ctx, cluster);
    let scheduler = scheduler
        .with_channel_caps(settings.limits.clone())
        .with_push_settings(settings.push.clone());
    let scheduler = essentials.spawn("scheduler", scheduler.run(shutdown.clone()), &shutdown);

    let publishing = crate::push::Publishing::new(
        scheduler_handle.clone(),
        registry.clone(),
        settings.push.clone(),
    );
    // Push channels fed by SQS: competing consumers in every replica, not essential tasks.
    #[cfg(feature = "aws")]
    {
        let queued = crate::push::queue::queued_channels(&registry.current());
        if !queued.is_empty() {
            crate::push::queue::spawn(
                queued,
                aws.sqs().await,
                publishing.clone(),
                registry.clone(),
                &shutdown,
            );
        }
    }
    #[cfg(not(feature = "aws"))]
    {
        let current = registry.current();
        let queued = current.names().filter(|name| {
            let spec = current.get(name).and_then(|e| e.fetcher.push());
            spec.is_some_and(|s| s.queue.is_some())
        });
        for name in queued {
            let why = crate::aws::unavailable("a push channel's [queue] (SQS)");
            tracing::warn!(channel = name, "no queue consumer: {why}");
        }
    }
    let state = web::Data::new(AppState {
        registry,
        demand: demand.clone(),
        scheduler: scheduler_handle,
        limits: Limits {
            max_subscriptions: settings.server.max_subscriptions_per_connection.get(),
            client_keep_alive: settings.server.client_keep_alive,
        },
        keep_alive_interval: settings.server.keep_alive_interval,
        sse_keep_alive: settings.server.sse_keep_alive,
        store,
        status,
        budgets,
        pushpin_control_urls: settings.pushpin.http_publish_urls.clone(),
        read_cache: Arc::new(crate::read_cache::ReadCache::new(
            settings.state.read_cache_items,
        )),
        snapshots,
        items_page_default: settings.state.items_page_default,
        items_page_max: settings.state.items_page_max,
        edge,
        guard: Arc::new(crate::abuse::Guard::new(
            settings.limits.clone(),
            demand.clone(),
        )),
        auth,
        publisher,
        publishing,
        keys,
        history: crate::history::HistoryService {
            settings: settings.history.clone(),
            archive: archive.as_ref().and_then(|setup| setup.reader()),
            sinks: archive.as_ref().map(|setup| setup.control()),
        },
        admin: settings.admin.clone(),
    });
    let emf = settings.log.emf().map(|emf| {
        let sources = crate::telemetry::emf::Sources {
            demand: demand.clone(),
            status: state.status.clone(),
        };
        crate::telemetry::emf::Reporter::start(emf, sources)
    });
    let private = metrics_listener
        .map(|l| routes::private::Private::start(l, state.clone()))
        .transpose()?;
    let addr = listener.local_addr()?;
    let readiness = web::Data::new(essentials.clone());
    let budget_saving = (state.budgets.clone(), state.store.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(readiness.clone())
            .app_data(web::PayloadConfig::new(1024 * 1024))
            .wrap(actix_web::middleware::from_fn(routes::request_span))
            .configure(routes::configure)
            .default_service(web::to(routes::not_found))
    })
    .workers(settings.server.workers.get())
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
    // Stopped after the pollers, so its last save has every call.
    let stop_budgets = CancellationToken::new();
    let budget_saver = tokio::spawn(budget_saving.0.persist(
        budget_saving.1,
        settings.fetchers.budget_save,
        stop_budgets.clone(),
    ));
    shutdown.cancelled().await;
    tracing::info!("shutting down");
    handle.stop(true).await;
    let _ = server_task.await;
    let _ = scheduler.await;
    stop_budgets.cancel();
    let _ = budget_saver.await;
    let _ = stats_reader.await;
    if let Some(archiver) = archiver {
        let _ = archiver.await;
    }
    // Scrapeable while draining; the last EMF line counts the drain.
    if let Some(private) = private {
        private.stop().await;
    }
    if let Some(emf) = emf {
        emf.finish().await;
    }
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
