//! The operator's allowlist for URLs that come from a param (`url` of a feed channel): host
//! patterns, checked before any upstream call and again on every redirect.

use thiserror::Error;

/// One allowed host: `host`, `*.domain` (any subdomain, not the domain itself), optionally
/// with a scheme (`http://` allows plain HTTP; without one, https only) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// `true` when plain HTTP is allowed too.
    http: bool,
    /// Lowercase host, or the `.domain` suffix of a wildcard.
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("not a host pattern: {0:?}")]
pub struct PatternError(String);

impl HostPattern {
    pub fn parse(text: &str) -> Result<HostPattern, PatternError> {
        let bad = || PatternError(text.chars().take(100).collect());
        let (http, rest) = if let Some(r) = text.strip_prefix("http://") {
            (true, r)
        } else {
            (false, text.strip_prefix("https://").unwrap_or(text))
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().map_err(|_| bad())?)),
            None => (rest, None),
        };
        let (wildcard, host) = match host.strip_prefix("*.") {
            Some(h) => (true, h),
            None => (false, host),
        };
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
            && !host.starts_with('.')
            && !host.ends_with('.');
        if !valid {
            return Err(bad());
        }
        Ok(HostPattern {
            http,
            host: host.to_ascii_lowercase(),
            wildcard,
            port,
        })
    }

    fn matches(&self, url: &reqwest::Url) -> bool {
        let scheme_ok = match url.scheme() {
            "https" => true,
            "http" => self.http,
            _ => false,
        };
        let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
            return false;
        };
        let host_ok = if self.wildcard {
            host.strip_suffix(&self.host)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
        } else {
            host == self.host
        };
        let port_ok = self
            .port
            .is_none_or(|p| url.port_or_known_default() == Some(p));
        scheme_ok && host_ok && port_ok && url.username().is_empty() && url.password().is_none()
    }
}

/// Every allowed host pattern; empty allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist(Vec<HostPattern>);

impl Allowlist {
    /// Patterns that do not parse are left out (settings validation refuses them first).
    pub fn new(patterns: &[String]) -> Allowlist {
        Allowlist(
            patterns
                .iter()
                .filter_map(|p| HostPattern::parse(p).ok())
                .collect(),
        )
    }

    /// Whether `url` may be fetched: an http(s) URL without credentials whose host (and port,
    /// if the pattern names one) matches a pattern.
    pub fn allows(&self, url: &reqwest::Url) -> bool {
        self.0.iter().any(|p| p.matches(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn allows(patterns: &[&str], url: &str) -> bool {
        let list = Allowlist::new(&patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        list.allows(&reqwest::Url::parse(url).unwrap())
    }

    #[test]
    fn hosts_wildcards_schemes_and_ports() {
        assert!(allows(&["example.com"], "https://example.com/feed.xml"));
        assert!(allows(&["EXAMPLE.com"], "https://Example.COM/x"));
        assert!(
            !allows(&["example.com"], "http://example.com/x"),
            "https only"
        );
        assert!(allows(&["http://example.com"], "http://example.com/x"));
        assert!(!allows(&["example.com"], "https://www.example.com/x"));
        assert!(allows(&["*.example.com"], "https://www.example.com/x"));
        assert!(!allows(&["*.example.com"], "https://example.com/x"));
        assert!(!allows(&["*.example.com"], "https://evilexample.com/x"));
        assert!(!allows(&["example.com"], "https://example.com.evil.net/x"));
        assert!(allows(
            &["http://127.0.0.1:8080"],
            "http://127.0.0.1:8080/x"
        ));
        assert!(!allows(
            &["http://127.0.0.1:8080"],
            "http://127.0.0.1:8081/x"
        ));
        assert!(!allows(&["example.com"], "https://user:pw@example.com/x"));
        assert!(!allows(&["example.com"], "ftp://example.com/x"));
        assert!(
            !allows(&[], "https://example.com/x"),
            "empty allows nothing"
        );
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "",
            "*.",
            "exa mple.com",
            "example.com:x",
            "https://",
            ".example.com",
            "a/b",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        /// Whatever a stranger puts in a URL, only hosts on the list pass.
        #[test]
        fn only_listed_hosts_pass(host in "[a-z0-9.-]{1,30}", path in "[ -~]{0,40}") {
            let url = format!("https://{host}/{path}");
            if let Ok(url) = reqwest::Url::parse(&url) {
                let list = Allowlist::new(&["example.com".into(), "*.example.org".into()]);
                let h = url.host_str().unwrap_or("").to_string();
                let expected = h == "example.com" || (h.ends_with(".example.org") && h.len() > ".example.org".len());
                prop_assert_eq!(list.allows(&url), expected);
            }
        }
    }
}
