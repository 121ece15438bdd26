//! Passes over demand and starting pollers: what a single node does (cluster mode adds
//! leases, in `leasing.rs`).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::slot::{Poller, Slot};
use super::Scheduler;
use crate::channel::ChannelId;
use crate::cluster::{Cluster, Held, LeaseGuard};
use crate::fetcher::FetcherEntry;
use crate::poller;

/// Pollers running, overall and by fetcher name (for the channel caps): kept as pollers start
/// and stop, and copied (a few fetchers) by a pass that may start more.
pub(super) type Running = crate::channel::Tally;

/// Why a channel with subscribers is not ours to poll.
#[derive(Debug, thiserror::Error)]
pub(super) enum Unservable {
    #[error("no fetcher with this name")]
    NoFetcher,
    #[error("params do not match the fetcher's declaration")]
    Params,
}

impl Scheduler {
    pub(super) fn reconcile(&mut self, shutdown: &CancellationToken) {
        let now = tokio::time::Instant::now();
        let active = self.demand.active(now);
        self.forget_ignored_after_registry_change();
        let running = &mut self.running;
        self.slots.retain(|channel, slot| match slot {
            // The channel is taken anew below if it can.
            Slot::Polling(p) if p.lost_lease() => {
                running.remove(channel);
                false
            }
            Slot::Polling(p) => {
                let keep = active.contains(channel) || p.lingers(now);
                if !keep {
                    tracing::info!(channel = %channel, "no subscribers left; stopping poller");
                    p.token.cancel();
                    running.remove(channel);
                }
                keep
            }
            Slot::Ignored => active.contains(channel),
            Slot::Remote(r) => active.contains(channel) || r.demand_ended(),
        });
        // Most passes find every active channel served already: only the others are sorted
        // (a stable order for the caps) and counted against the caps.
        let mut unserved: Vec<ChannelId> = active
            .into_iter()
            .filter(|c| !matches!(self.slots.get(c), Some(Slot::Polling(_) | Slot::Ignored)))
            .collect();
        if unserved.is_empty() {
            return;
        }
        unserved.sort_unstable();
        let mut running = self.running.clone();
        for channel in unserved {
            self.serve(channel, shutdown, &mut running);
        }
    }

    /// One channel's part of a full pass, for a channel that may just have gained subscribers
    /// (a full pass costs O(active channels)).
    pub(super) fn serve_if_active(&mut self, channel: &ChannelId, shutdown: &CancellationToken) {
        match self.slots.get(channel) {
            Some(Slot::Polling(p)) if p.lost_lease() => self.forget_poller(channel),
            Some(Slot::Polling(_)) => return,
            _ => {}
        }
        if self.demand.is_active(channel, tokio::time::Instant::now()) {
            self.forget_ignored_after_registry_change();
            let mut running = self.running.clone();
            self.serve(channel.clone(), shutdown, &mut running);
        }
    }

    /// Has `channel`, which has subscribers, polled: here, or (cluster mode) by trying its
    /// lease. A channel we cannot serve is remembered, so it is logged once.
    fn serve(&mut self, channel: ChannelId, shutdown: &CancellationToken, running: &mut Running) {
        if matches!(
            self.slots.get(&channel),
            Some(Slot::Polling(_) | Slot::Ignored)
        ) {
            return;
        }
        match self.resolve(&channel) {
            Ok(entry) if !self.within_caps(&channel, &entry, running) => {
                // Not remembered: the channel is tried again next pass, once a slot frees.
            }
            Ok(entry) => match self.cluster.clone() {
                None => self.start(channel, entry, None, shutdown),
                Some(cluster) => self.try_acquire(channel, &cluster),
            },
            Err(why) => {
                tracing::debug!(channel = %channel, reason = %why, "channel has subscribers but is not ours to poll");
                self.slots.insert(channel, Slot::Ignored);
            }
        }
    }

    /// Forgets `channel`'s poller, which stopped on its own (a lost lease).
    pub(super) fn forget_poller(&mut self, channel: &ChannelId) {
        if let Some(Slot::Polling(_)) = self.slots.remove(channel) {
            self.running.remove(channel);
        }
    }

