use super::*;
use crate::push::spec::PushChannel;
use serde_json::json;

fn spec(text: &str) -> PushSpec {
    (**PushChannel::parse("t.toml", text).unwrap().spec()).clone()
}

fn items_spec() -> PushSpec {
    spec("kind = \"push\"\nname = \"t\"\nid_field = \"id\"\n")
}

fn events_spec(keep: usize) -> PushSpec {
    spec(&format!(
        "kind = \"push\"\nname = \"t\"\nmode = \"events\"\nkeep = {keep}\n"
    ))
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn upsert(v: Value) -> PushOp {
    PushOp::Upsert(obj(v))
}

fn batch(ops: Vec<PushOp>) -> PushBatch {
    PushBatch {
        ops,
        ..PushBatch::default()
    }
}

/// Plans `b` on `state` and applies the commit, like the writer does.
fn run(state: &mut ChannelState, spec: &PushSpec, b: &PushBatch) -> Result<BatchPlan, PushError> {
    let channel = ChannelId::parse("t").unwrap();
    let input = BatchInput {
        channel: &channel,
        spec,
        max_item_bytes: 10_000,
        remembered_keys: 2,
        now_ms: 1_764_654_000_123,
        fence: None,
    };
    let plan = plan(state, b, &input)?;
    if let Some(commit) = plan.commit.clone() {
        state.apply(commit);
    }
    Ok(plan)
}

fn opened() -> ChannelState {
    let mut state = ChannelState::default();
    state.apply(opening(&state, &ChannelId::parse("t").unwrap(), None));
    state
}

fn kinds(plan: &BatchPlan) -> Vec<(u64, String)> {
    plan.commit
        .as_ref()
        .map(|c| {
            c.events
                .iter()
                .map(|e| {
                    let m: Value = serde_json::from_str(&e.message).unwrap();
                    (e.seq, m["type"].as_str().unwrap().to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn items_ops_apply_in_order_with_one_event_per_change() {
    let spec = items_spec();
    let mut state = opened();
    assert_eq!(state.meta.seq, 1);
    let p = run(
        &mut state,
        &spec,
        &batch(vec![
            upsert(json!({"id": "a", "v": 1})),
            upsert(json!({"id": "b", "v": 1})),
            upsert(json!({"id": "a", "v": 2})),
        ]),
    )
    .unwrap();
    assert_eq!(
        kinds(&p),
        vec![(2, "new".into()), (3, "new".into()), (4, "updated".into())]
    );
    assert_eq!((p.receipt.seq, p.receipt.new, p.receipt.updated), (4, 2, 1));
    assert_eq!(state.items["a"].data["v"], json!(2));
    assert_eq!(state.items["a"].seq, 4);
    // Unchanged: nothing written; delete of a missing id: nothing.
    let p = run(
        &mut state,
        &spec,
        &batch(vec![
            upsert(json!({"id": "b", "v": 1})),
            PushOp::Delete("zz".into()),
        ]),
    )
    .unwrap();
    assert!(p.commit.is_none() && p.publish.is_empty());
    assert_eq!((p.receipt.seq, p.receipt.unchanged), (4, 1));
    // Delete, then replace with a set that keeps only "c".
    let p = run(&mut state, &spec, &batch(vec![PushOp::Delete("a".into())])).unwrap();
    assert_eq!(kinds(&p), vec![(5, "removed".into())]);
    let replace = PushBatch {
        replace: true,
        ..batch(vec![upsert(json!({"id": "c"}))])
    };
    let p = run(&mut state, &spec, &replace).unwrap();
    assert_eq!(kinds(&p), vec![(6, "new".into()), (7, "removed".into())]);
    assert_eq!(state.items.keys().collect::<Vec<_>>(), vec!["c"]);
    assert_eq!(p.publish.len(), 2);
}

#[test]
fn an_item_added_and_deleted_in_one_batch_leaves_nothing_stored() {
    let spec = items_spec();
    let mut state = opened();
    let p = run(
        &mut state,
        &spec,
        &batch(vec![upsert(json!({"id": "x"})), PushOp::Delete("x".into())]),
    )
    .unwrap();
    assert_eq!(kinds(&p), vec![(2, "new".into()), (3, "removed".into())]);
    let c = p.commit.unwrap();
    assert!(c.upserts.is_empty() && c.removals.is_empty());
    assert!(state.items.is_empty());
}

#[test]
fn events_get_server_ids_and_the_snapshot_keeps_the_last_ones() {
    let spec = events_spec(3);
    let mut state = opened();
    let p = run(
        &mut state,
        &spec,
        &batch((0..5).map(|i| PushOp::Append(json!({"n": i}))).collect()),
    )
    .unwrap();
    assert_eq!(p.receipt.new, 5);
    assert_eq!(p.publish.len(), 5, "every event is sent, kept or not");
    let ids: Vec<&String> = state.items.keys().collect();
    assert_eq!(ids, vec![&event_id(4), &event_id(5), &event_id(6)]);
    let last = &state.items[&event_id(6)].data;
    assert_eq!(last["data"], json!({"n": 4}));
    assert_eq!(last["time"], json!("2025-12-02T05:40:00.123Z"));
    run(&mut state, &spec, &batch(vec![PushOp::Append(json!("x"))])).unwrap();
    let ids: Vec<&String> = state.items.keys().collect();
    assert_eq!(ids, vec![&event_id(5), &event_id(6), &event_id(7)]);
}

#[test]
fn a_retried_key_replays_the_first_receipt_and_a_reused_one_is_refused() {
    let spec = events_spec(10);
    let mut state = opened();
    let keyed = |v: Value, key: &str| PushBatch {
        idempotency_key: Some(key.into()),
        ..batch(vec![PushOp::Append(v)])
    };
    let first = run(&mut state, &spec, &keyed(json!(1), "k1")).unwrap();
    let again = run(&mut state, &spec, &keyed(json!(1), "k1")).unwrap();
    assert!(again.commit.is_none() && again.receipt.replayed);
    assert_eq!(again.receipt.seq, first.receipt.seq);
    assert_eq!(
        run(&mut state, &spec, &keyed(json!(2), "k1")),
        Err(PushError::KeyReused)
    );
    // Two keys remembered: the oldest is forgotten by the third.
    run(&mut state, &spec, &keyed(json!(2), "k2")).unwrap();
    run(&mut state, &spec, &keyed(json!(3), "k3")).unwrap();
    let seq = state.meta.seq;
    let p = run(&mut state, &spec, &keyed(json!(1), "k1")).unwrap();
    assert!(!p.receipt.replayed && p.receipt.seq == seq + 1);
}

#[test]
fn checks_refuse_what_does_not_fit_the_mode() {
    let items = items_spec();
    let events = events_spec(5);
    let e = |s: &PushSpec, b: PushBatch| check(s, &b, 3).unwrap_err().to_string();
    assert!(e(&items, batch(vec![upsert(json!({"x": 1}))])).contains("entry 0"));
    assert!(e(&items, batch(vec![PushOp::Append(json!(1))])).contains("entry 0"));
    assert!(e(&events, batch(vec![upsert(json!({"id": 1}))])).contains("entry 0"));
    assert!(e(&items, batch(vec![])).contains("no items"));
    assert!(e(
        &items,
        batch((0..4).map(|i| upsert(json!({"id": i}))).collect())
    )
    .contains("4"));
    let replace = PushBatch {
        replace: true,
        ..PushBatch::default()
    };
    assert!(
        check(&items, &replace, 3).is_ok(),
        "PUT [] empties the channel"
    );
    assert!(e(&events, replace).contains("append-only"));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn op() -> impl Strategy<Value = PushOp> {
        prop_oneof![
            (0u8..6, 0u8..3).prop_map(|(id, v)| upsert(json!({"id": format!("i{id}"), "v": v}))),
            (0u8..6).prop_map(|id| PushOp::Delete(format!("i{id}"))),
        ]
    }

    proptest! {
        /// Whatever the batches, the stored set equals applying the ops one by one, and the
        /// events' seqs are consecutive from the channel's.
        #[test]
        fn stored_items_equal_sequential_application(
            batches in proptest::collection::vec((proptest::collection::vec(op(), 1..8), any::<bool>()), 1..6)
        ) {
            let spec = items_spec();
            let mut state = opened();
            let mut model: BTreeMap<String, Value> = BTreeMap::new();
            for (ops, replace) in batches {
                let b = PushBatch { ops: ops.clone(), replace, idempotency_key: None };
                let before = state.meta.seq;
                let p = run(&mut state, &spec, &b).unwrap();
                let mut upserted = HashSet::new();
                for op in &ops {
                    match op {
                        PushOp::Upsert(item) => {
                            let id = item["id"].as_str().unwrap().to_string();
                            upserted.insert(id.clone());
                            model.insert(id, Value::Object(item.clone()));
                        }
                        PushOp::Delete(id) => {
                            upserted.remove(id);
                            model.remove(id);
                        }
                        PushOp::Append(_) => unreachable!(),
                    }
                }
                if replace {
                    model.retain(|id, _| upserted.contains(id));
                }
                let stored: BTreeMap<String, Value> = state.items.iter().map(|(k, v)| (k.clone(), Value::Object(v.data.clone()))).collect();
                prop_assert_eq!(&stored, &model);
                let seqs: Vec<u64> = p.commit.iter().flat_map(|c| c.events.iter().map(|e| e.seq)).collect();
                prop_assert_eq!(seqs, ((before + 1)..=state.meta.seq).collect::<Vec<_>>());
            }
        }
    }

    proptest! {
        /// Batches committed together leave the channel exactly as committed one by one, with
        /// the same events and receipts.
        #[test]
        fn a_group_commit_equals_its_batches_one_by_one(
            batches in proptest::collection::vec((proptest::collection::vec(op(), 0..6), any::<bool>()), 1..6)
        ) {
            let spec = items_spec();
            let channel = ChannelId::parse("t").unwrap();
            let input = BatchInput {
                channel: &channel,
                spec: &spec,
                max_item_bytes: 10_000,
                remembered_keys: 2,
                now_ms: 1_764_654_000_123,
                fence: None,
            };
            let mut base = opened();
            run(&mut base, &spec, &batch(vec![upsert(json!({"id": "i0"})), upsert(json!({"id": "i1", "v": 9}))])).unwrap();
            let batches: Vec<PushBatch> = batches
                .into_iter()
                .map(|(ops, replace)| PushBatch { ops, replace, idempotency_key: None })
                .collect();
            let mut one_by_one = base.clone();
            let mut events = Vec::new();
            let mut results = Vec::new();
            for b in &batches {
                match plan(&one_by_one, b, &input) {
                    Ok(p) => {
                        if let Some(c) = p.commit {
                            events.extend(c.events.clone());
                            one_by_one.apply(c);
                        }
                        results.push(Ok(p.receipt));
                    }
                    Err(e) => results.push(Err(e)),
                }
            }
            let refs: Vec<&PushBatch> = batches.iter().collect();
            let group = plan_group(&base, &refs, &input);
            let mut together = base.clone();
            if let Some(c) = group.commit.clone() {
                prop_assert_eq!(&c.events, &events);
                together.apply(c);
            } else {
                prop_assert!(events.is_empty());
            }
            // The group is one commit: a new owner re-publishes all of it, from its start.
            prop_assert!(together.meta.committed_from <= one_by_one.meta.committed_from);
            together.meta.committed_from = one_by_one.meta.committed_from;
            prop_assert_eq!(together, one_by_one);
            prop_assert_eq!(group.results, results);
        }
    }
}
