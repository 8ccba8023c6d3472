//! Who a TLS client certificate names (its CN and SANs), read once when the
//! connection is accepted (`http/serve.rs`) and checked by the extractors
//! that trust a gateway or an operator by certificate (`auth/`). Plain data
//! below both, so neither the HTTP layer nor `auth/` imports start-up.

/// Who is on the other end of a mutually authenticated connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub common_name: Option<String>,
    pub sans: Vec<String>,
}

impl ClientIdentity {
    /// Does this identity carry `name` as its CN or one of its SANs?
    pub fn is(&self, name: &str) -> bool {
        self.common_name.as_deref() == Some(name) || self.sans.iter().any(|s| s == name)
    }

    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let sans = match cert.subject_alternative_name() {
            Ok(Some(ext)) => ext
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(s)
                    | x509_parser::extensions::GeneralName::URI(s) => Some((*s).to_owned()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Some(Self { common_name, sans })
    }
}
