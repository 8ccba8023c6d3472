//! The client's address behind trusted proxies, and the key a client is
//! counted under by rate limits. Pure: the caller passes the TCP peer and the
//! raw header values.
//!
//! Only a peer inside `trusted` may speak for someone else. Its `Forwarded`
//! (RFC 7239) or, failing that, `X-Forwarded-For` list is read from the right
//! (the hop nearest to us) and the first address that is not itself a trusted
//! proxy is the client: everything to its left was written by the client and
//! proves nothing. A request from an untrusted peer is that peer, whatever
//! its headers say.

use crate::destination::canonical;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr};

/// Most list entries read from the forwarding headers (a longer chain is cut
/// from the left, which only client-written entries can be).
const MAX_HOPS: usize = 32;

/// The client's address given the TCP `peer`, the values of every
/// `Forwarded` header and of every `X-Forwarded-For` header, in order.
pub fn client_address(
    peer: IpAddr,
    forwarded: &[&str],
    x_forwarded_for: &[&str],
    trusted: &[IpNet],
) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<Option<IpAddr>> = if forwarded.iter().any(|v| !v.trim().is_empty()) {
        forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .map(forwarded_for)
            .collect()
    } else {
        x_forwarded_for
            .iter()
            .flat_map(|v| v.split(','))
            .map(|s| parse_node(s.trim()))
            .collect()
    };
    // From the right: skip our own proxies; the first other hop is the client.
    // An unreadable hop ends the walk at the last address we can vouch for.
    let mut client = peer;
    for hop in hops.iter().rev().take(MAX_HOPS) {
        match hop {
            Some(ip) => {
                client = canonical(*ip);
                if !is_trusted(&client) {
                    return client;
                }
            }
            None => return client,
        }
    }
    client
}

/// The `for=` node of one `Forwarded` element, if it is an address.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_node(v.trim().trim_matches('"')))
            .flatten()
    })
}

/// `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]`, `[2001:db8::1]:80`, `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return inside.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The key a client is counted under: an IPv4 address as it is, an IPv6
/// address by its /64 (one subscriber usually holds a whole /64, so counting
/// single addresses would give one client billions of keys).
pub fn limit_key(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The prefix refusals are aggregated under in the audit trail: IPv4 /24,
/// IPv6 /48.
pub fn audit_prefix(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::parse_cidrs;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_untrusted_peer_cannot_choose_its_address() {
        let trusted = parse_cidrs("10.0.0.0/8").expect("cidrs");
        for (fwd, xff) in [
            (vec!["for=1.1.1.1"], vec![]),
            (vec![], vec!["1.1.1.1"]),
            (vec![], vec!["10.0.0.1, 1.1.1.1"]),
        ] {
            assert_eq!(
                client_address(ip("203.0.113.9"), &fwd, &xff, &trusted),
                ip("203.0.113.9")
            );
        }
        // No trusted proxies configured (the default): nobody can.
        assert_eq!(
            client_address(ip("10.0.0.1"), &[], &["1.1.1.1"], &[]),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let trusted = parse_cidrs("10.0.0.0/8").expect("cidrs");
        let peer = ip("10.0.0.2");
        // The client wrote "6.6.6.6" itself; the proxy appended the real peer.
        assert_eq!(
            client_address(peer, &[], &["6.6.6.6, 198.51.100.7"], &trusted),
            ip("198.51.100.7")
        );
        // Two of our proxies in a row are skipped.
        assert_eq!(
            client_address(peer, &[], &["6.6.6.6, 198.51.100.7, 10.0.0.9"], &trusted),
            ip("198.51.100.7")
        );
        // Several header lines are one list, in order.
        assert_eq!(
            client_address(peer, &[], &["6.6.6.6", "198.51.100.7"], &trusted),
            ip("198.51.100.7")
        );
        // Forwarded wins over X-Forwarded-For, with ports, quotes and IPv6.
        assert_eq!(
            client_address(
                peer,
                &["for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https"],
                &["7.7.7.7"],
                &trusted
            ),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(
            client_address(peer, &["for=198.51.100.7:8080;by=10.0.0.2"], &[], &trusted),
            ip("198.51.100.7")
        );
        // Only our proxies in the list: the left-most of them.
        assert_eq!(
            client_address(peer, &[], &["10.1.1.1"], &trusted),
            ip("10.1.1.1")
        );
        // Garbage where the client would be: we stop at the last hop we trust.
        assert_eq!(client_address(peer, &[], &["nonsense"], &trusted), peer);
        assert_eq!(client_address(peer, &["for=unknown"], &[], &trusted), peer);
        assert_eq!(client_address(peer, &[], &[], &trusted), peer);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        assert_eq!(
            limit_key(ip("2001:db8:1:2:aaaa::1")),
            limit_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:2::1")),
            limit_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(limit_key(ip("::ffff:192.0.2.1")), "192.0.2.1");
        assert_eq!(audit_prefix(ip("192.0.2.77")), "192.0.2.0/24");
        assert_eq!(audit_prefix(ip("2001:db8:1:2::1")), "2001:db8:1::/48");
    }
}
