use proptest::prelude::*;

use super::*;

fn ch(id: &str) -> ChannelId {
    ChannelId::parse(id).unwrap()
}

fn ev(seq: u64, time_ms: u64) -> LoggedEvent {
    LoggedEvent::new(seq, "{}", time_ms)
}

/// 2026-12-02T08:00:00Z.
const EIGHT: u64 = 1_796_198_400_000;

#[test]
fn keys_are_hive_partitions_of_the_encoded_id() {
    let c = ch("usgs?feed=all_hour&min=2.5");
    let key = object_key(&c, &ev(12, EIGHT + 123));
    assert_eq!(
        key,
        "channel=usgs%3Ffeed%3Dall_hour%26min%3D2.5/date=2026-12-02/hour=08/00000000000000000012.ndjson"
    );
    assert_eq!(first_seq(&key), Some(12));
    assert_eq!(hour_dir(&c, EIGHT - 1).split('/').nth(2), Some("hour=07"));
    assert_eq!(
        first_seq("channel=x/date=d/hour=h/.00000000000000000012.ndjson.tmp"),
        None
    );
    assert_eq!(first_seq("channel=x/12.ndjson"), None);
}

#[test]
fn objects_are_cut_by_hour_size_and_age() {
    let lines = |events: &[LoggedEvent]| events.iter().map(|_| "x".repeat(99)).collect::<Vec<_>>();
    let events = [ev(1, EIGHT), ev(2, EIGHT + 1), ev(3, EIGHT + HOUR_MS)];
    let l = lines(&events);
    assert_eq!(
        cut(&events, &l, false, EIGHT + 2, 60_000, 1 << 20),
        Cut::Write(2),
        "a later hour ends it"
    );
    assert_eq!(
        cut(&events[..2], &l, false, EIGHT + 2, 60_000, 1 << 20),
        Cut::Wait
    );
    assert_eq!(
        cut(&events[..2], &l, true, EIGHT + 2, 60_000, 1 << 20),
        Cut::NeedMore
    );
    assert_eq!(
        cut(&events[..2], &l, false, EIGHT + 60_000, 60_000, 1 << 20),
        Cut::Write(2),
        "flushed by age"
    );
    assert_eq!(
        cut(
            &events[..2],
            &l,
            false,
            EIGHT + HOUR_MS,
            3_600_000 * 5,
            1 << 20
        ),
        Cut::Write(2),
        "the hour is over"
    );
    assert_eq!(
        cut(&events, &l, false, EIGHT + 2, 60_000, 150),
        Cut::Write(1),
        "full"
    );
    assert_eq!(
        cut(&events[..1], &l, false, EIGHT, 60_000, 100),
        Cut::Write(1),
        "one event fills it"
    );
    assert_eq!(cut(&[], &[], false, EIGHT, 1, 1), Cut::Wait);
}

proptest! {
    #[test]
    fn channel_ids_round_trip_through_partition_values(
        name in "[a-z0-9][a-z0-9._-]{0,20}",
        params in proptest::collection::btree_map("[a-z]{1,5}", "\\PC{0,12}", 0..4),
    ) {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", crate::channel::encode_component(v)))
            .collect();
        let id = match query.is_empty() {
            true => name.clone(),
            false => format!("{name}?{}", query.join("&")),
        };
        let c = ChannelId::parse(&id).expect("a canonical id");
        let value = encode_channel(c.as_str());
        prop_assert!(value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.%".contains(&b)), "{value}");
        prop_assert_eq!(decode_channel(&value), Some(c.clone()));
        let key = object_key(&c, &ev(7, EIGHT));
        prop_assert!(key.starts_with(&channel_dir(&c)));
        prop_assert_eq!(key.matches('/').count(), 3);
    }

    #[test]
    fn partition_paths_follow_the_utc_hour(time_ms in 0u64..4_102_444_800_000, seq: u64) {
        let c = ch("x");
        let key = object_key(&c, &ev(seq, time_ms));
        let t = time::OffsetDateTime::from_unix_timestamp((time_ms / 1000) as i64).unwrap();
        let want = format!("date={:04}-{:02}-{:02}/hour={:02}/", t.year(), u8::from(t.month()), t.day(), t.hour());
        prop_assert!(key.contains(&want), "{} lacks {}", key, want);
        prop_assert_eq!(first_seq(&key), Some(seq));
        // Same hour, same folder; keys of one folder sort by seq.
        prop_assert_eq!(hour_dir(&c, time_ms), hour_dir(&c, hour_of(time_ms) * HOUR_MS));
        prop_assert!(hour_end_ms(time_ms) > time_ms && hour_end_ms(time_ms) - time_ms <= HOUR_MS);
    }

    #[test]
    fn cuts_never_mix_hours_or_overflow(
        gaps in proptest::collection::vec(0u64..1_000_000, 1..40),
        sizes in proptest::collection::vec(1usize..400, 40),
        max in 1024u64..4096,
    ) {
        let mut t = EIGHT;
        let events: Vec<LoggedEvent> = gaps.iter().enumerate().map(|(i, g)| { t += g; ev(i as u64 + 1, t) }).collect();
        let lines: Vec<String> = events.iter().zip(&sizes).map(|(_, n)| "x".repeat(*n)).collect();
        match cut(&events, &lines, false, u64::MAX, 1, max) {
            Cut::Write(n) => {
                prop_assert!(n >= 1 && n <= events.len());
                prop_assert!(events[..n].iter().all(|e| hour_of(e.time_ms) == hour_of(events[0].time_ms)));
                let bytes: u64 = lines[..n].iter().map(|l| l.len() as u64 + 1).sum();
                prop_assert!(n == 1 || bytes <= max);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
