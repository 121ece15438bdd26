//! Channel ids and GRIP channel names: canonical form, round trips, refusals.

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn specs() -> ParamSpecs {
    let mut s = ParamSpecs::new();
    s.insert(
        "section".into(),
        ParamSpec {
            default: Some("home".into()),
            ..Default::default()
        },
    );
    s.insert(
        "lat".into(),
        ParamSpec {
            required: true,
            ..Default::default()
        },
    );
    s.insert("opt".into(), ParamSpec::default());
    s
}

#[test]
fn defaults_are_applied_and_keys_sorted() {
    let a = ChannelId::from_request("w", Some(&json!({"lat": "1.5"})), &specs()).unwrap();
    let b = ChannelId::from_request("w", Some(&json!({"section": "home", "lat": 1.5})), &specs())
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.to_string(), "w?lat=1.5&section=home");
}

#[test]
fn no_params_gives_the_bare_name() {
    let id = ChannelId::from_request("hn-top", None, &ParamSpecs::new()).unwrap();
    assert_eq!(id.to_string(), "hn-top");
    assert_eq!(ChannelId::parse("hn-top").unwrap(), id);
}

#[test]
fn values_are_percent_encoded() {
    let id = ChannelId::from_request("w", Some(&json!({"lat": "a&b=c?d %é"})), &specs()).unwrap();
    assert_eq!(
        id.to_string(),
        "w?lat=a%26b%3Dc%3Fd%20%25%C3%A9&section=home"
    );
    assert_eq!(ChannelId::parse(&id.to_string()).unwrap(), id);
}

#[test]
fn invalid_params_are_rejected() {
    let s = specs();
    assert_eq!(
        ChannelId::from_request("w", Some(&json!({})), &s),
        Err(ParamError::Missing("lat".into()))
    );
    assert!(matches!(
        ChannelId::from_request("w", Some(&json!({"lat": 1, "bogus": 1})), &s),
        Err(ParamError::Unknown(..))
    ));
    assert_eq!(
        ChannelId::from_request("w", Some(&json!({"lat": [1]})), &s),
        Err(ParamError::BadType("lat".into()))
    );
    assert_eq!(
        ChannelId::from_request("w", Some(&json!("lat")), &s),
        Err(ParamError::NotAnObject)
    );
    assert_eq!(
        ChannelId::from_request("w", Some(&json!({"lat": ""})), &s),
        Err(ParamError::Empty("lat".into()))
    );
    assert_eq!(
        ChannelId::from_request("w", Some(&json!({"lat": "x".repeat(300)})), &s),
        Err(ParamError::TooLong("lat".into()))
    );
}

#[test]
fn non_canonical_ids_do_not_parse() {
    for bad in [
        "w?b=1&a=2",
        "w?a=%41",
        "w?a=1&a=1",
        "w?a",
        "-w",
        "",
        "w?a=%ZZ",
        "w?=1",
        "w?a=1&",
    ] {
        assert!(ChannelId::parse(bad).is_err(), "{bad} parsed");
    }
}

#[test]
fn names_are_restricted() {
    assert!(is_valid_name("nyt-top"));
    assert!(is_valid_name("a.b_c-1"));
    assert!(!is_valid_name("a b"));
    assert!(!is_valid_name("a?b"));
    assert!(!is_valid_name(&"a".repeat(65)));
}

proptest! {
    #[test]
    fn round_trips_and_values_cannot_inject(
        values in proptest::collection::btree_map("[a-z]{1,3}", "\\PC{0,20}", 0..4)
    ) {
        let mut specs = ParamSpecs::new();
        for k in values.keys() { specs.insert(k.clone(), ParamSpec::default()); }
        let raw = Value::Object(values.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect());
        let id = ChannelId::from_request("ch", Some(&raw), &specs).unwrap();
        let text = id.to_string();
        // Structure characters appear only as separators.
        prop_assert_eq!(text.matches('?').count(), usize::from(!values.is_empty()));
        prop_assert_eq!(text.matches('=').count(), values.len());
        prop_assert_eq!(text.matches('&').count(), values.len().saturating_sub(1));
        prop_assert!(text.is_ascii() && !text.contains(' '));
        let back = ChannelId::parse(&text).unwrap();
        prop_assert_eq!(&back.params(), &values);
    }

    #[test]
    fn same_meaning_same_id(lat in "[0-9.]{1,6}", spell_default in any::<bool>(), number in any::<bool>()) {
        let mut raw = serde_json::Map::new();
        raw.insert("lat".into(), json!(lat));
        if spell_default { raw.insert("section".into(), json!("home")); }
        if number { raw.insert("opt".into(), Value::Null); }
        let a = ChannelId::from_request("w", Some(&Value::Object(raw)), &specs()).unwrap();
        let b = ChannelId::from_request("w", Some(&json!({"lat": lat})), &specs()).unwrap();
        prop_assert_eq!(a.to_string(), b.to_string());
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,40}") {
        let _ = ChannelId::parse(&s);
        if let Ok(grip) = GripChannel::parse(&s) {
            prop_assert_eq!(grip.to_string(), s);
        }
    }
}

#[test]
fn grip_channels_round_trip_by_kind() {
    let public = GripChannel::parse("w?lat=1").unwrap();
    assert_eq!(public.public().map(ChannelId::as_str), Some("w?lat=1"));
    assert!(!public.is_private());
    let conn = GripChannel::parse("_conn:abc").unwrap();
    assert_eq!(conn, GripChannel::connection("abc"));
    assert!(conn.is_private());
    assert_eq!(conn.to_string(), "_conn:abc");
    let sse = GripChannel::new_sse();
    assert!(sse.to_string().starts_with("_sse:"));
    assert_eq!(GripChannel::parse(&sse.to_string()).unwrap(), sse);
    assert_ne!(GripChannel::new_sse(), sse);
}

