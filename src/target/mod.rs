//! The core: targets, their live state, snapshots and the selection contract.
//!
//! A [`Target`] is one backend: a stable [`TargetId`], an address, a weight, an optional
//! connection limit, a backup flag and labels. A [`TargetGroup`](crate::group::TargetGroup) is
//! a named set of targets plus the [`Algorithm`] that picks among them.
//!
//! This module is the leaf of the crate's layering: it depends on no module above it (only on
//! `classify`, `error` and `util`). What the layers above need to learn of a target (health,
//! later metrics) they learn through the hooks defined here, never by reaching into it.
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
//! use tower_lb::target::AdminState;
//! use tower_lb::{Target, TargetGroup};
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

mod avoid;
mod context;
pub mod error;
mod hooks;
mod latency;
mod select;
mod slots;
mod snapshot;
mod spec;
mod state;
mod status;
mod tracker;

pub use self::avoid::AvoidTargets;
pub use self::context::Context;
pub(crate) use self::hooks::{HealthView, PanicState, PickSignals, TargetObserver, WeightRamp};
pub use self::select::{Algorithm, Selector, Targets};
pub(crate) use self::slots::{Hot, LiveTable, SlotPool};
pub(crate) use self::snapshot::{Entry, Snapshot};
pub use self::spec::{MAX_WEIGHT, Target, TargetBuilder, TargetId};
pub(crate) use self::state::TargetState;
pub use self::state::{AdminState, TargetStats};
pub(crate) use self::status::Status;
pub use self::tracker::LatencyTracker;
pub(crate) use self::tracker::decay_weight;
