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

#[test]
fn a_channels_folder_splits_between_declarative_and_push_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), ITEMS).unwrap();
    let http = "name = \"h\"\nurl = \"{base}/x\"\nbase_url = \"http://127.0.0.1:9\"\nitems = \"\"\nid_field = \"id\"\n";
    std::fs::write(dir.path().join("h.toml"), http).unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "kind = \"push\"\nname = \"b\"\n",
    )
    .unwrap();
    let declarative = crate::fetcher::http::discover(dir.path(), std::time::Duration::from_secs(1));
    assert_eq!(
        declarative.len(),
        1,
        "push files are not declarative channels"
    );
    let push: Vec<String> = discover(dir.path())
        .iter()
        .map(|c| c.spec().name.clone())
        .collect();
    assert_eq!(push, vec!["photon"], "the invalid push file is skipped");
}
