//! Issue 19 in cluster mode: two replicas over moto's DynamoDB, each behind its own Pushpin.
//! Publishes go to both Pushpins alternately, so whichever replica holds a channel's lease,
//! half of them reach the other one and are forwarded: each batch is committed exactly once
//! (receipts with consecutive seqs) and every subscriber on both Pushpins gets every event.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use restream::config::{
    ClusterSettings, DynamodbSettings, FetcherKind, KeysSettings, PublishVia, Secret, Settings,
    SigKey, StoreKind, DEFAULT_DYNAMODB_LOG_TTL,
};
use restream::pushpin::{PushpinOptions, PushpinProcess};
use serde_json::json;

use crate::push::*;
use crate::support::{free_port, free_port_block, Backend, LaunchRestream};

const LEASE_TTL: f64 = 10.0;
const SITES: [&str; 4] = ["c0", "c1", "c2", "c3"];
const BATCHES: u64 = 4;
const SUBS_PER_PUSHPIN: usize = 3;

/// Replica i behind Pushpin i; every replica publishes to both Pushpins.
struct Rig {
    /// Pushpins' public `http://127.0.0.1:port` and `ws://…/ws`.
    http: Vec<String>,
    ws: Vec<String>,
    _pushpins: Vec<PushpinProcess>,
    replicas: Vec<Backend>,
    _moto: crate::emulators::Server,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Rig {
        let dir = tempfile::Builder::new()
            .prefix("pc")
            .tempdir_in("/tmp")
            .unwrap();
        let moto = crate::emulators::start_moto();
        let channels = dir.path().join("channels");
        restream_testkit::push::write_channel(
            &channels,
            THINGS,
            &items_channel(THINGS, "id", &["site"]),
        );
        std::fs::create_dir_all(dir.path().join("functions")).unwrap();
        let keys = dir.path().join("keys.json");
        std::fs::write(&keys, keys_json(SECRET, &[(THINGS, THINGS_KEY)])).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let addrs: Vec<SocketAddr> = (0..2)
            .map(|_| ([127, 0, 0, 1], free_port()).into())
            .collect();
        let sig_key = Secret::generate();
        let (mut options, mut http, mut ws, mut pushpins) = (vec![], vec![], vec![], vec![]);
        for (i, backend) in addrs.iter().enumerate() {
            let public: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let mut o = PushpinOptions::new(
                public,
                *backend,
                free_port_block(),
                dir.path().join(format!("pp{i}")),
            );
            o.message_rate = 50_000;
            o.subscription_linger = 1;
            o.sig_key = sig_key.clone();
            let started = o.clone();
            pushpins.push(
                tokio::task::spawn_blocking(move || PushpinProcess::start(started))
                    .await
                    .unwrap()
                    .expect("pushpin starts"),
            );
            http.push(format!("http://{public}"));
            ws.push(format!("ws://{public}/ws"));
            options.push(o);
        }
        let list =
            |f: &dyn Fn(&PushpinOptions) -> String| options.iter().map(f).collect::<Vec<_>>();
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
        settings.fetchers.dir = dir.path().join("functions");
        settings.fetchers.channels_dir = channels;
        settings.keys = KeysSettings::File { file: keys };
        settings.aws.region = Some("us-east-1".into());
        settings.aws.endpoint_url = Some(moto.url.clone());
        let table = crate::emulators::unique("push");
        let cluster_secret = Secret::generate();
        let mut replicas = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
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
            let config = dir.path().join(format!("replica{i}.toml"));
            std::fs::write(&config, settings.to_toml().unwrap()).unwrap();
            let log = dir.path().join(format!("replica{i}.log"));
            // One at a time: the first creates the table.
            replicas.push(Backend::launch(config, crate::emulators::aws_env(), log, *addr).await);
        }
        // Both have heartbeated and seen each other.
        tokio::time::sleep(Duration::from_secs_f64(LEASE_TTL / 3.0 + 0.5)).await;
        Rig {
            http,
            ws,
            _pushpins: pushpins,
            replicas,
            _moto: moto,
            _dir: dir,
        }
    }

    /// The replicas that took each channel's lease, from their logs.
    fn lease_takers(&self) -> BTreeMap<String, BTreeSet<usize>> {
        let mut takers: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        for (i, r) in self.replicas.iter().enumerate() {
            for line in r.log_text().lines() {
                if line.contains("lease taken; polling here") {
                    let channel = crate::cluster::field(line, "channel=").unwrap_or_default();
                    takers.entry(channel).or_default().insert(i);
                }
            }
        }
        takers
    }

    fn logs(&self) -> String {
        self.replicas
            .iter()
            .enumerate()
            .map(|(i, r)| format!("--- replica {i}\n{}", r.log_text()))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_to_either_replica_is_committed_once_and_reaches_both_pushpins() {
    let rig = Rig::start().await;
    // Subscribers of every channel through both Pushpins.
    let mut subs = Vec::new();
    for site in SITES {
        for (p, url) in rig.ws.iter().enumerate() {
            for _ in 0..SUBS_PER_PUSHPIN {
                let mut ws = restream_testkit::clients::ws::connect(url)
                    .await
                    .expect("a WebSocket");
                let m = json!({"action": "subscribe", "channel": THINGS, "params": {"site": site}});
                restream_testkit::clients::ws::send_json(&mut ws, &m)
                    .await
                    .unwrap();
                subs.push((site, p, Sub::Ws(ws), Mirror::default()));
            }
        }
    }
    for (site, p, sub, mirror) in &mut subs {
        let who = format!("{site} via Pushpin {p}");
        mirror.follow(sub, 1, Duration::from_secs(30), &who).await;
    }

    // Batch b of every channel goes through Pushpin b % 2.
    for b in 0..BATCHES {
        for site in SITES {
            let via = &rig.http[(b % 2) as usize];
            let item = json!({"id": format!("{site}-{b}"), "b": b});
            let answer = Publish::post(THINGS, &format!("site={site}"))
                .json(&item)
                .bearer(THINGS_KEY)
                .idempotency_key(&format!("{site}-{b}"))
                .send(via)
                .await;
            assert_eq!(
                answer.status,
                200,
                "{site} batch {b} via {via}: {:?}\n{}",
                answer.body,
                rig.logs()
            );
            assert_eq!(
                (answer.seq(), counts(answer.receipt())),
                (b + 2, (1, 0, 0, 0)),
                "{site} batch {b} via {via}"
            );
        }
    }
    // A retry through the other Pushpin is recognised wherever it lands.
    let retry = Publish::post(THINGS, "site=c0")
        .json(&json!({"id": "c0-0", "b": 0}))
        .bearer(THINGS_KEY)
        .idempotency_key("c0-0")
        .send(&rig.http[1])
        .await;
    assert_eq!(
        (retry.seq(), retry.receipt()["replayed"].clone()),
        (2, json!(true))
    );

    let last = BATCHES + 1;
    for (site, p, sub, mirror) in &mut subs {
        let who = format!("{site} via Pushpin {p}");
        mirror
            .follow(sub, last, Duration::from_secs(30), &who)
            .await;
        assert_eq!(
            sub.next(Duration::from_millis(200)).await,
            None,
            "{who}: no repeat"
        );
        let ids: Vec<_> = mirror
            .events
            .iter()
            .map(|(k, _, id)| (k.as_str(), id.clone()))
            .collect();
        let expected: Vec<_> = (0..BATCHES)
            .map(|b| ("new", format!("{site}-{b}")))
            .collect();
        assert_eq!(ids, expected, "{who}");
    }
    // Both Pushpins read the same committed state.
    for http in &rig.http {
        let url = format!("{http}/channels/{THINGS}/items?site=c1");
        let (status, body) = crate::support::get_json(&url).await;
        assert_eq!((status, body["seq"].as_u64()), (200, Some(last)), "{body}");
        assert_eq!(
            body["items"].as_array().map(Vec::len),
            Some(BATCHES as usize)
        );
    }
    // Each channel was committed by one replica all along (its lease never moved), so the
    // batches sent through the other replica's Pushpin were forwarded to it.
    let takers = rig.lease_takers();
    for site in SITES {
        let channel = format!("{THINGS}?site={site}");
        let replicas = takers.get(&channel).cloned().unwrap_or_default();
        assert_eq!(
            replicas.len(),
            1,
            "{channel}: lease taken by {replicas:?}\n{}",
            rig.logs()
        );
    }
    eprintln!("push channel leases: {takers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_lease_holder_dies_the_other_replica_takes_the_channel_over() {
    let mut rig = Rig::start().await;
    let q = "site=c0";
    let send = |b: u64| {
        Publish::post(THINGS, q)
            .json(&json!({"id": format!("t{b}"), "b": b}))
            .bearer(THINGS_KEY)
            .idempotency_key(&format!("t{b}"))
    };
    let mut subs = Vec::new();
    for (p, url) in rig.ws.iter().enumerate() {
        let mut ws = restream_testkit::clients::ws::connect(url)
            .await
            .expect("a WebSocket");
        let m = json!({"action": "subscribe", "channel": THINGS, "params": {"site": "c0"}});
        restream_testkit::clients::ws::send_json(&mut ws, &m)
            .await
            .unwrap();
        let mut mirror = Mirror::default();
        let mut sub = Sub::Ws(ws);
        mirror
            .follow(
                &mut sub,
                1,
                Duration::from_secs(30),
                &format!("Pushpin {p}"),
            )
            .await;
        subs.push((p, sub, mirror));
    }
    assert_eq!(send(0).send(&rig.http[0]).await.seq(), 2);
    let channel = format!("{THINGS}?{q}");
    let holder = *rig.lease_takers()[&channel].iter().next().unwrap();
    let survivor = 1 - holder;
    rig.replicas[holder].kill().await;

    // Through the survivor's Pushpin: refused (503) until the dead holder's lease runs out,
    // then committed by the survivor; a retry of the batch the dead one committed is known.
    let deadline = std::time::Instant::now() + Duration::from_secs_f64(LEASE_TTL * 2.0 + 5.0);
    let answer = loop {
        let a = send(1).try_send(&rig.http[survivor]).await;
        match a {
            Ok(a) if a.status == 200 => break a,
            Ok(a) if a.status == 503 => {
                assert!(a.header("retry-after").is_some(), "{:?}", a.body)
            }
            Ok(a) => panic!("{} {:?}\n{}", a.status, a.body, rig.logs()),
            Err(_) => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no takeover\n{}",
            rig.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!((answer.seq(), counts(answer.receipt())), (3, (1, 0, 0, 0)));
    let retry = send(0).send(&rig.http[survivor]).await;
    assert_eq!(
        (retry.seq(), retry.receipt()["replayed"].clone()),
        (2, json!(true))
    );
    assert_eq!(send(2).send(&rig.http[survivor]).await.seq(), 4);
    // Both Pushpins' subscribers (the dead replica's Pushpin is still up) get every event once.
    for (p, sub, mirror) in &mut subs {
        let who = format!("Pushpin {p}");
        mirror.follow(sub, 4, Duration::from_secs(30), &who).await;
        // Nothing new: at most a resync (a connection whose replica died may be sent its
        // snapshot again), which a client ignores by its seq.
        while let Some(m) = sub.next(Duration::from_millis(300)).await {
            assert_eq!(
                (m["type"].as_str(), m["seq"].as_u64()),
                (Some("snapshot"), Some(4)),
                "{who}: {m}"
            );
        }
        let ids: Vec<&str> = mirror.items.keys().map(String::as_str).collect();
        assert_eq!(ids, ["t0", "t1", "t2"], "{who}");
    }
    assert_eq!(
        rig.lease_takers()[&channel].len(),
        2,
        "the survivor took the lease"
    );
}
