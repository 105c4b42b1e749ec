//! The admin endpoint: what the balancer is doing, and the levers to change it, from inside
//! the application (nginx's `stub_status` and HAProxy's stats page, embedded).
//!
//! [`Admin`] is a tower service over a [`Registry`](crate::lb::Registry) that serves:
//!
//! - a **status page** (`GET /`): one self-contained HTML page (inline style and script, no
//!   external asset) with a table per group, a row per target coloured by its state (up,
//!   down, ejected, pending, draining, disabled), counts by status class and latency
//!   percentiles; it refreshes itself from `status.json`;
//! - **JSON status** (`GET /status.json`): every registered load balancer, its groups and
//!   targets, health, admin state and statistics ([`stats`](crate::stats));
//! - the **Prometheus text format** (`GET /metrics`), rendered from the same statistics
//!   snapshots on each scrape (no `metrics` facade needed, and nothing recorded per request
//!   beyond the statistics themselves); latencies are a real histogram
//!   (`tower_lb_request_duration_seconds_bucket`);
//! - **admin actions** (`POST /targets/{load balancer}/{group}/{target}/{drain|disable|enable}`),
//!   off unless [enabled](AdminBuilder::actions).
//!
//! Why a service and not a server: where it is mounted, and who may reach it, is the
//! application's call. It has no authentication of its own; mount it behind your own auth
//! layer, or an access rule of [`route`](crate::route) (`allow 127.0.0.1; deny all;`). An
//! action must also carry the header [`ACTION_HEADER`], which a cross-site form cannot send.
//!
//! Nothing here leaks a backend address unless asked
//! ([`show_addresses`](AdminBuilder::show_addresses)): target ids only, in the JSON, the page
//! and the metrics; error bodies name no target and echo nothing the client sent. Every name
//! is escaped (JSON strings; the page builds its DOM with `textContent`; Prometheus label
//! values). Responses are as large as the configuration (targets × a few hundred bytes); the
//! request body is never read.
//!
//! With feature `metrics`, `MetricsExporter` also feeds the same figures to the `metrics`
//! facade, for any exporter. Metric names and example alert rules: `docs/operations.md`.
//!
//! # Examples
//!
//! Mounted in axum under `/admin`, reachable from the loopback only:
//!
//! ```
//! use tower_lb::admin::Admin;
//! use tower_lb::lb::{LoadBalancer, Registry};
//! use tower_lb::Target;
//!
//! # fn main() -> Result<(), tower_lb::BoxError> {
//! let registry = Registry::new();
//! let api = LoadBalancer::builder()
//!     .with_name("api")
//!     .with_target(Target::new("api-1", "127.0.0.1:8080")?)
//!     .build::<axum::body::Body>()?;
//! registry.register(api.clone())?;
//!
//! let app: axum::Router = axum::Router::new()
//!     .nest_service("/admin", Admin::builder().registry(&registry).actions(true).build())
//!     .fallback_service(api);
//! # let _ = app;
//! # Ok(()) }
//! ```

mod body;
pub mod error;
#[cfg(feature = "metrics")]
mod exporter;
mod families;
mod service;
mod source;
mod status;

pub use self::body::AdminBody;
pub use self::error::AdminError;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use self::exporter::MetricsExporter;
pub use self::service::{Admin, AdminBuilder};

/// The header an admin action must carry (any value): a cross-site HTML form cannot send it,
/// so a browser that holds the operator's credentials cannot be made to drain a target by
/// another site.
///
/// ```
/// use http::Request;
/// use tower_lb::admin::ACTION_HEADER;
///
/// let drain = Request::post("/admin/targets/api/api/api-1/drain")
///     .header(ACTION_HEADER, "1")
///     .body(())
///     .unwrap();
/// # let _ = drain;
/// ```
pub const ACTION_HEADER: &str = "x-tower-lb-admin";
