//! Traffic rules: route requests by path, method, headers, query and host to named
//! destinations, split canaries, rewrite, and allow or deny by client IP.
//!
//! Why here and not in the web framework: a gateway's rules change at run time (a canary
//! goes from 10 % to 50 %, a path moves to a new service) and must not need a restart or
//! drop a request; they match on more than the path; and they must agree with the
//! balancer on who the client is. A [`Router`] holds its rules in one snapshot that
//! [`Router::set_rules`] replaces whole, and is an ordinary tower service over destinations
//! that are usually [`Balance`](crate::balance::Balance)s over target groups.
//!
//! - **Matching.** All conditions of a [`Rule`] must hold: path (exact, segment-wise
//!   prefix, glob, regex with feature `regex`), method, headers (exact, regex, present,
//!   absent), query parameters (exact, present), host (exact or `*.example.com`).
//! - **Precedence.** Higher [`priority`](Rule::priority) first, then declaration order;
//!   the first match wins (as in Envoy and Istio). No match: the
//!   [`fallback`](RouterBuilder::fallback) destination, or `404`.
//! - **Actions.** Forward to one destination or a weighted [`Split`] (random, or consistent
//!   by header, cookie or client IP with nginx `split_clients` semantics); per rule, request
//!   and response headers, a path prefix rewrite, a timeout, a rate limit (feature
//!   `governor`) and an [`Access`] list. A split keeps a request whose sticky session
//!   ([`Affinity`](crate::balance::Affinity)) names one of its sides, with weight, on that
//!   side.
//! - **Paths are normalized** ([`normalize_path`]) before matching, and the backend receives
//!   the normalized path, so `/x/../admin`, `/%61dmin` and `//admin` all are `/admin` for
//!   the rules and the backend alike. A malformed path is the client's fault: `400`.
//! - **Client IP** for splits and access lists is the one [`client_ip`](crate::client_ip)
//!   resolved through trusted proxies, else the socket peer.
//!
//! Matching reads one snapshot, walks a radix tree of the rules' literal path prefixes and
//! tries only the rules it reaches, in precedence order; it does not allocate. The
//! guide is `docs/routing.md` in the repository.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{service_fn, ServiceExt};
//! use tower_lb::route::{Access, Router, Rule, Split};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
//! let backend = |name: &'static str| {
//!     service_fn(move |_r: Request<()>| async move { Ok::<_, Infallible>(Response::new(name.to_string())) })
//! };
//! let router = Router::builder()
//!     .destination("v1", backend("v1"))
//!     .destination("v2", backend("v2"))
//!     .destination("admin", backend("admin"))
//!     .rules([
//!         Rule::new("admin").prefix("/admin").to("admin").access(Access::parse("allow 127.0.0.1; deny all;")?),
//!         Rule::new("api-v2").path("/api/v2/*").to("v2"),
//!         Rule::new("canary").header("x-canary", "true").split(Split::new().to("v2", 10).to("v1", 90)),
//!     ])
//!     .fallback("v1")
//!     .build()?;
//!
//! let body = |rsp: Response<_>| async { http_body_util::BodyExt::collect(rsp.into_body()).await.map(|b| b.to_bytes()) };
//! let rsp = router.clone().oneshot(Request::get("/api/x/../v2/users").body(())?).await?;
//! assert_eq!(body(rsp).await?, "v2");
//! let rsp = router.clone().oneshot(Request::get("/admin").body(())?).await?;
//! assert_eq!(rsp.status(), 403); // no client address known: `deny all` holds
//!
//! router.set_rules([Rule::new("all-v2").prefix("/").to("v2")])?;
//! assert_eq!(router.rules().len(), 1);
//! # Ok(()) }
//! ```

mod access;
pub mod error;
mod matcher;
mod path;
mod rule;
mod service;
mod table;

pub use self::access::Access;
pub use self::path::{EscapedSlashes, MalformedPath, normalize_path};
pub use self::rule::{Action, HeaderMatch, PathMatch, Routed, Rule, Split, SplitKey};
#[cfg(feature = "hyper")]
pub(crate) use self::service::RulesHandle;
pub use self::service::{Router, RouterBuilder, RuleName};

/// The future the [`Router`] returns.
pub mod future {
    pub use super::service::ResponseFuture;
}
pub use self::table::MAX_REGEX_LEN;
