//! Free loopback ports: one for a listener, or a block of five for Pushpin's sockets. Both
//! are picked below Linux's ephemeral range (32768+), where the kernel never puts the local end
//! of an outgoing connection: a port picked there could be taken by any test's client between
//! the pick and its listener's bind (seen as Pushpin's condure exiting at startup in CI).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::Error;

/// Single ports come from 12000–19999, blocks from 20000–31999.
const SINGLE_FROM: u16 = 12000;
const SINGLES: u64 = 8000;
const BLOCK_FROM: u16 = 20000;
const BLOCKS: u64 = 12000;
const BLOCK_LEN: u16 = 5;

/// A local port nobody is listening on, and never handed out before in this process: tests
/// running side by side pick ports before their servers bind them (a backend binds its port
/// only after Pushpin is up), so a port free at one test's pick could otherwise go to another
/// test too. Panics when the machine cannot bind loopback at all (nothing else in a test would
/// work either).
pub fn free_port() -> u16 {
    if let Some(port) = pick(SINGLE_FROM, SINGLES, 1) {
        return port;
    }
    // Every one taken: the kernel's pick.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// Five consecutive free ports for Pushpin's ZeroMQ and HTTP publish sockets, below Linux's
/// ephemeral range (32768+), so no outgoing connection or port-0 listener (the emulators, the
/// Lambda runtime servers) can take one between this check and Pushpin's start; like
/// [`free_port`]'s, never handed out twice in this process.
pub fn try_free_port_block() -> Result<u16, Error> {
    pick(BLOCK_FROM, BLOCKS, BLOCK_LEN).ok_or(Error::NoPortBlock)
}

/// The first of `len` consecutive ports, from `from` to `from + span - 1`, that are free now and
/// were never handed out by this process (they are recorded as handed out).
fn pick(from: u16, span: u64, len: u16) -> Option<u16> {
    // Each pick in a process starts elsewhere, so picks spread over the range.
    static PICKS: AtomicU64 = AtomicU64::new(0);
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let seed = (u64::from(std::process::id()) ^ nanos())
        .wrapping_add(PICKS.fetch_add(1, Ordering::Relaxed).wrapping_mul(104_729));
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..500u64 {
        let base = from + (seed.wrapping_mul(2654435761).wrapping_add(i * 7919) % span) as u16;
        let ports = base..base + len;
        let free = |p: u16| !handed_out.contains(&p) && TcpListener::bind(("127.0.0.1", p)).is_ok();
        if ports.clone().all(free) {
            handed_out.extend(ports);
            return Some(base);
        }
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_and_apart() {
        let picks: Vec<u16> = (0..50).map(|_| free_port()).collect();
        assert!(
            picks.iter().all(|p| (12000..20000).contains(p)),
            "{picks:?}"
        );
        let distinct: BTreeSet<_> = picks.iter().collect();
        assert_eq!(
            distinct.len(),
            picks.len(),
            "a port is handed out once: {picks:?}"
        );
        let blocks: Vec<u16> = (0..20).map(|_| free_port_block()).collect();
        assert!(
            blocks.iter().all(|b| (20000..32000).contains(b)),
            "{blocks:?}"
        );
        let mut ports: Vec<u16> = blocks.iter().flat_map(|b| *b..b + 5).collect();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 100, "blocks never share a port: {blocks:?}");
    }
}
