//! The pure poll decision, without I/O: one case per kind of poll.

use serde_json::json;

use super::*;
use crate::changes::content_hash;

fn channel() -> ChannelId {
    ChannelId::parse("t?p=x").unwrap()
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("object"),
    }
}

/// A channel at `seq` holding `items`, each last changed at `seq`, first seen at 100.
fn state(seq: u64, items: &[Value]) -> ChannelState {
    let items = items
        .iter()
        .map(|v| {
            let data = obj(v.clone());
            StoredItem {
                id: data["id"].as_str().unwrap().to_string(),
                hash: content_hash(&data),
                data,
                seq,
                first_seen: 100,
                last_changed: 100,
            }
        })
        .collect();
    let meta = ChannelMeta {
        seq,
        fetcher_state: Some(json!("e0")),
        log_floor: 1,
        committed_from: 1,
        last_event_ms: 0,
    };
    ChannelState::from_loaded(meta, items)
}

fn fetched(items: &[Value], complete: bool) -> FetchOutcome {
    FetchOutcome {
        items: items.iter().map(|v| obj(v.clone())).collect(),
        skipped_non_objects: 0,
        state: Some(json!("e0")),
        complete,
        retry_after: None,
        not_modified: false,
    }
}

fn decide(state: &ChannelState, outcome: FetchOutcome, max_item_bytes: usize) -> Plan {
    let channel = channel();
    let input = PlanInput {
        channel: &channel,
        id_field: "id",
        max_item_bytes,
        now: 200,
        fence: None,
    };
    plan(state, outcome, &input)
}

