//! Cluster mode's advertised addresses as settings: the host other replicas reach this one at
//! (`cluster.advertise_host`) and this replica's Pushpin as they reach it (the
//! `cluster.pushpin_*` templates, where `{host}` stands for that host).

use std::net::IpAddr;

use super::SettingsError;

/// `cluster.advertise_host`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AdvertiseHost {
    /// The host of `server.listen` (loopback when that is a wildcard).
    #[default]
    Listen,
    /// A host name or IP address.
    Host(String),
    /// This task's private IPv4 from the ECS task metadata endpoint v4.
    Ecs,
}

impl AdvertiseHost {
    /// `""`, `ecs`, or a host name / IP address without scheme or port.
    pub fn parse(s: &str) -> Result<AdvertiseHost, SettingsError> {
        match s {
            "" => Ok(AdvertiseHost::Listen),
            "ecs" => Ok(AdvertiseHost::Ecs),
            host if is_host(host) => Ok(AdvertiseHost::Host(host.to_string())),
            _ => Err(SettingsError::BadAdvertiseHost),
        }
    }

    /// The file form.
    pub fn to_file(&self) -> String {
        match self {
            AdvertiseHost::Listen => String::new(),
            AdvertiseHost::Host(h) => h.clone(),
            AdvertiseHost::Ecs => "ecs".into(),
        }
    }
}

/// An IP address or a DNS name (letters, digits, `-` in dot-separated labels).
fn is_host(s: &str) -> bool {
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    s.len() <= 253
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `host` as it goes into a URL or a ZeroMQ endpoint: an IPv6 address in brackets.
pub fn url_host(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host.to_string(),
    }
}

/// `template` with every `{host}` replaced by `host` (bracketed when it is an IPv6 address).
pub fn render(template: &str, host: &str) -> String {
    template.replace("{host}", &url_host(host))
}

/// This replica's Pushpin as the other replicas reach it (`cluster.pushpin_*`); a template
/// left empty is not advertised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushpinTemplates {
    /// Its ZeroMQ PULL socket, e.g. `tcp://{host}:5560`.
    pub publish_spec: Option<String>,
    /// Its HTTP publish base URL, e.g. `http://{host}:5561`.
    pub http_url: Option<String>,
    /// Its stats PUB socket, e.g. `tcp://{host}:5564`.
    pub stats_spec: Option<String>,
}

/// A host no template check confuses with a port or a path.
const PROBE_HOST: &str = "192.0.2.1";

impl PushpinTemplates {
    /// The three templates of the file form; each empty or of its endpoint's shape.
    pub fn parse(
        publish_spec: String,
        http_url: String,
        stats_spec: String,
    ) -> Result<PushpinTemplates, SettingsError> {
        let zmq = |key: &'static str, example: &'static str, t: String| match t.as_str() {
            "" => Ok(None),
            _ if is_tcp_spec(&render(&t, PROBE_HOST)) => Ok(Some(t)),
            _ => Err(SettingsError::BadTemplate { key, example }),
        };
        let http = match http_url.as_str() {
            "" => None,
            _ if is_http_url(&render(&http_url, PROBE_HOST)) => Some(http_url),
            _ => {
                return Err(SettingsError::BadTemplate {
                    key: "cluster.pushpin_http_url",
                    example: "http://{host}:5561",
                })
            }
        };
        Ok(PushpinTemplates {
            publish_spec: zmq(
                "cluster.pushpin_publish_spec",
                "tcp://{host}:5560",
                publish_spec,
            )?,
            http_url: http,
            stats_spec: zmq(
                "cluster.pushpin_stats_spec",
                "tcp://{host}:5564",
                stats_spec,
            )?,
        })
    }
}

/// `tcp://<host>:<port>`.
fn is_tcp_spec(s: &str) -> bool {
    let Some((host, port)) = s.strip_prefix("tcp://").and_then(|r| r.rsplit_once(':')) else {
        return false;
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    is_host(host) && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// An http:// or https:// URL with a host.
fn is_http_url(s: &str) -> bool {
    reqwest::Url::parse(s)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_names_addresses_or_ecs() {
        assert_eq!(AdvertiseHost::parse(""), Ok(AdvertiseHost::Listen));
        assert_eq!(AdvertiseHost::parse("ecs"), Ok(AdvertiseHost::Ecs));
        for ok in ["10.0.1.7", "::1", "pushpin-a", "ip-10-0-2-100.ec2.internal"] {
            let parsed = AdvertiseHost::parse(ok).unwrap();
            assert_eq!(parsed, AdvertiseHost::Host(ok.into()));
            assert_eq!(AdvertiseHost::parse(&parsed.to_file()), Ok(parsed));
        }
        for bad in [
            "http://10.0.1.7",
            "10.0.1.7:5000",
            "a b",
            "-a",
            "a..b",
            "[::1]",
        ] {
            assert_eq!(
                AdvertiseHost::parse(bad),
                Err(SettingsError::BadAdvertiseHost),
                "{bad}"
            );
        }
    }

    #[test]
    fn templates_are_checked() {
        let t = PushpinTemplates::parse(
            "tcp://{host}:5560".into(),
            "http://{host}:5561/".into(),
            "tcp://{host}:5564".into(),
        )
        .unwrap();
        assert_eq!(t.publish_spec.as_deref(), Some("tcp://{host}:5560"));
        assert_eq!(
            render(t.publish_spec.as_deref().unwrap(), "fd00::7"),
            "tcp://[fd00::7]:5560"
        );
        let none = PushpinTemplates::parse(String::new(), String::new(), String::new()).unwrap();
        assert_eq!(none, PushpinTemplates::default());
        let fixed = PushpinTemplates::parse("tcp://pushpin:5560".into(), "".into(), "".into());
        assert!(
            fixed.is_ok(),
            "a template without {{host}} is a fixed endpoint"
        );
        let cases = [
            ("http://{host}:5560", "", "", "cluster.pushpin_publish_spec"),
            ("tcp://{host}", "", "", "cluster.pushpin_publish_spec"),
            ("", "tcp://{host}:5561", "", "cluster.pushpin_http_url"),
            ("", "{host}:5561", "", "cluster.pushpin_http_url"),
            ("", "", "tcp://{host}:99999", "cluster.pushpin_stats_spec"),
        ];
        for (publish, http, stats, key) in cases {
            let e = PushpinTemplates::parse(publish.into(), http.into(), stats.into())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(key), "{e}");
        }
    }
}
