//! Scale-out drills (docs/scaling.md): three backend replicas in cluster mode, two Pushpins and
//! moto's DynamoDB, all on loopback. Pushpin A forwards its clients to replica 0, Pushpin B to replica 1;
//! replica 2 serves no client and only polls the channels whose leases it holds. Every replica
//! reads both Pushpins' stats and publishes to both.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use restream::config::{
    ClusterSettings, DynamodbSettings, FetcherKind, KeysSettings, PublishVia, Secret, Settings,
    SigKey, StoreKind, DEFAULT_DYNAMODB_LOG_TTL,
};
use restream::pushpin::{PushpinOptions, PushpinProcess};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{
    free_port, free_port_block, scrape, value, Backend, LaunchRestream, Upstream,
};

/// The default. moto serializes every request (see scripts/moto_server.py), so a renewal can
/// wait behind 50 channels' commits; a shorter TTL would make this test about moto.
const LEASE_TTL: f64 = 10.0;
const INTERVAL: f64 = 1.0;

/// A declarative channel over the fake USGS feed `n`: every upstream bump adds one item.
pub(crate) const CHANNEL: &str = r#"name = "clu"
description = "cluster drills: the fake USGS feed n"
url = "{base}/earthquakes/feed/v1.0/summary/{n}.geojson"
base_url_env = "USGS_BASE_URL"
items = "/features"
id_field = "id"
poll_interval = 1.0
complete = true
[params.n]
required = true
"#;

struct Pushpin {
    options: PushpinOptions,
    /// Running (stopped when dropped).
    process: Option<PushpinProcess>,
    ws_url: String,
}

