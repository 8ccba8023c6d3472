//! The destination address policy (SSRF guard): which hosts and addresses a
//! webhook may be delivered to. Judged on parsed values, never raw strings.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;
use url::{Host, Url};

/// Names refused whatever they resolve to.
const BLOCKED_NAMES: &[&str] = &["localhost", "metadata.google.internal"];
/// Longest URL accepted at registration.
pub const MAX_URL_LEN: usize = 2048;
/// What a tenant is told of any refused host or address, and of a name that
/// does not resolve: one text, so that registration and delivery errors
/// cannot be used to map internal names and ranges.
pub const NOT_ALLOWED: &str = "destination is not allowed or not reachable";

fn blocked_nets() -> &'static [IpNet] {
    static NETS: OnceLock<Vec<IpNet>> = OnceLock::new();
    NETS.get_or_init(|| {
        // IANA IPv4 and IPv6 special-purpose address registries (SPEC §6).
        [
            "0.0.0.0/8",
            "10.0.0.0/8",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "172.16.0.0/12",
            "192.0.0.0/24",
            "192.0.2.0/24",
            "192.88.99.0/24",
            "192.168.0.0/16",
            "198.18.0.0/15",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "224.0.0.0/4",
            "240.0.0.0/4",
            "::/128",
            "::1/128",
            "64:ff9b::/96",
            "64:ff9b:1::/48",
            "100::/64",
            "2001::/23",
            "2001:db8::/32",
            "2002::/16",
            "3fff::/20",
            "5f00::/16",
            "fc00::/7",
            "fe80::/10",
            "fec0::/10",
            "ff00::/8",
        ]
        .iter()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| unreachable!("constant CIDR {s}"))
        })
        .collect()
    })
}

/// IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) addresses
/// are judged as the IPv4 address inside them.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let mapped = s[..5] == [0; 5] && s[5] == 0xffff;
    let compatible = s[..6] == [0; 6];
    (mapped || compatible).then(|| {
        let o = v6.octets();
        Ipv4Addr::new(o[12], o[13], o[14], o[15])
    })
}

/// Why a destination was refused. Messages name the rule, never a secret;
/// a refused host or address says no more than `NOT_ALLOWED`.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum DestinationError {
    #[error("url is not valid")]
    Invalid,
    #[error("url is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("url scheme must be https{}", if *.0 { " or http" } else { "" })]
    Scheme(bool),
    #[error("url must not contain credentials")]
    Userinfo,
    #[error("url must not contain a fragment")]
    Fragment,
    #[error("url has no host")]
    NoHost,
    #[error("{NOT_ALLOWED}")]
    BlockedName,
    #[error("{NOT_ALLOWED}")]
    BlockedAddress,
}

/// The policy: blocked special-purpose ranges, minus an explicit allowlist
/// (development and tests only; production refuses a non-empty allowlist).
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allow: Vec<IpNet>,
    allow_http: bool,
}

impl AddressPolicy {
    pub fn new(allow: Vec<IpNet>, allow_http: bool) -> Self {
        Self { allow, allow_http }
    }

    /// The strict production policy: https only, nothing exempt.
    pub fn strict() -> Self {
        Self::default()
    }

    /// Is this address one we may connect to?
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), DestinationError> {
        let canon = canonical(ip);
        if self
            .allow
            .iter()
            .any(|n| n.contains(&canon) || n.contains(&ip))
        {
            return Ok(());
        }
        if blocked_nets()
            .iter()
            .any(|n| n.contains(&canon) || n.contains(&ip))
            || is_broadcast(canon)
        {
            return Err(DestinationError::BlockedAddress);
        }
        Ok(())
    }

    /// Every resolved address must pass: one blocked address refuses the name.
    pub fn check_resolved(&self, addrs: &[IpAddr]) -> Result<(), DestinationError> {
        if addrs.is_empty() {
            return Err(DestinationError::NoHost);
        }
        addrs.iter().try_for_each(|ip| self.check_ip(*ip))
    }

    /// Checks a host as parsed from a URL: IP literals by address, names by
    /// the blocked-name list (their addresses are checked when resolved).
    pub fn check_host(&self, host: &Host<&str>) -> Result<(), DestinationError> {
        match host {
            Host::Ipv4(v4) => self.check_ip(IpAddr::V4(*v4)),
            Host::Ipv6(v6) => self.check_ip(IpAddr::V6(*v6)),
            Host::Domain(name) => check_name(name),
        }
    }

    /// Validates a destination URL at registration and before every try.
    pub fn check_url(&self, raw: &str) -> Result<Url, DestinationError> {
        if raw.len() > MAX_URL_LEN {
            return Err(DestinationError::TooLong);
        }
        let url = Url::parse(raw).map_err(|_| DestinationError::Invalid)?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(DestinationError::Scheme(self.allow_http)),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(DestinationError::Userinfo);
        }
        if url.fragment().is_some() {
            return Err(DestinationError::Fragment);
        }
        let host = url.host().ok_or(DestinationError::NoHost)?;
        self.check_host(&host)?;
        Ok(url)
    }
}

fn is_broadcast(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4 == Ipv4Addr::BROADCAST)
}

