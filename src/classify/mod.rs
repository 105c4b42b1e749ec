//! Response classification, shared by outlier detection, the circuit breaker and retries.
//!
//! Every layer that reacts to failures asks the same question: did this attempt fail because of
//! the backend, succeed, or was it refused locally before reaching any backend? A [`Classify`]
//! answers it once, in one place, so the three layers can never disagree.
//!
//! [`DefaultClassifier`] treats `5xx` responses, connection failures and timeouts as backend
//! failures and every local rejection (no available target, and the rejections of this crate's
//! other layers) as neither success nor failure: a rate limit hit must never eject a backend.
//!
//! # Examples
//!
//! ```
//! use http::StatusCode;
//! use tower_lb::balance::error::NoAvailableTarget;
//! use tower_lb::classify::{Classify, DefaultClassifier, Outcome, FailureKind};
//!
//! let c = DefaultClassifier::new();
//! assert_eq!(c.classify_status(StatusCode::OK), Outcome::Success);
//! assert_eq!(c.classify_status(StatusCode::BAD_GATEWAY), Outcome::Failure(FailureKind::Status(StatusCode::BAD_GATEWAY)));
//! assert_eq!(c.classify_error(&NoAvailableTarget::new("api")), Outcome::Rejected);
//! ```

use std::error::Error;
use std::fmt;

use http::StatusCode;

use crate::error::{
    CircuitOpen, ClientError, ConnectFailed, NoAvailableTarget, Overloaded, RateLimited,
    StaleConnection, is_caused_by,
};

/// What one attempt says about the backend that handled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The backend did its job.
    Success,
    /// The backend failed.
    Failure(FailureKind),
    /// Refused locally (rate limit, open breaker, overload, no target), or a reused idle
    /// connection the backend had closed ([`StaleConnection`]): says nothing about any backend
    /// and must not count for or against one.
    Rejected,
    /// The request was at fault (its body aborted, it could not be sent as given; see
    /// [`ClientError`]): says nothing about the backend, never counts against it and is never
    /// retried.
    Client,
}

impl Outcome {
    /// Whether this is a backend failure.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failure(_))
    }

    /// Whether this attempt says nothing about its backend ([`Rejected`](Outcome::Rejected) or
    /// [`Client`](Outcome::Client)).
    pub fn is_neutral(&self) -> bool {
        matches!(self, Outcome::Rejected | Outcome::Client)
    }
}

/// Why an attempt counts as a backend failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The connection could not be made: nothing was sent.
    Connect,
    /// The attempt timed out.
    Timeout,
    /// The backend answered with a failure status.
    Status(StatusCode),
    /// Any other error from the backend's service (reset, protocol error…).
    Other,
}

