//! Errors shared across the crate.
//!
//! Every failure condition is a small struct of its own (so callers can match on the
//! type with [`find_cause`]) and everything crosses service boundaries as a [`BoxError`],
//! like the rest of tower.
//!
//! # Examples
//!
//! ```
//! use tower_lb::error::{find_cause, is_caused_by, BoxError};
//! use tower_lb::balance::error::NoAvailableTarget;
//!
//! #[derive(Debug)]
//! struct Wrapper(BoxError);
//! impl std::fmt::Display for Wrapper {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("wrapped") }
//! }
//! impl std::error::Error for Wrapper {
//!     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> { Some(&*self.0) }
//! }
//!
//! let err: BoxError = Box::new(Wrapper(Box::new(NoAvailableTarget::new("api"))));
//! assert!(is_caused_by::<NoAvailableTarget>(&*err));
//! assert_eq!(find_cause::<NoAvailableTarget>(&*err).unwrap().group(), "api");
//! ```

use std::error::Error;

/// The boxed error type used throughout tower, and by every service in this crate.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// Walks `err` and its [`source`](Error::source) chain and returns the first cause of type `E`.
pub fn find_cause<'a, E: Error + 'static>(err: &'a (dyn Error + 'static)) -> Option<&'a E> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        cur = e.source();
    }
    None
}

/// Whether `err` or anything in its [`source`](Error::source) chain is of type `E`.
pub fn is_caused_by<E: Error + 'static>(err: &(dyn Error + 'static)) -> bool {
    find_cause::<E>(err).is_some()
}

/// A connection to a target could not be established: nothing of the request was sent, so it is
/// always safe to send it elsewhere.
///
/// Produced by `HttpClient` (feature `hyper`); wrap your own
/// client's connect errors in it to get the same treatment from retries and outlier detection.
///
/// ```
/// use tower_lb::error::{is_caused_by, ConnectFailed};
///
/// let err = ConnectFailed::new(std::io::Error::other("connection refused"));
/// assert_eq!(err.to_string(), "connection to target failed");
/// assert!(is_caused_by::<ConnectFailed>(&err));
/// ```
#[derive(Debug)]
pub struct ConnectFailed {
    source: BoxError,
}

impl ConnectFailed {
    /// Wraps the underlying connect error.
    pub fn new(source: impl Into<BoxError>) -> Self {
        ConnectFailed {
            source: source.into(),
        }
    }
}

impl std::fmt::Display for ConnectFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The source names the address; the message does not.
        f.write_str("connection to target failed")
    }
}

impl Error for ConnectFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// Why a request is the client's fault, not the target's (see [`ClientError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientErrorKind {
    /// The client's request body failed or ended before its declared length (an upload
    /// aborted mid-body).
    BodyAborted,
    /// The request cannot be sent as given (a scheme the target does not speak, a missing or
    /// invalid authority, a head the HTTP encoder refuses).
    InvalidRequest,
    /// The request's body is larger than allowed.
    BodyTooLarge,
    /// The request's header section is larger than allowed.
    HeadersTooLarge,
}

/// An attempt failed because of the request, not the target: it never counts against a
/// target (outlier detection, breaker, latency penalty, failure counters) and is never
/// retried. Classified as [`Outcome::Client`](crate::classify::Outcome::Client) and answered
/// with a `400`, `413` or `431` by [`error_response`](crate::http::error_response).
///
/// Produced by `HttpClient` (feature `hyper`); wrap your own client's request-side errors in
/// it to get the same treatment.
///
/// ```
/// use tower_lb::error::{find_cause, ClientError, ClientErrorKind};
///
/// let err = ClientError::new(ClientErrorKind::BodyAborted, std::io::Error::other("reset by peer"));
/// assert_eq!(err.to_string(), "request body aborted by the client");
/// assert_eq!(find_cause::<ClientError>(&err).unwrap().kind(), ClientErrorKind::BodyAborted);
/// ```
#[derive(Debug)]
pub struct ClientError {
    kind: ClientErrorKind,
    source: Option<BoxError>,
}

impl ClientError {
    /// A client fault of this kind, caused by `source`.
    pub fn new(kind: ClientErrorKind, source: impl Into<BoxError>) -> Self {
        ClientError {
            kind,
            source: Some(source.into()),
        }
    }

    /// A client fault of this kind with no underlying error.
    pub fn from_kind(kind: ClientErrorKind) -> Self {
        ClientError { kind, source: None }
    }

    /// What was wrong with the request.
    pub fn kind(&self) -> ClientErrorKind {
        self.kind
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            ClientErrorKind::BodyAborted => "request body aborted by the client",
            ClientErrorKind::InvalidRequest => "request cannot be sent as given",
            ClientErrorKind::BodyTooLarge => "request body too large",
            ClientErrorKind::HeadersTooLarge => "request headers too large",
        })
    }
}

impl Error for ClientError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}