#[test]
fn unknown_grip_channels_are_refused() {
    assert_eq!(
        GripChannel::parse("_x:1"),
        Err(GripChannelError::UnknownPrivate)
    );
    assert_eq!(
        GripChannel::parse("_conn:"),
        Err(GripChannelError::EmptyPrivate)
    );
    assert!(GripChannel::parse("a?b=%zz").is_err());
}

#[test]
fn ids_compare_by_meaning_and_clone_cheaply() {
    let a = ChannelId::parse("w?lat=1").unwrap();
    let b = ChannelId::from_request("w", Some(&json!({"lat": 1})), &specs()).unwrap();
    assert_ne!(a, b, "defaults make b's params differ");
    let c = a.clone();
    assert_eq!(a, c);
    assert!(std::ptr::eq(a.as_str(), c.as_str()));
    let mut sorted = [
        ChannelId::parse("a?x=1").unwrap(),
        ChannelId::parse("a-b").unwrap(),
    ];
    sorted.sort();
    assert_eq!(sorted[0].as_str(), "a-b", "in the order of their text");
}

fn free() -> ParamRules {
    ParamRules::Free(FreeParams {
        max_count: 3,
        max_name_len: 8,
        max_value_len: 10,
    })
}

#[test]
fn free_form_params_are_canonical_like_declared_ones() {
    let a = ChannelId::from_request_with(
        "nyt-top",
        Some(&json!({"section": "world", "b": 2, "c": true})),
        &free(),
    )
    .unwrap();
    let b = ChannelId::from_request_with(
        "nyt-top",
        Some(&json!({"c": "true", "section": "world", "b": "2", "gone": null})),
        &free(),
    )
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.as_str(), "nyt-top?b=2&c=true&section=world");
    assert_eq!(ChannelId::parse(a.as_str()).unwrap(), a);
    let spaced =
        ChannelId::from_request_with("g", Some(&json!({"symbols": "A&B C"})), &free()).unwrap();
    assert_eq!(spaced.as_str(), "g?symbols=A%26B%20C");
    assert_eq!(
        ChannelId::from_request_with("g", None, &free())
            .unwrap()
            .as_str(),
        "g"
    );
}

#[test]
fn free_form_params_are_bounded() {
    let refused = |v: Value| ChannelId::from_request_with("g", Some(&v), &free()).unwrap_err();
    assert_eq!(
        refused(json!({"a": 1, "b": 2, "c": 3, "d": 4})),
        ParamError::FreeLimit(FreeLimit::Count, 3)
    );
    assert_eq!(
        refused(json!({"a": 1, "b": 2, "c": 3, "d": 4})).free_limit(),
        Some(FreeLimit::Count)
    );
    assert_eq!(
        refused(json!({"longername": "x"})),
        ParamError::FreeLimit(FreeLimit::NameLength, 8)
    );
    assert_eq!(
        refused(json!({"a": "12345678901"})),
        ParamError::FreeLimit(FreeLimit::ValueLength, 10)
    );
    // Ten characters, not ten bytes.
    assert!(ChannelId::from_request_with("g", Some(&json!({"a": "éééééééééé"})), &free()).is_ok());
    assert_eq!(
        refused(json!({"a b": "x"})),
        ParamError::BadName("a b".into())
    );
    assert_eq!(
        refused(json!({"limit": "5"})),
        ParamError::Reserved("limit".into())
    );
    assert_eq!(
        refused(json!({"a": {"x": 1}})),
        ParamError::BadType("a".into())
    );
    assert_eq!(refused(json!({"a": [1]})), ParamError::BadType("a".into()));
    assert_eq!(refused(json!("a=1")), ParamError::NotAnObject);
    // The id stays within its bound whatever the settings allow.
    let wide = ParamRules::Free(FreeParams {
        max_count: 8,
        max_name_len: 64,
        max_value_len: MAX_VALUE_LEN,
    });
    let big: serde_json::Map<String, Value> = (0..3)
        .map(|i| (format!("k{i}"), json!("%".repeat(200))))
        .collect();
    assert_eq!(
        ChannelId::from_request_with("g", Some(&Value::Object(big)), &wide),
        Err(ParamError::IdTooLong)
    );
}

#[test]
fn declared_rules_stay_strict() {
    let strict = ParamRules::Declared(ParamSpecs::new());
    assert!(matches!(
        ChannelId::from_request_with("a", Some(&json!({"section": "x"})), &strict),
        Err(ParamError::Unknown(..))
    ));
    let declared = ParamRules::Declared(specs());
    assert_eq!(
        ChannelId::from_request_with("w", Some(&json!({"lat": "1"})), &declared).unwrap(),
        ChannelId::from_request("w", Some(&json!({"lat": "1"})), &specs()).unwrap()
    );
}

proptest! {
    #[test]
    fn free_form_ids_round_trip(params in proptest::collection::btree_map("[a-z][a-z0-9_]{0,7}", "\\PC{0,10}", 0..4)) {
        let raw = Value::Object(params.iter().map(|(k, v)| (k.clone(), json!(v))).collect());
        match ChannelId::from_request_with("g", Some(&raw), &free()) {
            Ok(id) => {
                prop_assert_eq!(ChannelId::parse(id.as_str()).unwrap(), id.clone());
                prop_assert_eq!(&id.params(), &params);
            }
            Err(e) => prop_assert!(
                matches!(e, ParamError::Reserved(_)),
                "{e:?}"
            ),
        }
    }
}
