//! Everything that speaks to Pushpin: the WebSocket-over-HTTP codec, GRIP, SSE framing, the
//! stats socket, publishing, and the Pushpin child process of `restream dev` and the tests.
//!
//! - [`woh`] — WebSocket-over-HTTP codec for the bodies Pushpin exchanges with us.
//! - [`grip`] — GRIP control messages and publish items.
//! - [`sse`] — Server-Sent Events over GRIP (`Grip-Hold: stream`, `Last-Event-ID`).
//! - [`stats`] — Pushpin's stats socket: subscription reports that feed demand.
//! - [`publisher`] — publishing to Pushpin over ZeroMQ or HTTP.
//! - [`process`] — an isolated Pushpin child process for `restream dev` and tests.

pub mod grip;
pub mod process;
pub mod publisher;
pub mod sse;
pub mod stats;
pub mod woh;

pub use process::{PushpinOptions, PushpinProcess};
