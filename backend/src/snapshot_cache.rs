//! The current snapshot message of channels polled here, so a fresh WebSocket subscribe gets
//! it inline in its WOH response instead of a publish Pushpin must route back to it.
//!
//! A poller offers its snapshot when it answers a fresh subscriber or one resuming up to date
//! (never on its own, so an idle channel costs nothing) and forgets it before every commit, when it
//! turns degraded and when it stops: an entry is always the channel's state at its `seq`. A
//! subscriber served from here (a fresh one inline, or one resuming at that very `seq`) is watched
//! for [`SNAPSHOT_DELAY`], until Pushpin has surely applied its subscription: if the entry is
//! forgotten meanwhile, its poller is handed a resume after that `seq` for each one, so an event
//! committed in between is not missed; otherwise the poller never hears of it (no request, no
//! wake-up per subscribe). Bounded by bytes (`state.snapshot_cache_bytes`, 0 = off), watched
//! subscribers included; a snapshot larger than Pushpin 1.36 delivers from a WOH response
//! ([`MAX_INLINE_BYTES`]) is never kept. Counted in `restream_snapshot_cache_events_total` and
//! `restream_snapshot_cache_bytes`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::channel::{ChannelId, GripChannel};
use crate::poller::requests::Requeue;
use crate::poller::{SnapshotRequest, SNAPSHOT_DELAY};
use crate::pushpin::grip::Transports;

/// Largest message kept: Pushpin 1.36 holds back a WOH response message over 16 KiB until
/// the client's next message (reference §5.4).
pub const MAX_INLINE_BYTES: usize = 16 * 1024;

/// What one watched subscriber counts against the capacity, besides its connection id.
const WATCHED_OVERHEAD: usize = 48;

/// One channel's snapshot message at `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentSnapshot {
    pub seq: u64,
    pub message: Arc<str>,
}

/// A subscriber served from the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The snapshot it was served (a resuming subscriber at its `seq` is not sent it).
    pub snapshot: CurrentSnapshot,
    /// Whether the cache watches it: if not (no room), the poller must still be asked to
    /// resume it after `snapshot.seq`.
    pub watched: bool,
}

/// A subscriber served at an entry's `seq`, not yet surely subscribed in Pushpin.
struct Watched {
    /// Pushpin's `Connection-Id`.
    connection: Box<str>,
    at: Instant,
}

struct Entry {
    current: CurrentSnapshot,
    /// The poller's own request queue, for the resumes owed when the entry is forgotten.
    owner: Requeue,
    /// Oldest first.
    watched: VecDeque<Watched>,
}

impl Entry {
    /// Stops watching subscribers whose subscription is surely applied by `now`; returns the
    /// bytes freed.
    fn expire(&mut self, now: Instant) -> usize {
        let mut freed = 0;
        while let Some(w) = self.watched.front() {
            if w.at + SNAPSHOT_DELAY > now {
                break;
            }
            freed += watched_bytes(&w.connection);
            self.watched.pop_front();
        }
        freed
    }
}

fn watched_bytes(connection: &str) -> usize {
    connection.len() + WATCHED_OVERHEAD
}

#[derive(Default)]
struct Inner {
    entries: HashMap<ChannelId, Entry>,
    /// Bytes of messages kept.
    messages: usize,
    /// Bytes of watched subscribers.
    watched: usize,
    /// When watched subscribers were last expired in every entry (at most once per
    /// [`SNAPSHOT_DELAY`], and only when the cache is full).
    swept_at: Option<Instant>,
}

impl Inner {
    fn bytes(&self) -> usize {
        self.messages + self.watched
    }

    /// Adds (or with a negative sign, releases) bytes of messages and of watched subscribers.
    fn account(&mut self, messages: isize, watched: isize) {
        self.messages = self.messages.saturating_add_signed(messages);
        self.watched = self.watched.saturating_add_signed(watched);
        let bytes = self.bytes() as i64;
        crate::metrics::get().snapshot_cache_bytes.set(bytes);
    }