/// Names are compared lower-cased with trailing dots stripped; subdomains of
/// `localhost` are reserved for loopback (RFC 6761) and refused too.
pub fn check_name(name: &str) -> Result<(), DestinationError> {
    let norm = name.trim_end_matches('.').to_ascii_lowercase();
    if norm.is_empty() {
        return Err(DestinationError::NoHost);
    }
    if BLOCKED_NAMES.contains(&norm.as_str()) || norm.ends_with(".localhost") {
        return Err(DestinationError::BlockedName);
    }
    // A name that is really an address in disguise (some resolvers accept these).
    if let Ok(ip) = norm.parse::<IpAddr>() {
        return AddressPolicy::strict().check_ip(ip);
    }
    Ok(())
}

/// Parses a comma-separated CIDR list (`HOOKWARDEN_ALLOWED_DESTINATIONS`);
/// a bare address means a single host.
pub fn parse_cidrs(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| {
                    s.parse::<IpAddr>().map(|ip| match ip {
                        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(v4)),
                        IpAddr::V6(v6) => IpNet::V6(Ipv6Net::from(v6)),
                    })
                })
                .map_err(|_| format!("{s:?} is not a CIDR or IP address"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict_http() -> AddressPolicy {
        AddressPolicy::new(vec![], true)
    }

    #[test]
    fn refuses_every_blocked_form() {
        let p = strict_http();
        let refused = [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://0x7f.0.0.1/",
            "http://127.0.0.1./",
            "http://0/",
            "http://0.0.0.0/",
            "http://10.0.0.1/",
            "http://100.64.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.0.0.8/",
            "http://192.0.2.1/",
            "http://192.88.99.1/",
            "http://192.168.1.1/",
            "http://198.18.0.1/",
            "http://198.51.100.7/",
            "http://203.0.113.9/",
            "http://224.0.0.1/",
            "http://240.0.0.1/",
            "http://255.255.255.255/",
            "http://[::]/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[64:ff9b:1::1]/",
            "http://[100::1]/",
            "http://[2001::1]/",
            "http://[2001:db8::1]/",
            "http://[2002:7f00:1::]/",
            "http://[3fff::1]/",
            "http://[5f00::1]/",
            "http://[fc00::1]/",
            "http://[fd00:ec2::254]/",
            "http://[fe80::1]/",
            "http://[fec0::1]/",
            "http://[ff02::1]/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://localhost../",
            "http://api.localhost/",
            "http://metadata.google.internal/",
            "http://METADATA.google.internal./",
            "http://%6c%6f%63%61%6c%68%6f%73%74/",
            "http://[0:0:0:0:0:ffff:127.0.0.1]/",
        ];
        for url in refused {
            assert!(p.check_url(url).is_err(), "{url} must be refused");
        }
    }

    #[test]
    fn accepts_public_destinations() {
        let p = AddressPolicy::strict();
        for url in [
            "https://example.com/hook",
            "https://93.184.216.34/x",
            "https://[2606:4700::1111]/",
            "https://example.com:8443/a?b=c",
        ] {
            assert!(p.check_url(url).is_ok(), "{url} must be accepted");
        }
    }

    #[test]
    fn scheme_userinfo_and_fragment_rules() {
        let p = AddressPolicy::strict();
        assert_eq!(
            p.check_url("http://example.com/").err(),
            Some(DestinationError::Scheme(false))
        );
        assert_eq!(
            p.check_url("ftp://example.com/").err(),
            Some(DestinationError::Scheme(false))
        );
        assert_eq!(
            p.check_url("https://user:pw@example.com/").err(),
            Some(DestinationError::Userinfo)
        );
        assert_eq!(
            p.check_url("https://user@example.com/").err(),
            Some(DestinationError::Userinfo)
        );
        assert_eq!(
            p.check_url("https://example.com/#x").err(),
            Some(DestinationError::Fragment)
        );
        assert_eq!(
            p.check_url("not a url").err(),
            Some(DestinationError::Invalid)
        );
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(p.check_url(&long).err(), Some(DestinationError::TooLong));
    }

    #[test]
    fn allowlist_exempts_only_what_it_names() {
        let p = AddressPolicy::new(parse_cidrs("127.0.0.0/8, ::1").expect("cidrs"), true);
        assert!(p.check_url("http://127.0.0.1:9000/").is_ok());
        assert!(p.check_ip("::ffff:127.0.0.1".parse().expect("ip")).is_ok());
        assert!(p.check_ip("::1".parse().expect("ip")).is_ok());
        assert!(p.check_ip("10.0.0.1".parse().expect("ip")).is_err());
        // Names stay refused even when their addresses would be allowed.
        assert!(p.check_url("http://localhost:9000/").is_err());
    }

    #[test]
    fn resolved_sets_fail_when_any_address_is_blocked() {
        let p = AddressPolicy::strict();
        let public: IpAddr = "93.184.216.34".parse().expect("ip");
        let private: IpAddr = "10.1.2.3".parse().expect("ip");
        assert!(p.check_resolved(&[public]).is_ok());
        assert!(p.check_resolved(&[public, private]).is_err());
        assert!(p.check_resolved(&[]).is_err());
    }

    #[test]
    fn parse_cidrs_rejects_garbage() {
        assert!(parse_cidrs("10.0.0.0/8,nope").is_err());
        assert_eq!(parse_cidrs("").expect("empty").len(), 0);
    }
}
