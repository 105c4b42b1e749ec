//! Errors of the health module: invalid settings and failed probes.
//!
//! None of them carries a backend address.

use std::fmt;

use http::StatusCode;

/// A health setting is out of range; the message names the setting.
///
/// ```
/// use tower_lb::health::ActiveCheck;
/// use tower_lb::health::TcpCheck;
///
/// let err = ActiveCheck::builder(TcpCheck::new()).rise(0).build().unwrap_err();
/// assert_eq!(err.to_string(), "invalid health setting `rise`: must be at least 1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidHealthConfig {
    setting: &'static str,
    problem: &'static str,
}

impl InvalidHealthConfig {
    pub(crate) fn new(setting: &'static str, problem: &'static str) -> Self {
        InvalidHealthConfig { setting, problem }
    }

    /// The name of the offending setting.
    pub fn setting(&self) -> &str {
        self.setting
    }
}

impl fmt::Display for InvalidHealthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid health setting `{}`: {}",
            self.setting, self.problem
        )
    }
}

/// An active check took longer than its timeout.
#[derive(Debug, Clone, PartialEq, Eq, Default, thiserror::Error)]
#[error("health check timed out")]
pub struct CheckTimedOut {
    _p: (),
}

impl CheckTimedOut {
    pub(crate) fn new() -> Self {
        CheckTimedOut { _p: () }
    }
}

/// An HTTP check got a status outside its expected set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct UnexpectedStatus {
    status: StatusCode,
}

impl UnexpectedStatus {
    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    pub(crate) fn new(status: StatusCode) -> Self {
        UnexpectedStatus { status }
    }

    /// The status the target answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl fmt::Display for UnexpectedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unexpected status {}", self.status.as_u16())
    }
}

/// An HTTP check's response body did not contain the expected bytes within its first KiB.
#[derive(Debug, Clone, PartialEq, Eq, Default, thiserror::Error)]
#[error("response body did not match")]
pub struct BodyMismatch {
    _p: (),
}

impl BodyMismatch {
    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    pub(crate) fn new() -> Self {
        BodyMismatch { _p: () }
    }
}