    /// Room for `more` bytes, expiring settled subscribers everywhere if that makes it.
    fn has_room(&mut self, more: usize, capacity: usize, now: Instant) -> bool {
        if self.bytes() + more <= capacity {
            return true;
        }
        let recently = self.swept_at.is_some_and(|t| now < t + SNAPSHOT_DELAY);
        if self.watched == 0 || recently {
            return false;
        }
        self.swept_at = Some(now);
        let freed: usize = self.entries.values_mut().map(|e| e.expire(now)).sum();
        self.account(0, -(freed as isize));
        self.bytes() + more <= capacity
    }
}

/// At most `capacity` bytes of snapshot messages and watched subscribers; 0 keeps nothing.
pub struct SnapshotCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl Default for SnapshotCache {
    /// Keeps nothing (tests and embedders that do not configure it).
    fn default() -> SnapshotCache {
        SnapshotCache::new(0)
    }
}

impl SnapshotCache {
    pub fn new(capacity: usize) -> SnapshotCache {
        SnapshotCache {
            capacity,
            inner: Mutex::default(),
        }
    }

    /// The channel's snapshot, when its poller offered one since its last commit: what a fresh
    /// subscriber would be served, without serving anyone (subscribes go through `serve`).
    pub fn current(&self, channel: &ChannelId) -> Option<CurrentSnapshot> {
        if self.capacity == 0 {
            return None;
        }
        Some(self.lock().entries.get(channel)?.current.clone())
    }

    /// Serves a WebSocket subscriber on `connection`, subscribing at `now`: a fresh one
    /// (`since` = `None`) gets the kept snapshot; one resuming at the kept `seq` is up to date.
    /// `None` (the poller must answer it) when nothing is kept or `since` is another seq.
    pub fn serve(
        &self,
        channel: &ChannelId,
        since: Option<u64>,
        connection: &str,
        now: Instant,
    ) -> Option<Served> {
        if self.capacity == 0 {
            return None;
        }
        let mut inner = self.lock();
        let entry = inner.entries.get_mut(channel)?;
        if since.is_some_and(|s| s != entry.current.seq) {
            return None;
        }
        let freed = entry.expire(now);
        let snapshot = entry.current.clone();
        inner.account(0, -(freed as isize));
        let more = watched_bytes(connection);
        let watched = inner.has_room(more, self.capacity, now);
        if watched {
            let entry = inner.entries.get_mut(channel).expect("entry checked above");
            entry.watched.push_back(Watched {
                connection: connection.into(),
                at: now,
            });
            inner.account(0, more as isize);
        }
        drop(inner);
        event(match (since, watched) {
            (None, true) => "inline",
            (Some(_), true) => "up_to_date",
            (_, false) => "unwatched",
        });
        Some(Served { snapshot, watched })
    }

    /// Keeps `message` as the channel's snapshot at `seq` (replacing an older one) unless it
    /// is too large to send inline or the cache is full. `owner` is the poller's queue, owed
    /// a resume for each subscriber still watched when the entry is forgotten.
    pub fn offer(&self, channel: &ChannelId, seq: u64, message: &str, owner: &Requeue) {
        if self.capacity == 0 {
            return;
        }
        if message.len() > MAX_INLINE_BYTES {
            return event("too_large");
        }
        let mut inner = self.lock();
        if inner
            .entries
            .get(channel)
            .is_some_and(|kept| kept.current.seq == seq)
        {
            return; // Already current.
        }
        // An older entry (its poller forgets it before every commit, so there is none).
        let owed = inner
            .entries
            .remove(channel)
            .map(|gone| forgotten(&mut inner, gone));
        let room = inner.has_room(message.len(), self.capacity, Instant::now());
        if room {
            let current = CurrentSnapshot {
                seq,
                message: Arc::from(message),
            };
            let entry = Entry {
                current,
                owner: owner.clone(),
                watched: VecDeque::new(),
            };
            inner.entries.insert(channel.clone(), entry);
            inner.account(message.len() as isize, 0);
        }
        drop(inner);
        if let Some((owner, owed)) = owed {
            owner.push_front(owed);
        }
        event(if room { "stored" } else { "full" });
    }

