//! The registry of channel types: every fetcher found, by metadata `name`. Built at startup
//! and, where fetchers can appear later (Lambda), rebuilt in the background and swapped in
//! whole; request handlers only ever read a snapshot.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::join_all;

use thiserror::Error;

use super::{FetchError, Fetcher, Metadata, MetadataError, ProcessFetcher, ProcessRuntime};

/// One channel type: its validated metadata and the fetcher that serves it.
pub struct FetcherEntry {
    pub metadata: Metadata,
    pub fetcher: Arc<dyn Fetcher>,
}

/// All known channel types. Built once at startup; lookups never touch a fetcher.
#[derive(Default, Clone)]
pub struct Registry {
    by_name: BTreeMap<String, Arc<FetcherEntry>>,
}

impl Registry {
    /// A registry of already-validated entries (tests and embedders).
    pub fn from_entries(entries: impl IntoIterator<Item = FetcherEntry>) -> Registry {
        Registry {
            by_name: entries
                .into_iter()
                .map(|e| (e.metadata.name.clone(), Arc::new(e)))
                .collect(),
        }
    }

    /// Every fetcher gets an upstream budget: `overrides` by channel name, else its declared
    /// `rate_limit`, else `default`.
    pub fn with_rate_limits(
        self,
        default: &[(Duration, u64)],
        overrides: &HashMap<String, Vec<(Duration, u64)>>,
    ) -> Registry {
        let by_name = self
            .by_name
            .into_iter()
            .map(|(name, entry)| {
                let budget = match overrides.get(&name) {
                    Some(o) => o.clone(),
                    None if entry.metadata.rate_limit.is_empty() => default.to_vec(),
                    None => return (name, entry),
                };
                let mut metadata = entry.metadata.clone();
                metadata.rate_limit = budget;
                let fetcher = entry.fetcher.clone();
                (name, Arc::new(FetcherEntry { metadata, fetcher }))
            })
            .collect();
        Registry { by_name }
    }

    /// Every fetcher that takes free-form params (no `params` in its metadata) gets the
    /// settings' bounds on them.
    pub fn with_free_params(self, bounds: crate::channel::FreeParams) -> Registry {
        use crate::channel::ParamRules;
        let by_name = self
            .by_name
            .into_iter()
            .map(|(name, entry)| match &entry.metadata.params {
                ParamRules::Free(b) if *b != bounds => {
                    let mut metadata = entry.metadata.clone();
                    metadata.params = ParamRules::Free(bounds);
                    let fetcher = entry.fetcher.clone();
                    (name, Arc::new(FetcherEntry { metadata, fetcher }))
                }
                _ => (name, entry),
            })
            .collect();
        Registry { by_name }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<FetcherEntry>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Registers fetchers in order; a fetcher whose metadata is invalid or whose name is taken
    /// is skipped with an error log naming it and the field.
    pub async fn load(
        fetchers: Vec<Arc<dyn Fetcher>>,
        poll_overrides: &HashMap<String, Duration>,
    ) -> Registry {
        Registry::load_reporting(fetchers, poll_overrides).await.0
    }

    /// Like [`Registry::load`], also returning, per fetcher label, its channel name or why it
    /// was skipped (for `restream fetchers list`).
    pub async fn load_reporting(
        fetchers: Vec<Arc<dyn Fetcher>>,
        poll_overrides: &HashMap<String, Duration>,
    ) -> (Registry, LoadReport) {
        // Concurrent, so startup takes as long as the slowest fetcher rather than the sum.
        let answers = join_all(fetchers.iter().map(|f| f.metadata())).await;
        let mut registry = Registry::default();
        let mut report = Vec::new();
        for (fetcher, answer) in fetchers.into_iter().zip(answers) {
            let label = fetcher.label().to_string();
            // A Lambda-style error object means the fetcher crashed, not that it lacks a name.
            let answer =
                answer.and_then(|v| match v.get("errorMessage").and_then(|m| m.as_str()) {
                    Some(message) => Err(super::FetchError::Crashed {
                        fetcher: label.clone(),
                        detail: message.chars().take(500).collect(),
                    }),
                    None => Ok(v),
                });
            let mut metadata = match answer.map(|v| Metadata::from_value(&v)) {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    tracing::error!(fetcher = %label, error = %e, "invalid fetcher metadata; fetcher skipped");
                    report.push((label, Err(LoadError::InvalidMetadata(e))));
                    continue;
                }
                Err(e) => {
                    if let Some(hint) = match &e {
                        FetchError::Crashed { detail, .. } => super::deps::import_hint(detail),
                        _ => None,
                    } {
                        tracing::warn!(fetcher = %label, %hint, "fetcher cannot import a module");
                    }
                    tracing::error!(fetcher = %label, error = %e, "metadata call failed; fetcher skipped");
                    report.push((label, Err(LoadError::MetadataCall(e))));
                    continue;
                }
            };
            if let Some(every) = poll_overrides.get(&metadata.name) {
                metadata.poll_interval = *every;
            }
            if registry.by_name.contains_key(&metadata.name) {
                tracing::error!(fetcher = %label, name = %metadata.name, "channel name already taken by another fetcher; fetcher skipped");
                report.push((label, Err(LoadError::NameTaken(metadata.name))));
                continue;
            }
            tracing::info!(fetcher = %label, name = %metadata.name, poll_interval_s = metadata.poll_interval.as_secs_f64(), "fetcher loaded");
            report.push((label, Ok(metadata.name.clone())));
            registry.by_name.insert(
                metadata.name.clone(),
                Arc::new(FetcherEntry { metadata, fetcher }),
            );
        }
        (registry, report)
    }
}

