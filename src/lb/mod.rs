//! `LoadBalancer`: the whole stack from one builder, and a `Registry` of named load balancers.
//!
//! The layers ([`Balance`](crate::balance::Balance), [`retry`](crate::retry),
//! [`breaker`](crate::breaker), [`limit`](crate::limit), [`timeout`](crate::timeout),
//! [`sticky`](crate::sticky)) are the primary, composable API. This module is the short path
//! for the common case, in the vocabulary of the configuration people already write
//! (nginx, HAProxy, the seeds' own API sketch): name, algorithm, targets, a health check with
//! healthy and unhealthy thresholds, a circuit breaker with a threshold and a half-open
//! timeout, a rate limit of "1000 per 60 s", sticky sessions. It adds no logic of its own: it
//! builds a [`TargetGroup`](crate::group::TargetGroup) and composes the layers in the order
//! `docs/resilience.md` explains, over the pooled HTTP client:
//!
//! ```text
//! ErrorResponse → ClientIp → Sticky → RateLimit → Timeout (overall) → Retry → CircuitBreaker
//!   → Router (rules) → per pool: Timeout (attempt) → Balance → HttpClient
//! ```
//!
//! Traffic rules are [`crate::route`]'s: a rule sends matching requests to a *pool*, a named
//! set of targets added with [`with_pool`](LoadBalancerBuilder::with_pool), or splits them
//! across pools by weight; requests no rule takes go to the load balancer's own targets.
//! [`set_rules`](LoadBalancer::set_rules) replaces the rules at run time, atomically.
//!
//! A [`LoadBalancer`] is a `Clone` tower service whose errors are responses, so it mounts in
//! `axum::Router` as is; [`route`](LoadBalancer::route) sends one request by hand. A
//! [`Registry`] keeps load balancers by name for an admin endpoint.
//!
//! Sticky sessions cover every pool, and hold across weighted splits: a client stays on the
//! side, and the target, its cookie names while that target can take it.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use tower_lb::algorithm::RoundRobin;
//! use tower_lb::lb::{CircuitBreaker, HealthCheck, LoadBalancer, Registry};
//! use tower_lb::target::Target;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
//! let lb = LoadBalancer::builder()
//!     .with_name("api-lb")
//!     .with_algorithm(RoundRobin::new())
//!     .with_targets(vec![
//!         Target::builder("api-1", "127.0.0.1:8080").weight(100).build()?,
//!         Target::builder("api-2", "127.0.0.1:8081").weight(100).build()?,
//!     ])
//!     .with_health_check(
//!         HealthCheck::http("/health")
//!             .interval(Duration::from_secs(10))
//!             .timeout(Duration::from_secs(2))
//!             .healthy_threshold(2)
//!             .unhealthy_threshold(3),
//!     )
//!     .with_circuit_breaker(
//!         CircuitBreaker::new()
//!             .threshold(0.5)
//!             .min_requests(100)
//!             .interval(Duration::from_secs(60))
//!             .half_open_timeout(Duration::from_secs(30)),
//!     )
//!     .build::<axum::body::Body>()?;
//!
//! let lb_manager = Registry::new();
//! lb_manager.register(lb.clone())?;
//! assert!(lb_manager.get("api-lb").is_some());
//!
//! // Mounts in axum as is.
//! let app: axum::Router = axum::Router::new().fallback_service(lb);
//! # let _ = app;
//! # Ok(()) }
//! ```

mod config;
pub mod error;
mod registry;
mod service;

#[cfg(feature = "governor")]
pub use self::config::RateLimit;
pub use self::config::{CircuitBreaker, HealthCheck, StickySession};
pub use self::error::{InvalidLoadBalancer, NameTaken, TargetExists, UnknownLoadBalancer};
pub use self::registry::Registry;
pub use self::service::{
    DefaultClient, LoadBalancer, LoadBalancerBuilder, LoadBalancerStats, ResponseBody,
};

/// The future the [`LoadBalancer`] returns.
pub mod future {
    pub use super::service::ResponseFuture;
}
pub use crate::route::{Rule, Split};
