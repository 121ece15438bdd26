//! Minting tokens: `restream token` (HS256 with the key store's secret) and the tests.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::claims::ChannelPattern;

/// An HS256 token for `channels` (patterns, checked here so a typo fails at minting, not at
/// subscribe), expiring at `exp` (seconds since the Unix epoch).
pub fn hs256(
    secret: &[u8],
    sub: Option<&str>,
    channels: &[String],
    exp: u64,
) -> Result<String, String> {
    hs256_with_publish(secret, sub, channels, &[], exp)
}

/// An HS256 token that may also publish to the push channels `publish` matches (the
/// `publish` claim, left out when empty).
pub fn hs256_with_publish(
    secret: &[u8],
    sub: Option<&str>,
    channels: &[String],
    publish: &[String],
    exp: u64,
) -> Result<String, String> {
    for c in channels {
        ChannelPattern::parse(c).map_err(|e| format!("channel pattern {c:?}: {e}"))?;
    }
    for p in publish {
        ChannelPattern::parse(p).map_err(|e| format!("publish pattern {p:?}: {e}"))?;
    }
    let mut claims = json!({"exp": exp, "channels": channels});
    if !publish.is_empty() {
        claims["publish"] = json!(publish);
    }
    if let Some(sub) = sub {
        claims["sub"] = json!(sub);
    }
    sign(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
}

/// Signs any claims with any key (tests use it for RS256/ES256 and broken claims).
pub fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> Result<String, String> {
    jsonwebtoken::encode(header, claims, key).map_err(|e| e.to_string())
}

/// A lifetime such as `90s`, `15m`, `1h`, `7d` or plain seconds.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with s, m, h or d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    if secs == 0 {
        return Err("the lifetime must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_read_units() {
        assert_eq!(parse_ttl("90").unwrap().as_secs(), 90);
        assert_eq!(parse_ttl("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_ttl("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_ttl("2d").unwrap().as_secs(), 172_800);
        assert!(parse_ttl("1w").is_err() && parse_ttl("h").is_err() && parse_ttl("0").is_err());
    }

    #[test]
    fn minting_refuses_bad_patterns() {
        assert!(hs256(b"s", None, &["a*b".into()], 1).is_err());
        assert!(hs256(b"s", Some("u"), &["a".into(), "w?*".into()], 1).is_ok());
        assert!(hs256_with_publish(b"s", None, &[], &["p*q".into()], 1).is_err());
    }

    #[test]
    fn publish_patterns_reach_the_claims() {
        let token =
            hs256_with_publish(b"s", None, &[], &["p?site=*".into()], 4_000_000_000).unwrap();
        let keys = super::super::KeySet::new(Some(b"s"), &json!({}));
        let claims = super::super::verify(&keys, &token, 1, &Default::default()).unwrap();
        assert!(claims.channels.is_empty());
        assert_eq!(
            claims.publish,
            vec![ChannelPattern::parse("p?site=*").unwrap()]
        );
    }
}
