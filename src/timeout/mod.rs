//! A timeout that costs nothing when the inner service answers at once.
//!
//! [`Timeout`] fails a request with tower's [`Elapsed`] when its inner future has not completed
//! within the duration, like tower's own `Timeout` (the same error, so
//! [`status_for_error`](crate::upstream::status_for_error) maps it to `504` and the retry policy
//! treats it as a timeout). The difference is when the clock starts: tower's reads the clock and
//! arms a timer in `call`, for every request; this one polls the inner future first and arms the
//! timer only when that first poll returns `Pending`. A response that is ready at once (a cache,
//! a refusal, a local error, a mock) costs no clock read and no timer.
//!
//! So the deadline counts from the **first poll** of the response future, not from `call`. For
//! a service future that is the same instant in practice: every caller in this crate, tower's
//! and axum's polls the future as soon as `call` returns it. A future that is created and left
//! unpolled for a while is not timed until it is polled.
//!
//! Use it twice for a per-attempt and an overall deadline (see `docs/resilience.md`): outside
//! the [`RetryLayer`](crate::retry::RetryLayer) it bounds every attempt and every backoff,
//! inside it a slow attempt counts as a failure and can be retried. Nested like that, the two
//! share one timer and one clock read: while the inner timer is armed and due first, the outer
//! timeout registers none of its own (it will be woken, and look at its deadline again, before
//! the deadline passes), and it starts from the inner one's clock reading. It arms its own
//! timer when nothing inside covers its deadline, e.g. during a backoff between attempts.
//! The first of them to start needs no clock read of its own either when the
//! target client inside (`upstream::TargetClient`) read the clock in the same poll (to
//! tell how long the connection it took had been idle): the deadline starts from that reading,
//! so a forwarded request reads the clock once for the pool and both deadlines.
//!
//! A timer, once armed, is reused: a timeout done with it leaves it (boxed, at most 128 per
//! thread) to the next timeout on the same thread and runtime, which moves its deadline with
//! tokio's `Sleep::reset` rather than entering a new timer into tokio's timer wheel and taking
//! it out again. The response future holds one word of timer, and in the steady state a
//! timeout costs no wheel insertion or removal of its own (the wheel files a timer whose
//! deadline moved later again only when its old deadline comes). The price: a spare timer stays
//! in the wheel until it is reused or its last deadline comes, when it wakes the task that used
//! it last once, for nothing (after a burst, a thread that goes idle sees one spurious wake-up
//! per spare timer, at most one timeout duration later; with paused time, the runtime may
//! auto-advance to those deadlines when it has nothing else to do).
//!
//! [`Elapsed`]: tower::timeout::error::Elapsed
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_lb::timeout::TimeoutLayer;
//! use tower_lb::upstream::status_for_error;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let slow = service_fn(|_req: Request<()>| async {
//!     tokio::time::sleep(Duration::from_secs(60)).await;
//!     Ok::<_, tower_lb::BoxError>(Response::new(()))
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(Duration::from_millis(10)))
//!     .service(slow);
//! let err = svc.oneshot(Request::new(())).await.unwrap_err();
//! assert_eq!(status_for_error(&*err), 504);
//! # }
//! ```

pub mod future;
mod layer;
mod nested;
mod service;
mod timer;

pub use self::layer::TimeoutLayer;
pub use self::service::Timeout;
