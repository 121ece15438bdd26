//! Channel tokens remembered across WOH requests: for each subscription a per-subscribe
//! `token` granted, its expiry, in the connection meta `Restream-Grants` (Pushpin replays it
//! on every request; clients cannot set `Meta-*` headers). Entries are `<key>=<exp>` with
//! `key` the first 16 hex digits of the SHA-256 of the canonical channel id, so an entry is
//! 27 bytes whatever the id, and only subscriptions the connection holds keep one.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::channel::ChannelId;

/// Name of the connection meta field.
pub const GRANTS_META: &str = "Restream-Grants";
/// Entries read from the meta at most (more than any connection can hold).
const MAX_ENTRIES: usize = 256;

/// Expiry (seconds since the Unix epoch) of the channel token behind each subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(BTreeMap<String, u64>);

fn key(id: &ChannelId) -> String {
    let digest = Sha256::digest(id.as_str().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl Grants {
    /// Reads the meta header; entries that do not parse are dropped.
    pub fn from_meta(value: Option<&str>) -> Grants {
        Grants(
            value
                .unwrap_or("")
                .split(' ')
                .filter_map(|e| e.split_once('='))
                .filter(|(k, _)| k.len() == 16 && k.bytes().all(|b| b.is_ascii_hexdigit()))
                .filter_map(|(k, exp)| Some((k.to_string(), exp.parse().ok()?)))
                .take(MAX_ENTRIES)
                .collect(),
        )
    }

    pub fn to_meta(&self) -> String {
        self.0
            .iter()
            .map(|(k, exp)| format!("{k}={exp}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The channel token's expiry for `id`, if one was granted.
    pub fn expiry(&self, id: &ChannelId) -> Option<u64> {
        self.0.get(&key(id)).copied()
    }

    /// Remembers a channel token's expiry; true if that changed anything.
    pub fn grant(&mut self, id: &ChannelId, exp: u64) -> bool {
        self.0.insert(key(id), exp) != Some(exp)
    }

    /// Keeps only the entries of `held`; true if anything went.
    pub fn retain_held<'a>(&mut self, held: impl IntoIterator<Item = &'a ChannelId>) -> bool {
        if self.0.is_empty() {
            return false; // Public channels only: nothing to hash.
        }
        let keep: std::collections::BTreeSet<String> = held.into_iter().map(key).collect();
        let before = self.0.len();
        self.0.retain(|k, _| keep.contains(k));
        self.0.len() != before
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_meta_text_reads_into_at_most_the_bound(s in ".{0,2000}") {
            let g = Grants::from_meta(Some(&s));
            proptest::prop_assert!(g.0.len() <= MAX_ENTRIES);
            proptest::prop_assert_eq!(Grants::from_meta(Some(&g.to_meta())), g);
        }
    }

    #[test]
    fn grants_round_trip_through_the_meta_and_stay_bounded() {
        let a = ChannelId::parse("a").unwrap();
        let b = ChannelId::parse("w?lat=5&u=c").unwrap();
        let mut g = Grants::default();
        assert!(g.grant(&a, 100) && g.grant(&b, 200) && !g.grant(&b, 200));
        let back = Grants::from_meta(Some(&g.to_meta()));
        assert_eq!(back, g);
        assert_eq!((back.expiry(&a), back.expiry(&b)), (Some(100), Some(200)));
        let entry = g.to_meta().split(' ').next().unwrap().len();
        assert_eq!(entry, 16 + 1 + 3);
        assert!(g.retain_held([&b]) && g.expiry(&a).is_none());
        assert_eq!(
            Grants::from_meta(Some("zz=1 0123456789abcdef=x 0123456789abcdef=5")).to_meta(),
            "0123456789abcdef=5"
        );
    }
}
