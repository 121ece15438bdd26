//! Finding fetchers of every configured kind (process, declarative http, Lambda): at startup,
//! and for Lambda again in the background, since functions are deployed while we run. A
//! discovery never runs on the request path; the registry is swapped in whole.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::aws::LambdaClient;
use crate::config::{FetcherKind, Fetchers};
use crate::fetcher::sandbox::ProcessSlots;
use crate::fetcher::{
    http, registry, Fetcher, LoadReport, ProcessRuntime, Registry, SharedRegistry,
};

/// How to find fetchers, from the settings.
pub struct Discovery {
    settings: Fetchers,
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    lambda: Option<LambdaClient>,
    /// One for every discovery, so every process fetcher found shares its cap.
    process: ProcessRuntime,
    /// The bounds on free-form params (`limits.max_free_param*`).
    free_params: crate::channel::FreeParams,
    /// The `[declarative]` limits (one per-host budget for every declarative channel).
    http_limits: http::HttpLimits,
}

/// A failed listing is retried sooner than a routine refresh.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

impl Discovery {
    /// `lambda` is required when `settings.kinds` has `lambda`.
    pub fn new(settings: &Fetchers, lambda: Option<LambdaClient>) -> Discovery {
        let process = ProcessRuntime {
            env: settings.process_env.clone(),
            slots: ProcessSlots::new(settings.max_processes),
            mode: settings.process_mode,
            workers: settings.workers.clone(),
            cap: crate::fetcher::WorkerCap::new(settings.max_workers),
            ..ProcessRuntime::new(&settings.python, settings.timeout)
        };
        Discovery {
            settings: settings.clone(),
            lambda,
            process,
            free_params: crate::channel::FreeParams::default(),
            http_limits: http::HttpLimits::default(),
        }
    }

    /// Fetchers without declared params take free-form ones within `bounds`.
    pub fn with_free_params(mut self, bounds: crate::channel::FreeParams) -> Discovery {
        self.free_params = bounds;
        self
    }

    /// With the `[declarative]` settings' limits (default: their defaults).
    pub fn with_declarative(mut self, settings: &crate::config::Declarative) -> Discovery {
        self.http_limits = http::HttpLimits::new(settings);
        self
    }

    fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// Every fetcher, in the order of `fetchers.kinds` (on a name clash the first wins).
    pub async fn fetchers(&self) -> anyhow::Result<Vec<Arc<dyn Fetcher>>> {
        let f = &self.settings;
        let mut out: Vec<Arc<dyn Fetcher>> = Vec::new();
        for kind in &f.kinds {
            match kind {
                FetcherKind::Process => out.extend(
                    registry::discover_process_fetchers(&f.dir, &self.process).with_context(
                        || format!("cannot read fetchers folder {}", f.dir.display()),
                    )?,
                ),
                FetcherKind::Http => {
                    out.extend(
                        http::discover_with(&f.channels_dir, self.timeout(), &self.http_limits)
                            .into_iter()
                            .map(|h| Arc::new(h) as Arc<dyn Fetcher>),
                    );
                    out.extend(
                        crate::push::spec::discover(&f.channels_dir)
                            .into_iter()
                            .map(|p| Arc::new(p) as Arc<dyn Fetcher>),
                    );
                }
                FetcherKind::Lambda => out.extend(self.lambda_fetchers().await?),
            }
        }
        Ok(out)
    }

    /// The Lambda functions named `fetchers.lambda_prefix*`.
    #[cfg(feature = "aws")]
    async fn lambda_fetchers(&self) -> anyhow::Result<Vec<Arc<dyn Fetcher>>> {
        let prefix = &self.settings.lambda_prefix;
        let client = self
            .lambda
            .clone()
            .context("fetchers.kinds has lambda but no Lambda client was built")?;
        let found = crate::fetcher::lambda::discover(client, prefix, self.timeout())
            .await
            .with_context(|| format!("cannot list Lambda functions named {prefix}*"))?;
        Ok(found
            .into_iter()
            .map(|l| Arc::new(l) as Arc<dyn Fetcher>)
            .collect())
    }

    #[cfg(not(feature = "aws"))]
    async fn lambda_fetchers(&self) -> anyhow::Result<Vec<Arc<dyn Fetcher>>> {
        anyhow::bail!(crate::aws::unavailable("fetchers.kinds has \"lambda\""))
    }

    /// Finds every fetcher and calls `metadata` on each (concurrently).
    pub async fn load(&self) -> anyhow::Result<(Registry, LoadReport)> {
        let fetchers = self.fetchers().await?;
        let overrides = &self.settings.poll_interval_overrides;
        let (registry, report) = Registry::load_reporting(fetchers, overrides).await;
        let registry = registry
            .with_rate_limits(
                &self.settings.default_rate_limit,
                &self.settings.rate_limit_overrides,
            )
            .with_free_params(self.free_params);
        if registry.is_empty() {
            tracing::warn!(kinds = ?self.settings.kinds, "no fetchers loaded; every subscribe will get unknown_channel");
        }
        Ok((registry, report))
    }

    /// Whether fetchers can appear or go while we run (Lambda deployments).
    pub fn refreshes(&self) -> bool {
        self.settings.kinds.contains(&FetcherKind::Lambda)
    }

    /// Re-discovers every `fetchers.refresh` until `shutdown`, swapping the result into
    /// `shared`. A fetcher whose `metadata` fails this round keeps its previous entry; a
    /// failed listing keeps the whole registry and is retried sooner.
    /// `loaded` says whether the startup discovery worked (if not, the first retry is soon).
    pub async fn refresh_periodically(
        self,
        shared: Arc<SharedRegistry>,
        shutdown: CancellationToken,
        loaded: bool,
    ) {
        let every = self.settings.refresh;
        let mut wait = if loaded {
            every
        } else {
            RETRY_AFTER_FAILURE.min(every)
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = match self.load().await {
                Ok((fresh, report)) => {
                    let next = Registry::refreshed(&shared.current(), fresh, &report);
                    let names: Vec<&str> = next.names().collect();
                    tracing::info!(channels = ?names, "fetchers re-discovered");
                    shared.replace(next);
                    every
                }
                Err(e) => {
                    tracing::error!(
                        error = format!("{e:#}"),
                        retry_in_s = RETRY_AFTER_FAILURE.as_secs(),
                        "fetcher discovery failed; keeping the known fetchers"
                    );
                    RETRY_AFTER_FAILURE.min(every)
                }
            };
        }
    }
}