    /// Drops the channel's snapshot: it is about to change, the channel turned degraded, or
    /// its poller stopped. The subscribers it still watched are handed to the poller as
    /// resumes after the dropped `seq`.
    pub fn forget(&self, channel: &ChannelId) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        let Some(gone) = inner.entries.remove(channel) else {
            return;
        };
        let (owner, owed) = forgotten(&mut inner, gone);
        drop(inner);
        owner.push_front(owed);
    }

    /// Bytes of messages and watched subscribers held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("snapshot cache lock")
    }
}

/// Accounts for a removed entry; its owner and the resumes owed to its watched subscribers.
fn forgotten(inner: &mut Inner, mut gone: Entry) -> (Requeue, Vec<SnapshotRequest>) {
    let now = Instant::now();
    let watched: usize = gone
        .watched
        .iter()
        .map(|w| watched_bytes(&w.connection))
        .sum();
    inner.account(-(gone.current.message.len() as isize), -(watched as isize));
    gone.expire(now);
    let seq = gone.current.seq;
    let owed: Vec<_> = gone
        .watched
        .into_iter()
        .map(|w| SnapshotRequest {
            connection_channel: GripChannel::connection(&w.connection),
            since: Some(seq),
            transport: Transports::WebSocket,
            requested_at: w.at,
        })
        .collect();
    events("resume_owed", owed.len());
    (gone.owner, owed)
}

fn event(name: &str) {
    events(name, 1);
}

