//! Errors of the limit layers.

pub use crate::error::{Overloaded, RateLimited};

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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid limit configuration: {reason}")]
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
