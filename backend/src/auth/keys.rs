//! The keys tokens are verified with: an HS256 secret from the key store and RS256/ES256
//! public keys from a JWKS (file or URL), held in memory so verification never waits for I/O,
//! refreshed periodically and when a token names an unknown `kid` (at most once per
//! `min_refresh`).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::keys::KeyStore;

/// The key store entry holding restream's own secrets: `keys_for("_restream")`. No channel
/// name starts with `_`, so it never clashes with a fetcher's keys.
pub const SECRETS_ENTRY: &str = "_restream";
/// The HS256 secret's name in that entry.
pub const JWT_SECRET: &str = "jwt_secret";
/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Where the public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

/// One public key of the JWKS.
#[derive(Clone)]
struct PublicKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Every key known right now.
#[derive(Clone, Default)]
pub struct KeySet {
    hs256: Option<DecodingKey>,
    public: Vec<PublicKey>,
}

/// What a token's header asks for.
pub enum Lookup<'a> {
    Found(&'a DecodingKey),
    /// A `kid` (or an algorithm) no key has: a refresh may bring it.
    Unknown,
    /// RS256/ES256/HS256 only.
    Unsupported,
}

impl KeySet {
    pub fn new(hs256_secret: Option<&[u8]>, jwks: &Value) -> KeySet {
        KeySet {
            hs256: hs256_secret.map(DecodingKey::from_secret),
            public: parse_jwks(jwks),
        }
    }

    pub fn public_keys(&self) -> usize {
        self.public.len()
    }

    /// No key at all: every token is refused.
    pub fn is_empty(&self) -> bool {
        self.hs256.is_none() && self.public.is_empty()
    }

    pub fn find(&self, alg: Algorithm, kid: Option<&str>) -> Lookup<'_> {
        match alg {
            Algorithm::HS256 => self.hs256.as_ref().map_or(Lookup::Unknown, Lookup::Found),
            Algorithm::RS256 | Algorithm::ES256 => {
                let mut candidates = self.public.iter().filter(|k| k.alg == alg);
                let found = match kid {
                    Some(kid) => candidates.find(|k| k.kid.as_deref() == Some(kid)),
                    // Without a `kid`, only an unambiguous key will do.
                    None => match (candidates.next(), candidates.next()) {
                        (Some(only), None) => Some(only),
                        _ => None,
                    },
                };
                found.map_or(Lookup::Unknown, |k| Lookup::Found(&k.key))
            }
            _ => Lookup::Unsupported,
        }
    }
}

/// The usable keys of a JWKS document (`{"keys": [...]}`); others are skipped with a log line.
fn parse_jwks(v: &Value) -> Vec<PublicKey> {
    let Some(keys) = v.get("keys").and_then(Value::as_array) else {
        return Vec::new();
    };
    keys.iter()
        .filter_map(|k| match public_key(k) {
            Ok(key) => Some(key),
            Err(problem) => {
                let kid = k.get("kid").and_then(Value::as_str).unwrap_or("");
                tracing::warn!(kid, problem, "JWKS key skipped");
                None
            }
        })
        .collect()
}

fn public_key(v: &Value) -> Result<PublicKey, String> {
    let jwk: Jwk = serde_json::from_value(v.clone()).map_err(|e| format!("not a JWK: {e}"))?;
    let alg = match (&jwk.algorithm, v.get("alg").and_then(Value::as_str)) {
        (AlgorithmParameters::RSA(_), None | Some("RS256")) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(ec), None | Some("ES256"))
            if ec.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        _ => return Err("only RSA keys for RS256 and P-256 keys for ES256 are used".into()),
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable key: {e}"))?;
    Ok(PublicKey {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
    })
}

/// The keys in use, and how to reload them.
pub struct LiveKeys {
    current: RwLock<Arc<KeySet>>,
    store: Option<Arc<dyn KeyStore>>,
    jwks: Option<JwksSource>,
    http: reqwest::Client,
    min_refresh: Duration,
    last_refresh: Mutex<Option<Instant>>,
    wanted: Notify,
}

impl LiveKeys {
    /// Keys read from `store` (the HS256 secret) and `jwks`; nothing is read until
    /// [`LiveKeys::refresh`].
    pub fn new(
        store: Option<Arc<dyn KeyStore>>,
        jwks: Option<JwksSource>,
        min_refresh: Duration,
    ) -> LiveKeys {
        LiveKeys {
            current: RwLock::new(Arc::new(KeySet::default())),
            store,
            jwks,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a plain HTTP client builds"),
            min_refresh,
            last_refresh: Mutex::new(None),
            wanted: Notify::new(),
        }
    }

