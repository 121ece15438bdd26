//! The scheduler under paused time, without moto: a fetcher that records who fetched which
//! channel when, a recording publisher, and (cluster mode) an in-memory lease table shared
//! by two schedulers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Scheduler, SchedulerHandle};
use crate::channel::{ChannelId, GripChannel};
use crate::cluster::{preferred, Cluster, Member, MemoryLeaseTable};
use crate::demand::{Demand, SubReport};
use crate::fetcher::{
    FetchError, FetchOutcome, FetchRequest, Fetcher, FetcherEntry, Metadata, Registry,
    SharedRegistry,
};
use crate::keys::FileKeyStore;
use crate::poller::{PollerContext, SnapshotRequest};
use crate::pushpin::grip::{PublishItem, Transports};
use crate::pushpin::publisher::{PublishError, Publisher};
use crate::store::{Commit, ItemStore, LoggedEvent, MemoryStore, StoreError};

/// Every fetch: which replica, which channel, when.
type FetchLog = Arc<Mutex<Vec<(&'static str, String, Instant)>>>;

struct Recording {
    replica: &'static str,
    log: FetchLog,
}

#[async_trait]
impl Fetcher for Recording {
    fn label(&self) -> &str {
        "recording"
    }
    async fn metadata(&self) -> Result<Value, FetchError> {
        unreachable!()
    }
    async fn fetch(&self, req: FetchRequest<'_>) -> Result<FetchOutcome, FetchError> {
        let fetched = (self.replica, req.channel.to_string(), Instant::now());
        self.log.lock().unwrap().push(fetched);
        Ok(FetchOutcome::items(
            vec![json!({"id": "1", "v": 1})],
            None,
            true,
        ))
    }
}

/// The GRIP channel of every published item; beside it, with the other replicas' Pushpins
/// it reached (those `set_remotes` named last).
#[derive(Default)]
struct Published(Mutex<Vec<String>>, Mutex<Targets>);

#[derive(Default)]
struct Targets {
    remotes: Vec<String>,
    reached: Vec<(String, Vec<String>)>,
}

#[async_trait]
impl Publisher for Published {
    async fn publish(&self, items: &[PublishItem]) -> Result<(), PublishError> {
        let mut log = self.0.lock().unwrap();
        log.extend(items.iter().map(|i| i.channel.clone()));
        let mut targets = self.1.lock().unwrap();
        let remotes = targets.remotes.clone();
        let reached = items.iter().map(|i| (i.channel.clone(), remotes.clone()));
        targets.reached.extend(reached);
        Ok(())
    }

    fn set_remotes(&self, targets: &[String]) {
        self.1.lock().unwrap().remotes = targets.to_vec();
    }
}

impl Published {
    /// The remote Pushpins each item published to `channel` reached.
    fn reached(&self, channel: &str) -> Vec<Vec<String>> {
        let targets = self.1.lock().unwrap();
        let to = targets.reached.iter().filter(|(c, _)| c == channel);
        to.map(|(_, r)| r.clone()).collect()
    }
}

fn channel(name: &str) -> ChannelId {
    ChannelId::from_request(name, None, &BTreeMap::new()).unwrap()
}

/// Subscribers reported for `channel` (`false`: all gone).
fn report(channel: &ChannelId, subscribed: bool) -> SubReport {
    SubReport {
        channel: channel.to_string(),
        from: "p1".into(),
        mode: "ws".into(),
        subscribers: subscribed.then_some(1),
        ttl: subscribed.then_some(600),
        unavailable: !subscribed,
    }
}

/// A memory store that accepts cluster mode's fenced commits (the fence itself is tested
/// against DynamoDB in tests/cluster_leases.rs): each replica has its own, so what matters
/// here is who polls, not what is stored.
struct Unfenced(MemoryStore);

#[async_trait]
impl ItemStore for Unfenced {
    async fn load(
        &self,
        channel: &ChannelId,
    ) -> Result<(crate::store::ChannelMeta, Vec<crate::store::StoredItem>), StoreError> {
        self.0.load(channel).await
    }
    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        self.0
            .commit(Commit {
                fence: None,
                ..commit
            })
            .await
    }
    async fn events_after(
        &self,
        channel: &ChannelId,
        after: u64,
    ) -> Result<Option<Vec<LoggedEvent>>, StoreError> {
        self.0.events_after(channel, after).await
    }
    fn writes(&self) -> u64 {
        self.0.writes()
    }
    fn log_capacity(&self) -> u64 {
        self.0.log_capacity()
    }
    async fn load_budget(&self, budget: &str) -> Result<Option<String>, StoreError> {
        self.0.load_budget(budget).await
    }
    async fn save_budget(&self, budget: &str, usage: String) -> Result<(), StoreError> {
        self.0.save_budget(budget, usage).await
    }
}

