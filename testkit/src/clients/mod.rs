//! Clients of a running stack: WebSocket ([`ws`]), Server-Sent Events ([`sse`]), and plain
//! HTTP JSON and `/metrics` ([`http`]); every protocol message they see is checked against the
//! protocol's JSON Schemas ([`schema`]).

pub mod http;
pub mod schema;
pub mod sse;
pub mod ws;
