//! Abuse bounds on the subscribe path (docs/security/limits.md): channel caps checked against
//! live demand, subscribe churn per connection and per client address, snapshot re-sends, and
//! SSE opens per address. Nothing here costs an upstream call; every refusal is counted in
//! `restream_subscribe_refusals_total{code,limit}`.
//!
//! The sans-IO connection handler sees this through [`connection::Admission`], bound to one
//! connection and its client address for one WOH request.
//!
//! [`connection::Admission`]: crate::connection::Admission

mod address;
mod rate;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use address::client_address;
pub use rate::{Rate, RateTracker, Recent};

use crate::channel::ChannelId;
use crate::config::Limits;
use crate::connection::{Admission, Limited};
use crate::demand::Demand;
use crate::protocol::ErrorCode;

/// The service-wide state of the abuse bounds, shared by every request handler.
pub struct Guard {
    limits: Limits,
    demand: Arc<Demand>,
    connection_subscribes: RateTracker<String>,
    address_subscribes: RateTracker<IpAddr>,
    sse_opens: RateTracker<IpAddr>,
    snapshots_sent: Recent<(String, ChannelId)>,
}

impl Guard {
    pub fn new(limits: Limits, demand: Arc<Demand>) -> Guard {
        let rate = |burst: u32, per_sec: f64| Rate {
            burst: burst.into(),
            per_sec,
        };
        let capacity = limits.tracked_clients;
        Guard {
            connection_subscribes: RateTracker::new(
                "connection_subscribes",
                rate(
                    limits.connection_subscribe_burst,
                    limits.connection_subscribes_per_sec,
                ),
                capacity,
            ),
            address_subscribes: RateTracker::new(
                "address_subscribes",
                rate(
                    limits.address_subscribe_burst,
                    limits.address_subscribes_per_sec,
                ),
                capacity,
            ),
            sse_opens: RateTracker::new(
                "sse_opens",
                rate(limits.sse_open_burst, limits.sse_opens_per_sec),
                capacity,
            ),
            snapshots_sent: Recent::new(
                "snapshot_resends",
                Duration::from_secs_f64(limits.snapshot_resend_secs),
                capacity,
            ),
            limits,
            demand,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The client address of a request from its `X-Forwarded-For` and TCP peer, as configured.
    pub fn client_address(
        &self,
        x_forwarded_for: Option<&[u8]>,
        peer: Option<IpAddr>,
    ) -> Option<IpAddr> {
        client_address(
            self.limits.client_address_from,
            self.limits.trusted_proxy_hops,
            x_forwarded_for,
            peer,
        )
    }

    /// The checks of one WOH request's subscribes.
    pub fn for_connection<'a>(
        &'a self,
        connection_id: &'a str,
        address: Option<IpAddr>,
    ) -> ConnectionGuard<'a> {
        ConnectionGuard {
            guard: self,
            connection_id,
            address,
        }
    }

    /// Whether `channel` may be active (see [`Demand::admit`]); `declared` is its fetcher's
    /// own `max_channels`. An admitted channel is hinted as demand.
    pub fn admit_channel(
        &self,
        channel: &ChannelId,
        declared: Option<usize>,
    ) -> Result<(), Limited> {
        let cap = self.limits.max_channels_for(channel.name(), declared);
        self.demand
            .admit(channel, cap, self.limits.max_channels, Instant::now())
            .map_err(|reached| {
                let message = match reached {
                    crate::demand::CapReached::Fetcher(n) => format!(
                        "{} has {n} active channels, its limit; try again later or use an active one",
                        channel.name()
                    ),
                    crate::demand::CapReached::Total(n) => format!(
                        "the service has {n} active channels, its limit; try again later"
                    ),
                };
                refused(ErrorCode::TooManyChannels, reached.limit(), message, None)
            })
    }

    /// An SSE stream opened from `address`: `Err(seconds to wait)` beyond the address's rate.
    pub fn sse_open(&self, address: Option<IpAddr>) -> Result<(), u64> {
        let Some(address) = address else {
            return Ok(());
        };
        self.sse_opens
            .take(&address, Instant::now())
            .inspect_err(|_| count(ErrorCode::RateLimited, "sse_address"))
    }
}

/// The abuse checks of one connection (and its client address) for one WOH request.
pub struct ConnectionGuard<'a> {
    guard: &'a Guard,
    connection_id: &'a str,
    address: Option<IpAddr>,
}

