//! A declarative channel file (`channels/<name>.toml`): its fields, the checks made when it
//! is loaded, and discovery of every file in a folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use super::limits::HttpLimits;
use super::pagination::Pagination;
use super::template::{self, Placeholder};
use super::transform::Transform;
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
    /// Only where a `{key:<name>}` placeholder puts it (a header value, the body, the URL).
    Template,
}

/// Where one API key goes in the request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPlacement {
    #[serde(rename = "in")]
    pub location: KeyLocation,
    /// Query parameter or header name (not for `in = "template"`).
    #[serde(default)]
    pub name: String,
    /// How the value is written; `{value}` is replaced, e.g. `Bearer {value}`.
    #[serde(default = "default_format")]
    pub format: String,
}

fn default_format() -> String {
    "{value}".into()
}

fn default_id_field() -> String {
    "id".into()
}

/// What the upstream answers: a JSON document, or a feed (RSS, Atom, JSON Feed).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    #[default]
    Http,
    Feed,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
}

/// A declarative channel file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpChannel {
    /// `"http"` (default: a JSON API) or `"feed"` (RSS, Atom or JSON Feed).
    #[serde(default)]
    pub kind: ChannelKind,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub doc_url: Option<String>,
    /// URL template, e.g. `{base}/api/v1/search?tags=front_page&hitsPerPage={limit}`;
    /// exactly `"{url}"` takes the whole URL from the `url` param (checked against
    /// `declarative.url_allowlist`).
    pub url: String,
    /// What `{base}` stands for.
    #[serde(default)]
    pub base_url: String,
    /// An environment variable that overrides `base_url` (mirrors, tests).
    #[serde(default)]
    pub base_url_env: Option<String>,
    /// `GET` (default) or `POST`.
    #[serde(default)]
    pub method: Method,
    /// A JSON body (POST), its strings templated from params and keys.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// JSON pointer to the list of items, in the transform's output when there is one
    /// (`""`, the default, when that is the list itself).
    #[serde(default)]
    pub items: String,
    #[serde(default = "default_id_field")]
    pub id_field: String,
    #[serde(default)]
    pub poll_interval: Option<f64>,
    /// Whether the list is the whole collection (missing ids are `removed`).
    #[serde(default)]
    pub complete: bool,
    /// A jq program reshaping each page (a feed: its list of items) before `items` is read.
    #[serde(default)]
    pub transform: Option<String>,
    #[serde(default)]
    pub pagination: Option<Pagination>,
    #[serde(default)]
    pub params: BTreeMap<String, HttpParam>,
    #[serde(default)]
    pub keys: BTreeMap<String, KeyPlacement>,
    /// Request headers; values templated from params and keys.
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

impl HttpChannel {
    /// Whether the whole URL comes from the `url` param.
    pub fn url_from_param(&self) -> bool {
        self.url == URL_FROM_PARAM
    }
}

/// The `url` template that takes the whole URL from the `url` param.
pub const URL_FROM_PARAM: &str = "{url}";

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
    /// Any other check, naming the field.
    #[error("{file}: field `{field}`: {problem}")]
    Field {
        file: String,
        field: String,
        problem: String,
    },
    #[error("{file}: {source}")]
    Client {
        file: String,
        #[source]
        source: reqwest::Error,
    },
}