struct Cluster {
    upstream: Upstream,
    pushpins: Vec<Pushpin>,
    replicas: Vec<Backend>,
    _moto: crate::emulators::Server,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("rc")
            .tempdir_in("/tmp")
            .unwrap();
        let moto = crate::emulators::start_moto();
        let upstream = Upstream::start().await;
        let table = crate::emulators::unique("cluster");
        let channels = dir.path().join("channels");
        std::fs::create_dir_all(&channels).unwrap();
        std::fs::write(channels.join("clu.toml"), CHANNEL).unwrap();
        let functions = dir.path().join("functions");
        std::fs::create_dir_all(&functions).unwrap();
        let addrs: Vec<SocketAddr> = (0..3)
            .map(|_| ([127, 0, 0, 1], free_port()).into())
            .collect();
        let mut pushpins = Vec::new();
        // Every Pushpin signs with the one key every replica verifies.
        let sig_key = Secret::generate();
        for (i, backend) in addrs.iter().take(2).enumerate() {
            let public: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let mut options = PushpinOptions::new(
                public,
                *backend,
                free_port_block(),
                dir.path().join(format!("pp{i}")),
            );
            options.message_rate = 50_000;
            options.subscription_linger = 1;
            options.sig_key = sig_key.clone();
            let started = options.clone();
            let process = tokio::task::spawn_blocking(move || PushpinProcess::start(started))
                .await
                .unwrap()
                .expect("pushpin starts");
            pushpins.push(Pushpin {
                options,
                process: Some(process),
                ws_url: format!("ws://{public}/ws"),
            });
        }
        let list = |f: &dyn Fn(&PushpinOptions) -> String| {
            pushpins.iter().map(|p| f(&p.options)).collect::<Vec<_>>()
        };
        let mut settings = Settings {
            pushpin: restream::config::Pushpin {
                publish: PublishVia::Zmq,
                zmq_push_specs: list(&|o| o.zmq_push_spec()),
                http_publish_urls: list(&|o| o.http_publish_url()),
                stats_specs: list(&|o| o.stats_spec()),
                sig_key: Some(SigKey::Value(sig_key)),
                ..Settings::default().pushpin
            },
            ..Settings::default()
        };
        restream_testkit::stack::lift_abuse_limits(&mut settings);
        settings.fetchers.kinds = vec![FetcherKind::Http];
        settings.fetchers.dir = functions.clone();
        settings.fetchers.channels_dir = channels.clone();
        settings.keys = KeysSettings::File {
            file: dir.path().join("keys.json"),
        };
        settings.aws.region = Some("us-east-1".into());
        settings.aws.endpoint_url = Some(moto.url.clone());
        let mut replicas = Vec::new();
        let cluster_secret = Secret::generate();
        for (i, addr) in addrs.iter().enumerate() {
            let config = dir.path().join(format!("replica{i}.toml"));
            settings.server.listen = *addr;
            settings.store.kind = StoreKind::Dynamodb(DynamodbSettings {
                table: table.clone(),
                create_table: true,
                log_ttl: DEFAULT_DYNAMODB_LOG_TTL,
                cluster: Some(ClusterSettings {
                    replica_id: Some(format!("r{i}")),
                    advertise_url: None,
                    lease_ttl: Duration::from_secs_f64(LEASE_TTL),
                    secret: cluster_secret.clone(),
                    advertise_host: Default::default(),
                    pushpin: Default::default(),
                }),
            });
            std::fs::write(&config, settings.to_toml().unwrap()).unwrap();
            let env = [(
                "USGS_BASE_URL".to_string(),
                format!("http://{}", upstream.addr),
            )]
            .into_iter()
            .chain(crate::emulators::aws_env())
            .collect();
            // One at a time: the first creates the table.
            replicas.push(
                Backend::launch(
                    config,
                    env,
                    dir.path().join(format!("replica{i}.log")),
                    *addr,
                )
                .await,
            );
        }
        // Every replica has heartbeated and seen the others (a third of the TTL each).
        tokio::time::sleep(Duration::from_secs_f64(LEASE_TTL / 3.0 + 0.5)).await;
        Cluster {
            upstream,
            pushpins,
            replicas,
            _moto: moto,
            dir,
        }
    }

    /// Which replica polls each channel `clu?n=<feed>`, from their logs (the latest line wins).
    fn owners(&self) -> HashMap<String, usize> {
        let mut events: Vec<(String, String, usize)> = Vec::new();
        for (i, r) in self.replicas.iter().enumerate() {
            for line in r.log_text().lines() {
                if line.contains("lease taken; polling here") {
                    let channel = field(line, "channel=").unwrap_or_default();
                    let clean = strip_ansi(line);
                    let at = clean
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    events.push((at, channel, i));
                }
            }
        }
        events.sort();
        events.into_iter().map(|(_, c, i)| (c, i)).collect()
    }

    /// Stops Pushpin `i`: every client connection through it drops.
    async fn stop_pushpin(&mut self, i: usize) {
        let old = self.pushpins[i].process.take();
        tokio::task::spawn_blocking(move || drop(old))
            .await
            .unwrap();
    }

    /// Starts Pushpin `i` again on the same ports.
    async fn start_pushpin(&mut self, i: usize) {
        let options = self.pushpins[i].options.clone();
        let process = tokio::task::spawn_blocking(move || PushpinProcess::start(options))
            .await
            .unwrap()
            .expect("pushpin restarts");
        self.pushpins[i].process = Some(process);
    }

    /// `restream_lease_events_total` by event, summed over the running replicas.
    async fn lease_events(&self) -> BTreeMap<String, f64> {
        let mut sum = BTreeMap::new();
        for r in self.replicas.iter().filter(|r| r.pid().is_some()) {
            let m = scrape(&format!("http://{}/metrics", r.addr)).await;
            for event in ["acquired", "refused", "released", "lost"] {
                *sum.entry(event.to_string()).or_default() +=
                    value(&m, "restream_lease_events_total", &[("event", event)]);
            }
        }
        sum
    }

    fn log_of(&self, i: usize) -> String {
        self.replicas[i].log_text()
    }

    fn signal(&self, i: usize, signal: i32) {
        let pid = self.replicas[i].pid().expect("running") as i32;
        // SAFETY: signalling our own child by PID.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }
}

