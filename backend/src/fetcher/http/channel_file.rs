//! A declarative channel file (`channels/<name>.toml`): its fields, the checks made when it
//! is loaded, and discovery of every file in a folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use super::HttpFetcher;
use crate::channel::ParamSpec;

/// One declared param: the usual declaration, its `allowed` values included (checked at
/// subscribe, and again before any upstream call).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpParam {
    #[serde(flatten)]
    pub spec: ParamSpec,
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
    /// Channels (distinct params) active at once; `limits.max_channels_per_fetcher` wins.
    #[serde(default)]
    pub max_channels: Option<u64>,
    /// `"public"` or `"token"`: whether subscribers need a token (docs/security/auth.md).
    #[serde(default)]
    pub access: Option<String>,
}

/// Why a channel file cannot be used; every message names the file (and the field).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ChannelFileError {
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
    #[error("{file}: field `url`: placeholder {{{placeholder}}} is not a declared param")]
    UnknownPlaceholder { file: String, placeholder: String },
    #[error("{file}: field `items`: a JSON pointer starts with '/' (or is empty)")]
    ItemsPointer { file: String },
    #[error("{file}: {source}")]
    Client {
        file: String,
        #[source]
        source: reqwest::Error,
    },
}

impl HttpFetcher {
    /// Reads and checks a channel file; errors name the file and the field.
    pub fn load(path: &Path, timeout: Duration) -> Result<HttpFetcher, ChannelFileError> {
        let label = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = || label.clone();
        let text = std::fs::read_to_string(path).map_err(|source| ChannelFileError::Read {
            file: file(),
            source,
        })?;
        let channel: HttpChannel =
            toml::from_str(&text).map_err(|source| ChannelFileError::Invalid {
                file: file(),
                source,
            })?;
        if let Some(placeholder) = placeholders(&channel.url)
            .into_iter()
            .find(|p| *p != "base" && !channel.params.contains_key(*p))
        {
            return Err(ChannelFileError::UnknownPlaceholder {
                file: file(),
                placeholder: placeholder.to_string(),
            });
        }
        if !(channel.items.is_empty() || channel.items.starts_with('/')) {
            return Err(ChannelFileError::ItemsPointer { file: file() });
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("restream/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ChannelFileError::Client {
                file: file(),
                source,
            })?;
        Ok(HttpFetcher {
            label,
            channel,
            client,
            timeout,
        })
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

/// Every `*.toml` declarative channel file of `dir` (push channel files aside), in name order;
/// unreadable files are logged and skipped.
pub fn discover(dir: &Path, timeout: Duration) -> Vec<HttpFetcher> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            // Push channel files (`kind = "push"`) are `push::spec`'s.
            .filter(|p| {
                !std::fs::read_to_string(p).is_ok_and(|t| crate::push::spec::is_push_file(&t))
            })
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
        // Push channel files share the folder; `push::spec::discover` loads those.
        .filter(|f| !std::fs::read_to_string(f).is_ok_and(|t| crate::push::spec::is_push_file(&t)))
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

    fn channel(toml_text: &str) -> Result<HttpFetcher, ChannelFileError> {
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
        let e = channel(&OK.replace("{q}", "{nope}"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`url`") && e.contains("nope"), "{e}");
        let e = channel(&OK.replace("items = \"/list\"", "items = \"list\""))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`items`"), "{e}");
        let e = channel(&format!("{OK}\nbogus = 1\n"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = channel("name = 1").err().unwrap().to_string();
        assert!(e.contains("c.toml"), "{e}");
    }
}