impl Admission for ConnectionGuard<'_> {
    fn subscribe_attempt(&self) -> Result<(), Limited> {
        let now = Instant::now();
        let g = self.guard;
        if let Err(wait) = g
            .connection_subscribes
            .take(&self.connection_id.to_string(), now)
        {
            let message = "too many subscribes on this connection; slow down";
            return Err(refused(
                ErrorCode::RateLimited,
                "connection_churn",
                message.into(),
                Some(wait),
            ));
        }
        if let Some(address) = self.address {
            if let Err(wait) = g.address_subscribes.take(&address, now) {
                let message = "too many subscribes from this address; slow down";
                return Err(refused(
                    ErrorCode::RateLimited,
                    "address_churn",
                    message.into(),
                    Some(wait),
                ));
            }
        }
        Ok(())
    }

    fn admit_channel(&self, channel: &ChannelId, declared: Option<usize>) -> Result<(), Limited> {
        self.guard.admit_channel(channel, declared)
    }

    fn resend_snapshot(&self, channel: &ChannelId) -> bool {
        let first = self.guard.snapshots_sent.first_in_window(
            &(self.connection_id.to_string(), channel.clone()),
            Instant::now(),
        );
        if !first {
            crate::metrics::get().snapshot_resends_skipped.inc();
        }
        first
    }

    fn snapshot_sent(&self, channel: &ChannelId) {
        self.guard.snapshots_sent.first_in_window(
            &(self.connection_id.to_string(), channel.clone()),
            Instant::now(),
        );
    }
}

fn count(code: ErrorCode, limit: &'static str) {
    let code = serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    crate::metrics::get()
        .refusals
        .with_label_values(&[code.as_str(), limit])
        .inc();
}

fn refused(
    code: ErrorCode,
    limit: &'static str,
    message: String,
    retry_after: Option<u64>,
) -> Limited {
    count(code, limit);
    Limited {
        code,
        message,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ChannelId {
        ChannelId::parse(s).unwrap()
    }

    fn guard(edit: impl FnOnce(&mut Limits)) -> Guard {
        let mut limits = Limits::default();
        edit(&mut limits);
        Guard::new(limits, Arc::new(Demand::new(Duration::from_secs(60))))
    }

    #[tokio::test(start_paused = true)]
    async fn churn_counts_per_connection_and_per_address() {
        let g = guard(|l| {
            (
                l.connection_subscribe_burst,
                l.connection_subscribes_per_sec,
            ) = (2, 1.0);
            (l.address_subscribe_burst, l.address_subscribes_per_sec) = (3, 1.0);
        });
        let home: IpAddr = "192.0.2.1".parse().unwrap();
        let (a, b) = (
            g.for_connection("a", Some(home)),
            g.for_connection("b", Some(home)),
        );
        assert!(a.subscribe_attempt().is_ok() && a.subscribe_attempt().is_ok());
        let r = a.subscribe_attempt().unwrap_err();
        assert_eq!((r.code, r.retry_after), (ErrorCode::RateLimited, Some(1)));
        assert!(
            b.subscribe_attempt().is_ok(),
            "the address has a third token"
        );
        assert_eq!(
            b.subscribe_attempt().unwrap_err().code,
            ErrorCode::RateLimited,
            "b's own bucket is full, the address's is empty"
        );
        let elsewhere = g.for_connection("c", Some("192.0.2.2".parse().unwrap()));
        assert!(elsewhere.subscribe_attempt().is_ok());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(a.subscribe_attempt().is_ok(), "refilled");
    }

    #[tokio::test(start_paused = true)]
    async fn caps_come_from_settings_then_metadata_then_the_default() {
        let g = guard(|l| {
            l.default_max_channels_per_fetcher = 1;
            l.max_channels_per_fetcher.insert("o".into(), 2);
        });
        let c = g.for_connection("a", None);
        assert!(c.admit_channel(&id("d?n=1"), None).is_ok());
        let r = c.admit_channel(&id("d?n=2"), None).unwrap_err();
        assert_eq!(r.code, ErrorCode::TooManyChannels);
        assert!(c.admit_channel(&id("m?n=1"), Some(2)).is_ok());
        assert!(c.admit_channel(&id("m?n=2"), Some(2)).is_ok());
        assert!(c.admit_channel(&id("m?n=3"), Some(2)).is_err());
        assert!(c.admit_channel(&id("o?n=1"), Some(1)).is_ok());
        assert!(
            c.admit_channel(&id("o?n=2"), Some(1)).is_ok(),
            "settings win"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn snapshots_are_re_sent_once_per_window_per_connection_and_channel() {
        let g = guard(|l| l.snapshot_resend_secs = 5.0);
        let (a, b) = (g.for_connection("a", None), g.for_connection("b", None));
        let ch = id("x");
        a.snapshot_sent(&ch);
        assert!(!a.resend_snapshot(&ch));
        assert!(b.resend_snapshot(&ch), "another connection");
        assert!(a.resend_snapshot(&id("y")), "another channel");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(a.resend_snapshot(&ch));
        assert!(!a.resend_snapshot(&ch));
    }

    #[tokio::test(start_paused = true)]
    async fn sse_opens_are_counted_per_address() {
        let g = guard(|l| (l.sse_open_burst, l.sse_opens_per_sec) = (1, 0.5));
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(g.sse_open(Some(ip)), Ok(()));
        assert_eq!(g.sse_open(Some(ip)), Err(2));
        assert_eq!(g.sse_open(None), Ok(()), "no address, no bucket");
    }
}
