//! The retention part of the `ItemStore` conformance suite, for stores that sweep (embedded,
//! memory): time is injected as the `now` of `touch` and `sweep`.

use serde_json::json;

use super::conformance::{ch, event, item, meta};
use super::{ChannelMeta, Commit, ItemStore};

/// The retention a store must be created with for [`retention`].
pub const RETENTION: std::time::Duration = std::time::Duration::from_secs(1000);

/// Stores that sweep (embedded, memory), created empty with [`RETENTION`]: a channel
/// inactive for longer goes whole (items, meta, change log); a touched one stays; a swept
/// channel starts afresh.
pub async fn retention(store: &dyn ItemStore) {
    assert_eq!(store.retention(), Some(RETENTION));
    for name in ["old", "kept"] {
        store
            .commit(Commit {
                channel: ch(name),
                meta: meta(1, 1),
                upserts: vec![item("a", json!({"id": "a"}), 1)],
                ..Commit::new(ch(name))
            })
            .await
            .unwrap();
        store
            .commit(Commit {
                channel: ch(name),
                expected_seq: 1,
                meta: meta(2, 1),
                upserts: vec![item("b", json!({"id": "b"}), 2)],
                events: vec![event(2)],
                ..Commit::new(ch(name))
            })
            .await
            .unwrap();
    }
    let now = crate::store::unix_now();
    let r = RETENTION.as_secs();
    assert_eq!(store.sweep(now + r / 2, 100).await.unwrap(), 0, "not yet");
    // "kept" is polled (touched) half a retention later; "old" is not.
    store.touch(&ch("kept"), now + r / 2).await.unwrap();
    let later = now + r + 10;
    let mut swept = 0;
    for _ in 0..3 {
        swept += store.sweep(later, 1).await.unwrap();
    }
    assert_eq!(swept, 1, "only the inactive channel, at most one a pass");
    let (m, items) = store.load(&ch("old")).await.unwrap();
    assert_eq!((m, items.len()), (ChannelMeta::default(), 0), "swept whole");
    assert_eq!(
        store.events_after(&ch("old"), 1).await.unwrap(),
        None,
        "log gone"
    );
    assert_eq!(
        store.items_page(&ch("old"), None, 5).await.unwrap(),
        crate::store::Page::default()
    );
    let (m, items) = store.load(&ch("kept")).await.unwrap();
    assert_eq!((m.seq, items.len()), (2, 2), "a touched channel stays");
    assert!(store.events_after(&ch("kept"), 1).await.unwrap().is_some());
    // A swept channel comes back as a new one: a first commit from seq 0.
    store
        .commit(Commit {
            channel: ch("old"),
            meta: meta(1, 1),
            upserts: vec![item("z", json!({"id": "z"}), 1)],
            ..Commit::new(ch("old"))
        })
        .await
        .unwrap();
    let items = store.load(&ch("old")).await.unwrap().1;
    assert_eq!(items.len(), 1, "nothing of its previous life");
    assert_eq!(
        store.sweep(now + r / 2, 100).await.unwrap(),
        0,
        "just committed: active"
    );
    store.touch(&ch("never-stored"), now).await.unwrap();
    assert_eq!(
        store.load(&ch("never-stored")).await.unwrap().0,
        ChannelMeta::default()
    );
}
