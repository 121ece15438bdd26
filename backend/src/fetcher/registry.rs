//! The registry of channel types: every fetcher found at startup, by metadata `name`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use super::{Fetcher, Metadata, ProcessFetcher};

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
        poll_overrides: &HashMap<String, f64>,
    ) -> Registry {
        Registry::load_reporting(fetchers, poll_overrides).await.0
    }

    /// Like [`Registry::load`], also returning, per fetcher label, its channel name or why it
    /// was skipped (for `restream fetchers list`).
    pub async fn load_reporting(
        fetchers: Vec<Arc<dyn Fetcher>>,
        poll_overrides: &HashMap<String, f64>,
    ) -> (Registry, Vec<(String, Result<String, String>)>) {
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
                    report.push((label, Err(format!("invalid metadata: {e}"))));
                    continue;
                }
                Err(e) => {
                    tracing::error!(fetcher = %label, error = %e, "metadata call failed; fetcher skipped");
                    report.push((label, Err(format!("metadata call failed: {e}"))));
                    continue;
                }
            };
            if let Some(secs) = poll_overrides.get(&metadata.name) {
                metadata.poll_interval = Duration::from_secs_f64(*secs);
            }
            if registry.by_name.contains_key(&metadata.name) {
                tracing::error!(fetcher = %label, name = %metadata.name, "channel name already taken by another fetcher; fetcher skipped");
                report.push((label, Err(format!("name {} already taken", metadata.name))));
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

/// Process fetchers: every folder of `dir` holding a `main.py`, in name order.
pub fn discover_process_fetchers(
    dir: &Path,
    python: &str,
    timeout: Duration,
) -> std::io::Result<Vec<Arc<dyn Fetcher>>> {
    let mut dirs: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("main.py").is_file())
        .collect();
    dirs.sort();
    Ok(dirs
        .into_iter()
        .map(|d| Arc::new(ProcessFetcher::new(&d, python, timeout)) as Arc<dyn Fetcher>)
        .collect())
}
