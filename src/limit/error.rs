//! Errors of the limit layers.

use std::fmt;
use std::time::Duration;

/// Too many requests for this key: refused at once. Maps to `429 Too Many Requests` with
/// `Retry-After` in [`crate::http::error_response`]; a local rejection, never a backend failure.
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("rate limited")
    }
}

impl std::error::Error for RateLimited {}

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
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl std::error::Error for Overloaded {}

/// A limit setting is out of range.
///
/// # Examples
///
/// ```
/// use tower_lb::limit::InFlightLimitLayer;
///
/// let err = InFlightLimitLayer::builder().max_keys(0).build().unwrap_err();
/// assert_eq!(err.to_string(), "invalid limit configuration: max keys must be at least 1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLimit {
    reason: &'static str,
}

impl InvalidLimit {
    pub(crate) fn new(reason: &'static str) -> Self {
        InvalidLimit { reason }
    }

    /// What is wrong.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for InvalidLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid limit configuration: {}", self.reason)
    }
}

impl std::error::Error for InvalidLimit {}
