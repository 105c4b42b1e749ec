//! Errors of the [server](super).

use crate::error::BoxError;

/// A server setting out of range (see [`ServerBuilder::build`](super::ServerBuilder::build)).
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid server configuration: {what}")]
pub struct InvalidServerConfig {
    what: &'static str,
}

impl InvalidServerConfig {
    pub(crate) fn new(what: &'static str) -> Self {
        InvalidServerConfig { what }
    }
}

/// A request body longer than the server's limit; the client gets a `413`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("request body longer than {limit} bytes")]
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

/// Certificates or a key that could not be loaded or used for TLS.
#[derive(Debug, thiserror::Error)]
#[error("tls: {what}")]
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
