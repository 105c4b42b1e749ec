//! Errors raised when targets or groups are built or updated.
//!
//! None of them carries a backend address, so they are safe to log or show.
//!
//! # Examples
//!
//! ```
//! use tower_lb::target::error::DuplicateTarget;
//! use tower_lb::target::{Target, TargetGroup};
//!
//! let group = TargetGroup::new("api");
//! let err: DuplicateTarget = group
//!     .replace([Target::new("a", "10.0.0.1:80")?, Target::new("a", "10.0.0.2:80")?])
//!     .unwrap_err();
//! assert_eq!(err.to_string(), "duplicate target id `a`");
//! assert!(group.is_empty(), "the failed update changed nothing");
//! # Ok::<(), tower_lb::target::error::InvalidTarget>(())
//! ```

use std::fmt;

use super::TargetId;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Reason {
    EmptyId,
    Weight(u32),
    MaxConns,
    Address(AddressProblem),
}

/// What is wrong with a target's address (see [`InvalidTarget::address_problem`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressProblem {
    /// The address is empty.
    Empty,
    /// The host is empty (`:8080`).
    EmptyHost,
    /// A `:` with no port after it (`10.0.0.1:`).
    EmptyPort,
    /// The port is not a number in `1..=65535` (`10.0.0.1:80800`, `host:0`, `host:http`).
    Port,
    /// User information (`user:pw@host`): credentials never belong in a target address.
    UserInfo,
    /// A path, query or fragment (`host:80/api`): a target is a `host:port` only.
    PathOrQuery,
    /// Not a valid `host[:port]` authority for another reason (spaces, bad characters, an
    /// IPv6 address without brackets).
    Syntax,
}

impl fmt::Display for AddressProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressProblem::Empty => "the address is empty",
            AddressProblem::EmptyHost => "the address has an empty host",
            AddressProblem::EmptyPort => "the address has an empty port",
            AddressProblem::Port => "the port is not a number in 1..=65535",
            AddressProblem::UserInfo => "the address must not contain user information (`user@`)",
            AddressProblem::PathOrQuery => {
                "the address must be `host:port`, without a path or query"
            }
            AddressProblem::Syntax => "the address is not a valid `host:port` authority",
        })
    }
}

/// A target failed validation; see [`TargetBuilder::build`](super::TargetBuilder::build).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTarget {
    id: Option<TargetId>,
    reason: Reason,
}

impl InvalidTarget {
    pub(crate) fn empty_id() -> Self {
        InvalidTarget {
            id: None,
            reason: Reason::EmptyId,
        }
    }
    pub(crate) fn weight(id: &TargetId, w: u32) -> Self {
        InvalidTarget {
            id: Some(id.clone()),
            reason: Reason::Weight(w),
        }
    }
    pub(crate) fn max_conns(id: &TargetId) -> Self {
        InvalidTarget {
            id: Some(id.clone()),
            reason: Reason::MaxConns,
        }
    }
    pub(crate) fn address(id: &TargetId, problem: AddressProblem) -> Self {
        InvalidTarget {
            id: Some(id.clone()),
            reason: Reason::Address(problem),
        }
    }

    /// What is wrong with the address, when that is why the target is invalid.
    ///
    /// ```
    /// use tower_lb::target::Target;
    /// use tower_lb::target::error::AddressProblem;
    ///
    /// let err = Target::new("a", "127.0.0.1:80800").unwrap_err();
    /// assert_eq!(err.address_problem(), Some(AddressProblem::Port));
    /// assert_eq!(err.to_string(), "invalid target `a`: the port is not a number in 1..=65535");
    /// ```
    pub fn address_problem(&self) -> Option<AddressProblem> {
        match self.reason {
            Reason::Address(p) => Some(p),
            _ => None,
        }
    }

    /// The id of the offending target, when it has one.
    pub fn id(&self) -> Option<&TargetId> {
        self.id.as_ref()
    }
}

impl fmt::Display for InvalidTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(id) = &self.id {
            write!(f, "invalid target `{id}`: ")?;
        } else {
            f.write_str("invalid target: ")?;
        }
        match self.reason {
            Reason::EmptyId => f.write_str("the id is empty"),
            Reason::Weight(w) => write!(
                f,
                "weight {w} is out of range 1..={} (disable or drain a target instead of weighting it 0)",
                super::MAX_WEIGHT
            ),
            Reason::MaxConns => f.write_str("max_conns must be at least 1"),
            Reason::Address(p) => p.fmt(f),
        }
    }
}

impl std::error::Error for InvalidTarget {}

/// Two targets in one set share an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateTarget {
    id: TargetId,
}

impl DuplicateTarget {
    pub(crate) fn new(id: TargetId) -> Self {
        DuplicateTarget { id }
    }

    /// The duplicated id.
    pub fn id(&self) -> &TargetId {
        &self.id
    }
}

impl fmt::Display for DuplicateTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "duplicate target id `{}`", self.id)
    }
}

impl std::error::Error for DuplicateTarget {}

/// An operation named a target the group does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTarget {
    id: TargetId,
}

impl UnknownTarget {
    pub(crate) fn new(id: TargetId) -> Self {
        UnknownTarget { id }
    }

    /// The id that was not found.
    pub fn id(&self) -> &TargetId {
        &self.id
    }
}

impl fmt::Display for UnknownTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown target `{}`", self.id)
    }
}

impl std::error::Error for UnknownTarget {}

/// [`TargetGroup::attach`](super::TargetGroup::attach) was called outside a Tokio runtime.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NoRuntime {
    _p: (),
}

impl fmt::Display for NoRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no tokio runtime to run the discovery task on")
    }
}

impl std::error::Error for NoRuntime {}

impl NoRuntime {
    pub(crate) fn new() -> Self {
        NoRuntime { _p: () }
    }
}
