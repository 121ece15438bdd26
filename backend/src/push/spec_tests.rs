use super::*;

const ITEMS: &str = r#"
kind = "push"
name = "photon"
id_field = "id"
[params.site]
required = true
"#;

fn err(text: &str) -> String {
    PushChannel::parse("c.toml", text)
        .err()
        .expect("refused")
        .to_string()
}

#[test]
fn items_and_events_channels_load_with_their_defaults() {
    let c = PushChannel::parse("c.toml", ITEMS).unwrap();
    assert_eq!(c.spec().mode, PushMode::Items);
    assert_eq!(c.spec().id_field, "id");
    let e = PushChannel::parse(
        "e.toml",
        "kind = \"push\"\nname = \"e\"\nmode = \"events\"\n",
    )
    .unwrap();
    assert_eq!(
        (e.spec().mode, e.spec().keep),
        (PushMode::Events, DEFAULT_KEEP)
    );
    assert_eq!(e.spec().id_field, EVENT_ID_FIELD);
    assert!(is_push_file(ITEMS) && !is_push_file("name = \"x\"") && !is_push_file("[["));
}

#[test]
fn bad_files_name_the_file_and_the_field() {
    let e = err(&ITEMS.replace("id_field = \"id\"", ""));
    assert!(e.contains("c.toml") && e.contains("`id_field`"), "{e}");
    let e = err("kind = \"push\"\nname = \"e\"\nmode = \"events\"\nkeep = 0\n");
    assert!(e.contains("`keep`"), "{e}");
    let e = err(&format!(
        "{ITEMS}\n[queue]\nurl = \"u\"\nparams = {{ topic = \"/t\" }}\n"
    ));
    assert!(e.contains("`queue.params`") && e.contains("topic"), "{e}");
    let e = err(&format!("{ITEMS}\n[queue]\nurl = \"u\"\nitem = \"data\"\n"));
    assert!(e.contains("`queue.item`"), "{e}");
    let e = err(&format!("bogus = 1\n{ITEMS}"));
    assert!(e.contains("bogus"), "{e}");
}
