//! Browser origins: the `Origin` header, `server.cors_origins`, and the decision whether a
//! page from an origin may use the API (CORS) or open a WebSocket.
//!
//! An origin is `scheme://host[:port]` as browsers serialize it (lowercase, no default port,
//! no path). A page is always allowed on the host it came from: an `Origin` whose host and
//! port are the request's `Host` (the demo page at `/demo` opening `/ws`).

use std::fmt;

/// Why an origin in the settings is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("{0:?} is not an origin (scheme://host[:port], no path)")]
    NotAnOrigin(String),
    #[error("\"*\" allows every origin and cannot be combined with others")]
    WildcardWithOthers,
}

/// A serialized origin, normalized (lowercase, default port dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// `host[:port]` (IPv6 literals in brackets); `None` when it is not one.
fn host_port(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (inside, rest) = v6.split_once(']')?;
            let port = match rest {
                "" => None,
                r => Some(r.strip_prefix(':')?),
            };
            (format!("[{inside}]"), port)
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        },
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    host_ok.then(|| (host.to_ascii_lowercase(), port))
}

impl Origin {
    /// `scheme://host[:port]`; `None` for anything else (`null`, paths, user info).
    pub fn parse(s: &str) -> Option<Origin> {
        let (scheme, authority) = s.split_once("://")?;
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !scheme_ok {
            return None;
        }
        let scheme = scheme.to_ascii_lowercase();
        let (host, port) = host_port(authority)?;
        let port = port.filter(|p| Some(*p) != default_port(&scheme));
        Some(Origin { scheme, host, port })
    }

    /// The `Origin` header's value; `None` when it is not valid UTF-8 or not an origin.
    pub fn from_header(value: &[u8]) -> Option<Origin> {
        Origin::parse(std::str::from_utf8(value).ok()?.trim())
    }

    /// Whether this origin names the host (and port) a request's `Host` header names.
    fn is_host(&self, host_header: &[u8]) -> bool {
        let Some((host, port)) = std::str::from_utf8(host_header)
            .ok()
            .and_then(|h| host_port(h.trim()))
        else {
            return false;
        };
        let port = port.filter(|p| Some(*p) != default_port(&self.scheme));
        host == self.host && port == self.port
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

/// `server.cors_origins`, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AllowedOrigins {
    /// Empty: no cross-origin access is granted and no request is refused for its origin.
    #[default]
    Off,
    /// `["*"]`: every page may use the API.
    Any,
    /// Exactly these origins (and each page's own host).
    List(Vec<Origin>),
}

/// What to do with a request, by its `Origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginDecision {
    /// `server.cors_origins` is empty: serve as before, no CORS headers.
    Unchecked,
    /// No `Origin` header: a same-origin read or a non-browser client (which could send any
    /// `Origin` it liked), so served, without CORS headers.
    NoOrigin,
    /// Allowed; `Access-Control-Allow-Origin` carries this value (`*` or the origin).
    Allowed(String),
    /// A page from an origin that is not allowed: refused before anything is spent.
    Refused,
}

impl AllowedOrigins {
    /// The settings' list: empty, `["*"]`, or origins.
    pub fn parse(entries: &[String]) -> Result<AllowedOrigins, OriginError> {
        match entries {
            [] => Ok(AllowedOrigins::Off),
            [only] if only.trim() == "*" => Ok(AllowedOrigins::Any),
            _ if entries.iter().any(|e| e.trim() == "*") => Err(OriginError::WildcardWithOthers),
            _ => entries
                .iter()
                .map(|e| {
                    let e = e.trim().trim_end_matches('/');
                    Origin::parse(e).ok_or_else(|| OriginError::NotAnOrigin(e.to_string()))
                })
                .collect::<Result<_, _>>()
                .map(AllowedOrigins::List),
        }
    }

    /// Back to the settings' list.
    pub fn to_entries(&self) -> Vec<String> {
        match self {
            AllowedOrigins::Off => Vec::new(),
            AllowedOrigins::Any => vec!["*".into()],
            AllowedOrigins::List(list) => list.iter().map(Origin::to_string).collect(),
        }
    }

    /// Whether origins are checked at all.
    pub fn is_on(&self) -> bool {
        *self != AllowedOrigins::Off
    }

