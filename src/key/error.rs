//! Errors of request keys.

/// A header name given to [`Key::header`](super::Key::header) was not a valid header name.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid header name for a request key")]
pub struct InvalidHeaderName {
    pub(super) _p: (),
}
