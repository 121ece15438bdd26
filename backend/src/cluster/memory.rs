//! [`Leases`] in memory: one table shared by the replicas of one process, with the same
//! conditions as the DynamoDB table. The testing backend: schedulers sharing it form a
//! cluster under paused time, and a replica can be cut off to watch another take over.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{ForwardedSnapshots, HandOverError, Held, Holder, LeaseError, Leases, Member};
use crate::channel::ChannelId;

/// Where hand-overs to one replica arrive (what its `/internal/snapshot` route does).
pub type Inbox = Arc<dyn Fn(ForwardedSnapshots) + Send + Sync>;

#[derive(Default)]
struct Table {
    leases: HashMap<ChannelId, Holder>,
    /// Replica id → (member, alive until, unix ms).
    members: HashMap<String, (Member, u64)>,
    inboxes: HashMap<String, Inbox>,
    /// Replicas cut off: every call they make fails.
    down: HashSet<String>,
}

/// The shared table.
pub struct MemoryLeaseTable {
    table: Mutex<Table>,
    /// Tokio time at creation and the unix ms it stands for: the table's clock follows tokio
    /// time, so paused tests move lease expiries too.
    origin: (Instant, u64),
}

impl MemoryLeaseTable {
    pub fn new() -> Arc<MemoryLeaseTable> {
        Arc::new(MemoryLeaseTable {
            table: Mutex::new(Table::default()),
            origin: (Instant::now(), super::now_ms()),
        })
    }

    /// Replica `owner`'s handle on the table.
    pub fn replica(self: &Arc<Self>, owner: &str, ttl: Duration) -> MemoryLeases {
        MemoryLeases {
            table: self.clone(),
            owner: owner.to_string(),
            ttl,
        }
    }

    /// Delivers hand-overs addressed to replica `owner` to `inbox`.
    pub fn set_inbox(&self, owner: &str, inbox: Inbox) {
        self.lock().inboxes.insert(owner.to_string(), inbox);
    }

    /// Cuts replica `owner` off (`true`) or lets it back.
    pub fn set_down(&self, owner: &str, down: bool) {
        let mut t = self.lock();
        match down {
            true => t.down.insert(owner.to_string()),
            false => t.down.remove(owner),
        };
    }

    /// The lease as stored (for tests' assertions).
    pub fn holder(&self, channel: &ChannelId) -> Option<Holder> {
        self.lock().leases.get(channel).cloned()
    }

    fn now_ms(&self) -> u64 {
        self.origin.1 + (Instant::now() - self.origin.0).as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().expect("lease table lock")
    }
}

/// One replica's handle on a [`MemoryLeaseTable`].
pub struct MemoryLeases {
    table: Arc<MemoryLeaseTable>,
    owner: String,
    ttl: Duration,
}