impl Cluster {
    /// Copies every replica's log and moto's to a folder that outlives the test.
    fn keep_logs(&self, why: &str) {
        let keep = std::env::temp_dir().join(format!("restream-cluster-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&keep);
        for i in 0..3 {
            let _ = std::fs::copy(
                self.dir.path().join(format!("replica{i}.log")),
                keep.join(format!("replica{i}.log")),
            );
        }
        let _ = std::fs::copy(&self._moto.log, keep.join("moto.log"));
        for (i, p) in self.pushpins.iter().enumerate() {
            let logs = std::fs::read_dir(p.options.run_dir.join("log"))
                .into_iter()
                .flatten();
            for file in logs.flatten() {
                let name = format!("pp{i}-{}", file.file_name().to_string_lossy());
                let _ = std::fs::copy(file.path(), keep.join(name));
            }
            let _ = std::fs::copy(
                p.options.run_dir.join("pushpin.out"),
                keep.join(format!("pp{i}-pushpin.out")),
            );
        }
        eprintln!("{why}: cluster logs kept in {}", keep.display());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.keep_logs("test failed");
        }
    }
}

/// `key=value` from a log line (ANSI colours removed).
pub(crate) fn field(line: &str, key: &str) -> Option<String> {
    let clean: String = strip_ansi(line);
    let rest = &clean[clean.find(key)? + key.len()..];
    Some(rest.split_whitespace().next()?.to_string())
}

pub(crate) fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What one subscriber saw.
#[derive(Default, Debug)]
pub(crate) struct Seen {
    /// The seq of its first snapshot.
    snapshot: Option<u64>,
    /// Every event seq received (new/updated/removed), once each unless listed in `duplicates`.
    seqs: BTreeSet<u64>,
    pub duplicates: Vec<u64>,
    pub reconnects: u32,
    resyncs: u32,
    /// The Pushpin (URL) of its current or last connection.
    pub via: String,
}

impl Seen {
    /// The highest seq such that everything from the snapshot up to it was received.
    fn contiguous(&self) -> u64 {
        let mut at = self.snapshot.unwrap_or(0);
        while self.seqs.contains(&(at + 1)) {
            at += 1;
        }
        at
    }
}

/// A subscriber of `clu?n=<feed>` through `url`, in the background: it reconnects (resuming
/// with `since`) when its connection drops, and asks again with `since` when it sees a gap.
fn subscriber(url: String, feed: String) -> Arc<Mutex<Seen>> {
    subscriber_via(vec![url], feed)
}

/// [`subscriber`] through the first of `urls` that takes its connection (as a client behind a
/// load balancer: one that cannot connect tries the next).
pub(crate) fn subscriber_via(urls: Vec<String>, feed: String) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let out = seen.clone();
    tokio::spawn(async move {
        let mut next = 0;
        loop {
            // A handshake can hang when it reaches a Pushpin that is still starting; a real
            // client gives up and tries again, and so does this one.
            let url = &urls[next % urls.len()];
            let connect = tokio_tungstenite::connect_async(url);
            let Ok(Ok((mut ws, _))) = tokio::time::timeout(Duration::from_secs(5), connect).await
            else {
                next += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            };
            seen.lock().unwrap().via = url.clone();
            let since = {
                let s = seen.lock().unwrap();
                s.snapshot.map(|_| s.contiguous())
            };
            let subscribe = |since: Option<u64>| {
                let mut m = json!({"action": "subscribe", "channel": "clu", "params": {"n": feed}});
                if let Some(since) = since {
                    m["since"] = json!(since);
                }
                Message::text(m.to_string())
            };
            if ws.send(subscribe(since)).await.is_err() {
                continue;
            }
            // Events above this seq may come twice while a gap is being filled.
            let mut resync_above: Option<u64> = None;
            while let Some(Ok(message)) = ws.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(m) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let seq = m["seq"].as_u64().unwrap_or(0);
                // What to ask for after the lock is released: the events after a gap.
                let resync = {
                    let mut s = seen.lock().unwrap();
                    match m["type"].as_str() {
                        Some("snapshot") => {
                            if s.snapshot.is_none() || m["reset"] == true {
                                s.snapshot = Some(seq);
                                s.seqs.retain(|q| *q > seq);
                            }
                            None
                        }
                        Some("new" | "updated" | "removed") if s.snapshot.is_some() => {
                            if !s.seqs.insert(seq) && resync_above.is_none_or(|above| seq <= above)
                            {
                                s.duplicates.push(seq);
                            }
                            let contiguous = s.contiguous();
                            if seq > contiguous + 1 && resync_above.is_none() {
                                resync_above = Some(contiguous);
                                s.resyncs += 1;
                                Some(contiguous)
                            } else {
                                if resync_above.is_some() && s.seqs.last() == Some(&contiguous) {
                                    resync_above = None;
                                }
                                None
                            }
                        }
                        _ => None,
                    }
                };
                if let Some(since) = resync {
                    let _ = ws.send(subscribe(Some(since))).await;
                }
            }
            seen.lock().unwrap().reconnects += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    out
}

/// Waits until every subscriber holds every event up to `seq` of its channel (or fails).
pub(crate) async fn wait_all(
    subs: &[(String, Arc<Mutex<Seen>>)],
    seq: u64,
    what: &str,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let behind: Vec<String> = subs
            .iter()
            .filter(|(_, s)| s.lock().unwrap().contiguous() < seq)
            .map(|(feed, s)| format!("{feed}: {:?}", s.lock().unwrap()))
            .take(3)
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: subscribers still behind seq {seq}, e.g. {behind:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn no_duplicates(subs: &[(String, Arc<Mutex<Seen>>)]) {
    for (feed, s) in subs {
        let s = s.lock().unwrap();
        assert!(s.duplicates.is_empty(), "{feed} got events twice: {s:?}");
    }
}

/// Most upstream calls of one feed within half an interval since `from` (1 = one poller).
pub(crate) fn max_calls_per_interval(upstream: &Upstream, feed: &str, from: Instant) -> usize {
    let calls: Vec<Instant> = upstream
        .requests(&format!("/summary/{feed}.geojson"))
        .into_iter()
        .filter(|t| *t >= from)
        .collect();
    let window = Duration::from_secs_f64(INTERVAL / 2.0);
    calls
        .iter()
        .map(|t| {
            calls
                .iter()
                .filter(|u| **u >= *t && **u < *t + window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_channels_by_lease_and_survive_kill_pause_and_pushpin_restart() {
    let mut cluster = Cluster::start().await;
    let feeds: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();

    // Drill 1: 300 subscribers, 6 per channel, alternating between the two Pushpins.
    let mut subs = Vec::new();
    for (i, feed) in feeds.iter().cycle().take(300).enumerate() {
        // Each channel has 3 subscribers through each Pushpin: subscriber i goes through
        // Pushpin (i / 50) % 2.
        let url = cluster.pushpins[(i / 50) % 2].ws_url.clone();
        subs.push((feed.clone(), subscriber(url, feed.clone())));
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    wait_all(&subs, 1, "first snapshots", Duration::from_secs(30)).await;
    let steady = Instant::now();
    for round in 2..=4 {
        cluster.upstream.bump();
        wait_all(&subs, round, "events", Duration::from_secs(20)).await;
    }
    no_duplicates(&subs);
    for feed in &feeds {
        let calls = max_calls_per_interval(&cluster.upstream, feed, steady);
        assert_eq!(
            calls, 1,
            "{feed}: {calls} upstream calls within half an interval"
        );
    }
    let owners = cluster.owners();
    assert_eq!(owners.len(), 50, "every channel has a poller: {owners:?}");
    let mut per_replica = [0; 3];
    for i in owners.values() {
        per_replica[*i] += 1;
    }
    assert!(
        per_replica.iter().all(|n| *n >= 5),
        "leases spread over the replicas: {per_replica:?}"
    );

    // Steady state, once every replica has tried every channel (the non-preferred ones after a
    // TTL): for a whole TTL no replica writes to a lease it sees held elsewhere. It reads the
    // lease first, so a write is refused only in a race for an expired lease, which someone won.
    tokio::time::sleep(Duration::from_secs_f64(LEASE_TTL + 1.0)).await;
    let before = cluster.lease_events().await;
    tokio::time::sleep(Duration::from_secs_f64(LEASE_TTL)).await;
    let after = cluster.lease_events().await;
    let delta = |event: &str| after[event] - before[event];
    assert!(
        delta("refused") <= delta("acquired"),
        "lease writes refused while their holders were live: {before:?} -> {after:?}"
    );

    // Drill 2: SIGKILL replica 2 (it serves no client, so every connection stays up); its
    // channels move to the others within the lease TTL and nobody misses an event.
    let moved: Vec<String> = owners
        .iter()
        .filter(|(_, i)| **i == 2)
        .map(|(c, _)| c.clone())
        .collect();
    cluster.replicas[2].kill().await;
    let killed_at = Instant::now();
    let deadline = killed_at + Duration::from_secs_f64(LEASE_TTL * 2.0 + 2.0);
    loop {
        let owners = cluster.owners();
        if moved.iter().all(|c| owners.get(c).is_some_and(|i| *i != 2)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "channels of the killed replica not taken over: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let takeover = killed_at.elapsed();
    if takeover > Duration::from_secs_f64(LEASE_TTL + 1.0) {
        cluster.keep_logs(&format!("takeover took {takeover:?}"));
    }
    assert!(
        // The lease runs out at most one TTL after its last renewal; the other replicas try
        // again just after the expiry they last read (or a third of the TTL after an error).
        takeover <= Duration::from_secs_f64(LEASE_TTL * 1.5),
        "takeover took {takeover:?} (lease TTL {LEASE_TTL} s)"
    );
    for round in 5..=6 {
        cluster.upstream.bump();
        wait_all(
            &subs,
            round,
            "events after the kill",
            Duration::from_secs(20),
        )
        .await;
    }
    no_duplicates(&subs);

    // Drill 3: SIGSTOP the owner of one channel while its fetch is in flight, past its lease;
    // another replica takes over and publishes; SIGCONT: the paused replica's late commit is
    // refused by the fence (or its lease is found expired first) and nothing is published twice.
    let owners = cluster.owners();
    let (channel, &paused) = owners.iter().find(|(_, i)| **i != 2).unwrap();
    let feed = channel.trim_start_matches("clu?n=").to_string();
    let path = format!("/earthquakes/feed/v1.0/summary/{feed}.geojson");
    // The owner's next fetch answers slowly, with the item that makes seq 7.
    cluster.upstream.delay(&path, Duration::from_millis(1500));
    cluster.upstream.bump();
    let before = cluster.upstream.requests(&path).len();
    let deadline = Instant::now() + Duration::from_secs(5);
    while cluster.upstream.requests(&path).len() == before {
        assert!(Instant::now() < deadline, "no fetch of {path}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.signal(paused, libc::SIGSTOP);
    let deadline = Instant::now() + Duration::from_secs_f64(LEASE_TTL * 2.0 + 3.0);
    loop {
        if cluster.owners().get(channel).is_some_and(|i| *i != paused) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{channel} not taken over from the paused replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.upstream.delay(&path, Duration::ZERO);
    // Every channel of the paused replica moves once its lease runs out.
    wait_all(
        &subs,
        7,
        "events while a replica is paused",
        Duration::from_secs_f64(LEASE_TTL * 2.0 + 5.0),
    )
    .await;
    cluster.signal(paused, libc::SIGCONT);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = strip_ansi(&cluster.log_of(paused));
    assert!(
        log.contains("lease lost; poller stops") && log.contains(channel.as_str()),
        "the paused replica must notice it lost {channel}"
    );
    // Channels whose leases the paused replica had not yet lost move (or are re-taken by it
    // under a new epoch) once it notices; the new poller re-publishes the last commit.
    cluster.upstream.bump();
    wait_all(
        &subs,
        8,
        "events after the pause",
        Duration::from_secs_f64(LEASE_TTL + 10.0),
    )
    .await;
    no_duplicates(&subs);

    // Drill 4: restart Pushpin 0, with a change published while it is down. Its clients
    // reconnect and resume with `since` (getting exactly the missed event); Pushpin 1's
    // clients get the change live and notice nothing. (Reconnects are counted from here: a
    // Pushpin on a busy machine may reset a few connections of an earlier burst, whose clients
    // reconnect and resume like any other.)
    let reconnects_before: Vec<u32> = subs
        .iter()
        .map(|(_, s)| s.lock().unwrap().reconnects)
        .collect();
    cluster.stop_pushpin(0).await;
    cluster.upstream.bump();
    let through_1: Vec<_> = subs
        .iter()
        .enumerate()
        .filter(|(i, _)| (i / 50) % 2 == 1)
        .map(|(_, s)| s.clone())
        .collect();
    wait_all(
        &through_1,
        9,
        "events while a Pushpin is down",
        Duration::from_secs(20),
    )
    .await;
    cluster.start_pushpin(0).await;
    wait_all(
        &subs,
        9,
        "events after a Pushpin restart",
        Duration::from_secs(30),
    )
    .await;
    cluster.upstream.bump();
    wait_all(
        &subs,
        10,
        "events after the resume",
        Duration::from_secs(20),
    )
    .await;
    no_duplicates(&subs);
    for (i, (feed, s)) in subs.iter().enumerate() {
        let reconnects = s.lock().unwrap().reconnects - reconnects_before[i];
        if (i / 50) % 2 == 0 {
            assert!(
                reconnects >= 1,
                "{feed} via the restarted Pushpin never reconnected"
            );
        } else {
            assert_eq!(
                reconnects, 0,
                "{feed} via the other Pushpin was disconnected"
            );
        }
    }
    let resyncs: u32 = subs.iter().map(|(_, s)| s.lock().unwrap().resyncs).sum();
    eprintln!(
        "cluster drills: takeover after kill {takeover:?}, gaps filled by resume: {resyncs}, \
         lease events of the live replicas: {:?}",
        cluster.lease_events().await
    );
    if std::env::var_os("CLUSTER_KEEP_LOGS").is_some() {
        cluster.keep_logs("CLUSTER_KEEP_LOGS is set");
    }
}
