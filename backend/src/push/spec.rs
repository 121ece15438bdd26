//! A push channel file (`channels/<name>.toml` with `kind = "push"`): its fields, the checks
//! made when it is loaded, and the registry entry it becomes (a [`Fetcher`] that is never
//! polled: subscribes, the catalog and the status API see its metadata like any channel's).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::channel::ParamSpec;
use crate::fetcher::{FetchError, FetchOutcome, FetchRequest, Fetcher};

/// Events kept in an `events` channel's snapshot unless `keep` says.
pub const DEFAULT_KEEP: usize = 100;
/// The most `keep` may say.
pub const MAX_KEEP: usize = 10_000;
/// The id field of `events` channels: the server assigns every event's id.
pub const EVENT_ID_FIELD: &str = "id";

/// How a push channel treats what is published to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushMode {
    /// A keyed set, like a polled channel: new, updated (with a patch), removed.
    Items,
    /// An append-only stream: every message is a `new` event
    /// `{"id": "<zero-padded seq>", "time": "<RFC 3339>", "data": <message>}`; the snapshot
    /// is the last `keep` events.
    Events,
}

/// Where an SQS-fed push channel reads from, and how a message maps to a channel and an item.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    /// The queue URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`).
    #[serde(default)]
    pub url: String,
    /// An environment variable that overrides `url` (deployments, tests).
    #[serde(default)]
    pub url_env: Option<String>,
    /// Channel params taken from the message body: param name → JSON pointer.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// JSON pointer to the item (items mode) or the event (events mode) in the message body;
    /// `""` is the whole body.
    #[serde(default)]
    pub item: String,
    /// Where a message that cannot be mapped goes; empty = left to the queue's redrive policy.
    #[serde(default)]
    pub dead_letter_url: String,
    #[serde(default)]
    pub dead_letter_url_env: Option<String>,
    /// Long-polling wait per receive, seconds (0-20).
    #[serde(default = "default_wait_secs")]
    pub wait_secs: u32,
    /// Messages per receive (1-10).
    #[serde(default = "default_max_messages")]
    pub max_messages: u32,
    /// Seconds a received message stays invisible to other consumers before it is retried.
    #[serde(default = "default_visibility_timeout_secs")]
    pub visibility_timeout_secs: u32,
}

fn default_wait_secs() -> u32 {
    20
}
fn default_max_messages() -> u32 {
    10
}
fn default_visibility_timeout_secs() -> u32 {
    30
}

impl QueueSpec {
    /// The queue URL: `url_env`'s value when set and not empty, else `url`.
    pub fn queue_url(&self) -> String {
        env_or(self.url_env.as_deref(), &self.url)
    }

    /// The dead-letter queue URL, if any.
    pub fn dead_letter_queue_url(&self) -> Option<String> {
        Some(env_or(
            self.dead_letter_url_env.as_deref(),
            &self.dead_letter_url,
        ))
        .filter(|u| !u.is_empty())
    }
}

fn env_or(var: Option<&str>, fallback: &str) -> String {
    var.and_then(|v| std::env::var(v).ok())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| fallback.to_string())
}

/// What the writer and the publish API need to know of a push channel.
#[derive(Debug, Clone, PartialEq)]
pub struct PushSpec {
    pub name: String,
    pub mode: PushMode,
    /// `items` mode: the field holding each item's id (`events`: [`EVENT_ID_FIELD`]).
    pub id_field: String,
    /// `events` mode: events kept in the snapshot.
    pub keep: usize,
    pub queue: Option<QueueSpec>,
}

/// The channel file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushFile {
    kind: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    doc_url: Option<String>,
    #[serde(default = "default_mode")]
    mode: PushMode,
    #[serde(default)]
    id_field: Option<String>,
    #[serde(default)]
    keep: Option<usize>,
    #[serde(default)]
    params: BTreeMap<String, ParamSpec>,
    #[serde(default)]
    max_channels: Option<u64>,
    #[serde(default)]
    access: Option<String>,
    #[serde(default)]
    queue: Option<QueueSpec>,
}

fn default_mode() -> PushMode {
    PushMode::Items
}

/// Why a push channel file cannot be used; every message names the file (and the field).
#[derive(Debug, thiserror::Error)]
pub enum PushFileError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    Invalid {
        file: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("{file}: field `{field}`: {problem}")]
    Field {
        file: String,
        field: &'static str,
        problem: String,
    },
}

/// A push channel as the registry holds it.
pub struct PushChannel {
    label: String,
    metadata: Value,
    spec: Arc<PushSpec>,
}

impl PushChannel {
    pub fn spec(&self) -> &Arc<PushSpec> {
        &self.spec
    }

    /// Reads and checks a push channel file.
    pub fn load(path: &Path) -> Result<PushChannel, PushFileError> {
        let label = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(path).map_err(|source| PushFileError::Read {
            file: label.clone(),
            source,
        })?;
        PushChannel::parse(&label, &text)
    }

