//! Errors of the [server](super).

use std::fmt;

use crate::error::BoxError;

/// A server setting out of range (see [`ServerBuilder::build`](super::ServerBuilder::build)).
#[derive(Debug, Clone)]
pub struct InvalidServerConfig {
    what: &'static str,
}

impl InvalidServerConfig {
    pub(crate) fn new(what: &'static str) -> Self {
        InvalidServerConfig { what }
    }
}

impl fmt::Display for InvalidServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid server configuration: {}", self.what)
    }
}

impl std::error::Error for InvalidServerConfig {}

/// A request body longer than the server's limit; the client gets a `413`.
#[derive(Debug, Clone)]
pub struct BodyTooLarge {
    limit: u64,
}

impl BodyTooLarge {
    pub(crate) fn new(limit: u64) -> Self {
        BodyTooLarge { limit }
    }

    /// The limit that was exceeded, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request body longer than {} bytes", self.limit)
    }
}

impl std::error::Error for BodyTooLarge {}

/// Certificates or a key that could not be loaded or used for TLS.
#[derive(Debug)]
pub struct TlsError {
    what: &'static str,
    source: Option<BoxError>,
}

impl TlsError {
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn new(what: &'static str, source: Option<BoxError>) -> Self {
        TlsError { what, source }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tls: {}", self.what)
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}