fn message_types(announce: &Announce) -> Vec<(Option<String>, String)> {
    let Announce::Events(items) = announce else {
        panic!("events expected, got {announce:?}")
    };
    items
        .iter()
        .map(|i| {
            let ws = &i.formats.ws_message.as_ref().unwrap().content;
            let v: Value = serde_json::from_str(ws).unwrap();
            (i.id.clone(), v["type"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn the_first_poll_is_one_snapshot_at_seq_1_and_not_logged() {
    let p = decide(
        &ChannelState::default(),
        fetched(&[json!({"id": "a"}), json!({"id": "b"})], false),
        usize::MAX,
    );
    let commit = p.commit.expect("a commit");
    assert_eq!(p.announce, Announce::FirstSnapshot);
    assert_eq!(
        (commit.expected_seq, commit.meta.seq, commit.meta.log_floor),
        (0, 1, 1)
    );
    assert!(commit.events.is_empty() && commit.removals.is_empty());
    let ids: Vec<_> = commit
        .upserts
        .iter()
        .map(|i| (i.id.as_str(), i.seq))
        .collect();
    assert_eq!(ids, vec![("a", 1), ("b", 1)]);
    assert!(commit
        .upserts
        .iter()
        .all(|i| i.first_seen == 200 && i.last_changed == 200));
    assert_eq!(p.report.new, vec!["a", "b"]);
}

#[test]
fn an_empty_first_poll_still_commits_its_snapshot() {
    let p = decide(&ChannelState::default(), fetched(&[], true), usize::MAX);
    assert_eq!(p.announce, Announce::FirstSnapshot);
    assert_eq!(p.commit.unwrap().meta.seq, 1);
}

#[test]
fn new_updated_and_removed_items_are_one_logged_event_each() {
    let before = state(
        5,
        &[
            json!({"id": "a", "v": 1}),
            json!({"id": "b"}),
            json!({"id": "c"}),
        ],
    );
    let after = [
        json!({"id": "a", "v": 2}),
        json!({"id": "b"}),
        json!({"id": "d"}),
    ];
    let p = decide(&before, fetched(&after, true), usize::MAX);
    let commit = p.commit.clone().expect("a commit");
    assert_eq!(
        message_types(&p.announce),
        vec![
            (Some("6".into()), "updated".into()),
            (Some("7".into()), "new".into()),
            (Some("8".into()), "removed".into()),
        ]
    );
    assert_eq!((commit.expected_seq, commit.meta.seq), (5, 8));
    assert_eq!(
        commit.meta.committed_from, 5,
        "this commit's events follow seq 5"
    );
    assert_eq!(
        commit.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![6, 7, 8]
    );
    assert_eq!(commit.removals, vec!["c"]);
    let a = commit.upserts.iter().find(|i| i.id == "a").unwrap();
    assert_eq!((a.seq, a.first_seen, a.last_changed), (6, 100, 200));
    let Announce::Events(items) = &p.announce else {
        unreachable!()
    };
    for (item, event) in items.iter().zip(&commit.events) {
        assert_eq!(
            item.formats.ws_message.as_ref().unwrap().content,
            event.message
        );
        assert_eq!(item.channel, "t?p=x");
    }
    assert_eq!(
        (
            p.report.new,
            p.report.updated,
            p.report.removed,
            p.report.unchanged
        ),
        (
            vec!["d".to_string()],
            vec!["a".to_string()],
            vec!["c".to_string()],
            1
        )
    );
}

#[test]
fn an_unchanged_poll_writes_and_announces_nothing() {
    let items = [json!({"id": "a"}), json!({"id": "b"})];
    let p = decide(&state(3, &items), fetched(&items, true), usize::MAX);
    assert_eq!((p.commit, p.announce), (None, Announce::Nothing));
    assert_eq!(p.report.unchanged, 2);
}

#[test]
fn a_fetcher_state_change_alone_is_committed_but_not_announced() {
    let items = [json!({"id": "a"})];
    let mut outcome = fetched(&items, false);
    outcome.state = Some(json!("e1"));
    let p = decide(&state(3, &items), outcome, usize::MAX);
    let commit = p.commit.expect("a commit");
    assert_eq!(p.announce, Announce::Nothing);
    assert_eq!(commit.meta.fetcher_state, Some(json!("e1")));
    assert_eq!((commit.meta.seq, commit.meta.committed_from), (3, 1));
    assert!(commit.events.is_empty() && commit.upserts.is_empty());
}

#[test]
fn not_modified_writes_nothing() {
    let mut outcome = fetched(&[], true);
    outcome.not_modified = true;
    let p = decide(&state(3, &[json!({"id": "a"})]), outcome, usize::MAX);
    assert_eq!((p.commit, p.announce), (None, Announce::Nothing));
    assert!(p.report.not_modified);
}

#[test]
fn over_size_items_keep_their_stored_version_and_new_ones_are_skipped() {
    let before = state(2, &[json!({"id": "a", "v": 1}), json!({"id": "b"})]);
    let big = "x".repeat(100);
    let after = [
        json!({"id": "a", "v": big}),
        json!({"id": "b"}),
        json!({"id": "n", "v": big}),
    ];
    let p = decide(&before, fetched(&after, true), 50);
    assert_eq!(
        (p.commit, p.announce),
        (None, Announce::Nothing),
        "neither updated nor removed"
    );
    let ids: Vec<_> = p.report.oversize.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, vec![Some("a".to_string()), Some("n".to_string())]);
}

#[test]
fn the_fence_and_unusable_entries_are_carried() {
    let channel = channel();
    let input = PlanInput {
        channel: &channel,
        id_field: "id",
        max_item_bytes: usize::MAX,
        now: 200,
        fence: Some(7),
    };
    let mut outcome = fetched(
        &[json!({"id": "a"}), json!({"no": 1}), json!({"id": "a"})],
        false,
    );
    outcome.skipped_non_objects = 1;
    let p = plan(&state(1, &[]), outcome, &input);
    assert!(p.report.has_unusable());
    assert_eq!(p.commit.unwrap().fence, Some(7));
    assert_eq!(
        (p.report.bad_ids, p.report.duplicates),
        (vec![(1, crate::changes::IdProblem::Missing)], 1)
    );
}

#[test]
fn an_over_long_id_is_rejected_alone_and_the_rest_commits() {
    let channel = channel();
    let input = PlanInput {
        channel: &channel,
        id_field: "id",
        max_item_bytes: usize::MAX,
        now: 200,
        fence: None,
    };
    let long = "k".repeat(crate::changes::MAX_ITEM_ID_BYTES + 1);
    let outcome = fetched(
        &[json!({"id": "a"}), json!({"id": long}), json!({"id": "b"})],
        true,
    );
    let p = plan(&state(3, &[json!({"id": "old"})]), outcome, &input);
    assert_eq!(
        p.report.bad_ids,
        vec![(1, crate::changes::IdProblem::TooLong)]
    );
    assert_eq!(p.report.new, vec!["a", "b"]);
    // Not trusted as complete with an entry it could not read: nothing is removed.
    assert!(p.report.removed.is_empty());
    let commit = p.commit.expect("the usable items commit");
    assert!(commit.upserts.iter().all(|i| i.id.len() <= 1));
}

#[test]
fn hashes_stored_by_an_older_version_compare_and_are_replaced_in_memory() {
    let mut before = state(5, &[json!({"id": "a", "v": 1}), json!({"id": "b"})]);
    for item in before.items.values_mut() {
        item.hash = crate::changes::hash::legacy_hash(&item.data);
    }
    let after = [json!({"v": 1, "id": "a"}), json!({"id": "b"})];
    let p = decide(&before, fetched(&after, true), usize::MAX);
    assert_eq!(p.commit, None, "unchanged: nothing written");
    assert_eq!(p.announce, Announce::Nothing);
    assert_eq!(p.report.unchanged, 2);
    let ids: Vec<_> = p.rehashed.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, vec!["a", "b"]);
    before.rehash(p.rehashed);
    assert!(before
        .items
        .values()
        .all(|i| i.hash == content_hash(&i.data)));
    let again = decide(&before, fetched(&after, true), usize::MAX);
    assert!(again.commit.is_none() && again.rehashed.is_empty());
}
