//! Verifying one token against the keys in memory: synchronous, no I/O, time passed in.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::Validation;
use serde_json::Value;

use super::claims::Claims;
use super::keys::{KeySet, Lookup};

/// Longest token read; anything longer is refused unread.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Why a token (or its absence) does not grant a channel. A bounded set: the label of
/// `restream_auth_refusals_total`, and in logs; clients see a generic sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token where one is needed.
    Missing,
    /// Not a JWT (bad encoding, too long).
    Malformed,
    /// An algorithm other than HS256, RS256, ES256.
    UnsupportedAlg,
    /// No key for its `kid` (or algorithm), even after a refresh.
    UnknownKey,
    BadSignature,
    Expired,
    /// `exp` missing or not a number, `channels` not a list of valid patterns.
    BadClaims,
    WrongAudience,
    WrongIssuer,
    /// A valid token that does not name the channel.
    WrongChannel,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::UnsupportedAlg => "unsupported_alg",
            Refusal::UnknownKey => "unknown_key",
            Refusal::BadSignature => "bad_signature",
            Refusal::Expired => "expired",
            Refusal::BadClaims => "bad_claims",
            Refusal::WrongAudience => "wrong_audience",
            Refusal::WrongIssuer => "wrong_issuer",
            Refusal::WrongChannel => "wrong_channel",
        }
    }

    /// The sentence a client reads. Only expiry is told apart (the holder can read `exp`
    /// itself); everything else says the same, so a prober learns nothing about keys.
    pub fn public_message(self) -> &'static str {
        match self {
            Refusal::Expired => "the token has expired; a valid token is required for this channel",
            _ => "a valid token is required for this channel",
        }
    }
}

/// Optional claim checks from the settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// When set, `aud` must be (or contain) it.
    pub audience: Option<String>,
    /// When set, `iss` must equal it.
    pub issuer: Option<String>,
}

/// Verifies `token` at `now` (seconds since the Unix epoch). The signature is checked before
/// anything in the claims is believed, expiry included.
pub fn verify(keys: &KeySet, token: &str, now: u64, rules: &Rules) -> Result<Claims, Refusal> {
    if token.is_empty() {
        return Err(Refusal::Missing);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(Refusal::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
    let key = match keys.find(header.alg, header.kid.as_deref()) {
        Lookup::Found(key) => key,
        Lookup::Unknown => return Err(Refusal::UnknownKey),
        Lookup::Unsupported => return Err(Refusal::UnsupportedAlg),
    };
    let mut validation = Validation::new(header.alg);
    // Expiry is checked below against the injected clock, after the signature.
    validation.validate_exp = false;
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp"]);
    match &rules.audience {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    if let Some(iss) = &rules.issuer {
        validation.set_issuer(&[iss]);
    }
    let data =
        jsonwebtoken::decode::<Value>(token, key, &validation).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_) => Refusal::BadSignature,
            ErrorKind::InvalidAudience => Refusal::WrongAudience,
            ErrorKind::InvalidIssuer => Refusal::WrongIssuer,
            ErrorKind::MissingRequiredClaim(_) => Refusal::BadClaims,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                Refusal::UnsupportedAlg
            }
            _ => Refusal::Malformed,
        })?;
    let claims = Claims::from_value(&data.claims).map_err(|_| Refusal::BadClaims)?;
    if claims.exp <= now {
        return Err(Refusal::Expired);
    }
    Ok(claims)
}