/// Per fetcher label, its channel name or why it was skipped.
pub type LoadReport = Vec<(String, Result<String, LoadError>)>;

/// Why a fetcher was skipped.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("invalid metadata: {0}")]
    InvalidMetadata(#[source] MetadataError),
    #[error("metadata call failed: {0}")]
    MetadataCall(#[source] FetchError),
    #[error("name {0} already taken")]
    NameTaken(String),
}

impl Registry {
    /// The registry after a re-discovery: what `fresh` found, plus the entries of `previous`
    /// whose fetcher failed this time (a throttled or briefly failing `metadata` call must not
    /// make a channel type vanish; a fetcher that is gone from the listing does).
    pub fn refreshed(previous: &Registry, mut fresh: Registry, report: &LoadReport) -> Registry {
        let failed: std::collections::HashSet<&str> = report
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(label, _)| label.as_str())
            .collect();
        for (name, entry) in &previous.by_name {
            if failed.contains(entry.fetcher.label()) && !fresh.by_name.contains_key(name) {
                fresh.by_name.insert(name.clone(), entry.clone());
            }
        }
        fresh
    }
}

/// The registry in use. Readers take a cheap snapshot and never wait for a discovery.
pub struct SharedRegistry(RwLock<Arc<Registry>>);

impl SharedRegistry {
    pub fn new(registry: Registry) -> SharedRegistry {
        SharedRegistry(RwLock::new(Arc::new(registry)))
    }

    pub fn current(&self) -> Arc<Registry> {
        self.0.read().expect("registry lock").clone()
    }

    pub fn replace(&self, registry: Registry) {
        *self.0.write().expect("registry lock") = Arc::new(registry);
    }
}

/// Process fetchers: every folder of `dir` holding a `main.py`, in name order, all sharing
/// `runtime` (and so its cap on concurrent processes).
pub fn discover_process_fetchers(
    dir: &Path,
    runtime: &ProcessRuntime,
) -> std::io::Result<Vec<Arc<dyn Fetcher>>> {
    let mut dirs: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("main.py").is_file())
        .collect();
    dirs.sort();
    for d in &dirs {
        let label = d.file_name().map(|n| n.to_string_lossy().into_owned());
        super::deps::warn_if_missing(d, label.as_deref().unwrap_or_default());
    }
    Ok(dirs
        .into_iter()
        .map(|d| Arc::new(ProcessFetcher::new(&d, runtime.clone())) as Arc<dyn Fetcher>)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetcher::{FetchError, FetchOutcome, FetchRequest};
    use async_trait::async_trait;
    use serde_json::{json, Value};

    /// Answers `metadata` with `name`, or fails.
    struct Named(&'static str, Option<&'static str>);

    #[async_trait]
    impl Fetcher for Named {
        fn label(&self) -> &str {
            self.0
        }
        async fn metadata(&self) -> Result<Value, FetchError> {
            match self.1 {
                Some(name) => Ok(json!({"name": name, "id_field": "id", "poll_interval": 60})),
                None => Err(FetchError::Unavailable {
                    fetcher: self.0.into(),
                    detail: "throttled during discovery".into(),
                }),
            }
        }
        async fn fetch(&self, _: FetchRequest<'_>) -> Result<FetchOutcome, FetchError> {
            unreachable!()
        }
    }

    fn fetchers(list: &[(&'static str, Option<&'static str>)]) -> Vec<Arc<dyn Fetcher>> {
        list.iter()
            .map(|(l, n)| Arc::new(Named(l, *n)) as Arc<dyn Fetcher>)
            .collect()
    }

    #[tokio::test]
    async fn a_refresh_keeps_fetchers_that_failed_and_drops_vanished_ones() {
        let none = HashMap::new();
        let first = Registry::load(
            fetchers(&[
                ("a", Some("alpha")),
                ("b", Some("beta")),
                ("c", Some("gamma")),
            ]),
            &none,
        )
        .await;
        // `a` fails this time, `c` is gone from the listing, `d` is new.
        let (fresh, report) = Registry::load_reporting(
            fetchers(&[("a", None), ("b", Some("beta")), ("d", Some("delta"))]),
            &none,
        )
        .await;
        let next = Registry::refreshed(&first, fresh, &report);
        assert_eq!(
            next.names().collect::<Vec<_>>(),
            vec!["alpha", "beta", "delta"]
        );
        let shared = SharedRegistry::new(first);
        let before = shared.current();
        shared.replace(next);
        assert!(before.get("gamma").is_some(), "old snapshots stay valid");
        assert!(shared.current().get("gamma").is_none());
    }
}
