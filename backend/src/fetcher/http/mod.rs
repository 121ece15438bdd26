//! The `http` fetcher kind: a channel declared in a TOML file (`channels/<name>.toml`), no code.
//!
//! The file gives a URL template (`{base}`, `{param}` and `{key:name}` placeholders), where
//! API keys go, the method and a templated JSON body, how the upstream pages its answers, a
//! jq transform, a JSON pointer to the list of items, the id field, the poll interval and the
//! rate limit. `kind = "feed"` reads RSS, Atom or JSON Feed instead of JSON. Conditional
//! requests (ETag / Last-Modified) are automatic. The file and its checks are in
//! `channel_file`; the limits strangers meet in `limits`; this module fetches.

mod allowlist;
mod channel_file;
mod feed;
mod limits;
mod pagination;
mod template;
mod transform;

pub use allowlist::{Allowlist, HostPattern, PatternError};
pub use channel_file::{
    channel_files, discover, discover_with, ChannelFileError, ChannelKind, HttpChannel, HttpParam,
    KeyLocation, KeyPlacement, Method,
};
pub use feed::{items as feed_items, FeedError};
pub use limits::{HostBudgets, HttpLimits, Refusal};
pub use pagination::{next_link, Pagination};
pub use transform::{Transform, TransformError, TransformLimits};

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::{FetchError, FetchOutcome, FetchRequest, Fetcher, Keys};
use crate::channel::encode_component;
use pagination::Next;
use template::{Encoding, Values};

/// Largest upstream body accepted; reading stops there.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// A declarative channel ready to fetch.
pub struct HttpFetcher {
    label: String,
    channel: HttpChannel,
    client: reqwest::Client,
    timeout: Duration,
    limits: HttpLimits,
    transform: Option<Transform>,
}

/// One page as read: its items and what pagination needs from it.
struct Page {
    entries: Vec<Value>,
    link: Option<String>,
    doc: Option<Value>,
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

    /// The URL template filled in (keys left out: `{key:…}` is empty).
    #[cfg(test)]
    fn render(&self, params: &BTreeMap<String, String>) -> String {
        let keys = Keys::new();
        self.values(params, &keys, &self.base())
            .render(&self.channel.url.replace("{key:", "{nokey:"), Encoding::Url)
            .unwrap_or_default()
    }

