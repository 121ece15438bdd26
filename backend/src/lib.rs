//! restream: turns polling REST APIs into subscribable real-time streams behind Pushpin.
//!
//! # Layout
//! - [`woh`] — WebSocket-over-HTTP codec for the bodies Pushpin exchanges with us.
//! - [`grip`] — GRIP control messages and publish items.
//! - [`protocol`] — the client protocol (`subscribe`, `unsubscribe`, ...; `ready`, `error`, ...).
//! - [`channel`] — canonical, reversible channel ids.
//! - [`connection`] — one WOH request for one connection; subscriptions kept in Pushpin meta.
//! - [`demand`] / [`stats`] — which channels have subscribers, from Pushpin's stats socket.
//! - [`scheduler`] / [`poller`] — one poll loop per active channel.
//! - [`fetcher`] — the fetcher contract and its kinds: `process` (`functions/<dir>/main.py`),
//!   `http` (declarative `channels/*.toml`), `lambda` (AWS Lambda).
//! - [`discovery`] — finding fetchers of every configured kind, refreshed in the background.
//! - [`changes`] / [`store`] — change detection and durable item state (redb, DynamoDB).
//! - [`budget`] — shared upstream rate budgets per key set.
//! - [`keys`] — API keys for fetchers (local file or S3).
//! - [`aws`] — one AWS SDK configuration for the DynamoDB, S3 and Lambda adapters.
//! - [`publisher`] — publishing to Pushpin over ZeroMQ or HTTP.
//! - [`sse`] — Server-Sent Events over GRIP (`Grip-Hold: stream`, `Last-Event-ID`).
//! - [`status`] / [`metrics`] — what each poller last did (status API) and Prometheus metrics.
//! - [`config`], [`telemetry`], [`startup`], [`routes`] — settings, logs, wiring, HTTP.
//! - [`pushpin`] — an isolated Pushpin child process for `restream dev` and tests.

pub mod authoring;
pub mod aws;
pub mod budget;
pub mod changes;
pub mod channel;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod demand;
pub mod discovery;
pub mod fetcher;
pub mod grip;
pub mod keys;
pub mod metrics;
pub mod poller;
pub mod protocol;
pub mod publisher;
pub mod pushpin;
pub mod routes;
pub mod scheduler;
pub mod sse;
pub mod startup;
pub mod stats;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod woh;
