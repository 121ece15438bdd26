//! Verification, the policy at subscribe and while subscribed, and random or mutated tokens.

use super::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use serde_json::{json, Value};

const SECRET: &[u8] = b"test-secret-of-some-length";
const NOW: u64 = 1_000_000;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/auth/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap()
}

fn jwks(names: &[&str]) -> Value {
    let keys: Vec<Value> = names
        .iter()
        .map(|n| serde_json::from_str(&fixture(&format!("{n}.jwk.json"))).unwrap())
        .collect();
    json!({ "keys": keys })
}

fn keys() -> KeySet {
    KeySet::new(Some(SECRET), &jwks(&["rsa-a", "ec-a"]))
}

fn hs(claims: Value) -> String {
    mint::sign(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn signed(alg: Algorithm, kid: &str, pem: &str, claims: Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(fixture(pem).as_bytes()).unwrap(),
        _ => EncodingKey::from_ec_pem(fixture(pem).as_bytes()).unwrap(),
    };
    mint::sign(&header, &claims, &key).unwrap()
}

fn check(token: &str) -> Result<Claims, Refusal> {
    verify(&keys(), token, NOW, &Rules::default())
}

fn id(s: &str) -> ChannelId {
    ChannelId::parse(s).unwrap()
}

#[test]
fn each_algorithm_verifies() {
    let claims = json!({"exp": NOW + 60, "sub": "u", "channels": ["a"]});
    assert_eq!(
        check(&hs(claims.clone())).unwrap().sub.as_deref(),
        Some("u")
    );
    let rs = signed(Algorithm::RS256, "rsa-a", "rsa-a.pem", claims.clone());
    assert!(check(&rs).unwrap().allows(&id("a")));
    let es = signed(Algorithm::ES256, "ec-a", "ec-a.pem", claims.clone());
    assert!(check(&es).is_ok());
    let minted = mint::hs256(SECRET, None, &["a".into()], NOW + 5).unwrap();
    assert_eq!(check(&minted).unwrap().exp, NOW + 5);
}

#[test]
fn refusals_name_what_is_wrong() {
    let ok = json!({"exp": NOW + 60, "channels": ["a"]});
    assert_eq!(check(""), Err(Refusal::Missing));
    assert_eq!(check("abc"), Err(Refusal::Malformed));
    assert_eq!(
        check(&"a".repeat(MAX_TOKEN_LEN + 1)),
        Err(Refusal::Malformed)
    );
    assert_eq!(
        check(&hs(json!({"exp": NOW, "channels": ["a"]}))),
        Err(Refusal::Expired)
    );
    assert_eq!(
        check(&hs(json!({"channels": ["a"]}))),
        Err(Refusal::BadClaims)
    );
    assert_eq!(
        check(&hs(json!({"exp": NOW + 9, "channels": ["*x*"]}))),
        Err(Refusal::BadClaims)
    );
    let forged = mint::sign(
        &Header::new(Algorithm::HS256),
        &ok,
        &EncodingKey::from_secret(b"another secret"),
    )
    .unwrap();
    assert_eq!(check(&forged), Err(Refusal::BadSignature));
    // Signed with key b but claiming to be key a.
    let wrong_key = signed(Algorithm::RS256, "rsa-a", "rsa-b.pem", ok.clone());
    assert_eq!(check(&wrong_key), Err(Refusal::BadSignature));
    let unknown = signed(Algorithm::RS256, "rsa-b", "rsa-b.pem", ok.clone());
    assert_eq!(check(&unknown), Err(Refusal::UnknownKey));
    let hs512 = mint::sign(
        &Header::new(Algorithm::HS512),
        &ok,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    assert_eq!(check(&hs512), Err(Refusal::UnsupportedAlg));
    // `alg: none`, hand-made.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(ok.to_string().as_bytes())
    );
    assert!(check(&none).is_err());
    // An expired and forged token says forged: expiry is only believed after the signature.
    let old_forged = mint::sign(
        &Header::new(Algorithm::HS256),
        &json!({"exp": 1}),
        &EncodingKey::from_secret(b"x"),
    )
    .unwrap();
    assert_eq!(check(&old_forged), Err(Refusal::BadSignature));
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn audience_and_issuer_are_checked_when_configured() {
    let rules = Rules {
        audience: Some("restream".into()),
        issuer: Some("https://issuer".into()),
    };
    let v = |c: Value| verify(&keys(), &hs(c), NOW, &rules);
    assert!(v(json!({"exp": NOW + 9, "aud": "restream", "iss": "https://issuer"})).is_ok());
    assert!(v(json!({"exp": NOW + 9, "aud": ["x", "restream"], "iss": "https://issuer"})).is_ok());
    assert_eq!(
        v(json!({"exp": NOW + 9, "aud": "other", "iss": "https://issuer"})),
        Err(Refusal::WrongAudience)
    );
    assert_eq!(
        v(json!({"exp": NOW + 9, "aud": "restream", "iss": "other"})),
        Err(Refusal::WrongIssuer)
    );
    // Unconfigured, `aud` is not checked.
    assert!(check(&hs(json!({"exp": NOW + 9, "aud": "anything"}))).is_ok());
}

fn auth(default_access: Access) -> Auth {
    Auth {
        policy: Policy {
            default_access,
            overrides: [("open".to_string(), Access::Public)].into(),
        },
        keys: Arc::new(LiveKeys::fixed(keys())),
        rules: Rules::default(),
        verified: Default::default(),
    }
}

#[test]
fn subscribe_needs_a_token_naming_the_channel() {
    let auth = auth(Access::Token);
    let claims = |channels: Value| {
        Claims::from_value(&json!({"exp": NOW + 60, "channels": channels})).unwrap()
    };
    let request = |connection| RequestAuth {
        auth: &auth,
        connection,
        grants: Grants::default(),
        now: NOW,
    };
    let anonymous = request(Credential::Absent);
    assert_eq!(
        anonymous.authorize(&id("open"), None, None),
        Ok(Grant::Public)
    );
    assert_eq!(
        anonymous.authorize(&id("a"), Some(Access::Public), None),
        Ok(Grant::Public)
    );
    assert_eq!(
        anonymous.authorize(&id("a"), None, None),
        Err(Refusal::Missing)
    );
    let channel_token = hs(json!({"exp": NOW + 30, "channels": ["a"]}));
    assert_eq!(
        anonymous.authorize(&id("a"), None, Some(&channel_token)),
        Ok(Grant::ChannelToken { exp: NOW + 30 })
    );
    assert_eq!(
        anonymous.authorize(&id("b"), None, Some(&channel_token)),
        Err(Refusal::WrongChannel)
    );
    let holder = request(Credential::Valid(claims(json!(["a", "w?lat=1&*"]))));
    assert_eq!(
        holder.authorize(&id("a"), None, None),
        Ok(Grant::Connection)
    );
    assert_eq!(
        holder.authorize(&id("w?lat=1&u=c"), None, None),
        Ok(Grant::Connection)
    );
    assert_eq!(
        holder.authorize(&id("w?lat=2&u=c"), None, None),
        Err(Refusal::WrongChannel)
    );
    // A subscribe's own token decides even when the connection's would do.
    assert_eq!(
        holder.authorize(&id("a"), None, Some("junk")),
        Err(Refusal::Malformed)
    );
    let expired = request(Credential::Invalid(Refusal::Expired));
    assert_eq!(
        expired.authorize(&id("a"), None, None),
        Err(Refusal::Expired)
    );
}

#[test]
fn held_subscriptions_last_while_a_token_does() {
    let auth = auth(Access::Token);
    let mut grants = Grants::default();
    grants.grant(&id("g"), NOW + 10);
    let at = |now, connection| RequestAuth {
        auth: &auth,
        connection,
        grants: grants.clone(),
        now,
    };
    let valid = || {
        Credential::Valid(Claims::from_value(&json!({"exp": NOW + 60, "channels": ["a"]})).unwrap())
    };
    assert_eq!(
        at(NOW, Credential::Absent).still_allowed(&id("g"), None, &grants),
        Ok(())
    );
    assert_eq!(
        at(NOW + 10, Credential::Absent).still_allowed(&id("g"), None, &grants),
        Err(Refusal::Expired)
    );
    assert_eq!(
        at(NOW, valid()).still_allowed(&id("a"), None, &grants),
        Ok(())
    );
    assert_eq!(
        at(NOW, valid()).still_allowed(&id("b"), None, &grants),
        Err(Refusal::WrongChannel)
    );
    assert_eq!(
        at(NOW, Credential::Invalid(Refusal::Expired)).still_allowed(&id("a"), None, &grants),
        Err(Refusal::Expired)
    );
    assert_eq!(
        at(NOW, Credential::Absent).still_allowed(&id("open"), None, &grants),
        Ok(())
    );
}

proptest! {
    #[test]
    fn random_text_never_panics_and_is_refused(s in ".{0,300}") {
        prop_assert!(check(&s).is_err());
    }

    #[test]
    fn random_bytes_as_jwt_parts_are_refused(a in proptest::collection::vec(any::<u8>(), 0..80), b in proptest::collection::vec(any::<u8>(), 0..200), c in proptest::collection::vec(any::<u8>(), 0..64)) {
        let token = format!("{}.{}.{}", b64(&a), b64(&b), b64(&c));
        prop_assert!(check(&token).is_err());
    }

    #[test]
    fn any_mutation_of_a_valid_token_is_refused(
        index in any::<prop::sample::Index>(),
        replacement in prop::sample::select(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ".to_vec()),
        alg in prop::sample::select(vec![Algorithm::HS256, Algorithm::RS256, Algorithm::ES256]),
    ) {
        let claims = json!({"exp": NOW + 60, "channels": ["a"]});
        let token = match alg {
            Algorithm::HS256 => hs(claims),
            Algorithm::RS256 => signed(alg, "rsa-a", "rsa-a.pem", claims),
            _ => signed(alg, "ec-a", "ec-a.pem", claims),
        };
        let mut bytes = token.clone().into_bytes();
        let i = index.index(bytes.len());
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        let mutated = String::from_utf8(bytes).unwrap();
        // A change in the last base64url character may only touch padding bits; such a
        // token decodes to the same bytes, so it is the same token.
        prop_assume!(!same_decoded(&token, &mutated));
        prop_assert!(check(&mutated).is_err(), "{mutated}");
    }
}

/// Whether two tokens decode to the same header, claims and signature bytes.
fn same_decoded(a: &str, b: &str) -> bool {
    use base64::Engine;
    let parts = |t: &str| -> Option<Vec<Vec<u8>>> {
        let p: Vec<_> = t.split('.').collect();
        if p.len() != 3 {
            return None;
        }
        p.iter()
            .map(|s| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(s)
                    .ok()
            })
            .collect()
    };
    matches!((parts(a), parts(b)), (Some(x), Some(y)) if x == y)
}

/// Writes `text` to `path` readable by its owner only (the key store refuses more).
fn write_private(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[tokio::test]
async fn live_keys_load_the_secret_and_jwks_and_refresh_at_most_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (keys_file, jwks_file) = (dir.path().join("keys.json"), dir.path().join("jwks.json"));
    write_private(
        &keys_file,
        &json!({"_restream": {"jwt_secret": "one"}}).to_string(),
    );
    std::fs::write(&jwks_file, jwks(&["rsa-a"]).to_string()).unwrap();
    let store: Arc<dyn crate::keys::KeyStore> =
        Arc::new(crate::keys::FileKeyStore::new(&keys_file));
    let live = LiveKeys::new(
        Some(store),
        Some(JwksSource::File(jwks_file.clone())),
        std::time::Duration::from_secs(3600),
    );
    let claims = json!({"exp": NOW + 60});
    let hs_with = |secret: &[u8]| {
        mint::sign(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let rules = Rules::default();
    let b = signed(Algorithm::RS256, "rsa-b", "rsa-b.pem", claims.clone());
    assert_eq!(
        verify(&live.current(), &hs_with(b"one"), NOW, &rules),
        Err(Refusal::UnknownKey)
    );
    live.refresh_limited().await;
    assert!(verify(&live.current(), &hs_with(b"one"), NOW, &rules).is_ok());
    assert_eq!(
        verify(&live.current(), &b, NOW, &rules),
        Err(Refusal::UnknownKey)
    );
    // Rotation: new secret, new JWKS. A limited refresh right after the last one does nothing…
    write_private(
        &keys_file,
        &json!({"_restream": {"jwt_secret": "two"}}).to_string(),
    );
    std::fs::write(&jwks_file, jwks(&["rsa-b"]).to_string()).unwrap();
    live.refresh_limited().await;
    assert_eq!(
        verify(&live.current(), &b, NOW, &rules),
        Err(Refusal::UnknownKey)
    );
    // …the periodic one picks both up.
    live.refresh().await;
    assert!(verify(&live.current(), &b, NOW, &rules).is_ok());
    assert!(verify(&live.current(), &hs_with(b"two"), NOW, &rules).is_ok());
    assert_eq!(
        verify(&live.current(), &hs_with(b"one"), NOW, &rules),
        Err(Refusal::BadSignature)
    );
    // A broken JWKS keeps the last good keys.
    std::fs::write(&jwks_file, "{not json").unwrap();
    live.refresh().await;
    assert!(verify(&live.current(), &b, NOW, &rules).is_ok());
}

#[tokio::test]
async fn a_connection_token_is_verified_once_and_never_outlives_its_exp() {
    let auth = auth(Access::Token);
    let token = hs(json!({"exp": NOW + 10, "channels": ["a"]}));
    assert!(matches!(
        auth.credential(Some(&token), NOW).await,
        Credential::Valid(_)
    ));
    let kept = auth.verified.bytes();
    assert!(kept > 0, "kept once verified");
    let again = auth.credential(Some(&token), NOW + 1).await;
    assert!(matches!(again, Credential::Valid(c) if c.exp == NOW + 10));
    assert_eq!(
        auth.verified.bytes(),
        kept,
        "found, not verified and kept again"
    );
    assert_eq!(
        auth.credential(Some(&token), NOW + 10).await,
        Credential::Invalid(Refusal::Expired),
        "the kept one expires with the token"
    );
    let forged = format!("{token}x");
    assert!(matches!(
        auth.credential(Some(&forged), NOW).await,
        Credential::Invalid(_)
    ));
    assert_eq!(auth.verified.bytes(), kept, "refusals are never kept");
}
