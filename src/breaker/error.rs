//! Errors of the circuit breaker.

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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid circuit breaker configuration: {reason}")]
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
