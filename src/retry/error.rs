//! Errors of the retry layer.

use std::fmt;

/// A retry configuration value is out of range.
///
/// # Examples
///
/// ```
/// use tower_lb::retry::RetryPolicy;
///
/// let err = RetryPolicy::builder().max_attempts(0).build().unwrap_err();
/// assert_eq!(err.to_string(), "invalid retry configuration: max attempts must be at least 1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRetryConfig {
    reason: &'static str,
}

impl InvalidRetryConfig {
    pub(crate) fn new(reason: &'static str) -> Self {
        InvalidRetryConfig { reason }
    }

    /// What is wrong.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for InvalidRetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid retry configuration: {}", self.reason)
    }
}

impl std::error::Error for InvalidRetryConfig {}

/// A replayed request body missed data: the original went past the replay buffer's limit.
///
/// Only seen if a body is replayed after it stopped being replayable, which the
/// [`RetryPolicy`](super::RetryPolicy) never does; it guards against sending a truncated body.
///
/// # Examples
///
/// ```
/// use tower_lb::retry::error::BodyNotReplayable;
///
/// let err = BodyNotReplayable::new();
/// assert_eq!(err.to_string(), "request body is no longer replayable");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyNotReplayable {
    _p: (),
}

impl BodyNotReplayable {
    /// The error.
    pub fn new() -> Self {
        BodyNotReplayable { _p: () }
    }
}

impl fmt::Display for BodyNotReplayable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body is no longer replayable")
    }
}

impl std::error::Error for BodyNotReplayable {}
