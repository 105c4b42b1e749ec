//! Errors of the circuit breaker.

use std::fmt;

pub use crate::error::CircuitOpen;

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
