//! How each kind of setting is read (the `deserialize_with` of `Settings`'
//! fields): durations, sizes, CIDR lists, addresses, the enums of other
//! modules, and `""` as "unset". An error names the bad value, except for
//! secrets, whose readers never fail on a value they were given.

use crate::boot::tls::ClientAuth;
use crate::outbound::producers::{Grants, ProducerGrant};
use crate::shared::pump::LaneShare;
use hookwarden_core::client_addr::ProxyHeader;
use hookwarden_core::destination::parse_cidrs;
use hookwarden_core::duration::{parse_duration, parse_schedule};
use ipnet::IpNet;
use secrecy::SecretString;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// A value as it was written. The environment types what looks like a
/// number or a boolean (`HOOKWARDEN_DELIVERY_TIMEOUT=5`), so those are taken
/// back as text for the setting's own parser to judge, and say why not.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Text;
    impl Visitor<'_> for Text {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i128<E: de::Error>(self, v: i128) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u128<E: de::Error>(self, v: u128) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_char<E: de::Error>(self, v: char) -> Result<String, E> {
            Ok(v.to_string())
        }
        // Code that sets nothing (`RawConfig::set` with `None`) leaves it unset.
        fn visit_none<E: de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
        fn visit_unit<E: de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
    }
    d.deserialize_any(Text)
}

/// `""` is unset; anything else is the value (a path, a name, a secret).
pub fn optional<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: From<String>,
{
    let t = text(d)?;
    Ok((!t.is_empty()).then(|| T::from(t)))
}

pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_duration(&text(d)?).map_err(de::Error::custom)
}

pub fn schedule<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    parse_schedule(&text(d)?).map_err(de::Error::custom)
}

pub fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    parse_bytes(&text(d)?).map_err(de::Error::custom)
}

pub fn cidrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    parse_cidrs(&text(d)?).map_err(de::Error::custom)
}

pub fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let t = text(d)?;
    t.parse()
        .map_err(|e| de::Error::custom(format!("{t:?} is not an address and port: {e}")))
}

/// `""` is unset; anything else an address and port.
pub fn optional_socket_addr<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let t = text(d)?;
    if t.is_empty() {
        return Ok(None);
    }
    t.parse()
        .map(Some)
        .map_err(|e| de::Error::custom(format!("{t:?} is not an address and port: {e}")))
}

/// Space- or comma-separated origins (`https://host[:port]`, `http://` too):
/// nothing else, since each goes into a `Content-Security-Policy` header.
pub fn origins<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    parse_origins(&text(d)?).map_err(de::Error::custom)
}

pub fn parse_origins(text: &str) -> Result<Vec<String>, String> {
    text.split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(|s| {
            let url = url::Url::parse(s).map_err(|e| format!("{s:?} is not an origin: {e}"))?;
            let origin = url.origin().ascii_serialization();
            let bare = matches!(url.scheme(), "http" | "https")
                && url.username().is_empty()
                && url.password().is_none()
                && url.query().is_none()
                && url.fragment().is_none()
                && url.path() == "/"
                && s.trim_end_matches('/') == origin;
            if bare {
                Ok(origin)
            } else {
                Err(format!(
                    "{s:?} is not an origin (scheme://host[:port] only)"
                ))
            }
        })
        .collect()
}

pub fn proxy_header<'de, D: Deserializer<'de>>(d: D) -> Result<ProxyHeader, D::Error> {
    let t = text(d)?;
    ProxyHeader::parse(&t).ok_or_else(|| {
        de::Error::custom(format!(
            "{t:?} is neither x-forwarded-for nor forwarded (the header your proxies write)"
        ))
    })
}

pub fn client_auth<'de, D: Deserializer<'de>>(d: D) -> Result<ClientAuth, D::Error> {
    ClientAuth::parse(&text(d)?).map_err(de::Error::custom)
}

/// A fixed number, or `""` for the fair share.
pub fn lane_share<'de, D: Deserializer<'de>>(d: D) -> Result<LaneShare, D::Error> {
    let t = text(d)?;
    if t.is_empty() {
        return Ok(LaneShare::Fair);
    }
    t.trim()
        .parse()
        .map(LaneShare::Fixed)
        .map_err(|_| de::Error::custom(format!("{t:?} is not a whole number")))
}

/// Comma-separated secrets; blanks between commas are skipped.
pub fn secret_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SecretString>, D::Error> {
    Ok(text(d)?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| SecretString::from(s.to_owned()))
        .collect())
}

/// The database URL: its scheme is checked, its text (a password) never shown.
pub fn database_url<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    let url = text(d)?;
    if ["sqlite:", "postgres://", "postgresql://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
    {
        Ok(SecretString::from(url))
    } else {
        Err(de::Error::custom(
            "must start with sqlite:, postgres:// or postgresql://",
        ))
    }
}

/// An `http(s)://` URL, or `""` for unset. Production also refuses `http://`.
pub fn http_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let Some(t) = optional::<D, String>(d)? else {
        return Ok(None);
    };
    // A URL may carry credentials: the error shows it without them.
    let shown = super::without_credentials(&t);
    match url::Url::parse(&t) {
        Ok(u) if u.scheme() == "https" || u.scheme() == "http" => Ok(Some(t)),
        Ok(_) => Err(de::Error::custom(format!(
            "{shown:?} is not an https:// URL"
        ))),
        Err(e) => Err(de::Error::custom(format!("not a URL: {e}"))),
    }
}

/// `[[producers]]`, checked as a whole.
pub fn grants<'de, D: Deserializer<'de>>(d: D) -> Result<Grants, D::Error> {
    Grants::new(Vec::<ProducerGrant>::deserialize(d)?).map_err(de::Error::custom)
}

const BYTE_UNITS: [(&str, u64); 4] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
];

/// A size as configuration writes it: bytes, or a whole number of `KiB`,
/// `MiB`, `GiB` or `TiB` (binary units only: `GB` would be ambiguous).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let err =
        || format!("{t:?} is not a size (bytes, or a number with KiB, MiB, GiB or TiB, e.g. 1GiB)");
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let size = match unit.trim() {
        "" => 1,
        u => {
            BYTE_UNITS
                .iter()
                .find(|(name, _)| *name == u)
                .ok_or_else(err)?
                .1
        }
    };
    n.checked_mul(size).ok_or_else(err)
}

/// Formats a size the way `parse_bytes` reads it (largest exact unit).
pub fn format_bytes(n: u64) -> String {
    BYTE_UNITS
        .iter()
        .find(|(_, size)| n >= *size && n.is_multiple_of(*size))
        .map_or_else(
            || n.to_string(),
            |(unit, size)| format!("{}{unit}", n / size),
        )
}
