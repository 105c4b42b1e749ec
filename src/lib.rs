//! Embeddable, tower-native load balancing.
//!
//! tower-lb gives an application, in-process, what otherwise sits in an nginx, HAProxy or
//! Envoy in front of its backends: [target groups](target) with weights and admin state,
//! selection [algorithms](algorithm) behind one public trait (round robin, power of two
//! choices on load or latency, consistent hashing and Maglev on [request keys](key)),
//! [discovery](discover) streams, [health] (active checks, outlier detection, panic
//! threshold, slow start), [retries](retry) with budgets, a circuit [breaker], keyed
//! [limits](limit), [sticky sessions](sticky), and a [`Balance`] service that drops into `ServiceBuilder`
//! and `axum::Router::route_service`. In front of the balancers, a [`Router`](route::Router)
//! applies traffic rules (paths, headers, canary splits, access lists) on the client IP that
//! [`client_ip`] resolves through trusted proxies only.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{service_fn, ServiceExt};
//! use tower_lb::algorithm::SmoothWeightedRoundRobin;
//! use tower_lb::balance::{Balance, ServedBy};
//! use tower_lb::{Target, TargetGroup};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
//! let group = TargetGroup::builder("api")
//!     .algorithm(SmoothWeightedRoundRobin::new())
//!     .target(Target::builder("big", "10.0.0.1:80").weight(3).build()?)
//!     .target(Target::builder("small", "10.0.0.2:80").weight(1).build()?)
//!     .build()?;
//! let balance = Balance::new(group, |_t: &Target| {
//!     service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) })
//! })
//! .served_by(true); // tag every response with the target that served it
//!
//! let mut big = 0;
//! for _ in 0..4 {
//!     let rsp = balance.clone().oneshot(Request::new(())).await?;
//!     big += (rsp.extensions().get::<ServedBy>().unwrap().target().as_str() == "big") as u32;
//! }
//! assert_eq!(big, 3);
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! - `hyper`: `upstream::HttpClient`, a pooled hyper-util client to send requests to targets, and
//!   `health::HttpCheck`, active HTTP health checks.
//! - `governor`: keyed rate limits (`limit::RateLimitLayer`, GCRA on governor).
//! - `axum`: [`client_ip::ClientIpLayer`] also reads axum's `ConnectInfo<SocketAddr>`.
//! - `regex`: regular-expression path and header conditions in [`route`] rules.
//! - `admin`: `admin::Admin`, the admin endpoint (JSON status, actions, Prometheus text, an
//!   HTML status page).
//! - `metrics`: `admin::MetricsExporter` feeds the statistics to the `metrics` facade.
//! - `config`: `config::Config`, a registry of load balancers from TOML or YAML files, and
//!   `config::Runtime::reload`, which applies a new file without losing a request.
//! - `full`: everything.
//!
//! The short path: `lb::LoadBalancer` (feature `hyper`) builds the whole stack from one builder
//! in the vocabulary of nginx and HAProxy configurations, and `lb::Registry` keeps load
//! balancers by name.
//!
//! Resilience layers ([`retry`], [`breaker`], [`limit`], [`timeout`]) and how to order them:
//! `docs/resilience.md` in the repository.
//!
//! See `docs/architecture.md` in the repository for the model and the path of one request.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
pub mod algorithm;
pub mod balance;
mod body;
pub mod breaker;
pub mod classify;
pub mod client_ip;
#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub mod config;
pub mod discover;
pub mod error;
pub mod forward;
pub mod group;
pub mod health;
pub mod key;
#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub mod lb;
pub mod limit;
pub mod retry;
pub mod route;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
pub mod stats;
pub mod sticky;
pub mod target;
pub mod timeout;
pub mod upstream;
mod util;

pub use crate::balance::{Balance, BalanceLayer};
pub use crate::error::BoxError;
pub use crate::group::TargetGroup;
pub use crate::target::Target;

#[cfg(all(doctest, feature = "hyper"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    /// Every `Service::layer` shortcut is callable without a turbofish (this fails to compile
    /// otherwise).
    #[test]
    fn layer_shortcuts_need_no_type_annotation() {
        use std::time::Duration;
        let group = crate::TargetGroup::builder("g").build().unwrap();
        let _ = crate::balance::Balance::layer(group);
        let _ = crate::timeout::Timeout::layer(Duration::from_secs(1));
        let _ = crate::retry::Retry::layer(crate::retry::RetryPolicy::default());
        let _ = crate::upstream::ErrorResponse::layer();
        assert!(crate::breaker::CircuitBreaker::layer("b").build().is_ok());
        let _ = crate::forward::Forward::layer();
    }
}
