//! Errors of the [`LoadBalancer`](super::LoadBalancer) facade and its [`Registry`](super::Registry).

use std::error::Error;
use std::fmt;

use crate::error::BoxError;
use crate::target::TargetId;

/// A setting of [`LoadBalancerBuilder`](super::LoadBalancerBuilder) that cannot work; the
/// source is the underlying layer's own error.
///
/// # Examples
///
/// ```
/// use tower_lb::lb::{LoadBalancer, StickySession};
///
/// // A sticky session needs a signing key.
/// let err = LoadBalancer::builder()
///     .with_name("api-lb")
///     .with_sticky_session(StickySession::cookie("session_id"))
///     .build::<String>()
///     .unwrap_err();
/// assert!(err.to_string().contains("sticky_session"));
/// ```
#[derive(Debug)]
pub struct InvalidLoadBalancer {
    setting: &'static str,
    source: BoxError,
}

impl InvalidLoadBalancer {
    pub(crate) fn new(setting: &'static str, source: impl Into<BoxError>) -> Self {
        InvalidLoadBalancer {
            setting,
            source: source.into(),
        }
    }

    /// The builder setting at fault (`targets`, `health_check`, `circuit_breaker`, …).
    pub fn setting(&self) -> &str {
        self.setting
    }
}

impl fmt::Display for InvalidLoadBalancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid load balancer setting `{}`: {}",
            self.setting, self.source
        )
    }
}

impl Error for InvalidLoadBalancer {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// [`LoadBalancer::add_target`](super::LoadBalancer::add_target) was given an id the load
/// balancer already has (use [`upsert_target`](super::LoadBalancer::upsert_target) to replace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetExists {
    id: TargetId,
}

impl TargetExists {
    pub(crate) fn new(id: TargetId) -> Self {
        TargetExists { id }
    }

    /// The id that is taken.
    pub fn id(&self) -> &TargetId {
        &self.id
    }
}

impl fmt::Display for TargetExists {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "target `{}` already exists", self.id)
    }
}

impl Error for TargetExists {}

/// [`Registry::register`](super::Registry::register) was given a name that is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTaken {
    name: String,
}

impl NameTaken {
    pub(crate) fn new(name: &str) -> Self {
        NameTaken { name: name.into() }
    }

    /// The name that is taken.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for NameTaken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a load balancer named `{}` is already registered",
            self.name
        )
    }
}

impl Error for NameTaken {}

/// A [`Registry`](super::Registry) operation named a load balancer it does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownLoadBalancer {
    name: String,
}

impl UnknownLoadBalancer {
    pub(crate) fn new(name: &str) -> Self {
        UnknownLoadBalancer { name: name.into() }
    }

    /// The name asked for.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for UnknownLoadBalancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no load balancer named `{}`", self.name)
    }
}

impl Error for UnknownLoadBalancer {}