    /// The decision for a request carrying these `Origin` and `Host` header values.
    pub fn decide(&self, origin: Option<&[u8]>, host: Option<&[u8]>) -> OriginDecision {
        let Some(origin) = origin else {
            return match self {
                AllowedOrigins::Off => OriginDecision::Unchecked,
                _ => OriginDecision::NoOrigin,
            };
        };
        match self {
            AllowedOrigins::Off => OriginDecision::Unchecked,
            AllowedOrigins::Any => OriginDecision::Allowed("*".into()),
            AllowedOrigins::List(list) => match Origin::from_header(origin) {
                Some(o) if list.contains(&o) || host.is_some_and(|h| o.is_host(h)) => {
                    // Echo what the browser sent: it compares byte for byte.
                    OriginDecision::Allowed(String::from_utf8_lossy(origin).trim().to_string())
                }
                _ => OriginDecision::Refused,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn list(entries: &[&str]) -> AllowedOrigins {
        AllowedOrigins::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn settings_parse_and_round_trip() {
        assert_eq!(list(&[]), AllowedOrigins::Off);
        assert_eq!(list(&["*"]), AllowedOrigins::Any);
        let l = list(&[
            "https://App.example.com:443/",
            "http://127.0.0.1:8080",
            "http://[::1]:3000",
        ]);
        assert_eq!(
            l.to_entries(),
            [
                "https://app.example.com",
                "http://127.0.0.1:8080",
                "http://[::1]:3000"
            ]
        );
        assert_eq!(AllowedOrigins::parse(&l.to_entries()), Ok(l));
        for bad in [
            "example.com",
            "https://",
            "https://a.com/path",
            "https://u@a.com",
            "null",
            "https://a.com:99999",
            "https://a.com:x",
        ] {
            assert!(
                matches!(
                    AllowedOrigins::parse(&[bad.to_string()]),
                    Err(OriginError::NotAnOrigin(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            AllowedOrigins::parse(&["*".into(), "https://a.com".into()]),
            Err(OriginError::WildcardWithOthers)
        );
    }

    #[test]
    fn decisions() {
        let l = list(&["https://app.example.com", "http://localhost:3000"]);
        let d = |o: &str, h: &str| l.decide(Some(o.as_bytes()), Some(h.as_bytes()));
        assert_eq!(
            d("https://app.example.com", "api.example.com"),
            OriginDecision::Allowed("https://app.example.com".into())
        );
        assert_eq!(
            d("https://app.example.com:443", "api.example.com"),
            OriginDecision::Allowed("https://app.example.com:443".into()),
            "the default port is the same origin"
        );
        assert_eq!(
            d("http://app.example.com", "api.example.com"),
            OriginDecision::Refused,
            "scheme"
        );
        assert_eq!(
            d("http://localhost:3001", "api.example.com"),
            OriginDecision::Refused,
            "port"
        );
        assert_eq!(
            d("https://evil.example", "api.example.com"),
            OriginDecision::Refused
        );
        assert_eq!(d("null", "api.example.com"), OriginDecision::Refused);
        // A page on the API's own host: the demo page.
        assert_eq!(
            d("http://api.example.com:7999", "api.example.com:7999"),
            OriginDecision::Allowed("http://api.example.com:7999".into())
        );
        assert_eq!(
            d("https://api.example.com", "API.example.com:443"),
            OriginDecision::Allowed("https://api.example.com".into())
        );
        assert_eq!(
            d("http://api.example.com:7998", "api.example.com:7999"),
            OriginDecision::Refused
        );
        assert_eq!(
            l.decide(None, Some(b"api.example.com")),
            OriginDecision::NoOrigin
        );
        assert_eq!(
            AllowedOrigins::Any.decide(Some(b"null"), None),
            OriginDecision::Allowed("*".into())
        );
        assert_eq!(
            AllowedOrigins::Off.decide(Some(b"https://evil.example"), None),
            OriginDecision::Unchecked
        );
        assert_eq!(
            AllowedOrigins::Off.decide(None, None),
            OriginDecision::Unchecked
        );
    }

    fn origin() -> impl Strategy<Value = String> {
        (
            "(http|https)",
            "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){0,2}",
            proptest::option::of(1u16..),
        )
            .prop_map(|(s, h, p)| match p {
                Some(p) => format!("{s}://{h}:{p}"),
                None => format!("{s}://{h}"),
            })
    }

    proptest! {
        #[test]
        fn random_header_bytes_never_panic(
            origin in proptest::collection::vec(any::<u8>(), 0..80),
            host in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let l = list(&["https://app.example.com"]);
            let d = l.decide(Some(&origin), Some(&host));
            if let OriginDecision::Allowed(v) = d {
                // Whatever is echoed parsed as an origin, so it is a valid header value.
                prop_assert!(Origin::parse(&v).is_some());
                prop_assert!(v.bytes().all(|b| (0x21..0x7f).contains(&b)));
            }
            let _ = Origin::from_header(&origin);
        }

        #[test]
        fn a_listed_origin_is_allowed_and_others_are_not(a in origin(), b in origin()) {
            let l = AllowedOrigins::parse(std::slice::from_ref(&a)).unwrap();
            prop_assert_eq!(l.decide(Some(a.as_bytes()), Some(b"api_test")), OriginDecision::Allowed(a.clone()));
            let same = Origin::parse(&a) == Origin::parse(&b);
            let allowed = matches!(l.decide(Some(b.as_bytes()), Some(b"api_test")), OriginDecision::Allowed(_));
            prop_assert_eq!(allowed, same);
            // Settings round-trip.
            prop_assert_eq!(AllowedOrigins::parse(&l.to_entries()).unwrap(), l);
        }
    }
}