    /// Checks the text of a push channel file named `label`.
    pub fn parse(label: &str, text: &str) -> Result<PushChannel, PushFileError> {
        let file: PushFile = toml::from_str(text).map_err(|source| PushFileError::Invalid {
            file: label.to_string(),
            source,
        })?;
        let field = |field: &'static str, problem: &str| PushFileError::Field {
            file: label.to_string(),
            field,
            problem: problem.to_string(),
        };
        if file.kind != "push" {
            return Err(field("kind", "must be \"push\" in a push channel file"));
        }
        let id_field = match (file.mode, file.id_field) {
            (PushMode::Items, Some(f)) if !f.is_empty() => f,
            (PushMode::Items, _) => return Err(field("id_field", "is required in items mode")),
            (PushMode::Events, None) => EVENT_ID_FIELD.to_string(),
            (PushMode::Events, Some(f)) if f == EVENT_ID_FIELD => f,
            (PushMode::Events, Some(_)) => {
                return Err(field(
                    "id_field",
                    "events mode assigns ids itself (field \"id\"); leave it out",
                ))
            }
        };
        let keep = match (file.mode, file.keep) {
            (PushMode::Items, Some(_)) => return Err(field("keep", "only applies to events mode")),
            (_, Some(k)) if k == 0 || k > MAX_KEEP => {
                return Err(field("keep", &format!("must be between 1 and {MAX_KEEP}")))
            }
            (_, k) => k.unwrap_or(DEFAULT_KEEP),
        };
        if let Some(q) = &file.queue {
            check_queue(q).map_err(|(f, p)| field(f, &p))?;
            if let Some(p) = q.params.keys().find(|p| !file.params.contains_key(*p)) {
                return Err(field(
                    "queue.params",
                    &format!("{p:?} is not a declared param of the channel"),
                ));
            }
        }
        let metadata = json!({
            "name": file.name,
            "description": file.description,
            "doc_url": file.doc_url,
            "id_field": id_field,
            "params": file.params,
            "max_channels": file.max_channels,
            "access": file.access,
        });
        let spec = Arc::new(PushSpec {
            name: file.name,
            mode: file.mode,
            id_field,
            keep,
            queue: file.queue,
        });
        Ok(PushChannel {
            label: label.to_string(),
            metadata,
            spec,
        })
    }
}

fn check_queue(q: &QueueSpec) -> Result<(), (&'static str, String)> {
    if q.url.is_empty() && q.url_env.is_none() {
        return Err(("queue.url", "is required (or queue.url_env)".into()));
    }
    let pointer = |p: &str| p.is_empty() || p.starts_with('/');
    if !pointer(&q.item) {
        return Err((
            "queue.item",
            "a JSON pointer starts with '/' (or is empty)".into(),
        ));
    }
    if q.params.values().any(|p| !pointer(p)) {
        return Err((
            "queue.params",
            "each value is a JSON pointer starting with '/'".into(),
        ));
    }
    if q.wait_secs > 20 {
        return Err(("queue.wait_secs", "must be between 0 and 20".into()));
    }
    if !(1..=10).contains(&q.max_messages) {
        return Err(("queue.max_messages", "must be between 1 and 10".into()));
    }
    if q.visibility_timeout_secs == 0 || q.visibility_timeout_secs > 43_200 {
        return Err((
            "queue.visibility_timeout_secs",
            "must be between 1 and 43200".into(),
        ));
    }
    Ok(())
}

#[async_trait]
impl Fetcher for PushChannel {
    fn label(&self) -> &str {
        &self.label
    }

    async fn metadata(&self) -> Result<Value, FetchError> {
        Ok(self.metadata.clone())
    }

    /// Never called: the scheduler runs a push channel's writer, not a poller.
    async fn fetch(&self, _request: FetchRequest<'_>) -> Result<FetchOutcome, FetchError> {
        Err(FetchError::Unavailable {
            fetcher: self.label.clone(),
            detail: "a push channel is published to, not polled".into(),
        })
    }

    fn push(&self) -> Option<Arc<PushSpec>> {
        Some(self.spec.clone())
    }
}

/// Whether the text of a channel file declares `kind = "push"`.
pub fn is_push_file(text: &str) -> bool {
    toml::from_str::<toml::Table>(text)
        .ok()
        .and_then(|t| t.get("kind").and_then(|k| k.as_str().map(str::to_owned)))
        .is_some_and(|k| k == "push")
}

/// Every push channel file of `dir`, in name order; invalid files are logged and skipped.
pub fn discover(dir: &Path) -> Vec<PushChannel> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(_) => return Vec::new(), // The declarative loader reports an unreadable folder.
    };
    files.sort();
    files
        .into_iter()
        .filter(|f| std::fs::read_to_string(f).is_ok_and(|t| is_push_file(&t)))
        .filter_map(|f| match PushChannel::load(&f) {
            Ok(channel) => Some(channel),
            Err(e) => {
                tracing::error!(error = %e, "invalid push channel; skipped");
                None
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