impl MemoryLeases {
    /// The table, unless this replica is cut off.
    fn reach(&self, op: &'static str) -> Result<std::sync::MutexGuard<'_, Table>, LeaseError> {
        let t = self.table.lock();
        match t.down.contains(&self.owner) {
            true => Err(LeaseError::new("memory", op, "replica cut off".into())),
            false => Ok(t),
        }
    }

    fn until(&self, now: u64) -> u64 {
        now + self.ttl.as_millis() as u64
    }

    /// Until when a lease taken or renewed now may be acted on (as DynamoDB's: a fifth of
    /// the TTL early).
    fn valid_until(&self) -> Instant {
        Instant::now() + self.ttl - self.ttl / 5
    }

    /// Sets the expiry of a lease still held as `held`; whether it was.
    fn set_until(&self, held: &Held, until: u64, op: &'static str) -> Result<bool, LeaseError> {
        let mut t = self.reach(op)?;
        match t.leases.get_mut(&held.channel) {
            Some(h) if h.owner == self.owner && h.epoch == held.epoch => {
                h.lease_until = until;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl Leases for MemoryLeases {
    fn owner(&self) -> &str {
        &self.owner
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }

    fn now_ms(&self) -> u64 {
        self.table.now_ms()
    }

    async fn acquire(&self, channel: &ChannelId) -> Result<Option<Held>, LeaseError> {
        let now = self.table.now_ms();
        let mut t = self.reach("acquire")?;
        let epoch = match t.leases.get(channel) {
            Some(h) if h.lease_until > now && h.owner != self.owner => return Ok(None),
            Some(h) => h.epoch + 1,
            None => 1,
        };
        t.leases.insert(
            channel.clone(),
            Holder {
                owner: self.owner.clone(),
                epoch,
                lease_until: self.until(now),
            },
        );
        Ok(Some(Held {
            channel: channel.clone(),
            epoch,
            session: 0,
            valid_until: self.valid_until(),
        }))
    }

    async fn renew(&self, held: &Held) -> Result<Option<Held>, LeaseError> {
        let until = self.until(self.table.now_ms());
        Ok(self.set_until(held, until, "renew")?.then(|| Held {
            valid_until: self.valid_until(),
            ..held.clone()
        }))
    }

    async fn release(&self, held: &Held) -> Result<bool, LeaseError> {
        self.set_until(held, 0, "release")
    }

    async fn holder(&self, channel: &ChannelId) -> Result<Option<Holder>, LeaseError> {
        Ok(self.reach("holder")?.leases.get(channel).cloned())
    }

    async fn heartbeat(&self, me: &Member) -> Result<(), LeaseError> {
        let until = self.until(self.table.now_ms());
        let mut t = self.reach("heartbeat")?;
        t.members.insert(me.id.clone(), (me.clone(), until));
        Ok(())
    }

    async fn live(&self) -> Result<Vec<Member>, LeaseError> {
        let now = self.table.now_ms();
        let t = self.reach("live")?;
        let mut live: Vec<Member> = t
            .members
            .values()
            .filter(|(_, until)| *until > now)
            .map(|(m, _)| m.clone())
            .collect();
        live.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(live)
    }

    async fn leave(&self, me: &Member) -> Result<(), LeaseError> {
        self.reach("leave")?.members.remove(&me.id);
        Ok(())
    }

    async fn hand_over(
        &self,
        to: &Member,
        batch: &ForwardedSnapshots,
    ) -> Result<(), HandOverError> {
        let inbox = {
            let t = self.table.lock();
            match t.down.contains(&self.owner) || t.down.contains(&to.id) {
                true => None,
                false => t.inboxes.get(&to.id).cloned(),
            }
        };
        let inbox = inbox.ok_or_else(|| HandOverError::NoInbox(to.id.clone()))?;
        inbox(batch.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(s: &str) -> ChannelId {
        ChannelId::parse(s).unwrap()
    }

    /// The conditions of tests/cluster_leases.rs (there against moto), in memory.
    #[tokio::test(start_paused = true)]
    async fn one_holder_at_a_time_and_takeover_only_after_expiry_with_a_higher_epoch() {
        let table = MemoryLeaseTable::new();
        let ttl = Duration::from_millis(1500);
        let (a, b) = (table.replica("a", ttl), table.replica("b", ttl));
        let held = a.acquire(&ch("ch")).await.unwrap().unwrap();
        assert_eq!(held.epoch, 1);
        assert!(b.acquire(&ch("ch")).await.unwrap().is_none());
        let renewed = a.renew(&held).await.unwrap().unwrap();
        tokio::time::sleep(ttl + Duration::from_millis(200)).await;
        let taken = b.acquire(&ch("ch")).await.unwrap().unwrap();
        assert_eq!(taken.epoch, 2);
        assert!(a.renew(&renewed).await.unwrap().is_none());
        assert!(!a.release(&renewed).await.unwrap());
        let retaken = b.acquire(&ch("ch")).await.unwrap().unwrap();
        assert_eq!(retaken.epoch, 3);
        assert!(b.release(&retaken).await.unwrap());
        assert_eq!(a.acquire(&ch("ch")).await.unwrap().unwrap().epoch, 4);
        table.set_down("a", true);
        assert!(
            a.holder(&ch("ch")).await.is_err(),
            "a cut-off replica fails"
        );
    }
}
