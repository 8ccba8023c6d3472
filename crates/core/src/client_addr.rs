//! The client's address behind trusted proxies, and the key a client is
//! counted under by rate limits. Pure: the caller passes the TCP peer and the
//! raw header values.
//!
//! Only a peer inside `trusted` may speak for someone else. The one header
//! the operator's proxies write (`X-Forwarded-For` by default, or RFC 7239
//! `Forwarded`) is read from the right (the hop nearest to us) and the first
//! address that is not itself a trusted proxy is the client: everything to
//! its left was written by the client and proves nothing. The other header is
//! never read, because most proxies append to one and pass the other through
//! as the client sent it. A request from an untrusted peer is that peer,
//! whatever its headers say.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr};

/// Most list entries read from the forwarding headers (a longer chain is cut
/// from the left, which only client-written entries can be).
const MAX_HOPS: usize = 32;

/// Which header the trusted proxies write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyHeader {
    #[default]
    XForwardedFor,
    Forwarded,
}

impl ProxyHeader {
    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Some(Self::XForwardedFor),
            "forwarded" => Some(Self::Forwarded),
            _ => None,
        }
    }
}

/// An address as a client is judged by: an IPv4-mapped IPv6 address is its
/// IPv4 address; nothing else is rewritten (`::1` stays `::1`).
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The client's address given the TCP `peer` and the values of every
/// `header` line, in order (raw bytes: a line a client filled with odd bytes
/// cannot hide the entries our proxies appended to its right).
pub fn client_address(
    peer: IpAddr,
    header: ProxyHeader,
    values: &[&[u8]],
    trusted: &[IpNet],
) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let text: Vec<String> = values
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let elements = text.iter().flat_map(|v| v.split(','));
    let hops: Vec<Option<IpAddr>> = match header {
        ProxyHeader::Forwarded => elements.map(forwarded_for).collect(),
        ProxyHeader::XForwardedFor => elements.map(|s| parse_node(s.trim())).collect(),
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

    const XFF: ProxyHeader = ProxyHeader::XForwardedFor;
    const FWD: ProxyHeader = ProxyHeader::Forwarded;

    fn at(peer: &str, header: ProxyHeader, values: &[&str], trusted: &[IpNet]) -> IpAddr {
        let raw: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        client_address(ip(peer), header, &raw, trusted)
    }

    #[test]
    fn an_untrusted_peer_cannot_choose_its_address() {
        let trusted = parse_cidrs("10.0.0.0/8").expect("cidrs");
        for (h, v) in [
            (FWD, "for=1.1.1.1"),
            (XFF, "1.1.1.1"),
            (XFF, "10.0.0.1, 1.1.1.1"),
        ] {
            assert_eq!(at("203.0.113.9", h, &[v], &trusted), ip("203.0.113.9"));
        }
        // No trusted proxies configured (the default): nobody can.
        assert_eq!(at("10.0.0.1", XFF, &["1.1.1.1"], &[]), ip("10.0.0.1"));
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let trusted = parse_cidrs("10.0.0.0/8,::1/128").expect("cidrs");
        let peer = "10.0.0.2";
        // The client wrote "6.6.6.6" itself; the proxy appended the real peer.
        assert_eq!(
            at(peer, XFF, &["6.6.6.6, 198.51.100.7"], &trusted),
            ip("198.51.100.7")
        );
        // Two of our proxies in a row are skipped.
        assert_eq!(
            at(peer, XFF, &["6.6.6.6, 198.51.100.7, 10.0.0.9"], &trusted),
            ip("198.51.100.7")
        );
        // Several header lines are one list, in order.
        assert_eq!(
            at(peer, XFF, &["6.6.6.6", "198.51.100.7"], &trusted),
            ip("198.51.100.7")
        );
        // Forwarded, with ports, quotes and IPv6.
        assert_eq!(
            at(
                peer,
                FWD,
                &["for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https"],
                &trusted
            ),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(
            at(peer, FWD, &["for=198.51.100.7:8080;by=10.0.0.2"], &trusted),
            ip("198.51.100.7")
        );
        // Only our proxies in the list: the left-most of them.
        assert_eq!(at(peer, XFF, &["10.1.1.1"], &trusted), ip("10.1.1.1"));
        // Nothing readable from our proxies: the peer itself.
        assert_eq!(at(peer, XFF, &["nonsense"], &trusted), ip(peer));
        assert_eq!(at(peer, FWD, &["for=unknown"], &trusted), ip(peer));
        assert_eq!(at(peer, XFF, &[], &trusted), ip(peer));
        // A local proxy over IPv6 loopback is trusted as configured.
        assert_eq!(
            at("::1", XFF, &["198.51.100.7"], &trusted),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn a_client_cannot_choose_its_address_through_the_header_our_proxy_does_not_write() {
        let trusted = parse_cidrs("10.0.0.0/8").expect("cidrs");
        // The proxy appends X-Forwarded-For and passes the client's Forwarded on.
        let raw: Vec<&[u8]> = vec![b"203.0.113.66"];
        assert_eq!(
            client_address(ip("10.0.0.2"), XFF, &raw, &trusted),
            ip("203.0.113.66")
        );
        // Odd bytes written by the client cannot hide what the proxy appended.
        let odd: Vec<&[u8]> = vec![b"\xff\xfe6.6.6.6, 203.0.113.66"];
        assert_eq!(
            client_address(ip("10.0.0.2"), XFF, &odd, &trusted),
            ip("203.0.113.66")
        );
        assert_eq!(ProxyHeader::parse("Forwarded"), Some(FWD));
        assert_eq!(ProxyHeader::parse("x-real-ip"), None);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        assert_eq!(
            canonical(ip("::1")),
            ip("::1"),
            "loopback is not an IPv4 address"
        );
        assert_eq!(canonical(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
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
