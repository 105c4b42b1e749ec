//! Health: active checks, passive outlier detection, admin drain, panic mode and slow start.
//!
//! A target's health is a handful of flags in its live state, next to its admin state; a pick
//! skips a target whose flags say so, and a flip is one atomic update, never a snapshot
//! rebuild. Four sources set the flags, each independently:
//!
//! - **active checks** ([`ActiveCheck`], run by [`TargetGroup::health_check`]): a probe per
//!   target every interval ([`TcpCheck`], `HttpCheck` with the `hyper` feature, or your own
//!   [`HealthCheck`]), with rise/fall hysteresis after HAProxy;
//! - **outlier detection** ([`OutlierDetection`]): the outcome of every real request, as
//!   classified by the group's [`Classify`](crate::classify::Classify), ejects a target that
//!   keeps failing, for a growing time, never more than a share of the group;
//! - **admin state** ([`AdminState`](crate::target::AdminState)): enable, drain, disable;
//! - **membership** (discovery, or direct calls): a target that leaves stops being checked.
//!
//! Over them sit the group-wide [`PanicThreshold`] (when too few targets are available, spread
//! over all of them or fail fast) and [`SlowStart`] (ramp the weight of a target that joins or
//! recovers). Every flip is a [`HealthEvent`] on [`TargetGroup::events`] and a `tracing` line.
//! [`healthy_changes`](crate::group::healthy_changes) turns a discovery stream plus health checks into a stream that feeds
//! tower's own `p2c::Balance`.
//!
//! The full model, the precedence between these sources and where every default comes from
//! are in `docs/health.md`, included below.
//!
//! [`TargetGroup::health_check`]: crate::group::TargetGroup::health_check
//! [`TargetGroup::events`]: crate::group::TargetGroup::events
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use tower_lb::health::{ActiveCheck, OutlierDetection, PanicThreshold, SlowStart, TcpCheck};
//! use tower_lb::{Target, TargetGroup};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
//! let group = TargetGroup::builder("api")
//!     .target(Target::new("a", "127.0.0.1:8080")?)
//!     .target(Target::new("b", "127.0.0.1:8081")?)
//!     .outlier_detection(OutlierDetection::default())
//!     .panic_threshold(PanicThreshold::default())
//!     .slow_start(SlowStart::builder(Duration::from_secs(30)).build()?)
//!     .build()?;
//! group.health_check(ActiveCheck::builder(TcpCheck::new()).build()?)?;
//! let status = group.health(&"a".into())?;
//! assert!(status.is_routable()); // routable until proven otherwise
//! # Ok(()) }
//! ```
//!
#![doc = include_str!("../../docs/health.md")]

mod check;
mod checker;
mod ejection;
pub mod error;
mod events;
#[cfg(feature = "hyper")]
mod http;
mod hysteresis;
mod outlier;
mod panic;
mod ramp;
mod slow_start;
mod state;
mod status;
mod tcp;

pub use self::check::{
    ActiveCheck, ActiveCheckBuilder, CheckFn, CheckFuture, HealthCheck, check_fn,
};
pub(crate) use self::checker::supervise;
pub use self::error::InvalidHealthConfig;
pub use self::events::{EjectReason, HealthEvent, HealthEventKind, HealthEvents, RestoredBy};
#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub use self::http::{HttpCheck, HttpCheckBuilder};
pub use self::outlier::{FailureRate, OutlierDetection, OutlierDetectionBuilder};
pub use self::panic::{PanicMode, PanicThreshold};
pub use self::slow_start::{SlowStart, SlowStartBuilder};
pub use self::state::HealthSummary;
pub(crate) use self::state::{GroupHealth, HealthSettings};
pub use self::status::TargetHealthStatus;
pub use self::tcp::TcpCheck;