/// One replica: a scheduler with its own demand, fetchers (`t` and `u`, polled every
/// second) and publisher.
struct Replica {
    demand: Arc<Demand>,
    handle: SchedulerHandle,
    published: Arc<Published>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn replica(name: &'static str, log: &FetchLog, cluster: Option<Arc<Cluster>>) -> Replica {
    replica_capped(name, log, cluster, None)
}

/// A replica publishing through `published`.
fn replica_with(
    name: &'static str,
    log: &FetchLog,
    cluster: Option<Arc<Cluster>>,
    published: Arc<Published>,
) -> Replica {
    build_replica(name, log, cluster, None, published)
}

/// A replica whose scheduler runs under channel caps.
fn replica_capped(
    name: &'static str,
    log: &FetchLog,
    cluster: Option<Arc<Cluster>>,
    caps: Option<crate::config::Limits>,
) -> Replica {
    build_replica(name, log, cluster, caps, Arc::default())
}

fn build_replica(
    name: &'static str,
    log: &FetchLog,
    cluster: Option<Arc<Cluster>>,
    caps: Option<crate::config::Limits>,
    published: Arc<Published>,
) -> Replica {
    let entries = ["t", "u"].map(|n| FetcherEntry {
        metadata: Metadata::from_value(&json!({"name": n, "id_field": "id", "poll_interval": 1}))
            .unwrap(),
        fetcher: Arc::new(Recording {
            replica: name,
            log: log.clone(),
        }),
    });
    let registry = Arc::new(SharedRegistry::new(Registry::from_entries(entries)));
    let demand = Arc::new(Demand::new(Duration::from_secs(60)));
    let ctx = PollerContext {
        keys: Arc::new(FileKeyStore::new("/nonexistent/keys.json")),
        publisher: published.clone(),
        store: Arc::new(Unfenced(MemoryStore::new(100))),
        max_backoff: Duration::from_secs(60),
        budgets: Default::default(),
        last_polls: Default::default(),
        status: Default::default(),
        retentions: crate::history::Retentions::count_only(100),
        snapshots: Default::default(),
    };
    let (mut scheduler, handle) = Scheduler::new(registry, demand.clone(), ctx, cluster);
    if let Some(caps) = caps {
        scheduler = scheduler.with_channel_caps(caps);
    }
    let stop = CancellationToken::new();
    let task = tokio::spawn(scheduler.run(stop.clone()));
    Replica {
        demand,
        handle,
        published,
        stop,
        task,
    }
}

impl Replica {
    fn report(&self, channel: &ChannelId, subscribed: bool) {
        self.demand
            .apply_report(&report(channel, subscribed), Instant::now());
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

/// Fetches of `channel` by `replica` within `[from, to)`.
fn fetches(log: &FetchLog, replica: &str, channel: &str, from: Instant, to: Instant) -> usize {
    let log = log.lock().unwrap();
    log.iter()
        .filter(|(r, c, at)| *r == replica && c == channel && (from..to).contains(at))
        .count()
}

async fn sleep(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn single_node_polls_an_active_channel_once_and_stops_when_it_goes_inactive() {
    let log = FetchLog::default();
    let node = replica("a", &log, None);
    let (t, u) = (channel("t"), channel("u"));
    let start = Instant::now();
    sleep(5).await;
    assert_eq!(
        fetches(&log, "a", "t", start, Instant::now()),
        0,
        "no subscribers, no poller"
    );

    node.report(&t, true);
    let active = Instant::now();
    sleep(10).await;
    let polled = fetches(&log, "a", "t", active, Instant::now());
    // One poller every second: ten or eleven fetches; two pollers would make twice as many.
    assert!((10..=11).contains(&polled), "{polled} fetches in 10 s");
    assert_eq!(fetches(&log, "a", "u", start, Instant::now()), 0);

    node.report(&t, false);
    sleep(2).await;
    let stopped = Instant::now();
    sleep(10).await;
    assert_eq!(
        fetches(&log, "a", "t", stopped, Instant::now()),
        0,
        "the poller stopped with its subscribers"
    );
    // A subscribe's hint starts a channel at once, not at the next periodic pass.
    node.demand.hint(&u, Instant::now());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fetches(&log, "a", "u", stopped, Instant::now()), 1);
    node.stop().await;
}

/// Two replicas sharing one in-memory lease table, both seeing the same demand.
struct Pair {
    table: Arc<MemoryLeaseTable>,
    a: Replica,
    b: Replica,
}

const TTL: Duration = Duration::from_secs(3);

impl Pair {
    /// Both replicas see subscribers of `channel`: every replica reads every Pushpin's stats.
    fn subscribed(&self, channel: &ChannelId) {
        self.a.report(channel, true);
        self.b.report(channel, true);
    }
}

/// The replica that is not `replica`.
fn other_than(replica: &str) -> &'static str {
    if replica == "a" {
        "b"
    } else {
        "a"
    }
}

async fn pair(log: &FetchLog) -> Pair {
    let table = MemoryLeaseTable::new();
    let cluster = |id: &'static str| {
        let leases = Arc::new(table.replica(id, TTL));
        Arc::new(Cluster::new(
            leases,
            Member::new(id, &format!("http://{id}")),
        ))
    };
    let (ca, cb) = (cluster("a"), cluster("b"));
    for c in [&ca, &cb, &ca] {
        c.refresh_members().await.unwrap();
    }
    for c in [&ca, &cb] {
        tokio::spawn(c.clone().run_membership(CancellationToken::new()));
    }
    let (a, b) = (replica("a", log, Some(ca)), replica("b", log, Some(cb)));
    // What `/internal/snapshot` does with a hand-over.
    for (id, handle) in [("a", a.handle.clone()), ("b", b.handle.clone())] {
        table.set_inbox(
            id,
            Arc::new(move |batch| {
                let handle = handle.clone();
                tokio::spawn(async move { handle.hand_over(batch.parse().unwrap()).await });
            }),
        );
    }
    Pair { table, a, b }
}

fn owner_of(channel: &ChannelId) -> &'static str {
    let members = ["a", "b"].map(|id| Member::new(id, &format!("http://{id}")));
    match preferred(channel.as_str(), &members).unwrap().id.as_str() {
        "a" => "a",
        _ => "b",
    }
}

