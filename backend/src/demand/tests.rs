//! Demand from reports and hints, under paused time.

use super::*;

fn id(name: &str) -> ChannelId {
    ChannelId::parse(name).unwrap()
}

fn report(channel: &str, from: &str, unavailable: bool) -> SubReport {
    moded(channel, from, "ws", unavailable)
}

fn moded(channel: &str, from: &str, mode: &str, unavailable: bool) -> SubReport {
    SubReport {
        channel: channel.into(),
        from: from.into(),
        mode: mode.into(),
        subscribers: if unavailable { None } else { Some(1) },
        ttl: if unavailable { None } else { Some(60) },
        unavailable,
    }
}

#[tokio::test(start_paused = true)]
async fn reports_expire_unless_refreshed() {
    let d = Demand::new(Duration::from_secs(60));
    let t0 = Instant::now();
    d.apply_report(&report("a", "p1", false), t0);
    assert!(d.active(t0 + Duration::from_secs(64)).contains(&id("a")));
    assert!(!d.active(t0 + Duration::from_secs(66)).contains(&id("a")));
    d.apply_report(&report("a", "p1", false), t0 + Duration::from_secs(50));
    assert!(d.active(t0 + Duration::from_secs(100)).contains(&id("a")));
}

#[tokio::test(start_paused = true)]
async fn active_while_any_pushpin_reports_subscribers() {
    let d = Demand::new(Duration::from_secs(60));
    let t = Instant::now();
    d.apply_report(&report("a", "p1", false), t);
    d.apply_report(&report("a", "p2", false), t);
    d.apply_report(&report("a", "p1", true), t);
    assert!(d.active(t).contains(&id("a")));
    d.apply_report(&report("a", "p2", true), t);
    assert!(d.active(t).is_empty());
}

