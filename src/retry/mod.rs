//! Retries with a budget, replayable bodies, backoff and target avoidance.
//!
//! Retrying is the cheapest way to hide a failing backend, and the fastest way to turn an
//! outage into an overload: every client that retries three times triples the load on a
//! service that is already failing. So retries here are bounded twice, per request
//! (`max_attempts`, default 3) and for the whole process by a budget (tower's [`TpsBudget`],
//! after Finagle: retries may add 20% of requests plus 10 per second, over 10 s).
//!
//! What is retried follows from what is safe to send twice:
//!
//! - a connection failure ([`ConnectFailed`](crate::error::ConnectFailed)): nothing was sent,
//!   any method may go again;
//! - `502`, `503`, `504` (configurable), timeouts and other backend errors: only for
//!   idempotent methods, and only with a body that can be replayed ([`ReplayBody`]: buffered
//!   up to 64 KiB while it streams; a larger body is sent once and never held whole);
//! - local rejections (no target, open breaker, rate limit): never.
//!
//! Between attempts the policy waits an exponential backoff with full jitter (base 25 ms, cap
//! 250 ms), longer if the backend's `Retry-After` asks for it (within a cap), and adds the
//! failed target to the request's [`AvoidTargets`](crate::balance::AvoidTargets) so the balancer
//! picks another one. Client request headers never change any of this. A response that took more
//! than one attempt carries [`Attempts`].
//!
//! [`TpsBudget`]: tower::retry::budget::TpsBudget
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_lb::balance::Balance;
//! use tower_lb::retry::{Attempts, Jitter, ReplayBody, RetryLayer, RetryPolicy};
//! use tower_lb::{Target, TargetGroup};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
//! let group = TargetGroup::builder("api")
//!     .target(Target::new("bad", "10.0.0.1:80")?)
//!     .target(Target::new("good", "10.0.0.2:80")?)
//!     .build()?;
//! let balance = Balance::new(group, |t: &Target| {
//!     let ok = t.id().as_str() == "good";
//!     service_fn(move |_req: Request<ReplayBody<String>>| async move {
//!         let mut rsp = Response::new(String::new());
//!         if !ok { *rsp.status_mut() = StatusCode::BAD_GATEWAY; }
//!         Ok::<_, Infallible>(rsp)
//!     })
//! });
//! let policy = RetryPolicy::builder().jitter(Jitter::None).build()?;
//! let svc = ServiceBuilder::new().layer(RetryLayer::new(policy)).service(balance);
//!
//! // The first attempt goes to "bad"; the retry avoids it.
//! let rsp = svc.oneshot(Request::get("/").body(String::new())?).await?;
//! assert_eq!(rsp.status(), StatusCode::OK);
//! assert_eq!(Attempts::of(rsp.extensions()), 2);
//! # Ok(()) }
//! ```

mod backoff;
mod body;
mod copy;
pub mod error;
pub mod future;
mod headers;
mod layer;
mod policy;
mod service;

pub use self::body::ReplayBody;
pub use self::layer::RetryLayer;
pub use self::policy::{Attempts, Jitter, RetryPolicy, RetryPolicyBuilder, RetryStats};
pub use self::service::Retry;