    /// Whether one more poller, for `channel`, stays within the channel caps; if so, it is
    /// counted in `running`.
    pub(super) fn within_caps(
        &self,
        channel: &ChannelId,
        entry: &FetcherEntry,
        running: &mut Running,
    ) -> bool {
        let Some(caps) = &self.caps else { return true };
        let of_fetcher = running.of_fetcher(channel.name());
        let fetcher_cap = caps.max_channels_for(channel.name(), entry.metadata.max_channels);
        let limit = if of_fetcher >= fetcher_cap {
            "channels_per_fetcher"
        } else if running.total() >= caps.max_channels {
            "channels_total"
        } else {
            running.add(channel);
            return true;
        };
        tracing::debug!(channel = %channel, limit, "channel has subscribers but a channel cap is reached; not polled");
        crate::metrics::get()
            .pollers_capped
            .with_label_values(&[limit])
            .inc();
        false
    }

    /// A re-discovered fetcher may serve channels ignored so far.
    fn forget_ignored_after_registry_change(&mut self) {
        let registry = self.registry.current();
        if !self
            .ignored_with
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &registry))
        {
            self.slots.retain(|_, s| !matches!(s, Slot::Ignored));
            self.ignored_with = Some(registry);
        }
    }

    /// Starts `channel`'s poller (under `lease` in cluster mode) and hands it the snapshot
    /// requests that waited for it.
    pub(super) fn start(
        &mut self,
        channel: ChannelId,
        entry: Arc<FetcherEntry>,
        lease: Option<(Arc<Cluster>, Held)>,
        shutdown: &CancellationToken,
    ) {
        let token = shutdown.child_token();
        let run = token.child_token();
        let guard_taken = lease.is_some();
        let guard = lease.map(|(cluster, held)| {
            let guard = Arc::new(LeaseGuard::new(held, run.clone()));
            self.tracker
                .spawn(cluster.keep(guard.clone(), token.clone()));
            guard
        });
        let (tx, rx) = poller::requests::channel(super::slot::MAX_WAITING_REQUESTS);
        let batches = match entry.fetcher.push() {
            Some(spec) => {
                let (batches, received) = mpsc::channel(self.push.max_pending_batches);
                let wiring = poller::PushWiring {
                    spec,
                    batches: received,
                    remembered_keys: self.push.idempotency_keys,
                };
                self.tracker.spawn(poller::run_push(
                    channel.clone(),
                    entry,
                    self.ctx.clone(),
                    rx,
                    wiring,
                    run.clone(),
                    guard,
                ));
                Some(batches)
            }
            None => {
                self.tracker.spawn(poller::run(
                    channel.clone(),
                    entry,
                    self.ctx.clone(),
                    rx,
                    run.clone(),
                    guard,
                ));
                None
            }
        };
        let mut poller = Poller {
            leased: guard_taken,
            token,
            run,
            requests: tx,
            batches,
            linger_until: None,
        };
        if let Some(Slot::Remote(r)) = self.slots.remove(&channel) {
            for request in r.waiting {
                let _ = poller.requests.try_send(request);
            }
            for (request, _) in r.publishes {
                super::publishing::deliver(&mut poller, request, self.push.linger);
            }
        }
        self.running.add(&channel);
        self.slots.insert(channel, Slot::Polling(poller));
    }

    /// The fetcher that serves `channel`, or why none does.
    pub(super) fn resolve(&self, channel: &ChannelId) -> Result<Arc<FetcherEntry>, Unservable> {
        let registry = self.registry.current();
        let entry = registry.get(channel.name()).ok_or(Unservable::NoFetcher)?;
        // The id must be exactly what a subscribe would have produced (declared params,
        // defaults applied), or it did not come from us.
        let raw = serde_json::Value::Object(
            channel
                .params()
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect(),
        );
        match ChannelId::from_request_with(channel.name(), Some(&raw), &entry.metadata.params) {
            Ok(canonical) if &canonical == channel => Ok(entry.clone()),
            _ => Err(Unservable::Params),
        }
    }
}