fn events(name: &str, n: usize) {
    if n > 0 {
        let counter = crate::metrics::get()
            .snapshot_cache
            .with_label_values(&[name]);
        counter.inc_by(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poller::requests::{self, RequestReceiver};
    use std::time::Duration;

    fn id(name: &str) -> ChannelId {
        ChannelId::parse(name).unwrap()
    }

    fn nobody() -> Requeue {
        Requeue::default()
    }

    /// (connection, since, requested_at) of every request queued.
    fn owed(rx: &mut RequestReceiver) -> Vec<(String, Option<u64>, Instant)> {
        std::iter::from_fn(|| rx.try_recv())
            .map(|r| (r.connection_channel.to_string(), r.since, r.requested_at))
            .collect()
    }

    #[test]
    fn keeps_the_offered_snapshot_until_forgotten() {
        let cache = SnapshotCache::new(1000);
        assert_eq!(cache.current(&id("a")), None);
        cache.offer(&id("a"), 3, "{\"seq\":3}", &nobody());
        let current = cache.current(&id("a")).unwrap();
        assert_eq!((current.seq, &*current.message), (3, "{\"seq\":3}"));
        cache.offer(&id("a"), 4, "{\"seq\":4,\"x\":1}", &nobody());
        assert_eq!(
            cache.current(&id("a")).unwrap().seq,
            4,
            "a newer one replaces it"
        );
        assert_eq!(cache.bytes(), "{\"seq\":4,\"x\":1}".len());
        cache.forget(&id("a"));
        assert_eq!(cache.current(&id("a")), None);
        assert_eq!(cache.bytes(), 0);
        cache.forget(&id("a")); // Forgetting twice is harmless.
    }

    #[test]
    fn holds_at_most_its_capacity_and_nothing_pushpin_would_hold_back() {
        let cache = SnapshotCache::new(25);
        cache.offer(&id("a"), 1, &"a".repeat(10), &nobody());
        cache.offer(&id("b"), 1, &"b".repeat(10), &nobody());
        cache.offer(&id("c"), 1, &"c".repeat(10), &nobody());
        assert!(cache.current(&id("c")).is_none(), "full: not kept");
        assert_eq!(cache.bytes(), 20);
        cache.offer(&id("a"), 2, &"a".repeat(15), &nobody());
        assert_eq!(cache.bytes(), 25, "a replacement counts only its growth");
        cache.forget(&id("b"));
        cache.offer(&id("c"), 1, &"c".repeat(10), &nobody());
        assert!(cache.current(&id("c")).is_some(), "room again");

        let big = SnapshotCache::new(1 << 20);
        big.offer(&id("a"), 1, &"x".repeat(MAX_INLINE_BYTES + 1), &nobody());
        assert!(big.current(&id("a")).is_none(), "over 16 KiB: not inline");
        big.offer(&id("a"), 1, &"x".repeat(MAX_INLINE_BYTES), &nobody());
        assert!(big.current(&id("a")).is_some());

        let off = SnapshotCache::new(0);
        off.offer(&id("a"), 1, "{}", &nobody());
        assert!(off.current(&id("a")).is_none(), "capacity 0 keeps nothing");
        assert!(off.serve(&id("a"), None, "c", Instant::now()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn serves_fresh_and_up_to_date_subscribers_and_hands_the_unsettled_back_when_forgotten() {
        let (_tx, mut rx) = requests::channel(8);
        let cache = SnapshotCache::new(1000);
        let a = id("a");
        assert_eq!(
            cache.serve(&a, None, "c0", Instant::now()),
            None,
            "nothing kept"
        );
        cache.offer(&a, 7, "{\"seq\":7}", &rx.requeue());
        let t0 = Instant::now();
        let fresh = cache.serve(&a, None, "c1", t0).unwrap();
        assert_eq!((fresh.snapshot.seq, fresh.watched), (7, true));
        assert_eq!(&*fresh.snapshot.message, "{\"seq\":7}");
        let current = cache.serve(&a, Some(7), "c2", t0).unwrap();
        assert!(current.watched, "resuming at the kept seq: up to date");
        assert_eq!(
            cache.serve(&a, Some(6), "c3", t0),
            None,
            "behind: the poller's"
        );
        assert_eq!(cache.serve(&id("b"), None, "c3", t0), None);
        assert_eq!(owed(&mut rx), vec![], "the poller heard of nobody");

        // Subscribed a moment ago: surely applied in Pushpin by now, not owed anything.
        tokio::time::advance(SNAPSHOT_DELAY + Duration::from_millis(1)).await;
        let t1 = Instant::now();
        cache.serve(&a, None, "c4", t1).unwrap();
        tokio::time::advance(Duration::from_millis(50)).await;
        cache.forget(&a);
        assert_eq!(owed(&mut rx), vec![("_conn:c4".into(), Some(7), t1)]);
        assert_eq!(cache.bytes(), 0, "watched subscribers counted and released");

        // A newer snapshot offered over an entry hands its subscribers back too.
        cache.offer(&a, 8, "{\"seq\":8}", &rx.requeue());
        cache.serve(&a, None, "c5", t1).unwrap();
        cache.offer(&a, 9, "{\"seq\":9}", &rx.requeue());
        assert_eq!(owed(&mut rx), vec![("_conn:c5".into(), Some(8), t1)]);
        assert_eq!(cache.current(&a).unwrap().seq, 9);
    }

    #[tokio::test(start_paused = true)]
    async fn watches_only_what_fits_and_makes_room_as_subscriptions_settle() {
        let (_tx, mut rx) = requests::channel(8);
        let message = "{\"seq\":1}";
        let cache = SnapshotCache::new(message.len() + watched_bytes("c1"));
        cache.offer(&id("a"), 1, message, &rx.requeue());
        let t0 = Instant::now();
        assert!(cache.serve(&id("a"), None, "c1", t0).unwrap().watched);
        let unwatched = cache.serve(&id("a"), None, "c2", t0).unwrap();
        assert_eq!(
            (unwatched.snapshot.seq, unwatched.watched),
            (1, false),
            "served, but the poller must resume it"
        );
        tokio::time::advance(SNAPSHOT_DELAY).await;
        assert!(
            cache
                .serve(&id("a"), None, "c3", Instant::now())
                .unwrap()
                .watched
        );
        assert_eq!(cache.bytes(), message.len() + watched_bytes("c3"));
        cache.forget(&id("a"));
        assert_eq!(owed(&mut rx).len(), 1, "only c3, still settling");
    }
}
