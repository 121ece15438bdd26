//! A count of channels, overall and by fetcher name: what the channel caps are checked
//! against (demand's active channels, the scheduler's running pollers), kept as channels come
//! and go instead of counted by a scan.

use std::collections::HashMap;

use super::ChannelId;

#[derive(Debug, Default, Clone)]
pub struct Tally {
    total: usize,
    by_fetcher: HashMap<String, usize>,
}

impl Tally {
    pub fn add(&mut self, channel: &ChannelId) {
        self.total += 1;
        match self.by_fetcher.get_mut(channel.name()) {
            Some(n) => *n += 1,
            None => {
                self.by_fetcher.insert(channel.name().to_string(), 1);
            }
        }
    }

    pub fn remove(&mut self, channel: &ChannelId) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.by_fetcher.get_mut(channel.name()) {
            *n -= 1;
            if *n == 0 {
                self.by_fetcher.remove(channel.name());
            }
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Channels of the fetcher `name`.
    pub fn of_fetcher(&self, name: &str) -> usize {
        self.by_fetcher.get(name).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_channels_coming_and_going() {
        let id = |s: &str| ChannelId::parse(s).unwrap();
        let mut t = Tally::default();
        t.add(&id("a?n=1"));
        t.add(&id("a?n=2"));
        t.add(&id("b"));
        assert_eq!((t.total(), t.of_fetcher("a"), t.of_fetcher("b")), (3, 2, 1));
        t.remove(&id("a?n=1"));
        t.remove(&id("b"));
        assert_eq!((t.total(), t.of_fetcher("a"), t.of_fetcher("b")), (1, 1, 0));
        assert!(
            !t.by_fetcher.contains_key("b"),
            "an emptied fetcher is forgotten"
        );
    }
}
