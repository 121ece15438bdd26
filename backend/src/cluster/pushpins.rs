//! The other replicas' Pushpins: from the live members' advertisements to the publisher's
//! extra targets and the stats reader's extra sockets, updated at every membership refresh,
//! and since when what this replica publishes reaches each of them.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::Member;
use crate::config::{PublishVia, Pushpin};
use crate::pushpin::publisher::Publisher;
use crate::pushpin::stats::RemoteStats;

/// The endpoints of the other replicas' Pushpins that one replica uses beside its own list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteTargets {
    /// ZeroMQ PULL specs or HTTP publish URLs (as `pushpin.publish` says), sorted.
    pub publish: Vec<String>,
    /// Stats PUB specs, sorted.
    pub stats: Vec<String>,
}

/// What replica `me` publishes to and reads beside its `configured` Pushpins: the Pushpin
/// every other live member advertises, each endpoint once, none already configured.
pub fn remote_targets(me: &str, live: &[Member], configured: &Pushpin) -> RemoteTargets {
    let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
    let (via, own_publish) = match configured.publish {
        PublishVia::Zmq => (PublishVia::Zmq, &configured.zmq_push_specs),
        PublishVia::Http => (PublishVia::Http, &configured.http_publish_urls),
    };
    let (mut publish, mut stats) = (BTreeSet::new(), BTreeSet::new());
    for m in live.iter().filter(|m| m.id != me) {
        let endpoint = match via {
            PublishVia::Zmq => &m.pushpin.publish_spec,
            PublishVia::Http => &m.pushpin.http_url,
        };
        if let Some(e) = endpoint
            .as_ref()
            .filter(|e| !own_publish.iter().any(|o| same(o, e)))
        {
            publish.insert(e.clone());
        }
        let spec = m.pushpin.stats_spec.as_ref();
        if let Some(s) = spec.filter(|s| !configured.stats_specs.contains(s)) {
            stats.insert(s.clone());
        }
    }
    RemoteTargets {
        publish: publish.into_iter().collect(),
        stats: stats.into_iter().collect(),
    }
}

/// Keeps the publisher and the stats reader on the Pushpins the other live replicas advertise.
pub struct RemotePushpins {
    configured: Pushpin,
    publisher: Arc<dyn Publisher>,
    stats: RemoteStats,
    current: Mutex<Current>,
}

#[derive(Default)]
struct Current {
    targets: RemoteTargets,
    /// When each remote publish target was added: every publish started from then on
    /// reaches it, none before did.
    added: HashMap<String, Instant>,
}

impl RemotePushpins {
    pub fn new(configured: &Pushpin, publisher: Arc<dyn Publisher>, stats: RemoteStats) -> Self {
        RemotePushpins {
            configured: Pushpin {
                sig_key: None, // Not needed here: keep the secret in one place.
                ..configured.clone()
            },
            publisher,
            stats,
            current: Mutex::new(Current::default()),
        }
    }

    /// Follows the live members as a refresh found them (synchronously: what is published
    /// after this call reaches the new Pushpins).
    pub fn apply(&self, me: &str, live: &[Member]) {
        let targets = remote_targets(me, live, &self.configured);
        let mut current = self.current.lock().expect("targets lock");
        if current.targets == targets {
            return;
        }
        tracing::info!(
            publish = ?targets.publish,
            stats = ?targets.stats,
            "other replicas' Pushpins changed"
        );
        if current.targets.publish != targets.publish {
            self.publisher.set_remotes(&targets.publish);
            // Read once the publisher has the change: a publish started from now on
            // reaches the new targets (one started before may not).
            let now = Instant::now();
            let added = &mut current.added;
            added.retain(|t, _| targets.publish.contains(t));
            for t in &targets.publish {
                added.entry(t.clone()).or_insert(now);
            }
        }
        if current.targets.stats != targets.stats {
            self.stats.set(targets.stats.clone());
        }
        current.targets = targets;
    }

