//! The [`TargetGroup`] handle: a named set of targets, its algorithm and its health policies.
//!
//! Why a layer of its own: the group ties the core (targets, snapshots, the selection contract)
//! to what sits beside it — health checks and outlier detection, discovery streams — and
//! publishes every change as a new snapshot. Balancers and everything above use the group;
//! the core, health and discovery never name it.
//!
//! - [`TargetGroup`] and its builder: insert, remove, replace, drain, admin state, stats;
//!   [`attach`](TargetGroup::attach) a discovery stream; health checks and events;
//! - [`Picker`]: a frozen view that asks the algorithm without sending anything;
//! - [`healthy_changes`]: a discovery stream filtered by active health checks.
//!
//! # Examples
//!
//! ```
//! use tower_lb::group::TargetGroup;
//! use tower_lb::target::Target;
//!
//! let group = TargetGroup::builder("api")
//!     .target(Target::new("a", "127.0.0.1:8080")?)
//!     .build()?;
//! assert_eq!(group.len(), 1);
//! # Ok::<(), tower_lb::BoxError>(())
//! ```

mod handle;
mod health;
#[cfg(test)]
mod health_tests;
mod healthy;
mod picker;

pub(crate) use self::handle::WeakGroup;
pub use self::handle::{TargetGroup, TargetGroupBuilder};
pub use self::healthy::{HealthyChanges, TowerDiscover, healthy_changes};
pub use self::picker::Picker;
