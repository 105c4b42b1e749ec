//! Errors returned by [`Balance`](super::Balance).

use std::fmt;
use std::sync::Arc;

/// No target of the group could take the request: the group is empty, or every target is
/// disabled, draining or at its connection limit. Returned at once, never after a wait.
///
/// Maps to `503 Service Unavailable` in [`crate::http::error_response`].
///
/// # Examples
///
/// ```
/// use tower_lb::balance::error::NoAvailableTarget;
///
/// let err = NoAvailableTarget::new("api");
/// assert_eq!(err.to_string(), "no available target in group `api`");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl fmt::Display for NoAvailableTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no available target in group `{}`", self.group)
    }
}

impl std::error::Error for NoAvailableTarget {}
