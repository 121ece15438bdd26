//! Fetchers: the small stateless programs that call one upstream API per poll.
//!
//! Contract v1 (compatible with the original restream Lambdas): `{"call":"metadata"}` returns a
//! [`Metadata`]; `{"call":"fetch",...}` returns `{"status_code":200,"result":[items]}` or
//! `{"status_code":N,"result":"error text"}`. Adapters that run contract fetchers (process,
//! Lambda) read that JSON with [`parse_fetch_response`]; every [`Fetcher`] answers a typed
//! [`FetchOutcome`] or [`FetchError`].

pub mod deps;
pub mod http;
#[cfg(feature = "aws")]
pub mod lambda;
mod metadata;
pub(crate) mod process;
pub mod redact;
pub mod registry;
mod response;
pub mod sandbox;
pub mod worker;

pub use http::HttpFetcher;
#[cfg(feature = "aws")]
pub use lambda::LambdaFetcher;
pub use metadata::{parse_rate_limit, Metadata, MetadataError, RESERVED_PARAMS};
pub use process::{ProcessFetcher, ProcessRuntime};
pub use redact::redact;
pub use registry::{FetcherEntry, LoadError, LoadReport, Registry, SharedRegistry};
pub use response::{parse_fetch_response, FetchOutcome};
pub use worker::{ProcessMode, WorkerCap, WorkerSettings};

use std::collections::BTreeMap;

use async_trait::async_trait;
use secrecy::SecretString;
use serde_json::Value;
use thiserror::Error;

/// API keys for one fetcher, never logged.
pub type Keys = BTreeMap<String, SecretString>;

/// What a poll asks a fetcher for.
#[derive(Debug)]
pub struct FetchRequest<'a> {
    pub channel: &'a str,
    pub params: &'a BTreeMap<String, String>,
    pub keys: &'a Keys,
    pub state: Option<&'a Value>,
}

impl FetchRequest<'_> {
    /// The contract's `fetch` event, keys included (the caller never logs it).
    pub(crate) fn event(&self) -> Value {
        use secrecy::ExposeSecret;
        let keys: serde_json::Map<String, Value> = self
            .keys
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.expose_secret().to_string())))
            .collect();
        serde_json::json!({
            "call": "fetch",
            "channel": self.channel,
            "params": self.params,
            "keys": keys,
            "state": self.state,
        })
    }
}

/// Why a fetcher call produced no usable answer.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error("fetcher {fetcher} did not answer within {seconds:.1}s")]
    Timeout { fetcher: String, seconds: f64 },
    #[error("fetcher {fetcher} crashed: {detail}")]
    Crashed { fetcher: String, detail: String },
    #[error("fetcher {fetcher} returned an invalid response: {detail}")]
    InvalidResponse { fetcher: String, detail: String },
    #[error("upstream of {fetcher} failed with status {status}: {message}")]
    Upstream {
        fetcher: String,
        status: u16,
        message: String,
        /// Seconds the upstream asked us to wait (`Retry-After`), honoured exactly.
        retry_after: Option<f64>,
    },
    /// The platform running the fetcher refused the call for now (e.g. Lambda throttling).
    #[error("fetcher {fetcher} was throttled: {detail}")]
    Throttled {
        fetcher: String,
        detail: String,
        /// Seconds the platform asked us to wait, honoured exactly.
        retry_after: Option<f64>,
    },
    /// The fetcher cannot be reached: not deployed, no permission, network trouble.
    #[error("fetcher {fetcher} is unavailable: {detail}")]
    Unavailable { fetcher: String, detail: String },
    /// A declarative channel refused to call (or keep reading) its upstream: a limit or the
    /// `url` allowlist said no (issue 23).
    #[error("fetcher {fetcher} refused the call ({}): {message}", code.as_str())]
    Refused {
        fetcher: String,
        code: http::Refusal,
        message: String,
        /// Seconds until the limit allows a call again, when it knows.
        retry_after: Option<f64>,
    },
    #[error("could not start fetcher {fetcher}: {source}")]
    Spawn {
        fetcher: String,
        #[source]
        source: std::io::Error,
    },
}

impl FetchError {
    /// The upstream answered `status` (not 200 or 304) with `message`: kept to 500 characters,
    /// with a `retry_after` only when it is a finite, non-negative number of seconds.
    pub fn upstream(
        fetcher: &str,
        status: u16,
        message: &str,
        retry_after: Option<f64>,
    ) -> FetchError {
        FetchError::Upstream {
            fetcher: fetcher.to_string(),
            status,
            message: message.chars().take(500).collect(),
            retry_after: retry_after.filter(|s| s.is_finite() && *s >= 0.0),
        }
    }
}

/// One way of running a fetcher (a local process, Lambda, declarative HTTP).
#[async_trait]
pub trait Fetcher: Send + Sync {
    /// A short name for logs and errors, e.g. the fetcher's directory.
    fn label(&self) -> &str;
    /// Calls `metadata`.
    async fn metadata(&self) -> Result<Value, FetchError>;
    /// Calls `fetch`: the items (or "not modified"), or why there are none.
    async fn fetch(&self, request: FetchRequest<'_>) -> Result<FetchOutcome, FetchError>;
    /// A push channel (`kind = "push"`): published to, never fetched; the scheduler runs its
    /// writer instead of a poller.
    fn push(&self) -> Option<std::sync::Arc<crate::push::PushSpec>> {
        None
    }
    /// Checks a channel's params at subscribe, beyond their declaration (a declarative
    /// channel's `url` allowlist): a refusal is an error to the client, never a poll.
    fn admit(&self, _params: &BTreeMap<String, String>) -> Result<(), (http::Refusal, String)> {
        Ok(())
    }
}
