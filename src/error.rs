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
/// Produced by `HttpClient` and `TargetClient` (feature `hyper`); wrap your own client's
/// connect errors in it to get the same treatment from retries and outlier detection.
///
/// A client that still holds the request's body untouched (not a byte of it polled) can hand
/// it back with [`with_body`](Self::with_body): the retry layer then sends it to another
/// target even when the body is too large to replay (see `docs/resilience.md`, "When a
/// request goes twice"). `TargetClient` always does.
///
/// ```
/// use tower_lb::error::{is_caused_by, ConnectFailed};
///
/// let err = ConnectFailed::new(std::io::Error::other("connection refused"));
/// assert_eq!(err.to_string(), "connection to target failed");
/// assert!(is_caused_by::<ConnectFailed>(&err));
///
/// let err = ConnectFailed::with_body(std::io::Error::other("refused"), String::from("upload"));
/// assert_eq!(err.take_body::<String>().as_deref(), Some("upload"));
/// assert_eq!(err.take_body::<String>(), None, "handed back once");
/// ```
pub struct ConnectFailed {
    source: BoxError,
    /// The request's body, untouched, for the retry layer to send elsewhere.
    body: std::sync::Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

impl ConnectFailed {
    /// Wraps the underlying connect error.
    pub fn new(source: impl Into<BoxError>) -> Self {
        ConnectFailed {
            source: source.into(),
            body: std::sync::Mutex::new(None),
        }
    }

    /// Wraps the connect error and hands back the request's body, which must be untouched:
    /// not a byte of it was polled.
    pub fn with_body<B: Send + 'static>(source: impl Into<BoxError>, body: B) -> Self {
        ConnectFailed {
            source: source.into(),
            body: std::sync::Mutex::new(Some(Box::new(body))),
        }
    }

    /// Takes the handed-back body if there is one of type `B` (once).
    pub fn take_body<B: 'static>(&self) -> Option<B> {
        let mut held = self.body.lock().unwrap_or_else(|e| e.into_inner());
        if !held.as_ref().is_some_and(|b| b.is::<B>()) {
            return None;
        }
        held.take().and_then(|b| b.downcast::<B>().ok()).map(|b| *b)
    }
}

impl std::fmt::Debug for ConnectFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self
            .body
            .lock()
            .map(|b| b.is_some())
            .unwrap_or_else(|e| e.into_inner().is_some());
        f.debug_struct("ConnectFailed")
            .field("source", &self.source)
            .field("body_handed_back", &held)
            .finish()
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

/// A reused (pooled, idle) connection was closed by the target as the request went out, before
/// any byte of a response: the race between a server closing an idle keep-alive connection and
/// a client reusing it.
///
/// It never counts against the target (it is classified
/// [`Outcome::Rejected`](crate::classify::Outcome::Rejected): neither success nor failure), and
/// the retry policy retries it for idempotent methods without drawing on the retry budget. A
/// request of which nothing was sent never gets here: `TargetClient` resends it on a fresh
/// connection itself. Answered `502` by [`error_response`](crate::http::error_response).
///
/// ```
/// use tower_lb::classify::{Classify, DefaultClassifier, Outcome};
/// use tower_lb::error::StaleConnection;
///
/// let err = StaleConnection::new(std::io::Error::other("connection reset"));
/// assert_eq!(DefaultClassifier::new().classify_error(&err), Outcome::Rejected);
/// ```
#[derive(Debug)]
pub struct StaleConnection {
    source: BoxError,
}

impl StaleConnection {
    /// Wraps the error the reused connection failed with.
    pub fn new(source: impl Into<BoxError>) -> Self {
        StaleConnection {
            source: source.into(),
        }
    }
}

impl std::fmt::Display for StaleConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reused connection closed by the target")
    }
}

impl Error for StaleConnection {
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
