//! Pushpin's `Grip-Sig`: on every request it proxies, an HS256 JWT `{"iss":"pushpin","exp":…}`
//! signed with its `sig_key`. A request whose signature verifies came through Pushpin's public
//! port (so Pushpin set its `Connection-Id` and `Meta-*` headers, not the client).

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// The issuer Pushpin puts in its signatures (its `sig_iss`).
pub const ISSUER: &str = "pushpin";

/// Why a `Grip-Sig` was not accepted; for logs only (the client gets a generic refusal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("not a JWT")]
    Malformed,
    #[error("signature or claims do not verify ({0})")]
    Invalid(String),
    #[error("expired")]
    Expired,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    exp: u64,
}

/// The key Pushpin signs with, ready to verify.
pub struct GripSigKey {
    key: DecodingKey,
    validation: Validation,
    /// The last signature that verified and its `exp`: Pushpin signs every request, but its
    /// signature only changes once a second (the `exp` is in whole seconds), so the same bytes
    /// arrive again and again. Compared in constant time; never trusted past its `exp`.
    last_verified: Mutex<Option<(Box<[u8]>, u64)>>,
}

impl GripSigKey {
    pub fn new(secret: &Secret) -> GripSigKey {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        // Pushpin's clock is the same host's, or a neighbour's.
        validation.leeway = 30;
        GripSigKey {
            key: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            last_verified: Mutex::new(None),
        }
    }

    /// Whether `header` (the raw `Grip-Sig` value) is a current signature by this key.
    pub fn verify(&self, header: &[u8]) -> Result<(), SigError> {
        if self.verified_before(header) {
            return Ok(());
        }
        let token = std::str::from_utf8(header).map_err(|_| SigError::Malformed)?;
        let claims = self.decode(token.trim())?;
        *self.last_verified.lock().expect("grip-sig cache lock") =
            Some((header.into(), claims.exp));
        Ok(())
    }

    /// Whether `header` is the signature that verified last, still within its `exp`.
    fn verified_before(&self, header: &[u8]) -> bool {
        let last = self.last_verified.lock().expect("grip-sig cache lock");
        let Some((token, exp)) = last.as_ref() else {
            return false;
        };
        crate::auth::now_unix() <= exp + self.validation.leeway
            && bool::from(token.as_ref().ct_eq(header))
    }

    fn decode(&self, token: &str) -> Result<Claims, SigError> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => SigError::Expired,
                jsonwebtoken::errors::ErrorKind::InvalidToken
                | jsonwebtoken::errors::ErrorKind::Base64(_)
                | jsonwebtoken::errors::ErrorKind::Json(_)
                | jsonwebtoken::errors::ErrorKind::Utf8(_) => SigError::Malformed,
                other => SigError::Invalid(format!("{other:?}")),
            })
    }
}

impl std::fmt::Debug for GripSigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GripSigKey(<redacted>)")
    }
}