/// Decides the [`Outcome`] of an attempt. Replaceable: implement it to count, say, `429` or a
/// gRPC status as failures.
pub trait Classify: fmt::Debug + Send + Sync + 'static {
    /// The outcome of a response with this status.
    fn classify_status(&self, status: StatusCode) -> Outcome;

    /// The outcome of an error.
    fn classify_error(&self, err: &(dyn Error + 'static)) -> Outcome;
}

/// The default classification: `5xx` (and optionally other statuses) fail, connection errors
/// and timeouts fail, local rejections and [`StaleConnection`] races are [`Outcome::Rejected`], request-side faults
/// ([`ClientError`]) are [`Outcome::Client`], any other error is a failure.
#[derive(Debug, Clone)]
pub struct DefaultClassifier {
    fail_429: bool,
}

impl Default for DefaultClassifier {
    fn default() -> Self {
        DefaultClassifier::new()
    }
}

impl DefaultClassifier {
    /// `5xx`, connection failures and timeouts are failures.
    pub fn new() -> Self {
        DefaultClassifier { fail_429: false }
    }

    /// Also count `429 Too Many Requests` from a backend as a failure (default: no).
    pub fn fail_on_429(mut self, yes: bool) -> Self {
        self.fail_429 = yes;
        self
    }
}

impl Classify for DefaultClassifier {
    #[inline]
    fn classify_status(&self, status: StatusCode) -> Outcome {
        if status.is_server_error() || (self.fail_429 && status == StatusCode::TOO_MANY_REQUESTS) {
            Outcome::Failure(FailureKind::Status(status))
        } else {
            Outcome::Success
        }
    }

    fn classify_error(&self, err: &(dyn Error + 'static)) -> Outcome {
        if is_local_rejection(err) || is_caused_by::<StaleConnection>(err) {
            // A reused connection the target closed while idle: nobody's failure.
            Outcome::Rejected
        } else if is_caused_by::<ClientError>(err) {
            Outcome::Client
        } else if is_caused_by::<ConnectFailed>(err) {
            Outcome::Failure(FailureKind::Connect)
        } else if is_caused_by::<tower::timeout::error::Elapsed>(err) {
            Outcome::Failure(FailureKind::Timeout)
        } else {
            Outcome::Failure(FailureKind::Other)
        }
    }
}

/// Whether `err` is a rejection made by this process rather than a backend failure.
///
/// Every rejection type of this crate is listed here, so all layers agree on it.
pub fn is_local_rejection(err: &(dyn Error + 'static)) -> bool {
    is_caused_by::<NoAvailableTarget>(err)
        || is_caused_by::<CircuitOpen>(err)
        || is_caused_by::<RateLimited>(err)
        || is_caused_by::<Overloaded>(err)
}

thread_local! {
    static DEADLINE_DROP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `drop_it` (which drops an attempt's future) marking whatever is dropped inside as
/// cancelled by a deadline: an attempt that ends this way is a timeout of its target, while an
/// attempt dropped any other way (the caller went away) says nothing about it.
///
/// Used by this crate's timeout layer; a drop is synchronous, so a thread-local flag set
/// around it reaches exactly the attempts nested in the dropped future, wherever they sit.
pub(crate) fn drop_for_deadline<R>(drop_it: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            let prev = self.0;
            let _ = DEADLINE_DROP.try_with(|f| f.set(prev));
        }
    }
    let prev = DEADLINE_DROP.try_with(|f| f.replace(true)).unwrap_or(false);
    let _reset = Reset(prev);
    drop_it()
}

/// Whether the attempt being dropped now is cancelled by a deadline (see [`drop_for_deadline`]).
#[inline]
pub(crate) fn dropped_for_deadline() -> bool {
    DEADLINE_DROP.try_with(|f| f.get()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_classification() {
        let c = DefaultClassifier::new();
        assert_eq!(c.classify_status(StatusCode::NOT_FOUND), Outcome::Success);
        assert!(
            c.classify_status(StatusCode::SERVICE_UNAVAILABLE)
                .is_failure()
        );
        assert_eq!(
            c.classify_status(StatusCode::TOO_MANY_REQUESTS),
            Outcome::Success
        );
        assert!(
            DefaultClassifier::new()
                .fail_on_429(true)
                .classify_status(StatusCode::TOO_MANY_REQUESTS)
                .is_failure()
        );
        assert_eq!(
            c.classify_error(&ConnectFailed::new(std::io::Error::other("refused"))),
            Outcome::Failure(FailureKind::Connect)
        );
        assert_eq!(
            c.classify_error(&tower::timeout::error::Elapsed::new()),
            Outcome::Failure(FailureKind::Timeout)
        );
        assert_eq!(
            c.classify_error(&std::io::Error::other("reset")),
            Outcome::Failure(FailureKind::Other)
        );
        let client =
            crate::error::ClientError::from_kind(crate::error::ClientErrorKind::BodyAborted);
        assert_eq!(c.classify_error(&client), Outcome::Client);
        assert!(!Outcome::Client.is_failure() && Outcome::Client.is_neutral());
    }

    #[test]
    fn deadline_flag_is_scoped() {
        assert!(!dropped_for_deadline());
        assert!(drop_for_deadline(dropped_for_deadline));
        assert!(!dropped_for_deadline());
    }
}
