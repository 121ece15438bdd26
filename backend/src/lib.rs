//! restream: turns polling REST APIs into subscribable real-time streams behind Pushpin.
//!
//! # Layout
//! - [`auth`] — subscriber tokens (JWT) and which channels need one.
//! - [`protocol`] — the client protocol (`subscribe`, `unsubscribe`, ...; `ready`, `error`, ...).
//! - [`channel`] — canonical, reversible channel ids.
//! - [`connection`] — one WOH request for one connection; subscriptions kept in Pushpin meta.
//! - [`pushpin`] — everything that speaks to Pushpin: the WOH codec, GRIP, SSE, the stats
//!   socket, the publisher, and the Pushpin child process of `restream dev` and the tests.
//! - [`demand`] — which channels have subscribers, from Pushpin's stats and subscribe hints.
//! - [`scheduler`] / [`poller`] — one poll loop per active channel (a writer, for push channels).
//! - [`push`] — push channels: batches published over HTTP or read from SQS, committed by the
//!   channel's writer through the same change pipeline.
//! - [`fetcher`] — the fetcher contract and its kinds: `process` (`functions/<dir>/main.py`),
//!   `http` (declarative `channels/*.toml`), `lambda` (AWS Lambda).
//! - [`authoring`] — `restream fetchers list | run | new` for fetcher authors.
//! - [`publish_cli`] — `restream publish`: one batch from stdin to a push channel's API.
//! - [`cluster`] — cluster mode: channel leases, replica membership and hand-over behind the
//!   `Leases` trait (DynamoDB, or in memory for tests); the Pushpins other replicas advertise.
//! - [`discovery`] — finding fetchers of every configured kind, refreshed in the background.
//! - [`changes`] / [`store`] — change detection and durable item state (redb, DynamoDB).
//! - [`budget`] — shared upstream rate budgets per key set.
//! - [`keys`] — API keys for fetchers (local file or S3).
//! - [`aws`] — one AWS SDK configuration for the DynamoDB, S3 and Lambda adapters.
//! - [`status`] / [`metrics`] — what each poller last did (status API) and Prometheus metrics.
//! - [`read_cache`] / [`janitor`] — the items/status API's cache per seq; forgetting inactive
//!   channels (memory) and sweeping expired ones (store).
//! - [`memory`] — handing the allocator's free pages back to the operating system.
//! - [`snapshot_cache`] — channels' current snapshots, sent inline to fresh WebSocket
//!   subscribers.
//! - [`config`], [`telemetry`], [`startup`], [`routes`] — settings, logs (and CloudWatch EMF
//!   metric lines), wiring, HTTP (the public routes, and the private metrics listener).
//! - [`abuse`] — abuse bounds on the subscribe path: channel caps, subscribe churn, snapshot
//!   re-sends, SSE opens per client address.
//! - [`edge`] — who may call: allowed origins (CORS, WebSocket `Origin`), Pushpin's
//!   `Grip-Sig`, the cluster secret.
//! - [`supervisor`] — essential tasks: one that dies fails `/readyz` and stops the process.

pub mod abuse;
pub mod archive;
pub mod auth;
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
pub mod edge;
pub mod fetcher;
pub mod history;
pub mod janitor;
pub mod keys;
pub mod memory;
pub mod metrics;
pub mod poller;
pub mod protocol;
pub mod publish_cli;
pub mod push;
pub mod pushpin;
pub mod read_cache;
pub mod routes;
pub mod scheduler;
pub mod snapshot_cache;
pub mod startup;
pub mod status;
pub mod store;
pub mod supervisor;
pub mod telemetry;
