//! Replica membership: each replica heartbeats one record (`membership`: `pk` = `replicas`,
//! `sk` = its id, with `alive_until`, the URL other replicas reach it at and the endpoints of
//! the Pushpin it advertises) and reads everyone's, so all agree who is alive, which of them a
//! channel prefers (rendezvous hashing) and which Pushpins to publish to. A replica that stops
//! gracefully deletes its record.

use std::hash::{Hash, Hasher};

/// A live replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// Its backend's base URL, for handing over snapshot requests.
    pub url: String,
    /// Its own Pushpin as the other replicas reach it (nothing when it advertises none).
    pub pushpin: AdvertisedPushpin,
}

impl Member {
    /// A replica that advertises no Pushpin.
    pub fn new(id: &str, url: &str) -> Member {
        Member {
            id: id.to_string(),
            url: url.to_string(),
            pushpin: AdvertisedPushpin::default(),
        }
    }
}

/// A replica's Pushpin endpoints as the other replicas reach them; `None` = not advertised.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct AdvertisedPushpin {
    /// Its ZeroMQ PULL socket (`tcp://…:5560`).
    pub publish_spec: Option<String>,
    /// Its HTTP publish base URL (`http://…:5561`).
    pub http_url: Option<String>,
    /// Its stats PUB socket (`tcp://…:5564`).
    pub stats_spec: Option<String>,
}

/// The replica among `members` that `channel` prefers: the highest hash of (channel, replica)
/// wins, so each channel's choice moves only when its winner leaves or a better one joins.
pub fn preferred<'a>(channel: &str, members: &'a [Member]) -> Option<&'a Member> {
    members.iter().max_by_key(|m| {
        // SipHash with fixed keys: the same on every replica and every run.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (channel, m.id.as_str()).hash(&mut h);
        (h.finish(), m.id.clone())
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn members(ids: &[&str]) -> Vec<Member> {
        ids.iter()
            .map(|id| Member::new(id, &format!("http://{id}")))
            .collect()
    }

    #[test]
    fn channels_spread_over_replicas_and_move_only_when_their_replica_leaves() {
        let three = members(&["a", "b", "c"]);
        let channels: Vec<String> = (0..300).map(|i| format!("ch?n={i}")).collect();
        let mut counts = HashMap::new();
        for c in &channels {
            *counts
                .entry(preferred(c, &three).unwrap().id.clone())
                .or_insert(0) += 1;
        }
        for id in ["a", "b", "c"] {
            let n = counts[id];
            assert!(
                (60..=140).contains(&n),
                "{id} prefers {n} of 300: {counts:?}"
            );
        }
        let two = members(&["a", "c"]);
        for c in &channels {
            let before = &preferred(c, &three).unwrap().id;
            let after = &preferred(c, &two).unwrap().id;
            if before != "b" {
                assert_eq!(before, after, "{c} moved although its replica stayed");
            }
        }
        assert!(preferred("x", &[]).is_none());
    }
}
