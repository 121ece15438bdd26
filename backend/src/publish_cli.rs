//! `restream publish`: sends one batch from stdin to a push channel's HTTP publish API
//! (`docs/publishing.md`) and prints the receipt, for operators, scripts and tests.
//!
//! Building the request from the arguments ([`request`]) is pure; [`send`] does the I/O. The
//! credential is held as a [`SecretString`] and only ever written into the `Authorization`
//! header: never printed, never part of an error.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::channel::encode_component;
use crate::push::batch::MAX_IDEMPOTENCY_KEY_BYTES;

/// Pushpin's public port as `restream dev` opens it.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7999";
/// The environment variable read when `--token` is not given.
pub const TOKEN_ENV: &str = "RESTREAM_PUBLISH_TOKEN";
/// How long one publish may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The arguments of `restream publish` (no `Debug`: it holds the credential).
#[derive(Clone, clap::Args)]
pub struct PublishArgs {
    /// Push channel name, e.g. board.
    pub name: String,
    /// A channel param, key=value (repeatable).
    #[arg(long = "param", short = 'p', value_parser = crate::authoring::parse_param)]
    pub params: Vec<(String, String)>,
    /// Where restream's public API is (Pushpin's public port).
    #[arg(long, default_value = DEFAULT_URL)]
    pub url: String,
    /// A producer credential: a JWT with a `publish` claim, or the channel's producer key.
    #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
    pub token: Option<String>,
    /// The body is NDJSON (one JSON value per line), not one JSON value or array.
    #[arg(long)]
    pub ndjson: bool,
    /// Delete the item with this id instead (items mode; stdin is not read).
    #[arg(long, value_name = "ID", conflicts_with_all = ["ndjson", "replace"])]
    pub delete: Option<String>,
    /// Replace the whole set with the body (`PUT`; items mode; `[]` empties the channel).
    #[arg(long)]
    pub replace: bool,
    /// A retry with the same key and body is a no-op that answers the first receipt.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

impl PublishArgs {
    /// Whether the batch comes from stdin (everything but `--delete`).
    pub fn reads_body(&self) -> bool {
        self.delete.is_none()
    }
}

/// One publish request, everything but the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    pub method: Method,
    pub url: String,
    /// `None` for a delete, which has no body.
    pub content_type: Option<&'static str>,
    pub idempotency_key: Option<String>,
    pub body: Option<Vec<u8>>,
}

/// Why a publish did not happen; each says what to do, none carries the credential.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The arguments cannot make a request (nothing was sent).
    #[error("{0}")]
    Usage(String),
    /// The API refused the batch: its `{"error": {"code", "message"}}`.
    #[error("{code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// An answer that is not the API's (a proxy's error page, another server).
    #[error("HTTP {status} from {url}, not a restream answer: {excerpt}")]
    Unexpected {
        status: u16,
        url: String,
        excerpt: String,
    },
    #[error(
        "cannot connect to {url}: is restream (behind Pushpin) listening there? Set it with --url"
    )]
    Connect { url: String },
    #[error("no answer from {url} within {}s", TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("request to {url} failed: {detail}")]
    Transport { url: String, detail: String },
}

/// The request `args` make with `body` (stdin's bytes; `None` for `--delete`).
pub fn request(args: &PublishArgs, body: Option<Vec<u8>>) -> Result<PublishRequest, PublishError> {
    let usage = |m: String| Err(PublishError::Usage(m));
    let base = args.url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) || base.contains('?') {
        return usage(format!(
            "--url must be http(s)://host[:port][/prefix], got {:?}",
            args.url
        ));
    }
    if args.name.is_empty() {
        return usage("the channel name is empty".into());
    }
    if let Some(key) = &args.idempotency_key {
        let printable = key.bytes().all(|b| (0x20..0x7f).contains(&b));
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES || !printable {
            return usage(format!(
                "--idempotency-key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} printable ASCII characters"
            ));
        }
    }
    let mut url = format!("{base}/channels/{}/items", encode_component(&args.name));
    let (method, content_type, body) = match (&args.delete, body) {
        (Some(id), _) if id.is_empty() => return usage("--delete needs an item id".into()),
        (Some(id), _) => {
            url.push('/');
            url.push_str(&encode_component(id));
            (Method::DELETE, None, None)
        }
        (None, None) => return usage("a publish needs a body on stdin".into()),
        (None, Some(body)) => {
            let method = if args.replace {
                Method::PUT
            } else {
                Method::POST
            };
            let content_type = if args.ndjson {
                "application/x-ndjson"
            } else {
                "application/json"
            };
            (method, Some(content_type), Some(body))
        }
    };
    for (i, (k, v)) in args.params.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(&encode_component(k));
        url.push('=');
        url.push_str(&encode_component(v));
    }
    Ok(PublishRequest {
        method,
        url,
        content_type,
        idempotency_key: args.idempotency_key.clone(),
        body,
    })
}

/// Sends `request` with `token` as `Authorization: Bearer`; the receipt on success.
pub async fn send(
    request: PublishRequest,
    token: Option<&SecretString>,
) -> Result<Value, PublishError> {
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| PublishError::Usage(format!("cannot build an HTTP client: {e}")))?;
    let url = request.url.clone();
    let origin = origin(&url);
    let mut builder = client.request(request.method, &url);
    if let Some(token) = token {
        builder = builder.header(AUTHORIZATION, format!("Bearer {}", token.expose_secret()));
    }
    if let Some(key) = request.idempotency_key {
        builder = builder.header("Idempotency-Key", key);
    }
    if let Some(content_type) = request.content_type {
        builder = builder.header(CONTENT_TYPE, content_type);
    }
    if let Some(body) = request.body {
        builder = builder.body(body);
    }
    let response = builder.send().await.map_err(|e| transport(e, &origin))?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|e| transport(e, &origin))?;
    let parsed: Option<Value> = serde_json::from_str(&text).ok();
    match parsed {
        Some(receipt) if (200..300).contains(&status) && receipt.get("seq").is_some() => {
            Ok(receipt)
        }
        Some(answer) if answer["error"]["code"].is_string() => Err(PublishError::Api {
            status,
            code: answer["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            message: answer["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }),
        _ => Err(PublishError::Unexpected {
            status,
            url: origin,
            excerpt: text
                .chars()
                .take(200)
                .collect::<String>()
                .trim()
                .to_string(),
        }),
    }
}

/// Parses the arguments, sends the batch, answers the receipt: what `main` runs.
pub async fn run(args: &PublishArgs, body: Option<Vec<u8>>) -> Result<Value, PublishError> {
    let token = args
        .token
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(SecretString::from);
    send(request(args, body)?, token.as_ref()).await
}

/// `scheme://host:port` of `url`: what errors name (never the path's ids or the query).
fn origin(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    url[..end].to_string()
}

fn transport(e: reqwest::Error, origin: &str) -> PublishError {
    let url = origin.to_string();
    if e.is_connect() {
        PublishError::Connect { url }
    } else if e.is_timeout() {
        PublishError::Timeout { url }
    } else {
        // Without the URL: reqwest's text would repeat it, query included.
        PublishError::Transport {
            url,
            detail: e.without_url().to_string(),
        }
    }
}

#[cfg(test)]
#[path = "publish_cli_tests.rs"]
mod tests;