#[tokio::test(start_paused = true)]
async fn a_cluster_polls_each_channel_on_one_replica_only() {
    let log = FetchLog::default();
    let p = pair(&log).await;
    let channels = [channel("t"), channel("u")];
    for c in &channels {
        p.subscribed(c);
    }
    let start = Instant::now();
    sleep(20).await;
    for c in &channels {
        let owner = owner_of(c);
        let other = other_than(owner);
        let (by_owner, by_other) = (
            fetches(&log, owner, c.as_str(), start, Instant::now()),
            fetches(&log, other, c.as_str(), start, Instant::now()),
        );
        assert!(
            (19..=21).contains(&by_owner),
            "{c}: {by_owner} fetches by {owner}"
        );
        assert_eq!(by_other, 0, "{c} polled by {other} as well");
        assert_eq!(p.table.holder(c).unwrap().owner, owner);
    }
    p.a.stop().await;
    p.b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn another_replica_takes_over_once_the_holder_stops_renewing() {
    let log = FetchLog::default();
    let p = pair(&log).await;
    let t = channel("t");
    p.subscribed(&t);
    sleep(5).await;
    let owner = owner_of(&t);
    let other = other_than(owner);
    assert_eq!(p.table.holder(&t).unwrap().owner, owner);

    p.table.set_down(owner, true);
    let cut = Instant::now();
    sleep(3 * TTL.as_secs()).await;
    let now = Instant::now();
    let holder = p.table.holder(&t).unwrap();
    assert_eq!(holder.owner, other, "taken over");
    assert!(holder.epoch >= 2, "under a new epoch");
    let log_now = log.lock().unwrap().clone();
    let last_by_owner = log_now
        .iter()
        .filter(|(r, _, _)| *r == owner)
        .map(|(_, _, at)| *at)
        .max()
        .unwrap();
    let first_by_other = log_now
        .iter()
        .filter(|(r, _, at)| *r == other && *at >= cut)
        .map(|(_, _, at)| *at)
        .min()
        .expect("the other replica polls");
    assert!(
        last_by_owner < cut + TTL && last_by_owner < first_by_other,
        "the old holder stopped within its lease, before the new one started"
    );
    assert!(fetches(&log, other, "t", now - Duration::from_secs(3), now) >= 2);
    p.a.stop().await;
    p.b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_request_is_forwarded_to_the_replica_that_polls_the_channel() {
    let log = FetchLog::default();
    let p = pair(&log).await;
    let t = channel("t");
    p.subscribed(&t);
    sleep(5).await;
    let (owner, other) = match owner_of(&t) {
        "a" => (&p.a, &p.b),
        _ => (&p.b, &p.a),
    };
    let conn = GripChannel::connection("c1");
    other.handle.request_snapshot(
        t.clone(),
        SnapshotRequest {
            connection_channel: conn.clone(),
            since: None,
            transport: Transports::WebSocket,
            requested_at: Instant::now(),
        },
    );
    sleep(2).await;
    let to_conn = |r: &Replica| {
        let published = r.published.0.lock().unwrap();
        published.iter().filter(|c| **c == conn.to_string()).count()
    };
    assert_eq!(to_conn(owner), 1, "the owner answered the subscriber");
    assert_eq!(to_conn(other), 0);
    p.a.stop().await;
    p.b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn caps_bound_pollers_whatever_the_stats_say_and_running_channels_keep_their_place() {
    let log = FetchLog::default();
    let caps = crate::config::Limits {
        max_channels: 1,
        ..Default::default()
    };
    let node = replica_capped("a", &log, None, Some(caps));
    let (t, u) = (channel("t"), channel("u"));
    node.report(&t, true);
    sleep(2).await;
    // Stats (e.g. after a restart) report a second channel: the cap of one holds, and the
    // channel already polling keeps its poller.
    node.report(&u, true);
    let both = Instant::now();
    sleep(10).await;
    assert!(fetches(&log, "a", "t", both, Instant::now()) >= 9);
    assert_eq!(fetches(&log, "a", "u", both, Instant::now()), 0);
    // Once `t` has no subscribers, `u` takes the freed place.
    node.report(&t, false);
    sleep(3).await;
    let freed = Instant::now();
    sleep(5).await;
    assert_eq!(fetches(&log, "a", "t", freed, Instant::now()), 0);
    assert!(fetches(&log, "a", "u", freed, Instant::now()) >= 4);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_stopped_replica_releases_its_leases_and_leaves_the_cluster() {
    use crate::cluster::Leases;
    let log = FetchLog::default();
    let Pair { table, a, b } = pair(&log).await;
    let t = channel("t");
    for r in [&a, &b] {
        r.report(&t, true);
    }
    sleep(5).await;
    let owner = owner_of(&t);
    let (stopping, staying) = match owner {
        "a" => (a, b),
        _ => (b, a),
    };
    stopping.stop().await;
    let holder = table.holder(&t).unwrap();
    assert_eq!(
        (holder.owner.as_str(), holder.lease_until),
        (owner, 0),
        "released, not left to expire"
    );
    let live = table.replica("x", TTL).live().await.unwrap();
    assert_eq!(
        live.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        vec![other_than(owner)],
        "its membership record is gone"
    );
    sleep(2 * TTL.as_secs()).await;
    assert_eq!(
        table.holder(&t).unwrap().owner,
        other_than(owner),
        "taken over"
    );
    staying.stop().await;
}

/// A replica advertising its own Pushpin, as on ECS.
fn advertising(id: &str) -> Member {
    let mut m = Member::new(id, &format!("http://{id}"));
    m.pushpin.publish_spec = Some(format!("tcp://{id}:5560"));
    m
}

#[tokio::test(start_paused = true)]
async fn subscribers_of_a_pushpin_met_after_the_first_snapshot_broadcast_get_it_privately() {
    use crate::cluster::{ForwardedSnapshot, ForwardedSnapshots, Leases, RemotePushpins};
    let log = FetchLog::default();
    let table = MemoryLeaseTable::new();
    let own = crate::config::Pushpin {
        publish: crate::config::PublishVia::Zmq,
        zmq_push_specs: vec!["tcp://a:5560".into()],
        http_publish_urls: Vec::new(),
        stats_specs: Vec::new(),
        sig_key: None,
        ws_burst_bytes: 0,
    };
    let published = Arc::new(Published::default());
    let (stats, _reader) = crate::pushpin::stats::remote_stats();
    let cluster = Arc::new(
        Cluster::new(Arc::new(table.replica("a", TTL)), advertising("a"))
            .with_pushpins(RemotePushpins::new(&own, published.clone(), stats)),
    );
    // Replica d is known before the channel starts; b and c join just after a's refresh (on
    // ECS: tasks starting together, or the load balancer without its health-check delay).
    table
        .replica("d", TTL)
        .heartbeat(&advertising("d"))
        .await
        .unwrap();
    cluster.refresh_members().await.unwrap();
    for id in ["b", "c"] {
        table
            .replica(id, TTL)
            .heartbeat(&advertising(id))
            .await
            .unwrap();
    }
    let a = replica_with("a", &log, Some(cluster), published.clone());

    // A subscriber on each of b, c and d asks; a moment later a's own starts the channel, and
    // its first snapshot is broadcast before b's and c's requests reach a (their replicas
    // found no lease holder yet and retry).
    let asked = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = channel("t");
    a.report(&t, true);
    sleep(2).await;
    assert_eq!(
        published.reached("t"),
        vec![vec!["tcp://d:5560".to_string()]],
        "the first snapshot, broadcast to the Pushpins a knew"
    );
    let hand_over = |from: &str| {
        let conn = GripChannel::connection(&format!("on-{from}"));
        let request = ForwardedSnapshot::new(&conn, None, Transports::WebSocket, asked.elapsed());
        let batch = ForwardedSnapshots::new(&t, vec![request]).sent_by(from);
        (conn.to_string(), a.handle.hand_over(batch.parse().unwrap()))
    };
    // b's: not seen yet, so a refreshes (and meets c too); c's: known by then, but its
    // Pushpin was not published to when the broadcast went out either.
    for from in ["b", "c"] {
        let (conn, handed) = hand_over(from);
        assert!(handed.await);
        sleep(1).await;
        let all = ["tcp://b:5560", "tcp://c:5560", "tcp://d:5560"].map(String::from);
        assert_eq!(
            published.reached(&conn),
            vec![all.to_vec()],
            "{from}'s subscriber never had the broadcast: its snapshot comes privately"
        );
    }
    // d's subscriber had it from the broadcast: exactly once.
    let (conn, handed) = hand_over("d");
    assert!(handed.await);
    sleep(1).await;
    assert!(
        published.reached(&conn).is_empty(),
        "d's subscriber got it twice"
    );
    a.stop().await;
}
