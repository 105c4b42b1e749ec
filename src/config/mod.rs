//! Configuration files: a registry of load balancers from TOML or YAML, and reloads that
//! lose nothing.
//!
//! Why: the seeds run nginx and HAProxy from files and regenerate them at run time
//! ("dynamic configuration without service interruption"). An embedded balancer should read
//! the same kind of file — targets with weights and limits, an algorithm, health checks,
//! outlier detection, a circuit breaker, retries, timeouts, rate limits, rules with canary
//! splits, sticky sessions — and change while it serves, the way `nginx -s reload` does, but
//! without starting its targets afresh: a target that stays keeps its requests in flight,
//! health, ejection, latency estimate and sticky cookies. A file that is wrong is refused
//! whole with the path of the value at fault, and the configuration in force stays (Envoy's
//! last valid configuration).
//!
//! - [`Config`] and its sections are plain serde data: [`Config::from_toml_str`],
//!   [`Config::from_yaml_str`], [`Config::from_path`]; [`Config::validate`] checks every value
//!   with the type that will use it, naming it as `load_balancers[1].rules[0].path`.
//! - [`Config::build`] turns it into a [`Runtime`]: the [`LoadBalancer`](crate::lb::LoadBalancer)s
//!   in a [`Registry`](crate::lb::Registry), and [`Runtime::service`], a service that follows
//!   reloads.
//! - [`Runtime::reload`] applies a new configuration atomically (all or nothing) and says what
//!   it changed in a [`ReloadReport`]; [`Runtime::watch`] reloads a file when it changes.
//!
//! The complete reference, with one example file per shape of the seeds, is
//! `docs/configuration.md`; the files are in `examples/config/`.
//!
//! # Examples
//!
//! The seeds' `load_balancer:` block and its rules, as they are written:
//!
//! ```
//! use tower_lb::config::Config;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
//! let config = Config::from_yaml_str(r#"
//! load_balancer:
//!   name: api-lb
//!   algorithm: round_robin
//!   sticky_sessions: true
//!   targets:
//!     - { id: api-1, address: "127.0.0.1:8080", weight: 100 }
//!     - { id: api-v2-1, address: "127.0.0.1:8081" }
//!     - { id: api-canary-1, address: "127.0.0.1:8082" }
//!   health_check: { enabled: true, interval: 10s, timeout: 2s, healthy_threshold: 2, unhealthy_threshold: 3 }
//!   circuit_breaker: { enabled: true, threshold: 0.5, min_requests: 100, interval: 60s }
//!   rate_limit: { enabled: true, limit: 1000, interval: 60s }
//! rules:
//!   api_v2:
//!     path: /api/v2/*
//!     method: any
//!     targets: [api-v2-1]
//!     sticky_session: { cookie: session_id, ttl: 1h }
//!   api_canary:
//!     header: { name: X-Canary, value: "true" }
//!     targets: [api-canary-1]
//!     weight: 10
//! "#)?;
//! let runtime = config.build::<String>()?;
//! let lb = runtime.registry().get("api-lb").unwrap();
//! let pools: Vec<_> = lb.pools().iter().map(|g| g.name().to_owned()).collect();
//! assert_eq!(pools, ["api-lb", "api_v2", "api_canary"]);
//! # Ok(()) }
//! ```

#![doc = include_str!("../../docs/configuration.md")]

mod build;
mod compile;
mod de;
mod error;
mod load;
mod model;
mod runtime;

pub use self::error::{ConfigError, ConfigErrorKind};
pub use self::load::MAX_CONFIG_BYTES;
pub use self::model::{
    AdminConfig, AlgorithmConfig, AlgorithmKind, BackoffConfig, BreakerConfig, BudgetConfig,
    Config, FailureRateConfig, HeaderCondition, HealthCheckConfig, ListenerConfig,
    LoadBalancerConfig, OutlierConfig, PanicConfig, PoolConfig, Protocol, RateLimitConfig,
    RetryConfig, RuleConfig, Rules, SameSiteConfig, SlowStartConfig, SplitConfig, StickyConfig,
    TargetConfig, TlsConfig,
};
pub use self::runtime::{ConfigWatcher, LiveService, ReloadReport, ReloadStats, Runtime};

/// The future [`LiveService`] returns.
pub mod future {
    pub use super::runtime::LiveFuture;
}
