//! `[limits]`: the abuse bounds on what public clients can make the service spend (channels,
//! subscribe churn, snapshots, SSE streams), the same in the file and typed forms.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::SettingsError;
use crate::channel::{FreeParams, MAX_NAME_LEN, MAX_VALUE_LEN};

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
    /// Free-form params (fetchers that declare no `params`, the original's shape): at most
    /// this many per subscribe (`too_many_params`)...
    #[serde(default = "default_max_free_params")]
    pub max_free_params: usize,
    /// ...names at most this long and values at most this long, in characters
    /// (`param_too_long`; values at most 256).
    #[serde(default = "default_max_free_param_name_len")]
    pub max_free_param_name_len: usize,
    #[serde(default = "default_max_free_param_value_len")]
    pub max_free_param_value_len: usize,
}

fn default_max_free_params() -> usize {
    FreeParams::default().max_count
}

fn default_max_free_param_name_len() -> usize {
    FreeParams::default().max_name_len
}

fn default_max_free_param_value_len() -> usize {
    FreeParams::default().max_value_len
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
            max_free_params: default_max_free_params(),
            max_free_param_name_len: default_max_free_param_name_len(),
            max_free_param_value_len: default_max_free_param_value_len(),
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
        one("limits.max_free_params", self.max_free_params)?;
        for (key, n, max) in [
            (
                "limits.max_free_param_name_len",
                self.max_free_param_name_len,
                MAX_NAME_LEN,
            ),
            (
                "limits.max_free_param_value_len",
                self.max_free_param_value_len,
                MAX_VALUE_LEN,
            ),
        ] {
            one(key, n)?;
            if n > max {
                return Err(SettingsError::TooLarge { key });
            }
        }
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

    /// The bounds on free-form params.
    pub fn free_params(&self) -> FreeParams {
        FreeParams {
            max_count: self.max_free_params,
            max_name_len: self.max_free_param_name_len,
            max_value_len: self.max_free_param_value_len,
        }
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
