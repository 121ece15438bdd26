//! Issue 19 through a real Pushpin: item ids as producers write them (numbers, spaces,
//! non-ASCII, a slash) are deleted by `DELETE /channels/{name}/items/{id}` with the id
//! percent-encoded; an update dropping and nesting fields patches cleanly (`/` and `~` in
//! keys); deleting an unknown id changes nothing; `PUT []` empties the channel.

use std::time::Duration;

use serde_json::json;

use crate::push::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_are_deleted_by_their_encoded_id_and_put_empties_the_set() {
    let stack = push_stack(None).await;
    let q = "site=ids";
    let mut sub = Sub::sse(&stack, THINGS, q, None).await;
    let mut mirror = Mirror::default();
    mirror
        .follow(&mut sub, 1, Duration::from_secs(10), "sub")
        .await;
    let items = json!([
        {"id": 7, "v": 1},
        {"id": "a b", "v": 1},
        {"id": "ü-ñ", "v": 1},
        {"id": "x/y", "v": 1},
        {"id": "keep", "v": 1}
    ]);
    let answer = publish_things(&stack, Publish::post(THINGS, q).json(&items)).await;
    assert_eq!((answer.seq(), counts(answer.receipt())), (6, (5, 0, 0, 0)));

    // Nothing to delete: nothing committed.
    let unknown = publish_things(&stack, Publish::delete(THINGS, "nope", q)).await;
    assert_eq!(
        (unknown.seq(), counts(unknown.receipt())),
        (6, (0, 0, 0, 0))
    );
    let mut seq = 6;
    for (id, encoded) in [
        ("7", "7"),
        ("a b", "a%20b"),
        ("ü-ñ", "%C3%BC-%C3%B1"),
        ("x/y", "x%2Fy"),
    ] {
        let answer = publish_things(&stack, Publish::delete(THINGS, encoded, q)).await;
        assert_eq!(answer.status, 200, "DELETE {encoded}: {:?}", answer.body);
        seq += 1;
        assert_eq!(
            (answer.seq(), counts(answer.receipt())),
            (seq, (0, 0, 1, 0)),
            "DELETE {encoded}"
        );
        mirror
            .follow(&mut sub, seq, Duration::from_secs(10), "sub")
            .await;
        assert_eq!(
            mirror
                .events
                .last()
                .map(|(k, _, i)| (k.as_str(), i.as_str())),
            Some(("removed", id))
        );
    }
    assert_eq!(
        items_page(&stack, THINGS, q).await.1,
        [json!({"id": "keep", "v": 1})]
    );

    // PUT of an empty set removes everything.
    let put = publish_things(&stack, Publish::put(THINGS, q).json(&json!([]))).await;
    assert_eq!((put.seq(), counts(put.receipt())), (seq + 1, (0, 0, 1, 0)));
    mirror
        .follow(&mut sub, seq + 1, Duration::from_secs(10), "sub")
        .await;
    assert!(mirror.items.is_empty());
    assert_eq!(items_page(&stack, THINGS, q).await, (seq + 1, vec![]));
    assert_eq!(sub.next(Duration::from_millis(300)).await, None);
}
