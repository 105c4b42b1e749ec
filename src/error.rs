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
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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
#[derive(thiserror::Error)]
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
        let mut held = crate::util::lock(&self.body);
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

impl fmt::Display for ConnectFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The source names the address; the message does not.
        f.write_str("connection to target failed")
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
/// connection itself. Answered `502` by [`error_response`](crate::upstream::error_response).
///
/// ```
/// use tower_lb::classify::{Classify, DefaultClassifier, Outcome};
/// use tower_lb::error::StaleConnection;
///
/// let err = StaleConnection::new(std::io::Error::other("connection reset"));
/// assert_eq!(DefaultClassifier::new().classify_error(&err), Outcome::Rejected);
/// ```
#[derive(Debug, thiserror::Error)]
#[error("reused connection closed by the target")]
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
/// with a `400`, `413` or `431` by [`error_response`](crate::upstream::error_response).
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
#[derive(Debug, thiserror::Error)]
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

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            ClientErrorKind::BodyAborted => "request body aborted by the client",
            ClientErrorKind::InvalidRequest => "request cannot be sent as given",
            ClientErrorKind::BodyTooLarge => "request body too large",
            ClientErrorKind::HeadersTooLarge => "request headers too large",
        })
    }
}

// ---- local rejections: refused by this process, never a backend's failure ----
//
// They live here, below every layer, so that `classify` (which must recognise them) and
// `upstream` (which maps them to responses) name them without depending on the layers that raise
// them. Each is re-exported from the `error` module of the layer that raises it.

/// No target of the group could take the request: the group is empty, or every target is
/// disabled, draining or at its connection limit. Returned at once, never after a wait.
///
/// Maps to `503 Service Unavailable` in [`crate::upstream::error_response`].
///
/// # Examples
///
/// ```
/// use tower_lb::balance::error::NoAvailableTarget;
///
/// let err = NoAvailableTarget::new("api");
/// assert_eq!(err.to_string(), "no available target in group `api`");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no available target in group `{group}`")]
pub struct NoAvailableTarget {
    group: Arc<str>,
}

impl NoAvailableTarget {
    /// The error for group `group`.
    pub fn new(group: impl Into<Arc<str>>) -> Self {
        NoAvailableTarget {
            group: group.into(),
        }
    }

    /// The name of the group that had no available target.
    pub fn group(&self) -> &str {
        &self.group
    }
}

/// The circuit is open (or its half-open probes are all taken): the request was refused at
/// once, without reaching any backend.
///
/// A local rejection: it never counts against a backend, and maps to `503` with a
/// `Retry-After` in [`crate::upstream::error_response`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::breaker::error::CircuitOpen;
///
/// let err = CircuitOpen::new("api", Some(Duration::from_secs(3)));
/// assert_eq!(err.to_string(), "circuit breaker `api` is open");
/// assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker `{name}` is open")]
pub struct CircuitOpen {
    name: Arc<str>,
    retry_after: Option<Duration>,
}

impl CircuitOpen {
    /// The error for breaker `name`, which may let requests through after `retry_after`.
    pub fn new(name: impl Into<Arc<str>>, retry_after: Option<Duration>) -> Self {
        CircuitOpen {
            name: name.into(),
            retry_after,
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long until the breaker lets probes through, if known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// Too many requests for this key: refused at once. Maps to `429 Too Many Requests` with
/// `Retry-After` in [`crate::upstream::error_response`]; a local rejection, never a backend failure.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::limit::error::RateLimited;
///
/// let err = RateLimited::new(Duration::from_millis(1500));
/// assert_eq!(err.to_string(), "rate limited");
/// assert_eq!(err.retry_after_secs(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limited")]
pub struct RateLimited {
    retry_after: Duration,
}

impl RateLimited {
    /// The error; the key may send again after `retry_after`.
    pub fn new(retry_after: Duration) -> Self {
        RateLimited { retry_after }
    }

    /// How long until the key may send again.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// [`retry_after`](Self::retry_after) rounded up to whole seconds (at least 1), as sent in
    /// the `Retry-After` header.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        secs.max(1)
    }
}

/// Too many requests in flight (for one key, or for the whole group): shed at once rather
/// than queued. Maps to `503 Service Unavailable`; a local rejection.
///
/// # Examples
///
/// ```
/// use tower_lb::limit::error::Overloaded;
///
/// let err = Overloaded::new(true);
/// assert_eq!(err.to_string(), "too many requests in flight for this key");
/// assert!(err.is_per_key());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Overloaded {
    per_key: bool,
}

impl Overloaded {
    /// The error; `per_key` tells a per-key limit from the group-wide one.
    pub fn new(per_key: bool) -> Self {
        Overloaded { per_key }
    }

    /// Whether a per-key limit (rather than the group-wide one) refused the request.
    pub fn is_per_key(&self) -> bool {
        self.per_key
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.per_key {
            f.write_str("too many requests in flight for this key")
        } else {
            f.write_str("too many requests in flight")
        }
    }
}
