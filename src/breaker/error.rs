//! Errors of the circuit breaker.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The circuit is open (or its half-open probes are all taken): the request was refused at
/// once, without reaching any backend.
///
/// A local rejection: it never counts against a backend, and maps to `503` with a
/// `Retry-After` in [`crate::http::error_response`].
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker `{}` is open", self.name)
    }
}

impl std::error::Error for CircuitOpen {}

/// A circuit breaker setting is out of range.
///
/// # Examples
///
/// ```
/// use tower_lb::breaker::CircuitBreakerLayer;
///
/// let err = CircuitBreakerLayer::builder("api").failure_rate(1.5).build().unwrap_err();
/// assert_eq!(err.to_string(), "invalid circuit breaker configuration: failure rate must be in (0, 1]");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidBreakerConfig {
    reason: &'static str,
}

impl InvalidBreakerConfig {
    pub(crate) fn new(reason: &'static str) -> Self {
        InvalidBreakerConfig { reason }
    }

    /// What is wrong.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for InvalidBreakerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid circuit breaker configuration: {}", self.reason)
    }
}

impl std::error::Error for InvalidBreakerConfig {}
