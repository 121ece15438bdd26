//! The client address a request is counted against: from `X-Forwarded-For`, trusting only the
//! entries our own proxies appended (Pushpin's `x_forwarded_for=append`, a load balancer's),
//! else the TCP peer. IPv6 clients are counted by their /64, which one client usually holds.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::config::ClientAddressFrom;

/// The address to count `x_forwarded_for` (the header's raw bytes, if any) and `peer` against.
/// With `trusted_hops` = N, the Nth entry from the end is the one the outermost trusted proxy
/// wrote; earlier entries came from the client and are ignored. A header with fewer entries
/// was written by the proxies alone, so its first entry is used.
pub fn client_address(
    from: ClientAddressFrom,
    trusted_hops: usize,
    x_forwarded_for: Option<&[u8]>,
    peer: Option<IpAddr>,
) -> Option<IpAddr> {
    let forwarded = match from {
        ClientAddressFrom::Peer => None,
        ClientAddressFrom::XForwardedFor => {
            x_forwarded_for.and_then(|h| trusted_entry(h, trusted_hops))
        }
    };
    forwarded.or(peer).map(bucket)
}

/// Entries longer than this are not addresses.
const MAX_HEADER_LEN: usize = 4096;

fn trusted_entry(header: &[u8], trusted_hops: usize) -> Option<IpAddr> {
    let text =
        std::str::from_utf8(header.get(header.len().saturating_sub(MAX_HEADER_LEN)..)?).ok()?;
    let mut entries: Vec<&str> = text.split(',').map(str::trim).collect();
    // Pushpin 1.36 re-applies `x_forwarded_for=append` on every WOH request of a connection,
    // so one proxy's entry can repeat; a run of equal entries is one hop.
    entries.dedup();
    let index = entries.len().saturating_sub(trusted_hops.max(1));
    parse_entry(entries.get(index)?)
}

/// `1.2.3.4`, `::1`, `1.2.3.4:5678`, `[::1]:5678`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// IPv4 as is (an IPv4-mapped IPv6 address as IPv4), IPv6 by its /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const XFF: ClientAddressFrom = ClientAddressFrom::XForwardedFor;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_entry_our_proxies_wrote_is_used() {
        let peer = Some(ip("127.0.0.1"));
        let h = b"6.6.6.6, 1.2.3.4".as_slice();
        assert_eq!(client_address(XFF, 1, Some(h), peer), Some(ip("1.2.3.4")));
        assert_eq!(client_address(XFF, 2, Some(h), peer), Some(ip("6.6.6.6")));
        assert_eq!(client_address(XFF, 3, Some(h), peer), Some(ip("6.6.6.6")));
        assert_eq!(
            client_address(ClientAddressFrom::Peer, 1, Some(h), peer),
            peer
        );
        assert_eq!(client_address(XFF, 1, None, peer), peer);
    }

    #[test]
    fn ports_brackets_and_ipv6_prefixes() {
        let none = None;
        assert_eq!(
            client_address(XFF, 1, Some(b"1.2.3.4:99"), none),
            Some(ip("1.2.3.4"))
        );
        assert_eq!(
            client_address(XFF, 1, Some(b"[2001:db8:1:2:3:4:5:6]:443"), none),
            Some(ip("2001:db8:1:2::"))
        );
        assert_eq!(
            client_address(XFF, 1, Some(b"::ffff:1.2.3.4"), none),
            Some(ip("1.2.3.4"))
        );
    }

    #[test]
    fn a_proxy_appending_once_per_request_is_one_hop() {
        let h = b"6.6.6.6, 1.2.3.4, 10.0.0.9, 10.0.0.9, 10.0.0.9".as_slice();
        assert_eq!(client_address(XFF, 2, Some(h), None), Some(ip("1.2.3.4")));
        assert_eq!(client_address(XFF, 1, Some(h), None), Some(ip("10.0.0.9")));
    }

    #[test]
    fn a_garbled_trusted_entry_falls_back_to_the_peer() {
        let peer = Some(ip("10.0.0.1"));
        for h in [&b"junk"[..], b"", b"1.2.3.4, ", b"\xff\xfe"] {
            assert_eq!(client_address(XFF, 1, Some(h), peer), peer, "{h:?}");
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(h in proptest::collection::vec(any::<u8>(), 0..200), hops in 0usize..5) {
            let _ = client_address(XFF, hops, Some(&h), None);
        }

        #[test]
        fn client_written_entries_never_win(prefix in "[ -~]{0,60}", last in any::<std::net::Ipv4Addr>()) {
            let h = format!("{prefix},{last}");
            prop_assert_eq!(client_address(XFF, 1, Some(h.as_bytes()), None), Some(IpAddr::V4(last)));
        }
    }
}
