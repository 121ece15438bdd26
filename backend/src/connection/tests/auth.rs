//! Transcripts with tokens: refusals start nothing; expiry ends what the token allowed.

use super::*;
use crate::auth::{mint, Auth, Credential, KeySet, LiveKeys, Policy, Rules};

const SECRET: &[u8] = b"connection-tests-secret";
const NOW: u64 = 1_000_000;

fn service() -> &'static Auth {
    Box::leak(Box::new(Auth {
        policy: Policy::default(),
        keys: std::sync::Arc::new(LiveKeys::fixed(KeySet::new(Some(SECRET), &json!({})))),
        rules: Rules::default(),
        verified: Default::default(),
    }))
}

fn token(channels: &[&str], exp: u64) -> String {
    let channels: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
    mint::hs256(SECRET, Some("tester"), &channels, exp).unwrap()
}

fn at(now: u64, connection: Option<&str>, grants: Grants) -> Context<'static> {
    let auth = service();
    let connection = match connection {
        None => Credential::Absent,
        Some(t) => match auth.verify(t, now) {
            Ok(claims) => Credential::Valid(claims),
            Err(refusal) => Credential::Invalid(refusal),
        },
    };
    with_auth(RequestAuth {
        auth,
        connection,
        grants,
        now,
    })
}

fn subscribe_secret(token: Option<&str>) -> Event {
    let mut m = json!({"action": "subscribe", "channel": "secret", "ref": 1});
    if let Some(t) = token {
        m["token"] = json!(t);
    }
    text(m)
}

fn refused_and_nothing_started(r: &Reply, reason: Refusal) {
    assert_eq!(
        texts(r),
        vec![
            json!({"type": "error", "code": "unauthorized", "message": reason.public_message(), "ref": 1})
        ]
    );
    assert!(r.subscriptions.is_empty() && !r.subscriptions_changed);
    assert!(r.snapshots.is_empty() && r.live_channels.is_empty());
    assert_eq!(
        r.refusals,
        vec![(ChannelId::parse("secret").unwrap(), reason)]
    );
}

#[test]
fn a_token_channel_refuses_missing_expired_forged_and_wrong_tokens() {
    let none = handle(
        "c",
        vec![subscribe_secret(None)],
        Subscriptions::default(),
        &at(NOW, None, Grants::default()),
    );
    refused_and_nothing_started(&none, Refusal::Missing);
    assert_eq!(
        none.refusals[0].1.public_message(),
        "a valid token is required for this channel"
    );
    let expired = token(&["secret"], NOW - 1);
    let r = handle(
        "c",
        vec![subscribe_secret(None)],
        Subscriptions::default(),
        &at(NOW, Some(&expired), Grants::default()),
    );
    refused_and_nothing_started(&r, Refusal::Expired);
    let forged = mint::hs256(b"not the secret", None, &["secret".into()], NOW + 60).unwrap();
    let r = handle(
        "c",
        vec![subscribe_secret(Some(&forged))],
        Subscriptions::default(),
        &at(NOW, None, Grants::default()),
    );
    refused_and_nothing_started(&r, Refusal::BadSignature);
    let other = token(&["a", "w"], NOW + 60);
    let r = handle(
        "c",
        vec![subscribe_secret(None)],
        Subscriptions::default(),
        &at(NOW, Some(&other), Grants::default()),
    );
    refused_and_nothing_started(&r, Refusal::WrongChannel);
    // Public channels need nothing, whatever the token.
    let r = handle(
        "c",
        vec![text(json!({"action": "subscribe", "channel": "a"}))],
        Subscriptions::default(),
        &at(NOW, Some(&forged), Grants::default()),
    );
    assert_eq!(r.subscriptions.to_meta(), "a");
}

#[test]
fn the_connection_token_subscribes_until_it_expires() {
    let t = token(&["secret"], NOW + 30);
    let r = handle(
        "c",
        vec![subscribe_secret(None)],
        Subscriptions::default(),
        &at(NOW, Some(&t), Grants::default()),
    );
    assert_eq!(texts(&r)[1]["type"], "subscribed");
    assert!(r.refusals.is_empty() && r.grants.is_empty() && !r.grants_changed);
    assert_eq!(r.live_channels, vec!["secret"]);
    // A keep-alive before expiry changes nothing; the first one after ends it.
    let subs = r.subscriptions;
    let r = handle(
        "c",
        vec![],
        subs.clone(),
        &at(NOW + 29, Some(&t), Grants::default()),
    );
    assert!(r.events.is_empty() && r.live_channels == vec!["secret"]);
    let r = handle(
        "c",
        vec![],
        subs,
        &at(NOW + 30, Some(&t), Grants::default()),
    );
    assert_eq!(
        texts(&r),
        vec![
            json!({"control": {"type": "unsubscribe", "channel": "secret"}}),
            json!({"type": "unsubscribed", "channel": "secret", "params": {}}),
            json!({"type": "error", "code": "unauthorized", "message": Refusal::Expired.public_message()}),
        ]
    );
    assert!(r.subscriptions.is_empty() && r.subscriptions_changed && r.live_channels.is_empty());
    assert_eq!(r.refusals[0].1, Refusal::Expired);
}

#[test]
fn a_channel_token_is_remembered_in_the_meta_until_it_expires() {
    let t = token(&["secret"], NOW + 30);
    let r = handle(
        "c",
        vec![
            subscribe_secret(Some(&t)),
            text(json!({"action": "subscribe", "channel": "a"})),
        ],
        Subscriptions::default(),
        &at(NOW, None, Grants::default()),
    );
    assert_eq!(texts(&r)[1]["type"], "subscribed");
    assert!(r.grants_changed);
    let meta = r.grants.to_meta();
    assert!(meta.ends_with(&format!("={}", NOW + 30)), "{meta}");
    // The next requests carry only the meta (no token): still subscribed until exp.
    let subs = r.subscriptions;
    let later = handle(
        "c",
        vec![],
        subs.clone(),
        &at(NOW + 10, None, Grants::from_meta(Some(&meta))),
    );
    assert!(later.events.is_empty() && !later.grants_changed);
    let after = handle(
        "c",
        vec![],
        subs,
        &at(NOW + 31, None, Grants::from_meta(Some(&meta))),
    );
    let t = texts(&after);
    assert_eq!(t[1]["type"], "unsubscribed");
    assert_eq!(t[2]["code"], "unauthorized");
    assert_eq!(
        after.subscriptions.to_meta(),
        "a",
        "the public channel stays"
    );
    assert!(after.grants.is_empty() && after.grants_changed);
}

#[test]
fn unsubscribing_drops_the_grant() {
    let t = token(&["secret"], NOW + 30);
    let r = handle(
        "c",
        vec![subscribe_secret(Some(&t))],
        Subscriptions::default(),
        &at(NOW, None, Grants::default()),
    );
    let meta = r.grants.to_meta();
    let r = handle(
        "c",
        vec![text(json!({"action": "unsubscribe", "channel": "secret"}))],
        r.subscriptions,
        &at(NOW, None, Grants::from_meta(Some(&meta))),
    );
    assert!(r.grants.is_empty() && r.grants_changed && r.refusals.is_empty());
}
