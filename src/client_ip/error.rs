//! Errors of the client-IP configuration.

/// A trusted-proxy entry was neither a CIDR (`10.0.0.0/8`, `2001:db8::/32`) nor an IP address.
///
/// ```
/// use tower_lb::client_ip::TrustedProxies;
///
/// let err = TrustedProxies::new(["10.0.0.0/8", "10.0.0.0/33"]).unwrap_err();
/// assert_eq!(err.entry(), "10.0.0.0/33");
/// assert_eq!(err.to_string(), "invalid trusted proxy `10.0.0.0/33`: expected a CIDR or an IP address");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid trusted proxy `{entry}`: expected a CIDR or an IP address")]
pub struct InvalidTrustedProxy {
    entry: String,
}

impl InvalidTrustedProxy {
    pub(crate) fn new(entry: &str) -> Self {
        // Bound what a bad configuration value can make us keep and print.
        let entry = entry.chars().take(64).collect();
        InvalidTrustedProxy { entry }
    }

    /// The entry that did not parse (its first 64 characters).
    pub fn entry(&self) -> &str {
        &self.entry
    }
}
