//! API keys for fetchers: a `KeyStore` trait, the default local JSON file ([`FileKeyStore`])
//! and the production S3 object (`S3KeyStore`, feature `aws`).
//!
//! Both hold the original restream layout: `{"<channel name>": {"<key name>": "<secret>"}}`.
//! Values are held as `SecretString` and never logged.

mod file;
#[cfg(feature = "aws")]
mod s3;

pub use file::FileKeyStore;
#[cfg(feature = "aws")]
pub use s3::S3KeyStore;

use std::collections::BTreeMap;

use async_trait::async_trait;
use secrecy::SecretString;
use serde_json::Value;
use thiserror::Error;

use crate::fetcher::Keys;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    #[error("cannot read keys file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("keys file {path} is invalid: {problem}")]
    Invalid { path: String, problem: String },
    #[error("keys file {path} is readable by every user (mode {mode:o}); run `chmod 600 {path}`")]
    WorldReadable { path: String, mode: u32 },
    /// The remote keys object could not be read and no good copy is known yet.
    #[error("keys object {location} is unavailable: {problem}")]
    Unavailable { location: String, problem: String },
}

/// Where fetchers' API keys come from.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The keys for one channel type; empty when none are configured.
    async fn keys_for(&self, channel: &str) -> Result<Keys, KeyStoreError>;
}

type KeyMap = BTreeMap<String, BTreeMap<String, SecretString>>;

/// Parses the keys JSON; errors name the entry, never a value.
fn parse_keys(text: &[u8]) -> Result<KeyMap, String> {
    let v: Value = serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(channels) = v else {
        return Err("top level must be an object of channel name to keys".into());
    };
    let mut out = KeyMap::new();
    for (channel, keys) in channels {
        let Value::Object(keys) = keys else {
            return Err(format!(
                "entry {channel:?} must be an object of key name to value"
            ));
        };
        let mut m = BTreeMap::new();
        for (name, value) in keys {
            let Value::String(s) = value else {
                return Err(format!("key {channel}.{name} must be a string"));
            };
            m.insert(name, SecretString::from(s));
        }
        out.insert(channel, m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_never_contain_values() {
        let e = parse_keys(br#"{"a": {"k": 12345}}"#).unwrap_err();
        assert!(!e.contains("12345"));
    }
}
