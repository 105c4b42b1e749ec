//! Statistics of what the balancer did: per target and per group, responses by class,
//! failures by kind, requests in flight and latency percentiles over a sliding window.
//!
//! Why here and not in the pick: figures are recorded when an attempt ends (its response body
//! ended, broke off or was dropped), by the guard that already releases the target's
//! in-flight count, so picking costs nothing extra; the latency window is a fixed set of
//! buckets (about 6 KiB per target, with the totals behind [`LatencyHistogram`]), so recording
//! never allocates.
//!
//! Read them with [`Balance::report`](crate::balance::Balance::report), or for a whole
//! [`LoadBalancer`](crate::lb::LoadBalancer) with its `stats`.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{service_fn, ServiceExt};
//! use tower_lb::balance::Balance;
//! use tower_lb::{Target, TargetGroup};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
//! let group = TargetGroup::builder("api").target(Target::new("a", "127.0.0.1:1")?).build()?;
//! let balance = Balance::new(group, |_t: &Target| {
//!     service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) })
//! });
//! drop(balance.clone().oneshot(Request::new(())).await?);
//! let report = balance.report();
//! assert_eq!(report.requests(), 1);
//! assert_eq!(report.responses().class(2), 1);
//! # Ok(()) }
//! ```

mod histogram;
mod recorder;

pub use self::histogram::LatencySummary;
pub use self::recorder::{
    FailureCounts, GroupReport, LATENCY_WINDOW, LatencyHistogram, ResponseCounts, TargetReport,
};
pub(crate) use self::recorder::{Recorders, TargetFacts, TargetRecorder, now, report};
