//! `[limits]`: the abuse bounds on what public clients can make the service spend (channels,
//! subscribe churn, snapshots, SSE streams), the same in the file and typed forms.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::SettingsError;

/// Where a client's address comes from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAddressFrom {
    /// The TCP peer: behind Pushpin, every client looks like Pushpin.
    Peer,
    /// `X-Forwarded-For`, counting `trusted_proxy_hops` entries from its end.
    XForwardedFor,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Channels active at once over every fetcher; a subscribe that would start one more gets
    /// `too_many_channels`.
    pub max_channels: usize,
    /// Active channels per fetcher when neither its metadata (`max_channels`) nor
    /// `max_channels_per_fetcher` says.
    pub default_max_channels_per_fetcher: usize,
    /// Per channel name, the active channels (distinct params) it may have; wins over the
    /// fetcher's metadata.
    pub max_channels_per_fetcher: HashMap<String, usize>,
    /// Subscribes a connection may send in a burst, refilled at `connection_subscribes_per_sec`.
    pub connection_subscribe_burst: u32,
    pub connection_subscribes_per_sec: f64,
    /// Subscribes one client address may send in a burst (all its connections together).
    pub address_subscribe_burst: u32,
    pub address_subscribes_per_sec: f64,
    /// SSE streams one client address may open in a burst, refilled at `sse_opens_per_sec`.
    pub sse_open_burst: u32,
    pub sse_opens_per_sec: f64,
    /// A repeated subscribe re-sends a channel's snapshot at most once per this many seconds
    /// per connection (otherwise only `subscribed`).
    pub snapshot_resend_secs: f64,
    /// Connections and addresses whose rate state is kept (each map; least recently seen go
    /// first when full).
    pub tracked_clients: usize,
    pub client_address_from: ClientAddressFrom,
    /// `X-Forwarded-For` entries appended by proxies we trust: 1 = Pushpin's own append
    /// (`x_forwarded_for=append`), 2 = a load balancer in front of Pushpin as well.
    pub trusted_proxy_hops: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_channels: 1000,
            default_max_channels_per_fetcher: 100,
            max_channels_per_fetcher: HashMap::new(),
            connection_subscribe_burst: 40,
            connection_subscribes_per_sec: 2.0,
            address_subscribe_burst: 200,
            address_subscribes_per_sec: 10.0,
            sse_open_burst: 20,
            sse_opens_per_sec: 0.5,
            snapshot_resend_secs: 5.0,
            tracked_clients: 100_000,
            client_address_from: ClientAddressFrom::XForwardedFor,
            trusted_proxy_hops: 1,
        }
    }
}

impl Limits {
    /// Every check of the section, naming the key at fault.
    pub(super) fn check(self) -> Result<Limits, SettingsError> {
        let one = |key, n: usize| {
            (n >= 1)
                .then_some(())
                .ok_or(SettingsError::BelowOne { key })
        };
        one("limits.max_channels", self.max_channels)?;
        one(
            "limits.default_max_channels_per_fetcher",
            self.default_max_channels_per_fetcher,
        )?;
        if self.max_channels_per_fetcher.values().any(|n| *n == 0) {
            return Err(SettingsError::BelowOne {
                key: "limits.max_channels_per_fetcher",
            });
        }
        one(
            "limits.connection_subscribe_burst",
            self.connection_subscribe_burst as usize,
        )?;
        one(
            "limits.address_subscribe_burst",
            self.address_subscribe_burst as usize,
        )?;
        one("limits.sse_open_burst", self.sse_open_burst as usize)?;
        one("limits.tracked_clients", self.tracked_clients)?;
        one("limits.trusted_proxy_hops", self.trusted_proxy_hops)?;
        for (key, rate) in [
            (
                "limits.connection_subscribes_per_sec",
                self.connection_subscribes_per_sec,
            ),
            (
                "limits.address_subscribes_per_sec",
                self.address_subscribes_per_sec,
            ),
            ("limits.sse_opens_per_sec", self.sse_opens_per_sec),
        ] {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(SettingsError::NotPositive { key });
            }
        }
        if !(self.snapshot_resend_secs.is_finite() && self.snapshot_resend_secs >= 0.0) {
            return Err(SettingsError::NotPositive {
                key: "limits.snapshot_resend_secs",
            });
        }
        Ok(self)
    }

    /// The cap on active channels of the fetcher `name`, whose metadata declared `declared`.
    pub fn max_channels_for(&self, name: &str, declared: Option<usize>) -> usize {
        self.max_channels_per_fetcher
            .get(name)
            .copied()
            .or(declared)
            .unwrap_or(self.default_max_channels_per_fetcher)
    }
}
