use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::channel::ParamSpec;
use crate::push::PushChannel;

const PHOTON: &str = r#"
kind = "push"
name = "photon"
mode = "events"
[params.site]
required = true
[params.level]
type = "number"
default = "1"
[queue]
url = "http://127.0.0.1:1/q"
params = { site = "/site" }
item = "/data"
"#;

fn photon() -> (PushSpec, QueueSpec, ParamSpecs) {
    let channel = PushChannel::parse("photon.toml", PHOTON).unwrap();
    let spec = (**channel.spec()).clone();
    let queue = spec.queue.clone().unwrap();
    let params = ParamSpecs::from([
        (
            "site".to_string(),
            ParamSpec {
                required: true,
                ..ParamSpec::default()
            },
        ),
        (
            "level".to_string(),
            ParamSpec {
                default: Some("1".into()),
                kind: crate::channel::ParamKind::Number,
                ..ParamSpec::default()
            },
        ),
    ]);
    (spec, queue, params)
}

fn map(body: &str) -> Result<(ChannelId, PushOp), Unmappable> {
    let (spec, queue, params) = photon();
    map_message(&spec, &queue, &params, body)
}

#[test]
fn a_datastreamer_message_maps_to_its_site_channel() {
    let (channel, op) = map(r#"{"site": "tst", "topic": "t", "data": {"v": 1}}"#).unwrap();
    assert_eq!(channel.to_string(), "photon?level=1&site=tst");
    assert_eq!(op, PushOp::Append(json!({"v": 1})));
}

#[test]
fn numbers_and_booleans_are_their_json_text() {
    let (channel, _) = map(r#"{"site": 42, "data": 1}"#).unwrap();
    assert_eq!(channel.params()["site"], "42");
    let (channel, _) = map(r#"{"site": true, "data": null}"#).unwrap();
    assert_eq!(channel.params()["site"], "true");
}

#[test]
fn a_level_pointer_reads_nested_values_and_params_are_checked() {
    let (spec, mut queue, params) = photon();
    queue.params.insert("level".into(), "/meta/level".into());
    let body = r#"{"site": "a", "meta": {"level": 2.50}, "data": 0}"#;
    let (channel, _) = map_message(&spec, &queue, &params, body).unwrap();
    assert_eq!(channel.params()["level"], "2.5", "canonical number");
    let body = r#"{"site": "a", "meta": {"level": "high"}, "data": 0}"#;
    let err = map_message(&spec, &queue, &params, body).unwrap_err();
    assert_eq!(err.code(), "invalid_params");
}

#[test]
fn unmappable_bodies_say_why() {
    let cases = [
        ("not json", "not_json"),
        ("", "not_json"),
        (r#"{"topic": "t", "data": 1}"#, "missing_param"),
        (r#"{"site": null, "data": 1}"#, "missing_param"),
        (r#"{"site": {"a": 1}, "data": 1}"#, "bad_param"),
        (r#"{"site": ["a"], "data": 1}"#, "bad_param"),
        (r#"{"site": "", "data": 1}"#, "invalid_params"),
        (r#"{"site": "a"}"#, "missing_item"),
        (r#"["site"]"#, "missing_param"),
    ];
    for (body, code) in cases {
        assert_eq!(map(body).unwrap_err().code(), code, "{body}");
    }
    let long = format!(r#"{{"site": "{}", "data": 1}}"#, "x".repeat(300));
    assert_eq!(map(&long).unwrap_err().code(), "invalid_params");
}

#[test]
fn the_reason_never_quotes_the_body() {
    let err = map(r#"{"site": {"secret": "s3cr3t"}, "data": 1}"#).unwrap_err();
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

#[test]
fn items_mode_upserts_objects_only_and_empty_item_is_the_whole_body() {
    let text = r#"
kind = "push"
name = "stock"
id_field = "sku"
[queue]
url = "http://127.0.0.1:1/q"
"#;
    let spec = (**PushChannel::parse("stock.toml", text).unwrap().spec()).clone();
    let queue = spec.queue.clone().unwrap();
    let (channel, op) =
        map_message(&spec, &queue, &ParamSpecs::new(), r#"{"sku": "a", "n": 1}"#).unwrap();
    assert_eq!(channel.to_string(), "stock");
    assert_eq!(
        op,
        PushOp::Upsert(json!({"sku": "a", "n": 1}).as_object().unwrap().clone())
    );
    let err = map_message(&spec, &queue, &ParamSpecs::new(), "[1]").unwrap_err();
    assert_eq!(err.code(), "not_an_object");
}

#[test]
fn prefix_cuts_on_characters() {
    assert_eq!(prefix("héllo", 2), "hé…");
    assert_eq!(prefix("hé", 2), "hé");
    assert_eq!(prefix("", 2), "");
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,300}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![Just("site".to_string()), Just("data".to_string()), ".{0,8}"],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(body in ".{0,400}") {
        let _ = map(&body);
        let _ = prefix(&body, 64);
    }

    #[test]
    fn arbitrary_json_never_panics_and_maps_to_photon(value in json_value()) {
        let text = value.to_string();
        if let Ok((channel, op)) = map(&text) {
            prop_assert_eq!(channel.name(), "photon");
            // As parsed from the text (a float's last digit may differ from the generated one).
            let parsed: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(op, PushOp::Append(parsed["data"].clone()));
        }
    }
}
