//! End-to-end tests through a real Pushpin: one integration binary, one module per flow.

#[path = "../emulators/mod.rs"]
mod emulators;
mod support;

mod abuse;
mod admin;
mod archive;
mod auth;
mod aws;
mod bad_input;
mod browser;
mod changes;
mod cluster;
mod cluster_rolling;
mod edge;
mod fanout;
mod fetcher_failures;
mod history;
mod history_access;
mod history_admin;
mod history_archive;
mod history_aws;
mod history_bad_input;
mod history_coalesced;
mod history_ranges;
mod history_support;
mod http_api;
mod item_pages;
mod keep_alive;
mod keys;
mod lifecycle;
mod metrics;
mod ops;
mod politeness;
mod push;
mod push_auth;
mod push_bad_input;
mod push_cluster;
mod push_concurrency;
mod push_crash;
mod push_events;
mod push_ids;
mod push_queue;
mod restart;
mod smoke;
mod sse;
