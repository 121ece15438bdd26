//! The log section: the `tracing` output, and CloudWatch Embedded Metric Format lines
//! (`telemetry::emf`); the same form in the file and in the typed settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::SettingsError;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub format: LogFormat,
    /// `tracing` filter, e.g. `info,restream=debug`; `RUST_LOG` wins when set.
    pub filter: String,
    /// Seconds between two CloudWatch Embedded Metric Format lines on stdout; 0 = none.
    pub emf_interval_secs: u64,
    /// The CloudWatch namespace of those metrics (ASCII letters, digits, `.-_/#:`, 1..=255,
    /// not `AWS/...`).
    pub emf_namespace: String,
    /// The value of their one dimension, `Service` (printable ASCII, 1..=1024).
    pub emf_service: String,
}

/// Where and how often CloudWatch Embedded Metric Format lines go (see `telemetry::emf`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emf {
    pub interval: Duration,
    pub namespace: String,
    pub service: String,
}

impl Log {
    /// The EMF lines asked for, or `None` when `emf_interval_secs` is 0.
    pub fn emf(&self) -> Option<Emf> {
        (self.emf_interval_secs > 0).then(|| Emf {
            interval: Duration::from_secs(self.emf_interval_secs),
            namespace: self.emf_namespace.clone(),
            service: self.emf_service.clone(),
        })
    }

    /// These settings, checked: the EMF namespace and dimension value as CloudWatch takes
    /// them.
    pub(super) fn checked(self) -> Result<Log, SettingsError> {
        let ns = &self.emf_namespace;
        let ns_char = |c: char| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c);
        if ns.is_empty() || ns.len() > 255 || !ns.chars().all(ns_char) || ns.trim().is_empty() {
            return Err(SettingsError::Invalid {
                key: "log.emf_namespace",
                problem: "1 to 255 ASCII letters, digits, spaces or . - _ / # :",
            });
        }
        if ns.starts_with("AWS/") {
            return Err(SettingsError::Invalid {
                key: "log.emf_namespace",
                problem: "AWS/ is reserved for AWS services",
            });
        }
        let service = &self.emf_service;
        let printable = |c: char| c.is_ascii() && !c.is_ascii_control();
        if service.len() > 1024 || !service.chars().all(printable) || service.trim().is_empty() {
            return Err(SettingsError::Invalid {
                key: "log.emf_service",
                problem: "1 to 1024 printable ASCII characters, not only spaces",
            });
        }
        Ok(self)
    }
}