    fn values<'a>(
        &self,
        params: &'a BTreeMap<String, String>,
        keys: &'a Keys,
        base: &'a str,
    ) -> Values<'a> {
        Values { base, params, keys }
    }

    /// The channel's `kind`.
    pub fn kind(&self) -> ChannelKind {
        self.channel.kind
    }

    fn refused(&self, code: Refusal, message: &str, retry_after: Option<f64>) -> FetchError {
        crate::metrics::get()
            .declarative_refusals
            .with_label_values(&[&self.label, code.as_str()])
            .inc();
        FetchError::Refused {
            fetcher: self.label.clone(),
            code,
            message: message.chars().take(300).collect(),
            retry_after,
        }
    }

    /// The `url` param as a URL the allowlist accepts, or why not.
    fn url_param(&self, params: &BTreeMap<String, String>) -> Result<reqwest::Url, String> {
        let raw = params.get("url").map(String::as_str).unwrap_or("");
        let url = reqwest::Url::parse(raw).map_err(|_| "param url: not a URL".to_string())?;
        if !self.limits.allowlist.allows(&url) {
            return Err("param url: this host is not on the operator's allowlist".into());
        }
        Ok(url)
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

/// Scheme, host and port of a URL.
fn origin(url: &str) -> Option<(String, String, Option<u16>)> {
    let u = reqwest::Url::parse(url).ok()?;
    Some((
        u.scheme().to_string(),
        u.host_str()?.to_ascii_lowercase(),
        u.port_or_known_default(),
    ))
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

    fn admit(&self, params: &BTreeMap<String, String>) -> Result<(), (Refusal, String)> {
        if self.channel.url_from_param() {
            if let Err(message) = self.url_param(params) {
                crate::metrics::get()
                    .declarative_refusals
                    .with_label_values(&[&self.label, Refusal::UrlNotAllowed.as_str()])
                    .inc();
                return Err((Refusal::UrlNotAllowed, message));
            }
        }
        Ok(())
    }

    async fn fetch(&self, request: FetchRequest<'_>) -> Result<FetchOutcome, FetchError> {
        self.check_params(request.params)?;
        let first = self.first_url(&request)?;
        let pagination = self.channel.pagination.as_ref();
        let cap = match pagination {
            None => 1,
            Some(p) => p
                .max_pages()
                .unwrap_or(self.limits.max_pages)
                .min(self.limits.max_pages)
                .max(1),
        };
        let mut url = match pagination {
            Some(p) => pagination::first_url(p, first.clone()),
            None => first.clone(),
        };
        let mut items = Vec::new();
        let mut state = None;
        let mut last_cursor: Option<String> = None;
        let mut complete = self.channel.complete;
        for page in 1..=u64::from(cap) {
            let resp = self.send(&request, &url, page == 1).await?;
            let status = resp.status().as_u16();
            if status == 304 && page == 1 {
                return Ok(FetchOutcome::not_modified(request.state.cloned()));
            }
            if !resp.status().is_success() {
                let wait = retry_after(resp.headers()).filter(|_| matches!(status, 429 | 503));
                let message = format!("upstream answered {status}");
                return Err(self.upstream(status, &message, wait.map(|w| w as f64)));
            }
            if page == 1 {
                state = validators(&resp);
            }
            crate::metrics::get()
                .declarative_pages
                .with_label_values(&[&self.label])
                .inc();
            let Page { entries, link, doc } = self.read_page(resp, request.params).await?;
            let count = entries.len();
            items.extend(entries);
            let Some(p) = pagination else { break };
            match pagination::next(
                p,
                &first,
                page,
                link.as_deref(),
                doc.as_ref(),
                count,
                last_cursor.as_deref(),
            ) {
                Next::Done => break,
                Next::Url(next) if page == u64::from(cap) => {
                    // More pages than allowed: what was read is not the whole collection.
                    crate::metrics::get()
                        .declarative_page_cap
                        .with_label_values(&[&self.label])
                        .inc();
                    tracing::warn!(fetcher = %self.label, pages = cap, next = %next.chars().take(200).collect::<String>(), "page cap reached; the rest is read next poll");
                    complete = false;
                }
                Next::Url(next) => {
                    if matches!(p, Pagination::Link { .. }) && origin(&next) != origin(&first) {
                        let message = "next-page link points to another host";
                        return Err(self.refused(Refusal::UrlNotAllowed, message, None));
                    }
                    if let Pagination::Cursor { field, .. } = p {
                        last_cursor = doc
                            .as_ref()
                            .and_then(|d| d.pointer(field))
                            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
                    }
                    url = next;
                }
            }
        }
        Ok(FetchOutcome::items(items, state, complete))
    }
}

/// The validators of an answer (ETag, Last-Modified), as the state for the next poll.
fn validators(resp: &reqwest::Response) -> Option<Value> {
    let mut validators = serde_json::Map::new();
    for (field, header) in [
        ("etag", reqwest::header::ETAG),
        ("last_modified", reqwest::header::LAST_MODIFIED),
    ] {
        if let Some(v) = resp.headers().get(header).and_then(|v| v.to_str().ok()) {
            validators.insert(field.into(), json!(v));
        }
    }
    (!validators.is_empty()).then_some(Value::Object(validators))
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

    /// The first page's URL: the template filled in (or the allowed `url` param), with keys
    /// placed `in = "query"` added.
    fn first_url(&self, request: &FetchRequest<'_>) -> Result<String, FetchError> {
        let mut url = if self.channel.url_from_param() {
            self.url_param(request.params)
                .map_err(|m| self.refused(Refusal::UrlNotAllowed, &m, None))?
                .to_string()
        } else {
            let base = self.base();
            self.values(request.params, request.keys, &base)
                .render(&self.channel.url, Encoding::Url)
                .ok_or_else(|| self.upstream(401, "missing key", None))?
        };
        for (key_name, placement) in &self.channel.keys {
            let Some(secret) = request.keys.get(key_name) else {
                return Err(self.upstream(401, &format!("missing key {key_name}"), None));
            };
            if placement.location == KeyLocation::Query {
                let value = placement.format.replace("{value}", secret.expose_secret());
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(&format!(
                    "{}={}",
                    encode_component(&placement.name),
                    encode_component(&value)
                ));
            }
        }
        Ok(url)
    }

    /// One upstream request: method, headers, body, keys, the per-host budget, and the
    /// conditional validators on the first page.
    async fn send(
        &self,
        request: &FetchRequest<'_>,
        url: &str,
        first: bool,
    ) -> Result<reqwest::Response, FetchError> {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .ok_or_else(|| self.upstream(502, "invalid upstream URL", None))?;
        if let Err(wait) = self.limits.hosts.take(&host) {
            let message = "the upstream host had all its calls this minute";
            return Err(self.refused(
                Refusal::HostBudgetExhausted,
                message,
                Some(wait.as_secs_f64().ceil()),
            ));
        }
        let base = self.base();
        let values = self.values(request.params, request.keys, &base);
        let missing = |what: &str| self.upstream(401, &format!("missing key for {what}"), None);
        let mut req = match self.channel.method {
            Method::Get => self.client.get(url),
            Method::Post => self.client.post(url),
        };
        if let Some(body) = &self.channel.body {
            req = req.json(&values.render_json(body).ok_or_else(|| missing("body"))?);
        }
        // One map, set after the body: a declared header (e.g. Content-Type) replaces the
        // one the body implies instead of being sent twice. A name or value that is not a
        // valid header (a param with a line break) is refused before any call.
        let invalid = || self.upstream(400, "a header name or value is not valid", None);
        let mut headers = reqwest::header::HeaderMap::new();
        let mut put = |name: &str, value: &str, sensitive: bool| -> Result<(), FetchError> {
            let name =
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
            let mut value = reqwest::header::HeaderValue::from_str(value).map_err(|_| invalid())?;
            value.set_sensitive(sensitive);
            headers.insert(name, value);
            Ok(())
        };
        for (name, template) in &self.channel.headers {
            let value = values
                .render(template, Encoding::Raw)
                .ok_or_else(|| missing("a header"))?;
            put(name, &value, template.contains("{key:"))?;
        }
        for (key_name, placement) in &self.channel.keys {
            if placement.location == KeyLocation::Header {
                let secret = request
                    .keys
                    .get(key_name)
                    .ok_or_else(|| missing("a header"))?;
                let value = placement.format.replace("{value}", secret.expose_secret());
                put(&placement.name, &value, true)?;
            }
        }
        req = req.headers(headers);
        if first {
            let state = request.state.unwrap_or(&Value::Null);
            if let Some(etag) = state.get("etag").and_then(Value::as_str) {
                req = req.header(reqwest::header::IF_NONE_MATCH, etag);
            }
            if let Some(lm) = state.get("last_modified").and_then(Value::as_str) {
                req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
            }
        }
        match req.send().await {
            Ok(r) => Ok(r),
            Err(e) if e.is_timeout() => Err(FetchError::Timeout {
                fetcher: self.label.clone(),
                seconds: self.timeout.as_secs_f64(),
            }),
            Err(e) if e.is_redirect() => {
                let message = "redirected to a host not on the allowlist";
                Err(self.refused(Refusal::UrlNotAllowed, message, None))
            }
            // `without_url`: the URL may carry an API key.
            Err(e) => {
                let message = format!("upstream unreachable: {}", e.without_url());
                Err(self.upstream(502, &message, None))
            }
        }
    }

    /// The body, read chunk by chunk and refused as soon as it passes `limit` (a chunked body
    /// announces no length, and may never end).
    async fn read_body(
        &self,
        mut resp: reqwest::Response,
        limit: usize,
    ) -> Result<Vec<u8>, FetchError> {
        let too_large = || {
            crate::metrics::get()
                .bodies_too_large
                .with_label_values(&["upstream"])
                .inc();
            let message = format!("upstream response larger than {limit} bytes");
            match self.channel.kind {
                ChannelKind::Feed => self.refused(Refusal::FeedTooLarge, &message, None),
                ChannelKind::Http => self.upstream(502, &message, None),
            }
        };
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) if body.len() + chunk.len() > limit => return Err(too_large()),
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => return Ok(body),
                Err(e) => {
                    let message = format!("upstream body unreadable: {}", e.without_url());
                    return Err(self.upstream(502, &message, None));
                }
            }
        }
    }

    /// One page: parsed (JSON or feed), transformed, and its list of items taken out.
    async fn read_page(
        &self,
        resp: reqwest::Response,
        params: &BTreeMap<String, String>,
    ) -> Result<Page, FetchError> {
        let link = resp
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (limit, feed) = match self.channel.kind {
            ChannelKind::Feed => (self.limits.max_feed_bytes.min(MAX_BODY), true),
            ChannelKind::Http => (MAX_BODY, false),
        };
        let body = self.read_body(resp, limit).await?;
        let doc: Value = if feed {
            let items = feed::items(&body)
                .map_err(|e| self.upstream(502, &format!("upstream sent {e}"), None))?;
            Value::Array(items)
        } else {
            serde_json::from_slice(&body).map_err(|e| {
                self.upstream(502, &format!("upstream sent invalid JSON: {e}"), None)
            })?
        };
        // Pagination reads the page as sent (a cursor field), not as transformed.
        let raw = self.channel.pagination.is_some().then(|| doc.clone());
        let mut shaped = match &self.transform {
            Some(t) => t
                .run(doc, params, self.limits.transform)
                .await
                .map_err(|e| {
                    tracing::warn!(fetcher = %self.label, error = %e, limit = e.is_limit(), "transform failed");
                    self.refused(Refusal::TransformFailed, &e.to_string(), None)
                })?,
            None => doc,
        };
        let Some(Value::Array(entries)) = shaped.pointer_mut(&self.channel.items).map(Value::take)
        else {
            let message = format!("upstream response has no list at {:?}", self.channel.items);
            return Err(self.upstream(502, &message, None));
        };
        Ok(Page {
            entries,
            link,
            doc: raw,
        })
    }
}
