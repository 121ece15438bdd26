//! Dev-only harness shared by `backend/tests` and `bench/`: one copy of each piece that starts
//! or talks to the things a test or benchmark runs against.
//!
//! # Layout
//! - [`app`] — the backend's HTTP state with nothing behind it, for in-process route tests.
//! - [`ports`] — free loopback ports, and blocks of them for Pushpin's sockets.
//! - [`process`] — child processes: spawned with a log file, waited for until an HTTP path
//!   answers, stopped by PID, their log shown when they fail.
//! - [`emulators`] — moto (DynamoDB, S3) and minilambda (Lambda), and AWS settings for them.
//! - [`dynamo`] — an interceptor logging the requests a DynamoDB client sends.
//! - [`upstream`] — the fake upstream API the fetchers and declarative channels read.
//! - [`backend`] — the backend binary (or any WebSocket-over-HTTP responder) as a process.
//! - [`stack`] — Pushpin in front of a backend, with the fake upstream, in one temp folder.
//! - [`push`] — push channel files, producer keys, publish tokens and an HTTP publisher.
//! - [`clients`] — WebSocket, SSE, HTTP JSON and `/metrics` clients.
//! - [`Error`] — why something did not start.
//!
//! Start-ups return [`Error`]; the constructors the tests call directly (`start_moto`,
//! `Upstream::start`, `Client::connect`, …) panic with the same message instead, as a test
//! helper should.

pub mod app;
pub mod backend;
pub mod clients;
pub mod dynamo;
pub mod emulators;
mod error;
pub mod ports;
pub mod process;
pub mod push;
pub mod stack;
pub mod upstream;

use std::path::PathBuf;

pub use error::Error;

/// The repository root (the kit is one of its folders).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ has a parent")
        .to_path_buf()
}
