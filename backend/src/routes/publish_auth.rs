//! Who may publish: an `Authorization: Bearer` credential that is either a JWT whose
//! `publish` claim matches the channel, or the channel's producer key from the key store
//! (`{"<name>": {"producer_key": "..."}}`), compared in constant time. Nothing here logs or
//! returns a credential.

use actix_web::http::StatusCode;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::api_error::ApiError;
use super::AppState;
use crate::auth::{self, Refusal};
use crate::channel::ChannelId;

/// The key store entry (under the channel's name) holding a push channel's producer key.
pub const PRODUCER_KEY: &str = "producer_key";

/// What a bearer credential looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Exactly two dots: `header.claims.signature`.
    Jwt,
    ProducerKey,
}

impl Shape {
    pub fn of(credential: &str) -> Shape {
        match credential.bytes().filter(|b| *b == b'.').count() {
            2 => Shape::Jwt,
            _ => Shape::ProducerKey,
        }
    }
}

/// Equal in constant time: both sides are hashed first, so neither their length nor the
/// position of a first difference shows in the time taken.
pub fn same_secret(presented: &str, stored: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(stored.as_bytes());
    bool::from(a.ct_eq(&b))
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

fn invalid(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credential", message)
}

fn forbidden() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "this credential may not publish to this channel",
    )
}

fn key_store_unavailable(e: &crate::keys::KeyStoreError) -> ApiError {
    tracing::error!(error = %e, "cannot read producer keys for the publish API");
    ApiError {
        retry_after: Some(1),
        ..ApiError::unavailable("publishing is unavailable right now; retry shortly")
    }
}

/// Whether `credential` may publish to `id`: `Ok(())`, or the 401/403 (503 when the key
/// store cannot be read) to answer.
pub async fn check(
    state: &AppState,
    id: &ChannelId,
    credential: Option<&str>,
) -> Result<(), ApiError> {
    let credential = match credential {
        Some(c) if !c.is_empty() => c,
        _ => {
            auth::record(Refusal::Missing, id, "publish");
            return Err(unauthorized(
                "publishing needs a token or producer key in an Authorization: Bearer header",
            ));
        }
    };
    match Shape::of(credential) {
        Shape::Jwt => check_token(state, id, credential).await,
        Shape::ProducerKey => check_producer_key(state, id, credential).await,
    }
}

async fn check_token(state: &AppState, id: &ChannelId, token: &str) -> Result<(), ApiError> {
    match state.auth.verify_fresh(token, auth::now_unix()).await {
        Ok(claims) if claims.may_publish(id) => Ok(()),
        Ok(_) => {
            auth::record(Refusal::WrongChannel, id, "publish");
            Err(forbidden())
        }
        Err(refusal) => {
            auth::record(refusal, id, "publish");
            Err(invalid(match refusal {
                Refusal::Expired => "the token has expired",
                _ => "the token is not valid",
            }))
        }
    }
}

async fn check_producer_key(state: &AppState, id: &ChannelId, key: &str) -> Result<(), ApiError> {
    let matches = |keys: &crate::fetcher::Keys| {
        keys.get(PRODUCER_KEY)
            .map(|stored| stored.expose_secret())
            .is_some_and(|stored| !stored.is_empty() && same_secret(key, stored))
    };
    let own = state
        .keys
        .keys_for(id.name())
        .await
        .map_err(|e| key_store_unavailable(&e))?;
    if matches(&own) {
        return Ok(());
    }
    // Another push channel's key: a real producer at the wrong channel (403), not a guess.
    let registry = state.registry.current();
    for name in registry.names().filter(|n| *n != id.name()) {
        let is_push = registry
            .get(name)
            .is_some_and(|e| e.fetcher.push().is_some());
        if !is_push {
            continue;
        }
        let other = state
            .keys
            .keys_for(name)
            .await
            .map_err(|e| key_store_unavailable(&e))?;
        if matches(&other) {
            tracing::debug!(channel = %id, via = "publish", "producer key of another channel refused");
            return Err(forbidden());
        }
    }
    tracing::debug!(channel = %id, via = "publish", "unknown producer key refused");
    Err(invalid("the producer key is not valid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_dots_make_a_jwt() {
        assert_eq!(Shape::of("a.b.c"), Shape::Jwt);
        assert_eq!(Shape::of(".."), Shape::Jwt);
        assert_eq!(Shape::of("a.b"), Shape::ProducerKey);
        assert_eq!(Shape::of("a.b.c.d"), Shape::ProducerKey);
        assert_eq!(Shape::of("pk_live_123"), Shape::ProducerKey);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("k-123", "k-123"));
        assert!(!same_secret("k-123", "k-124"));
        assert!(!same_secret("k-12", "k-123"));
        assert!(!same_secret("", "k"));
    }
}
