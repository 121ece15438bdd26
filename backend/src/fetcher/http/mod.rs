//! The `http` fetcher kind: a channel declared in a TOML file (`channels/<name>.toml`), no code.
//!
//! The file gives a URL template (`{base}` and `{param}` placeholders), where API keys go
//! (query parameter or header), a JSON pointer to the list of items, the id field, the poll
//! interval and the rate limit. Conditional requests (ETag / Last-Modified) are automatic.
//! The file and its checks are in `channel_file`; this module fetches.

mod channel_file;

pub use channel_file::{
    discover, ChannelFileError, HttpChannel, HttpParam, KeyLocation, KeyPlacement,
};

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::{FetchError, FetchOutcome, FetchRequest, Fetcher};
use crate::channel::encode_component;

/// Largest upstream body accepted; reading stops there.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// A declarative channel ready to fetch.
pub struct HttpFetcher {
    label: String,
    channel: HttpChannel,
    client: reqwest::Client,
    timeout: Duration,
}

impl HttpFetcher {
    fn base(&self) -> String {
        let from_env = self
            .channel
            .base_url_env
            .as_deref()
            .and_then(|v| std::env::var(v).ok());
        from_env
            .unwrap_or_else(|| self.channel.base_url.clone())
            .trim_end_matches('/')
            .to_string()
    }

    fn render(&self, params: &BTreeMap<String, String>) -> String {
        let mut out = String::new();
        let mut rest = self.channel.url.as_str();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            out.push_str(&rest[..open]);
            let name = &rest[open + 1..open + close];
            if name == "base" {
                out.push_str(&self.base());
            } else {
                out.push_str(&encode_component(
                    params.get(name).map(String::as_str).unwrap_or(""),
                ));
            }
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// Seconds from a `Retry-After` header given in seconds.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[async_trait]
impl Fetcher for HttpFetcher {
    fn label(&self) -> &str {
        &self.label
    }

    async fn metadata(&self) -> Result<Value, FetchError> {
        let c = &self.channel;
        let params: BTreeMap<_, _> = c
            .params
            .iter()
            .map(|(k, p)| (k.clone(), p.spec.clone()))
            .collect();
        Ok(json!({
            "name": c.name,
            "description": c.description,
            "id_field": c.id_field,
            "api_url": c.url.replace("{base}", &c.base_url),
            "doc_url": c.doc_url,
            "keys": c.keys.keys().collect::<Vec<_>>(),
            "poll_interval": c.poll_interval,
            "params": params,
            "rate_limit": c.rate_limit,
            "max_channels": c.max_channels,
            "access": c.access,
        }))
    }

    async fn fetch(&self, request: FetchRequest<'_>) -> Result<FetchOutcome, FetchError> {
        self.check_params(request.params)?;
        let req = self.request(&request)?;
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err(FetchError::Timeout {
                    fetcher: self.label.clone(),
                    seconds: self.timeout.as_secs_f64(),
                })
            }
            // `without_url`: the URL may carry an API key.
            Err(e) => {
                let message = format!("upstream unreachable: {}", e.without_url());
                return Err(self.upstream(502, &message, None));
            }
        };
        let status = resp.status().as_u16();
        if status == 304 {
            return Ok(FetchOutcome::not_modified(request.state.cloned()));
        }
        if !resp.status().is_success() {
            let wait = retry_after(resp.headers()).filter(|_| matches!(status, 429 | 503));
            let message = format!("upstream answered {status}");
            return Err(self.upstream(status, &message, wait.map(|w| w as f64)));
        }
        self.read_items(resp).await
    }
}

impl HttpFetcher {
    /// The upstream (or this fetcher on its behalf) refused the request with `status`.
    fn upstream(&self, status: u16, message: &str, retry_after: Option<f64>) -> FetchError {
        FetchError::upstream(&self.label, status, message, retry_after)
    }

    /// Params outside their declared `allowed` values are refused before any upstream call.
    fn check_params(&self, params: &BTreeMap<String, String>) -> Result<(), FetchError> {
        for (name, param) in &self.channel.params {
            if let (Some(allowed), Some(value)) = (&param.spec.allowed, params.get(name)) {
                if !allowed.contains(value) {
                    let message = format!(
                        "param {name}: {value:?} is not one of {}",
                        allowed.join(", ")
                    );
                    return Err(self.upstream(400, &message, None));
                }
            }
        }
        Ok(())
    }

    /// The upstream request: URL, keys where declared, headers, conditional validators.
    fn request(&self, request: &FetchRequest<'_>) -> Result<reqwest::RequestBuilder, FetchError> {
        let mut url = self.render(request.params);
        let mut key_headers = Vec::new();
        for (key_name, placement) in &self.channel.keys {
            let Some(secret) = request.keys.get(key_name) else {
                return Err(self.upstream(401, &format!("missing key {key_name}"), None));
            };
            let value = placement.format.replace("{value}", secret.expose_secret());
            match placement.location {
                KeyLocation::Query => {
                    url.push(if url.contains('?') { '&' } else { '?' });
                    url.push_str(&format!(
                        "{}={}",
                        encode_component(&placement.name),
                        encode_component(&value)
                    ));
                }
                KeyLocation::Header => key_headers.push((placement.name.clone(), value)),
            }
        }
        let mut req = self.client.get(&url);
        for (k, v) in self.channel.headers.clone().into_iter().chain(key_headers) {
            req = req.header(k, v);
        }
        let state = request.state.unwrap_or(&Value::Null);
        if let Some(etag) = state.get("etag").and_then(Value::as_str) {
            req = req.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = state.get("last_modified").and_then(Value::as_str) {
            req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
        }
        Ok(req)
    }

    /// The body, read chunk by chunk and refused as soon as it passes [`MAX_BODY`] (a chunked
    /// body announces no length, and may never end).
    async fn read_body(&self, mut resp: reqwest::Response) -> Result<Vec<u8>, FetchError> {
        let too_large = || {
            crate::metrics::get()
                .bodies_too_large
                .with_label_values(&["upstream"])
                .inc();
            let message = format!("upstream response larger than {MAX_BODY} bytes");
            self.upstream(502, &message, None)
        };
        if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) if body.len() + chunk.len() > MAX_BODY => return Err(too_large()),
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => return Ok(body),
                Err(e) => {
                    let message = format!("upstream body unreadable: {}", e.without_url());
                    return Err(self.upstream(502, &message, None));
                }
            }
        }
    }

    /// The items of a successful answer, with its validators as the state for the next poll.
    async fn read_items(&self, resp: reqwest::Response) -> Result<FetchOutcome, FetchError> {
        let mut validators = serde_json::Map::new();
        for (field, header) in [
            ("etag", reqwest::header::ETAG),
            ("last_modified", reqwest::header::LAST_MODIFIED),
        ] {
            if let Some(v) = resp.headers().get(header).and_then(|v| v.to_str().ok()) {
                validators.insert(field.into(), json!(v));
            }
        }
        let body = self.read_body(resp).await?;
        let mut doc: Value = serde_json::from_slice(&body)
            .map_err(|e| self.upstream(502, &format!("upstream sent invalid JSON: {e}"), None))?;
        let Some(Value::Array(entries)) = doc.pointer_mut(&self.channel.items).map(Value::take)
        else {
            let message = format!("upstream response has no list at {:?}", self.channel.items);
            return Err(self.upstream(502, &message, None));
        };
        let state = (!validators.is_empty()).then_some(Value::Object(validators));
        Ok(FetchOutcome::items(entries, state, self.channel.complete))
    }
}
