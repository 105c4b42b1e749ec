//! Errors returned by [`Balance`](super::Balance).

use std::fmt;

pub use crate::error::NoAvailableTarget;

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
#[derive(Debug, thiserror::Error)]
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