    /// Since when what this replica publishes reaches `member`'s Pushpin, if it is one added
    /// by a refresh. `None` when it is not: configured here (always published to), not
    /// advertised, or not (yet) a target.
    pub fn reached_since(&self, member: &Member) -> Option<Instant> {
        let endpoint = match self.configured.publish {
            PublishVia::Zmq => member.pushpin.publish_spec.as_ref(),
            PublishVia::Http => member.pushpin.http_url.as_ref(),
        }?;
        let current = self.current.lock().expect("targets lock");
        current.added.get(endpoint).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{AdvertisedPushpin, Cluster, Leases, MemoryLeaseTable};
    use crate::pushpin::grip::PublishItem;
    use crate::pushpin::publisher::PublishError;
    use std::time::Duration;

    /// Every remote target set it was given, in order.
    #[derive(Default)]
    struct Targets(Mutex<Vec<Vec<String>>>);

    #[async_trait::async_trait]
    impl Publisher for Targets {
        async fn publish(&self, _: &[PublishItem]) -> Result<(), PublishError> {
            Ok(())
        }
        fn set_remotes(&self, targets: &[String]) {
            self.0.lock().unwrap().push(targets.to_vec());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_replica_met_by_hand_over_is_published_to_at_once_and_dropped_when_it_leaves() {
        let table = MemoryLeaseTable::new();
        let ttl = Duration::from_secs(30);
        let published = Arc::new(Targets::default());
        let (stats, _reader) = crate::pushpin::stats::remote_stats();
        let pushpins = RemotePushpins::new(&configured(PublishVia::Zmq), published.clone(), stats);
        let me = member("me", Some("10.0.0.1"));
        let cluster = Cluster::new(Arc::new(table.replica("me", ttl)), me).with_pushpins(pushpins);
        cluster.refresh_members().await.unwrap();
        assert!(
            published.0.lock().unwrap().is_empty(),
            "alone: nothing to add"
        );

        // A replica joins (it heartbeats before it serves) and hands a snapshot request over
        // long before this one's next refresh.
        let joined = member("new", Some("10.0.0.9"));
        let new = table.replica("new", ttl);
        new.heartbeat(&joined).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let met = Instant::now();
        cluster.meet("new").await;
        assert_eq!(
            *published.0.lock().unwrap(),
            vec![vec!["tcp://10.0.0.9:5560".to_string()]],
            "its Pushpin is a target before the hand-over is answered"
        );
        assert_eq!(cluster.member("new"), Some(joined.clone()));
        assert_eq!(
            cluster.reached_since("new"),
            Some(met),
            "published to from the meeting on, not before"
        );
        assert_eq!(cluster.reached_since("me"), None, "its own: configured");
        cluster.meet("new").await;
        cluster.meet("nobody").await; // Refreshes once more, finds nothing new.
        assert_eq!(
            published.0.lock().unwrap().len(),
            1,
            "targets change only when members do"
        );

        new.leave(&joined).await.unwrap();
        cluster.refresh_members().await.unwrap();
        assert_eq!(published.0.lock().unwrap().last(), Some(&Vec::new()));
        assert_eq!(cluster.reached_since("new"), None);

        cluster.leave().await;
        assert!(
            table.replica("x", ttl).live().await.unwrap().is_empty(),
            "its record is deleted"
        );
        cluster.refresh_members().await.unwrap();
        assert!(
            table.replica("x", ttl).live().await.unwrap().is_empty(),
            "and no heartbeat brings it back"
        );
    }

    fn member(id: &str, host: Option<&str>) -> Member {
        let mut m = Member::new(id, &format!("http://{id}:5000"));
        if let Some(h) = host {
            m.pushpin = AdvertisedPushpin {
                publish_spec: Some(format!("tcp://{h}:5560")),
                http_url: Some(format!("http://{h}:5561")),
                stats_spec: Some(format!("tcp://{h}:5564")),
            };
        }
        m
    }

    fn configured(via: PublishVia) -> Pushpin {
        Pushpin {
            publish: via,
            zmq_push_specs: vec!["tcp://127.0.0.1:5560".into(), "tcp://10.0.0.3:5560".into()],
            http_publish_urls: vec!["http://10.0.0.3:5561/".into()],
            stats_specs: vec!["tcp://127.0.0.1:5564".into(), "tcp://10.0.0.3:5564".into()],
            sig_key: None,
            ws_burst_bytes: 0,
        }
    }

    #[test]
    fn every_other_members_pushpin_once_and_none_configured() {
        let live = [
            member("me", Some("10.0.0.1")),
            member("b", Some("10.0.0.2")),
            member("c", Some("10.0.0.3")), // Also configured.
            member("d", None),             // Advertises no Pushpin (or predates them).
            member("e", Some("10.0.0.2")), // Shares b's Pushpin.
        ];
        let zmq = remote_targets("me", &live, &configured(PublishVia::Zmq));
        assert_eq!(
            zmq,
            RemoteTargets {
                publish: vec!["tcp://10.0.0.2:5560".into()],
                stats: vec!["tcp://10.0.0.2:5564".into()],
            }
        );
        let http = remote_targets("me", &live, &configured(PublishVia::Http));
        assert_eq!(http.publish, vec!["http://10.0.0.2:5561".to_string()]);
        assert_eq!(http.stats, zmq.stats);
        assert_eq!(
            remote_targets("me", &live[..1], &configured(PublishVia::Zmq)),
            RemoteTargets::default(),
            "alone: only the configured Pushpins"
        );
    }
}
