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

/// An attempt on one target failed: the target's service (or its readiness) returned an error.
///
/// Wraps the error (see [`source`](std::error::Error::source); find causes with
/// [`find_cause`](crate::error::find_cause)) and names the target, so a retry can avoid it.
/// The message names the target id, never its address.
///
/// # Examples
///
/// ```
/// use tower_lb::balance::error::AttemptFailed;
/// use tower_lb::error::{find_cause, ConnectFailed, BoxError};
///
/// # fn f(err: BoxError) {
/// if let Some(failed) = find_cause::<AttemptFailed>(&*err) {
///     println!("target {} failed", failed.served_by().target());
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct AttemptFailed {
    served_by: super::ServedBy,
    source: crate::error::BoxError,
}

impl AttemptFailed {
    pub(crate) fn new(served_by: super::ServedBy, source: crate::error::BoxError) -> Self {
        AttemptFailed { served_by, source }
    }

    /// The group and target of the failed attempt.
    pub fn served_by(&self) -> &super::ServedBy {
        &self.served_by
    }
}

impl fmt::Display for AttemptFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt on target `{}` failed", self.served_by.target())
    }
}

impl std::error::Error for AttemptFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}
