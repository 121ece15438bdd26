//! Clients of a running stack: WebSocket ([`ws`]), Server-Sent Events ([`sse`]), and plain
//! HTTP JSON and `/metrics` ([`http`]).

pub mod http;
pub mod sse;
pub mod ws;
