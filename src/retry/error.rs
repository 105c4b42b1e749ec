//! Errors of the retry layer.

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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid retry configuration: {reason}")]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("request body is no longer replayable")]
pub struct BodyNotReplayable {
    _p: (),
}

impl BodyNotReplayable {
    /// The error.
    pub fn new() -> Self {
        BodyNotReplayable { _p: () }
    }
}
