//! Subscriber authentication: JWTs that name the channels their holder may subscribe to, and
//! the policy saying which channels need one (docs/security/auth.md).
//!
//! - `claims.rs`: the claims we read and the channel pattern syntax;
//! - `policy.rs`: which channels need a token;
//! - `keys.rs`: the HS256 secret (key store) and the JWKS public keys, in memory, refreshed;
//! - `verify.rs`: one token checked against those keys (synchronous, clock injected);
//! - `grants.rs`: per-subscribe channel tokens' expiry, kept in Pushpin connection meta;
//! - `mint.rs`: minting tokens (`restream token`, tests).
//!
//! Verification that may need I/O (a JWKS refresh for an unknown `kid`) happens in the
//! routes ([`Auth::verify_fresh`]); the sans-IO connection handler only gets a
//! [`RequestAuth`], whose checks are synchronous over the keys in memory.

mod claims;
mod grants;
mod keys;
pub mod mint;
mod policy;
mod verified;
mod verify;

pub use claims::{ChannelPattern, Claims, ClaimsError, PatternError, MAX_PATTERNS};
pub use grants::{Grants, GRANTS_META};
pub use keys::{JwksSource, KeySet, LiveKeys, JWT_SECRET, SECRETS_ENTRY};
pub use policy::{Access, Policy};
pub use verified::VerifiedTokens;
pub use verify::{verify, Refusal, Rules, MAX_TOKEN_LEN};

use std::sync::Arc;

use crate::channel::ChannelId;

/// The service's access policy and the keys to check tokens with.
pub struct Auth {
    pub policy: Policy,
    pub keys: Arc<LiveKeys>,
    pub rules: Rules,
    /// Connections' tokens verified lately.
    pub verified: VerifiedTokens,
}

impl Auth {
    /// Every channel public, no keys: the built-in default.
    pub fn public() -> Auth {
        Auth {
            policy: Policy::default(),
            keys: Arc::new(LiveKeys::fixed(KeySet::default())),
            rules: Rules::default(),
            verified: VerifiedTokens::default(),
        }
    }

    /// The access of channel `name` whose fetcher declares `declared`.
    pub fn access(&self, name: &str, declared: Option<Access>) -> Access {
        self.policy.access(name, declared)
    }

    /// Verifies over the keys in memory; an unknown key asks for a refresh (without waiting).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, Refusal> {
        let result = verify(&self.keys.current(), token, now, &self.rules);
        if result == Err(Refusal::UnknownKey) {
            self.keys.want_refresh();
        }
        result
    }

    /// Verifies; on an unknown key, refreshes the keys (rate-limited) and tries once more.
    pub async fn verify_fresh(&self, token: &str, now: u64) -> Result<Claims, Refusal> {
        match verify(&self.keys.current(), token, now, &self.rules) {
            Err(Refusal::UnknownKey) => {
                self.keys.refresh_limited().await;
                verify(&self.keys.current(), token, now, &self.rules)
            }
            other => other,
        }
    }

    /// A WebSocket connection's token, verified (Pushpin replays it on every request of the
    /// connection: one verified lately with the current keys is not verified again).
    pub async fn credential(&self, token: Option<&str>, now: u64) -> Credential {
        let token = match token {
            None | Some("") => return Credential::Absent,
            Some(t) => t,
        };
        let keys = self.keys.current();
        if let Some(claims) = self.verified.get(&keys, token, now) {
            return Credential::Valid(claims);
        }
        match self.verify_fresh(token, now).await {
            Ok(claims) => {
                self.verified.insert(&keys, token, &claims);
                Credential::Valid(claims)
            }
            Err(refusal) => Credential::Invalid(refusal),
        }
    }

    /// An HTTP request for channel `id` (status, items, SSE) with `token` from `?token=` or
    /// `Authorization: Bearer`: `Ok(None)` for a public channel, `Ok(Some(exp))` when the
    /// token grants it until `exp`.
    pub async fn check_request(
        &self,
        id: &ChannelId,
        declared: Option<Access>,
        token: Option<&str>,
        now: u64,
    ) -> Result<Option<u64>, Refusal> {
        if self.access(id.name(), declared) == Access::Public {
            return Ok(None);
        }
        let claims = match token {
            None | Some("") => return Err(Refusal::Missing),
            Some(t) => self.verify_fresh(t, now).await?,
        };
        match claims.allows(id) {
            true => Ok(Some(claims.exp)),
            false => Err(Refusal::WrongChannel),
        }
    }
}

/// A token as verified for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Absent,
    Valid(Claims),
    Invalid(Refusal),
}

/// How a subscription is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// The channel is public.
    Public,
    /// The connection's token (`?token=` on the WebSocket URL) names it.
    Connection,
    /// The subscribe's own `token` names it, until `exp`.
    ChannelToken { exp: u64 },
}

/// What the connection handler knows about one WOH request's authority: the policy and keys,
/// the connection's token as verified for this request, the channel tokens granted earlier,
/// and the time.
pub struct RequestAuth<'a> {
    pub auth: &'a Auth,
    pub connection: Credential,
    pub grants: Grants,
    /// Seconds since the Unix epoch.
    pub now: u64,
}

impl RequestAuth<'_> {
    /// Whether a subscribe to `id` (whose fetcher declares `declared`), carrying its own
    /// `token` or not, may go ahead. A subscribe's own token, when given, alone decides.
    pub fn authorize(
        &self,
        id: &ChannelId,
        declared: Option<Access>,
        token: Option<&str>,
    ) -> Result<Grant, Refusal> {
        if self.auth.access(id.name(), declared) == Access::Public {
            return Ok(Grant::Public);
        }
        if let Some(token) = token {
            let claims = self.auth.verify(token, self.now)?;
            return match claims.allows(id) {
                true => Ok(Grant::ChannelToken { exp: claims.exp }),
                false => Err(Refusal::WrongChannel),
            };
        }
        match &self.connection {
            Credential::Absent => Err(Refusal::Missing),
            Credential::Invalid(refusal) => Err(*refusal),
            Credential::Valid(claims) if claims.allows(id) => Ok(Grant::Connection),
            Credential::Valid(_) => Err(Refusal::WrongChannel),
        }
    }

    /// Whether a subscription the connection holds is still allowed now: its channel token
    /// (in `grants`, as this request has updated them) has not expired, or the connection's
    /// token (sent again with every request) names it.
    pub fn still_allowed(
        &self,
        id: &ChannelId,
        declared: Option<Access>,
        grants: &Grants,
    ) -> Result<(), Refusal> {
        if self.auth.access(id.name(), declared) == Access::Public {
            return Ok(());
        }
        let granted = grants.expiry(id);
        if granted.is_some_and(|exp| exp > self.now) {
            return Ok(());
        }
        let refusal = match &self.connection {
            Credential::Valid(claims) if claims.allows(id) => return Ok(()),
            Credential::Valid(_) => Refusal::WrongChannel,
            Credential::Absent => Refusal::Missing,
            Credential::Invalid(refusal) => *refusal,
        };
        Err(match granted {
            Some(_) => Refusal::Expired,
            None => refusal,
        })
    }
}

/// Counts and logs a refusal (never the token).
pub fn record(refusal: Refusal, channel: &ChannelId, via: &'static str) {
    crate::metrics::get()
        .auth_refusals
        .with_label_values(&[refusal.as_str()])
        .inc();
    tracing::debug!(channel = %channel, reason = refusal.as_str(), via, "token refused");
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
