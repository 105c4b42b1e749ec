//! A circuit breaker: stop sending to a group that keeps failing, then probe it back.
//!
//! When a backend group is down, every request sent to it costs a timeout and adds load to a
//! system that is already failing. A breaker watches the failure rate of the group over a
//! sliding window and, past a threshold, fails requests at once ([`CircuitOpen`], `503`)
//! for a while, then lets a few probes through to decide whether to close again:
//!
//! ```text
//!   closed ──(failure rate ≥ threshold, volume ≥ minimum)──▶ open
//!     ▲                                                       │ (open period over)
//!     └──(all probes succeed)── half-open ◀───────────────────┘
//!                                  └──(a probe fails)──▶ open
//! ```
//!
//! Defaults after Hystrix and resilience4j: 50% failures over at least 100 requests in a 60 s
//! window; 30 s open; 3 half-open probes. Failures are decided by the shared
//! [`Classify`](crate::classify::Classify), so local rejections (rate limits, no target, this
//! breaker's own refusals) never count. A probe cancelled mid-flight hands its permit back.
//! Every state change is a `tracing` line (`warn!` when it opens, `info!` otherwise), an event
//! on [`CircuitBreakerLayer::events`] and a call to the
//! [`on_state_change`](CircuitBreakerLayerBuilder::on_state_change) callbacks. The move from open to
//! half-open happens with the first request after the open period (the breaker has no timer), so
//! that is when its event comes.
//!
//! # The window, exactly
//!
//! The window is ten buckets of a tenth of [`window`](CircuitBreakerLayerBuilder::window) each,
//! numbered from the breaker's creation (bucket `n` covers `[n, n + 1)` tenths). An outcome
//! counts in the bucket of the instant it completes; after each outcome the rate is judged over
//! that bucket and the nine before it, so the window spans between nine and ten tenths of
//! `window` of history. Closing the circuit clears the counts. Outcomes of requests admitted
//! before a state change are ignored.
//!
//! The closed state, the common case, takes no lock: admitting a request is one atomic load,
//! and an outcome is one clock read, one atomic add to its bucket and a scan of the ten buckets.
//! The scan is skipped for a success when a judgement in the same bucket period and state
//! already found the window at volume and under the threshold (a success cannot raise the rate,
//! so it could not open the circuit); failures are always judged. The lock is only taken to
//! open the circuit (one completion flips it, and one event is sent), in the open and half-open
//! states, and to clear a bucket when its period comes round again (once per tenth of the
//! window). A completion that reads the clock and then stalls for a whole window before
//! counting is dropped, as it is out of the window by then.
//!
//! [`CircuitOpen`]: error::CircuitOpen
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_lb::breaker::{BreakerState, CircuitBreakerLayer};
//! use tower_lb::error::is_caused_by;
//! use tower_lb::breaker::error::CircuitOpen;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), tower_lb::BoxError> {
//! let breaker = CircuitBreakerLayer::builder("api").min_requests(4).build()?;
//! let mut svc = ServiceBuilder::new().layer(breaker.clone()).service(service_fn(
//!     |_r: Request<()>| async {
//!         let mut rsp = Response::new(());
//!         *rsp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
//!         Ok::<_, tower_lb::BoxError>(rsp)
//!     },
//! ));
//! for _ in 0..4 {
//!     svc.ready().await?.call(Request::new(())).await?;
//! }
//! assert_eq!(breaker.state(), BreakerState::Open);
//! let err = svc.ready().await?.call(Request::new(())).await.unwrap_err();
//! assert!(is_caused_by::<CircuitOpen>(&*err));
//!
//! tokio::time::advance(Duration::from_secs(30)).await;
//! svc.ready().await?.call(Request::new(())).await?; // a probe: it fails, the circuit reopens
//! assert_eq!(breaker.state(), BreakerState::Open);
//! # Ok(()) }
//! ```

pub mod error;
mod events;
pub mod future;
mod layer;
mod service;
mod state;

pub use self::events::{BreakerEvent, BreakerEvents};
pub use self::layer::{CircuitBreakerLayer, CircuitBreakerLayerBuilder};
pub use self::service::CircuitBreaker;
pub use self::state::{BreakerState, StateChange};