    /// Fixed keys that never change (tests, `restream token`).
    pub fn fixed(keys: KeySet) -> LiveKeys {
        let live = LiveKeys::new(None, None, Duration::from_secs(3600));
        *live.current.write().expect("keys lock") = Arc::new(keys);
        live
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.current.read().expect("keys lock").clone()
    }

    /// Asks the refresher for a refresh (a token named an unknown key); never waits.
    pub fn want_refresh(&self) {
        self.wanted.notify_one();
    }

    /// Reloads the keys unless that happened less than `min_refresh` ago; a part that cannot
    /// be read keeps its last good keys.
    pub async fn refresh_limited(&self) {
        let mut last = self.last_refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return;
        }
        *last = Some(Instant::now());
        self.refresh().await;
    }

    /// Reloads the keys now.
    pub async fn refresh(&self) {
        if self.store.is_none() && self.jwks.is_none() {
            return;
        }
        let old = self.current();
        let metrics = crate::metrics::get();
        let mut outcome = "ok";
        let hs256 = match &self.store {
            None => None,
            Some(store) => match store.keys_for(SECRETS_ENTRY).await {
                Ok(keys) => keys
                    .get(JWT_SECRET)
                    .map(|s| DecodingKey::from_secret(s.expose_secret().as_bytes())),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the JWT secret; keeping the last one");
                    outcome = "failed";
                    old.hs256.clone()
                }
            },
        };
        let public = match &self.jwks {
            None => Vec::new(),
            Some(source) => match self.load_jwks(source).await {
                Ok(v) => parse_jwks(&v),
                Err(problem) => {
                    tracing::warn!(problem, "cannot read the JWKS; keeping the last keys");
                    outcome = "failed";
                    old.public.clone()
                }
            },
        };
        metrics
            .auth_key_refreshes
            .with_label_values(&[outcome])
            .inc();
        metrics.auth_jwks_keys.set(public.len() as i64);
        *self.current.write().expect("keys lock") = Arc::new(KeySet { hs256, public });
    }

    async fn load_jwks(&self, source: &JwksSource) -> Result<Value, String> {
        let bytes = match source {
            JwksSource::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?,
            JwksSource::Url(url) => {
                let response = self
                    .http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| e.without_url().to_string())?;
                if !response.status().is_success() {
                    return Err(format!("answered {}", response.status()));
                }
                let body = response.bytes().await.map_err(|e| e.to_string())?;
                body.to_vec()
            }
        };
        if bytes.len() > MAX_JWKS_BYTES {
            return Err("JWKS larger than 1 MiB".into());
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))
    }

    /// Refreshes every `every`, and soon after a token names an unknown key, until `shutdown`.
    pub async fn run_refresher(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => self.refresh().await,
                _ = self.wanted.notified() => self.refresh_limited().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jwk(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/auth/{name}.jwk.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn jwks_keys_are_found_by_kid_and_alg() {
        let set = KeySet::new(
            None,
            &json!({"keys": [jwk("rsa-a"), jwk("ec-a"), {"kty": "oct", "k": "c2VjcmV0"}, 5]}),
        );
        assert_eq!(set.public_keys(), 2);
        assert!(matches!(
            set.find(Algorithm::RS256, Some("rsa-a")),
            Lookup::Found(_)
        ));
        assert!(matches!(set.find(Algorithm::RS256, None), Lookup::Found(_)));
        assert!(matches!(
            set.find(Algorithm::ES256, Some("rsa-a")),
            Lookup::Unknown
        ));
        assert!(matches!(
            set.find(Algorithm::RS256, Some("rsa-b")),
            Lookup::Unknown
        ));
        assert!(matches!(set.find(Algorithm::HS256, None), Lookup::Unknown));
        assert!(matches!(
            set.find(Algorithm::HS512, None),
            Lookup::Unsupported
        ));
        let two = KeySet::new(None, &json!({"keys": [jwk("rsa-a"), jwk("rsa-b")]}));
        assert!(matches!(two.find(Algorithm::RS256, None), Lookup::Unknown));
    }
}
