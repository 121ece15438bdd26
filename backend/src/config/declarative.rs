//! `[declarative]`: the limits of declarative channels (`channels/*.toml`): which hosts a
//! `url` param may name, pages per poll, feed size, transform time and output, and the calls
//! per host; the same in the file and typed forms (docs/declarative.md).

use serde::{Deserialize, Serialize};

use super::SettingsError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Declarative {
    /// Hosts a channel's `url` param may name: `host`, `*.domain`, optionally with a scheme
    /// (`http://host`: plain HTTP allowed; default https only) and a port (`host:8080`).
    /// Empty (the default): every `url` param is refused (`url_not_allowed`).
    pub url_allowlist: Vec<String>,
    /// Pages one poll may follow at most; a channel's own `max_pages` is capped by this.
    pub max_pages: u32,
    /// Largest feed document (RSS, Atom, JSON Feed), in bytes.
    pub max_feed_bytes: u64,
    /// Longest a transform may run on one page, in milliseconds.
    pub transform_timeout_ms: u64,
    /// Most items a transform may produce from one page.
    pub transform_max_items: u64,
    /// Largest transform output (its items as JSON), in bytes.
    pub transform_max_bytes: u64,
    /// Upstream calls per minute to one host, over every declarative channel (0 = no limit).
    pub host_calls_per_minute: u64,
}

impl Default for Declarative {
    fn default() -> Declarative {
        Declarative {
            url_allowlist: Vec::new(),
            max_pages: 10,
            max_feed_bytes: 4 << 20,
            transform_timeout_ms: 1000,
            transform_max_items: 10_000,
            transform_max_bytes: 8 << 20,
            host_calls_per_minute: 60,
        }
    }
}

impl Declarative {
    /// Every check of the section, naming the key at fault.
    pub(super) fn check(self) -> Result<Declarative, SettingsError> {
        for (key, value) in [
            ("declarative.max_pages", u64::from(self.max_pages)),
            ("declarative.max_feed_bytes", self.max_feed_bytes),
            (
                "declarative.transform_timeout_ms",
                self.transform_timeout_ms,
            ),
            ("declarative.transform_max_items", self.transform_max_items),
            ("declarative.transform_max_bytes", self.transform_max_bytes),
        ] {
            if value == 0 {
                return Err(SettingsError::BelowOne { key });
            }
        }
        if self.max_pages > 1000 {
            return Err(SettingsError::Invalid {
                key: "declarative.max_pages",
                problem: "must be at most 1000",
            });
        }
        for pattern in &self.url_allowlist {
            if crate::fetcher::http::HostPattern::parse(pattern).is_err() {
                return Err(SettingsError::Invalid {
                    key: "declarative.url_allowlist",
                    problem: "a pattern is not [http://|https://]host[:port] or *.domain",
                });
            }
        }
        Ok(self)
    }
}