#[tokio::test(start_paused = true)]
async fn websocket_and_sse_subscribers_are_counted_apart() {
    let d = Demand::new(Duration::from_secs(60));
    let t = Instant::now();
    d.apply_report(&moded("a", "p1", "ws", false), t);
    d.apply_report(
        &SubReport {
            subscribers: Some(3),
            ..moded("a", "p1", "stream", false)
        },
        t,
    );
    d.apply_report(&moded("a", "p2", "stream", false), t);
    d.apply_report(&moded("_sse:1", "p2", "stream", false), t);
    let a = d.subscribers(&id("a"), t);
    assert_eq!((a.websocket, a.sse, a.total()), (1, 4, 5));
    assert_eq!(
        d.all_subscribers(t).sse,
        4,
        "private channels are not subscribers"
    );
    // The last SSE stream leaving does not end the WebSocket subscribers' demand.
    d.apply_report(&moded("a", "p1", "stream", true), t);
    d.apply_report(&moded("a", "p2", "stream", true), t);
    assert!(d.active(t).contains(&id("a")));
    assert_eq!(d.subscribers(&id("a"), t).total(), 1);
    assert_eq!(
        d.subscribers(&id("a"), t + Duration::from_secs(70)).total(),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn hints_activate_until_gone_or_expired() {
    let d = Demand::new(Duration::from_secs(30));
    let t = Instant::now();
    d.hint(&id("a"), t);
    d.hint(&id("b"), t);
    assert_eq!(d.active(t).len(), 2);
    d.apply_report(&report("a", "p1", true), t);
    assert_eq!(d.active(t).into_iter().collect::<Vec<_>>(), vec![id("b")]);
    assert!(d.active(t + Duration::from_secs(31)).is_empty());
}

/// Whether `changed` resolves now (a stored wake-up) rather than timing out.
async fn woken(d: &Demand) -> bool {
    tokio::time::timeout(Duration::from_millis(10), d.changed())
        .await
        .is_ok()
}

#[tokio::test(start_paused = true)]
async fn only_a_channel_turning_active_or_inactive_wakes_the_scheduler() {
    let d = Demand::new(Duration::from_secs(60));
    let t = Instant::now();
    d.apply_report(&report("a", "p1", false), t);
    assert!(woken(&d).await, "a new channel");
    d.apply_report(&report("a", "p1", false), t + Duration::from_secs(10));
    d.apply_report(&moded("a", "p2", "stream", false), t);
    assert!(
        !woken(&d).await,
        "a refresh or another source of an active channel"
    );
    d.apply_report(&moded("a", "p2", "stream", true), t);
    assert!(
        !woken(&d).await,
        "a channel still reported by another source"
    );
    d.apply_report(&report("a", "p1", true), t);
    assert!(woken(&d).await, "a channel gone");
    assert!(d.active(t).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_hint_wakes_the_scheduler_only_for_a_channel_not_yet_active() {
    let d = Demand::new(Duration::from_secs(60));
    let t = Instant::now();
    d.hint(&id("a"), t);
    assert!(woken(&d).await, "a new channel");
    d.hint(&id("a"), t + Duration::from_secs(30));
    assert!(!woken(&d).await, "a repeated hint");
    d.apply_report(&report("b", "p1", false), t);
    assert!(woken(&d).await, "a reported channel");
    d.hint(&id("b"), t);
    assert!(!woken(&d).await, "a hint for a reported channel");
    // Once its hint expired and a pass dropped it, the channel is new again.
    let later = t + Duration::from_secs(200);
    assert!(d.active(later).is_empty());
    d.hint(&id("a"), later);
    assert!(woken(&d).await, "a channel active again");
}

#[tokio::test(start_paused = true)]
async fn is_active_agrees_with_the_active_set() {
    let d = Demand::new(Duration::from_secs(30));
    let t = Instant::now();
    d.hint(&id("hinted"), t);
    d.apply_report(&report("reported", "p1", false), t);
    d.apply_report(&report("gone", "p1", false), t);
    d.apply_report(&report("gone", "p1", true), t);
    assert!(d.is_active(&id("reported"), t + Duration::from_secs(40)));
    assert!(!d.is_active(&id("hinted"), t + Duration::from_secs(40)));
    for at in [0, 20, 40, 100] {
        let now = t + Duration::from_secs(at);
        let one_by_one: Vec<bool> = ["hinted", "reported", "gone", "never"]
            .iter()
            .map(|c| d.is_active(&id(c), now))
            .collect();
        let set = d.active(now);
        let from_set: Vec<bool> = ["hinted", "reported", "gone", "never"]
            .iter()
            .map(|c| set.contains(&id(c)))
            .collect();
        assert_eq!(one_by_one, from_set, "{at} s in");
    }
}

#[tokio::test(start_paused = true)]
async fn per_connection_channels_are_not_demand() {
    let d = Demand::new(Duration::from_secs(60));
    let t = Instant::now();
    d.apply_report(&report("_conn:42", "p1", false), t);
    d.apply_report(&moded("_sse:1", "p1", "stream", false), t);
    assert!(!woken(&d).await);
    assert!(d.active(t).is_empty());
    assert_eq!(d.all_subscribers(t).total(), 0);
}

#[tokio::test(start_paused = true)]
async fn changes_wake_the_scheduler() {
    let d = std::sync::Arc::new(Demand::new(Duration::from_secs(30)));
    let waiter = tokio::spawn({
        let d = d.clone();
        async move { d.changed().await }
    });
    tokio::task::yield_now().await;
    d.hint(&id("a"), Instant::now());
    tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn admission_counts_active_channels_per_fetcher_and_overall() {
    let d = Demand::new(Duration::from_secs(60));
    let t = Instant::now();
    assert_eq!(d.admit(&id("a?n=1"), 2, 3, t), Ok(()));
    assert_eq!(d.admit(&id("a?n=2"), 2, 3, t), Ok(()));
    assert_eq!(d.admit(&id("a?n=3"), 2, 3, t), Err(CapReached::Fetcher(2)));
    // An active channel is always admitted, even at the cap.
    assert_eq!(d.admit(&id("a?n=1"), 2, 3, t), Ok(()));
    // Stats count too: a reported channel takes a place overall.
    d.apply_report(&report("b", "p1", false), t);
    assert_eq!(d.admit(&id("c"), 2, 3, t), Err(CapReached::Total(3)));
    // Places free up when demand goes: a report of no subscribers, or hints expiring.
    d.apply_report(&report("b", "p1", true), t);
    assert_eq!(d.admit(&id("c"), 2, 3, t), Ok(()));
    let later = t + Duration::from_secs(61);
    assert!(d.active(later).is_empty());
    assert_eq!(d.admit(&id("a?n=3"), 2, 3, later), Ok(()));
    assert_eq!(d.admit(&id("a?n=4"), 2, 3, later), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn active_count_is_the_size_of_the_active_set_and_drops_nothing() {
    let d = Demand::new(Duration::from_secs(10));
    let t = Instant::now();
    d.apply_report(&report("a", "p1", false), t);
    d.apply_report(&moded("a", "p2", "stream", false), t);
    d.hint(&id("a"), t);
    d.hint(&id("b"), t);
    d.apply_report(&report("_conn:x", "p1", false), t);
    assert_eq!(
        d.active_count(t),
        2,
        "a once (reports and a hint), b hinted"
    );
    // The hint of b expires (10 s); a's reports last their TTL (60 s + slack).
    let later = t + Duration::from_secs(11);
    assert_eq!(d.active_count(later), 1);
    assert_eq!(d.active(later).len(), 1, "the set agrees");
    assert_eq!(d.active_count(t + Duration::from_secs(70)), 0);
}