/// A `Grip-Sig` as Pushpin makes it, valid for `valid_for` from now: for tests and harnesses
/// that stand in for Pushpin.
pub fn sign(secret: &Secret, valid_for: Duration) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let claims = Claims {
        iss: ISSUER.into(),
        exp: (now + valid_for).as_secs(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )
    .expect("HS256 signing does not fail")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key() -> Secret {
        Secret::new("the-pushpin-sig-key-for-tests")
    }

    #[test]
    fn a_signature_by_the_key_verifies() {
        let sig = sign(&key(), Duration::from_secs(3600));
        assert_eq!(GripSigKey::new(&key()).verify(sig.as_bytes()), Ok(()));
    }

    #[test]
    fn pushpins_own_signature_verifies() {
        // Built by hand the way Pushpin 1.36 builds it (header, then `iss` and `exp`, HMAC-SHA256
        // over base64url parts), so the check does not lean on our own `sign`.
        let header = r#"{"typ":"JWT","alg":"HS256"}"#;
        let claims = format!(
            r#"{{"iss":"pushpin","exp":{}}}"#,
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 3600
        );
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let input = format!("{}.{}", b64.encode(header), b64.encode(claims));
        let mac = hmac_sha256(key().expose().as_bytes(), input.as_bytes());
        let token = format!("{input}.{}", b64.encode(mac));
        assert_eq!(GripSigKey::new(&key()).verify(token.as_bytes()), Ok(()));
    }

    fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
        use sha2::{Digest, Sha256};
        let mut k = [0u8; 64];
        k[..key.len()].copy_from_slice(key);
        let inner: Vec<u8> = k
            .iter()
            .map(|b| b ^ 0x36)
            .chain(message.iter().copied())
            .collect();
        let inner = Sha256::digest(inner);
        let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).chain(inner).collect();
        Sha256::digest(outer).to_vec()
    }

    #[test]
    fn the_last_good_signature_is_remembered_only_until_its_exp() {
        let verifier = GripSigKey::new(&key());
        let sig = sign(&key(), Duration::from_secs(3600));
        assert_eq!(verifier.verify(sig.as_bytes()), Ok(()));
        assert_eq!(verifier.verify(sig.as_bytes()), Ok(()), "again, remembered");
        let mut forged = sig.clone().into_bytes();
        *forged.last_mut().unwrap() ^= 1;
        assert!(verifier.verify(&forged).is_err(), "one byte off");
        assert_eq!(verifier.verify(sig.as_bytes()), Ok(()));

        // What is remembered is trusted until its exp (plus the leeway), never after.
        let now = crate::auth::now_unix();
        let remember = |exp| {
            *verifier.last_verified.lock().unwrap() = Some((b"not-a-jwt".as_slice().into(), exp))
        };
        remember(now + 10);
        assert_eq!(verifier.verify(b"not-a-jwt"), Ok(()), "the memory is used");
        remember(now - 31);
        assert_eq!(verifier.verify(b"not-a-jwt"), Err(SigError::Malformed));
    }

    #[test]
    fn other_keys_issuers_and_expired_signatures_are_refused() {
        let verifier = GripSigKey::new(&key());
        let wrong = sign(
            &Secret::new("someone-elses-key-entirely"),
            Duration::from_secs(60),
        );
        assert!(matches!(
            verifier.verify(wrong.as_bytes()),
            Err(SigError::Invalid(_))
        ));
        let old = sign(&key(), Duration::ZERO);
        let expired = {
            // exp an hour ago (beyond the leeway).
            let claims = Claims {
                iss: ISSUER.into(),
                exp: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    - 3600,
            };
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(key().expose().as_bytes()),
            )
            .unwrap()
        };
        assert_eq!(verifier.verify(old.as_bytes()), Ok(()), "within the leeway");
        assert_eq!(verifier.verify(expired.as_bytes()), Err(SigError::Expired));
        let other_issuer = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                iss: "mallory".into(),
                exp: u64::MAX / 2,
            },
            &EncodingKey::from_secret(key().expose().as_bytes()),
        )
        .unwrap();
        assert!(verifier.verify(other_issuer.as_bytes()).is_err());
        for junk in ["", "signed-by-pushpin", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
            assert!(verifier.verify(junk.as_bytes()).is_err(), "{junk}");
        }
    }

    proptest! {
        #[test]
        fn random_header_bytes_never_verify_nor_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert!(GripSigKey::new(&key()).verify(&bytes).is_err());
        }

        #[test]
        fn a_signature_with_one_byte_changed_is_refused(i in 0usize..200, b in any::<u8>()) {
            let mut sig = sign(&key(), Duration::from_secs(60)).into_bytes();
            let i = i % sig.len();
            prop_assume!(sig[i] != b);
            sig[i] = b;
            prop_assert!(GripSigKey::new(&key()).verify(&sig).is_err());
        }
    }
}
