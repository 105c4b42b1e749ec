//! Targets, target groups and their live state.
//!
//! A [`Target`] is one backend: a stable [`TargetId`], an address, a weight, an optional
//! connection limit, a backup flag and labels. A [`TargetGroup`] is a named set of targets
//! plus the [`Algorithm`](crate::algorithm::Algorithm) that picks among them.
//!
//! Why snapshots: every update builds a new immutable snapshot (targets, their live state and
//! the algorithm's tables) and publishes it with one atomic pointer swap, so a pick never takes
//! a lock and never sees half an update. Live state (in-flight requests, counters, admin state)
//! is keyed by id and carried into the next snapshot, so load information survives membership
//! changes.
//!
//! # Examples
//!
//! ```
//! use tower_lb::target::{AdminState, Target, TargetGroup};
//!
//! let group = TargetGroup::builder("users")
//!     .target(Target::builder("users-1", "10.0.0.1:8080").weight(3).build()?)
//!     .target(Target::builder("users-2", "10.0.0.2:8080").build()?)
//!     .target(Target::builder("users-dr", "10.9.0.1:8080").backup(true).build()?)
//!     .build()?;
//!
//! group.set_admin(&"users-2".into(), AdminState::Draining)?;
//! assert_eq!(group.len(), 3);
//! # Ok::<(), tower_lb::BoxError>(())
//! ```

pub mod error;
mod group;
mod latency;
mod picker;
mod slots;
mod snapshot;
mod spec;
mod state;

pub(crate) use self::group::WeakGroup;
pub use self::group::{TargetGroup, TargetGroupBuilder};
pub use self::picker::Picker;
#[cfg(test)]
pub(crate) use self::slots::SlotPool;
pub(crate) use self::slots::{Hot, LiveTable};
pub(crate) use self::snapshot::{Entry, Snapshot};
pub use self::spec::{MAX_WEIGHT, Target, TargetBuilder, TargetId};
pub(crate) use self::state::{
    ADMIN_MASK, BLOCKING, BLOCKING_IN_PANIC, DISABLED, DRAINING, EJECTED, MEMBER, PENDING, RAMP,
    TargetState, UNHEALTHY,
};
pub use self::state::{AdminState, TargetStats};
