//! Free loopback ports: one for a listener, or a block of five for Pushpin's sockets.

use std::net::TcpListener;

use crate::Error;

/// A local port nobody is listening on. Panics when the machine cannot bind loopback at all
/// (nothing else in a test would work either).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// Five consecutive free ports for Pushpin's ZeroMQ and HTTP publish sockets, below Linux's
/// ephemeral range (32768+), so no outgoing connection or port-0 listener (the emulators, the
/// Lambda runtime servers) can take one between this check and Pushpin's start.
pub fn try_free_port_block() -> Result<u16, Error> {
    let seed = u64::from(std::process::id()) ^ nanos();
    for i in 0..500u64 {
        let base = 20000 + (seed.wrapping_mul(2654435761).wrapping_add(i * 7919) % 12000) as u16;
        if (0..5).all(|k| TcpListener::bind(("127.0.0.1", base + k)).is_ok()) {
            return Ok(base);
        }
    }
    Err(Error::NoPortBlock)
}

/// [`try_free_port_block`], panicking when there is none.
pub fn free_port_block() -> u16 {
    try_free_port_block().unwrap_or_else(|e| panic!("{e}"))
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
