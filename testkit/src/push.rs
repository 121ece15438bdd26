//! Push channels in a test stack: their channel files, the key file holding producer keys and
//! the JWT secret, publish and subscribe tokens, and an HTTP publisher going through Pushpin's
//! public port exactly as a producer does (docs/publishing.md).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use restream::auth::mint;
use serde_json::{json, Map, Value};

/// An items-mode push channel file keyed by `id_field`, with the given (required) params.
pub fn items_channel(name: &str, id_field: &str, params: &[&str]) -> String {
    let mut text = format!(
        "kind = \"push\"\nname = \"{name}\"\ndescription = \"e2e items push channel\"\nmode = \"items\"\nid_field = \"{id_field}\"\n"
    );
    push_params(&mut text, params);
    text
}

/// An events-mode push channel file whose snapshot keeps the last `keep` events.
pub fn events_channel(name: &str, keep: usize, params: &[&str]) -> String {
    let mut text = format!(
        "kind = \"push\"\nname = \"{name}\"\ndescription = \"e2e events push channel\"\nmode = \"events\"\nkeep = {keep}\n"
    );
    push_params(&mut text, params);
    text
}

fn push_params(text: &mut String, params: &[&str]) {
    for p in params {
        let _ = write!(text, "[params.{p}]\nrequired = true\n");
    }
}

/// Writes `channels/<name>.toml` into a channels folder (the registry rereads it within
/// `fetchers.refresh`).
pub fn write_channel(channels_dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(channels_dir).expect("the channels folder");
    std::fs::write(channels_dir.join(format!("{name}.toml")), text).expect("a channel file");
}

/// The key store's file: the HS256 secret tokens are signed with, and each push channel's
/// producer key.
pub fn keys_json(jwt_secret: &str, producers: &[(&str, &str)]) -> String {
    let mut keys = Map::new();
    keys.insert("_restream".into(), json!({"jwt_secret": jwt_secret}));
    for (channel, key) in producers {
        keys.insert((*channel).into(), json!({"producer_key": key}));
    }
    Value::Object(keys).to_string()
}

/// Seconds since the Unix epoch, as token expiries count.
pub fn now() -> u64 {
    restream::auth::now_unix()
}

/// An HS256 token with a publish right for `patterns` (the `publish` claim), expiring at `exp`.
pub fn publish_token(secret: &str, patterns: &[&str], exp: u64) -> String {
    let claims = json!({"sub": "e2e-producer", "exp": exp, "publish": patterns});
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    mint::sign(&header, &claims, &key).expect("a signed token")
}

/// An HS256 token with only a subscribe right (`channels`) for `patterns`.
pub fn subscribe_token(secret: &str, patterns: &[&str], exp: u64) -> String {
    let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
    mint::hs256(secret.as_bytes(), Some("e2e"), &patterns, exp).expect("a signed token")
}

/// One publish request: POST/PUT `/channels/{name}/items?query` or DELETE
/// `/channels/{name}/items/{id}?query`, with its body, credential and `Idempotency-Key`.
#[derive(Debug, Clone)]
pub struct Publish {
    method: reqwest::Method,
    path: String,
    content_type: Option<String>,
    body: Vec<u8>,
    credential: Option<String>,
    idempotency_key: Option<String>,
}

impl Publish {
    fn new(method: reqwest::Method, path: String) -> Publish {
        Publish {
            method,
            path,
            content_type: None,
            body: Vec::new(),
            credential: None,
            idempotency_key: None,
        }
    }

    /// `POST /channels/{channel}/items?{query}` (`query` already URL-encoded; "" for none).
    pub fn post(channel: &str, query: &str) -> Publish {
        Publish::new(reqwest::Method::POST, items_path(channel, query))
    }

    /// `PUT /channels/{channel}/items?{query}`: the body replaces the whole set.
    pub fn put(channel: &str, query: &str) -> Publish {
        Publish::new(reqwest::Method::PUT, items_path(channel, query))
    }

    /// `DELETE /channels/{channel}/items/{id}?{query}` (`id` URL-safe).
    pub fn delete(channel: &str, id: &str, query: &str) -> Publish {
        let mut path = format!("/channels/{channel}/items/{id}");
        if !query.is_empty() {
            let _ = write!(path, "?{query}");
        }
        Publish::new(reqwest::Method::DELETE, path)
    }

    /// An `application/json` body: one object, or an array of entries.
    pub fn json(self, body: &Value) -> Publish {
        self.raw("application/json", body.to_string().into_bytes())
    }

    /// An `application/x-ndjson` body, one value per line.
    pub fn ndjson(self, lines: &[Value]) -> Publish {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        self.raw("application/x-ndjson", text.into_bytes())
    }

    /// Any body with any content type.
    pub fn raw(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Publish {
        self.content_type = Some(content_type.to_string());
        self.body = body.into();
        self
    }

    /// `Authorization: Bearer <credential>` (a JWT or a producer key).
    pub fn bearer(mut self, credential: &str) -> Publish {
        self.credential = Some(credential.to_string());
        self
    }

    pub fn idempotency_key(mut self, key: &str) -> Publish {
        self.idempotency_key = Some(key.to_string());
        self
    }

    /// Sends it to `base` (Pushpin's public `http://127.0.0.1:port`); panics only when no
    /// HTTP answer comes back.
    pub async fn send(&self, base: &str) -> Answer {
        self.try_send(base)
            .await
            .unwrap_or_else(|e| panic!("{} {base}{}: {e}", self.method, self.path))
    }

    /// Sends it to `base`; an error when no HTTP answer comes back (a producer retrying
    /// through a restart).
    pub async fn try_send(&self, base: &str) -> Result<Answer, reqwest::Error> {
        let url = format!("{base}{}", self.path);
        let mut request = reqwest::Client::new()
            .request(self.method.clone(), &url)
            .timeout(Duration::from_secs(30))
            .body(self.body.clone());
        if let Some(ct) = &self.content_type {
            request = request.header("Content-Type", ct);
        }
        if let Some(c) = &self.credential {
            request = request.header("Authorization", format!("Bearer {c}"));
        }
        if let Some(k) = &self.idempotency_key {
            request = request.header("Idempotency-Key", k);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

fn items_path(channel: &str, query: &str) -> String {
    if query.is_empty() {
        format!("/channels/{channel}/items")
    } else {
        format!("/channels/{channel}/items?{query}")
    }
}

/// What the publish API answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// The JSON body (a JSON string holding the text when it was not JSON).
    pub body: Value,
}

impl Answer {
    /// The receipt of a 200 answer; panics with the answer otherwise.
    pub fn receipt(&self) -> &Value {
        assert_eq!(self.status, 200, "publish refused: {}", self.body);
        &self.body
    }

    /// The receipt's `seq` (panics unless 200).
    pub fn seq(&self) -> u64 {
        self.receipt()["seq"].as_u64().expect("a seq")
    }

    /// The error code of a refusal (`""` when there is none).
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
