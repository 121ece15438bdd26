//! The `http` fetcher kind: a channel declared in a TOML file (`channels/<name>.toml`), no code.
//!
//! The file gives a URL template (`{base}` and `{param}` placeholders), where API keys go
//! (query parameter or header), a JSON pointer to the list of items, the id field, the poll
//! interval and the rate limit. Conditional requests (ETag / Last-Modified) are automatic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{FetchError, FetchOutcome, FetchRequest, Fetcher};
use crate::channel::{encode_component, ParamSpec};

/// Largest upstream body accepted.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// One declared param: the usual declaration plus an optional list of accepted values.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpParam {
    #[serde(flatten)]
    pub spec: ParamSpec,
    /// When set, other values are answered with 400 before any upstream call.
    #[serde(default)]
    pub allowed: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeyLocation {
    Query,
    Header,
}

/// Where one API key goes in the request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPlacement {
    #[serde(rename = "in")]
    pub location: KeyLocation,
    /// Query parameter or header name.
    pub name: String,
    /// How the value is written; `{value}` is replaced, e.g. `Bearer {value}`.
    #[serde(default = "default_format")]
    pub format: String,
}

fn default_format() -> String {
    "{value}".into()
}

/// A declarative channel file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpChannel {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub doc_url: Option<String>,
    /// URL template, e.g. `{base}/api/v1/search?tags=front_page&hitsPerPage={limit}`.
    pub url: String,
    /// What `{base}` stands for.
    #[serde(default)]
    pub base_url: String,
    /// An environment variable that overrides `base_url` (mirrors, tests).
    #[serde(default)]
    pub base_url_env: Option<String>,
    /// JSON pointer to the list of items (`""` when the body itself is the list).
    pub items: String,
    pub id_field: String,
    #[serde(default)]
    pub poll_interval: Option<f64>,
    /// Whether the list is the whole collection (missing ids are `removed`).
    #[serde(default)]
    pub complete: bool,
    #[serde(default)]
    pub params: BTreeMap<String, HttpParam>,
    #[serde(default)]
    pub keys: BTreeMap<String, KeyPlacement>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub rate_limit: Option<BTreeMap<String, u64>>,
}

/// A declarative channel ready to fetch.
pub struct HttpFetcher {
    label: String,
    channel: HttpChannel,
    client: reqwest::Client,
    timeout: Duration,
}

impl HttpFetcher {
    /// Reads and checks a channel file; errors name the file and the field.
    pub fn load(path: &Path, timeout: Duration) -> Result<HttpFetcher, String> {
        let label = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{label}: cannot read: {e}"))?;
        let channel: HttpChannel = toml::from_str(&text).map_err(|e| format!("{label}: {e}"))?;
        for placeholder in placeholders(&channel.url) {
            if placeholder != "base" && !channel.params.contains_key(placeholder) {
                return Err(format!(
                    "{label}: field `url`: placeholder {{{placeholder}}} is not a declared param"
                ));
            }
        }
        if !(channel.items.is_empty() || channel.items.starts_with('/')) {
            return Err(format!(
                "{label}: field `items`: a JSON pointer starts with '/' (or is empty)"
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("restream/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("{label}: {e}"))?;
        Ok(HttpFetcher {
            label,
            channel,
            client,
            timeout,
        })
    }

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

fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    out
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
            return Ok(FetchOutcome {
                items: Vec::new(),
                skipped_non_objects: 0,
                state: request.state.filter(|s| !s.is_null()).cloned(),
                complete: false,
                retry_after: None,
                not_modified: true,
            });
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
            if let (Some(allowed), Some(value)) = (&param.allowed, params.get(name)) {
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
        let too_large = format!("upstream body larger than {MAX_BODY} bytes");
        if resp.content_length().is_some_and(|n| n as usize > MAX_BODY) {
            return Err(self.upstream(502, &too_large, None));
        }
        let body = match resp.bytes().await {
            Ok(b) if b.len() <= MAX_BODY => b,
            Ok(_) => return Err(self.upstream(502, &too_large, None)),
            Err(e) => {
                let message = format!("upstream body unreadable: {}", e.without_url());
                return Err(self.upstream(502, &message, None));
            }
        };
        let mut doc: Value = serde_json::from_slice(&body)
            .map_err(|e| self.upstream(502, &format!("upstream sent invalid JSON: {e}"), None))?;
        let Some(Value::Array(entries)) = doc.pointer_mut(&self.channel.items).map(Value::take)
        else {
            let message = format!("upstream response has no list at {:?}", self.channel.items);
            return Err(self.upstream(502, &message, None));
        };
        let total = entries.len();
        let items: Vec<_> = entries
            .into_iter()
            .filter_map(|i| match i {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .collect();
        Ok(FetchOutcome {
            skipped_non_objects: total - items.len(),
            items,
            state: (!validators.is_empty()).then_some(Value::Object(validators)),
            complete: self.channel.complete,
            retry_after: None,
            not_modified: false,
        })
    }
}

/// Every `*.toml` channel file of `dir`, in name order; unreadable files are logged and skipped.
pub fn discover(dir: &Path, timeout: Duration) -> Vec<HttpFetcher> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "cannot read the declarative channels folder");
            return Vec::new();
        }
    };
    files.sort();
    files
        .into_iter()
        .filter_map(|f| match HttpFetcher::load(&f, timeout) {
            Ok(fetcher) => Some(fetcher),
            Err(e) => {
                tracing::error!(error = %e, "invalid declarative channel; skipped");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(toml_text: &str) -> Result<HttpFetcher, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml_text).unwrap();
        HttpFetcher::load(&path, Duration::from_secs(1))
    }

    const OK: &str = r#"
name = "t"
url = "{base}/x/{feed}.json?q={q}"
base_url = "https://example.invalid/"
items = "/list"
id_field = "id"
[params.feed]
default = "a b"
[params.q]
required = true
"#;

    #[test]
    fn renders_the_url_with_encoded_params() {
        let f = channel(OK).unwrap();
        let params: BTreeMap<String, String> =
            [("feed".into(), "a b".into()), ("q".into(), "x&y=1".into())].into();
        assert_eq!(
            f.render(&params),
            "https://example.invalid/x/a%20b.json?q=x%26y%3D1"
        );
    }

    #[test]
    fn bad_files_name_the_field() {
        let e = channel(&OK.replace("{q}", "{nope}")).err().unwrap();
        assert!(e.contains("`url`") && e.contains("nope"), "{e}");
        let e = channel(&OK.replace("items = \"/list\"", "items = \"list\""))
            .err()
            .unwrap();
        assert!(e.contains("`items`"), "{e}");
        let e = channel(&format!("{OK}\nbogus = 1\n")).err().unwrap();
        assert!(e.contains("bogus"), "{e}");
        let e = channel("name = 1").err().unwrap();
        assert!(e.contains("c.toml"), "{e}");
    }
}