impl ChannelFileError {
    /// The field at fault, when the error is about one (for `fetchers check` line numbers).
    pub fn field(&self) -> Option<&str> {
        match self {
            ChannelFileError::UnknownPlaceholder { .. } => Some("url"),
            ChannelFileError::ItemsPointer { .. } => Some("items"),
            ChannelFileError::Field { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The byte range of a TOML syntax or shape error.
    pub fn span(&self) -> Option<std::ops::Range<usize>> {
        match self {
            ChannelFileError::Invalid { source, .. } => source.span(),
            _ => None,
        }
    }
}

impl HttpFetcher {
    /// Reads and checks a channel file with the default limits; errors name the file and the
    /// field.
    pub fn load(path: &Path, timeout: Duration) -> Result<HttpFetcher, ChannelFileError> {
        HttpFetcher::load_with(path, timeout, &HttpLimits::default())
    }

    /// Reads and checks a channel file; `limits` are the `[declarative]` settings.
    pub fn load_with(
        path: &Path,
        timeout: Duration,
        limits: &HttpLimits,
    ) -> Result<HttpFetcher, ChannelFileError> {
        let label = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(path).map_err(|source| ChannelFileError::Read {
            file: label.clone(),
            source,
        })?;
        HttpFetcher::parse(&label, &text, timeout, limits)
    }

    /// Checks a channel file's text; `label` names it in errors.
    pub fn parse(
        label: &str,
        text: &str,
        timeout: Duration,
        limits: &HttpLimits,
    ) -> Result<HttpFetcher, ChannelFileError> {
        let file = || label.to_string();
        let channel: HttpChannel =
            toml::from_str(text).map_err(|source| ChannelFileError::Invalid {
                file: file(),
                source,
            })?;
        let field = |field: &str, problem: String| ChannelFileError::Field {
            file: file(),
            field: field.into(),
            problem,
        };
        check_placeholders(&channel, label)?;
        if !(channel.items.is_empty() || channel.items.starts_with('/')) {
            return Err(ChannelFileError::ItemsPointer { file: file() });
        }
        if channel.url_from_param() && !channel.params.contains_key("url") {
            return Err(field(
                "url",
                "\"{url}\" needs a declared `url` param".into(),
            ));
        }
        for (name, key) in &channel.keys {
            if key.location != KeyLocation::Template && key.name.is_empty() {
                return Err(field("keys", format!("key {name}: `name` is required")));
            }
        }
        if channel.body.is_some() && channel.method != Method::Post {
            return Err(field("body", "a body needs method = \"POST\"".into()));
        }
        if let Some(Pagination::Cursor { field: f, .. }) = &channel.pagination {
            if !f.starts_with('/') {
                return Err(field(
                    "pagination",
                    "`field` is a JSON pointer starting with '/'".into(),
                ));
            }
        }
        if channel.pagination.as_ref().and_then(Pagination::max_pages) == Some(0) {
            return Err(field("pagination", "`max_pages` must be at least 1".into()));
        }
        let transform = match &channel.transform {
            Some(code) => {
                Some(Transform::new(code).map_err(|e| field("transform", e.to_string()))?)
            }
            None => None,
        };
        let client =
            client(&channel, timeout, limits).map_err(|source| ChannelFileError::Client {
                file: file(),
                source,
            })?;
        Ok(HttpFetcher {
            label: label.to_string(),
            channel,
            client,
            timeout,
            limits: limits.clone(),
            transform,
        })
    }
}

/// Every placeholder names a declared param or key (`{base}` only in the URL).
fn check_placeholders(channel: &HttpChannel, file: &str) -> Result<(), ChannelFileError> {
    let body_strings = channel
        .body
        .as_ref()
        .map(template::strings)
        .unwrap_or_default();
    let places = std::iter::once(("url", channel.url.as_str()))
        .chain(channel.headers.values().map(|v| ("headers", v.as_str())))
        .chain(body_strings.into_iter().map(|s| ("body", s)));
    for (place, text) in places {
        for p in template::placeholders(text) {
            match p {
                Placeholder::Base if place == "url" => {}
                Placeholder::Param(name) if channel.params.contains_key(name) => {}
                Placeholder::Key(name) if channel.keys.contains_key(name) => {}
                Placeholder::Param(name) if place == "url" => {
                    return Err(ChannelFileError::UnknownPlaceholder {
                        file: file.into(),
                        placeholder: name.to_string(),
                    })
                }
                other => {
                    return Err(ChannelFileError::Field {
                        file: file.into(),
                        field: place.into(),
                        problem: format!("placeholder {other:?} is not a declared param or key"),
                    })
                }
            }
        }
    }
    Ok(())
}

/// The channel's HTTP client: its timeout, and its redirect rule: a URL from a param may
/// only be redirected to hosts on the allowlist; others follow up to 5 redirects.
fn client(
    channel: &HttpChannel,
    timeout: Duration,
    limits: &HttpLimits,
) -> Result<reqwest::Client, reqwest::Error> {
    let allowlist = limits.allowlist.clone();
    let from_param = channel.url_from_param();
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            attempt.error("too many redirects")
        } else if from_param && !allowlist.allows(attempt.url()) {
            attempt.error(RedirectRefused)
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(policy)
        .user_agent(concat!("restream/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A redirect to a host not on the allowlist.
#[derive(Debug, Error)]
#[error("redirect to a host not on the allowlist")]
pub struct RedirectRefused;

/// Every `*.toml` declarative channel file of `dir` (push channel files aside), in name order,
/// with the default limits; unreadable files are logged and skipped.
pub fn discover(dir: &Path, timeout: Duration) -> Vec<HttpFetcher> {
    discover_with(dir, timeout, &HttpLimits::default())
}

/// [`discover`] with the `[declarative]` settings' limits.
pub fn discover_with(dir: &Path, timeout: Duration, limits: &HttpLimits) -> Vec<HttpFetcher> {
    channel_files(dir)
        .into_iter()
        .filter_map(|f| match HttpFetcher::load_with(&f, timeout, limits) {
            Ok(fetcher) => Some(fetcher),
            Err(e) => {
                tracing::error!(error = %e, "invalid declarative channel; skipped");
                None
            }
        })
        .collect()
}

/// Every declarative (not push) `*.toml` file of `dir`, in name order.
pub fn channel_files(dir: &Path) -> Vec<PathBuf> {
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
