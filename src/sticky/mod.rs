//! Sticky sessions: keep a client on the target that served it, in a cookie or a header.
//!
//! Some backends keep per-user state in memory (a session, a cache, a WebSocket room), so a
//! user's next request should go where the last one went. [`StickyLayer`] does that the way
//! nginx's `sticky cookie` and HAProxy's `cookie SERVERID insert` do, without their weak
//! spots: on a response it sets a cookie (or a header, for clients without cookies) naming
//! the target that [served](crate::balance::ServedBy) it; on a request it turns a valid
//! cookie into an [`Affinity`](crate::balance::Affinity) that
//! [`Balance`](crate::balance::Balance) honours while that target can take it.
//!
//! - **Opaque and unforgeable.** The value is a token signed with HMAC-SHA256 over the group,
//!   the target and an expiry; it names the target by a keyed tag, never by its address or
//!   id. A forged, tampered, expired or foreign token is ignored (the MAC is compared in
//!   constant time). Keys rotate: [`key`](StickyLayerBuilder::key) signs,
//!   [`old_key`](StickyLayerBuilder::old_key)s still verify, and a token from an old key is
//!   replaced on its next response.
//! - **Never a failure because of a cookie.** An unknown, forged, expired or stale token
//!   (target removed, draining, disabled, unhealthy, ejected, or at its connection limit) is
//!   ignored: the request is balanced by the group's algorithm as if it had none, and the
//!   response sets a fresh token for the target that served it.
//! - **Bounded.** At most four candidate values are checked per request, whatever a client
//!   sends; the tag table holds one entry per target and key; recently verified tokens are
//!   remembered in a fixed table of 1024 slots (only a token identical to one of them in every
//!   byte skips the MAC).
//!
//! Stickiness is not authentication: a token only says "this client was last served by that
//! target" and anyone holding it can replay it within its TTL. Never use it to decide what a
//! client may do.
//!
//! Put the layer outside [`RetryLayer`](crate::retry::RetryLayer) (so it sees the target of
//! the last attempt) and anywhere above `Balance`; it asks `Balance` to tag responses with
//! [`WantServedBy`](crate::balance::WantServedBy) itself.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use http::{Request, Response};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_lb::balance::Balance;
//! use tower_lb::sticky::StickyLayer;
//! use tower_lb::{Target, TargetGroup};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
//! let group = TargetGroup::builder("orchestrators")
//!     .target(Target::new("mo-0", "127.0.0.1:8080")?)
//!     .target(Target::new("mo-1", "127.0.0.1:8081")?)
//!     .build()?;
//! let balance = Balance::new(group.clone(), |_t: &Target| {
//!     service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) })
//! });
//! // nginx: `sticky cookie SERVERID expires=1h domain=.phoenix-orch;`
//! let svc = ServiceBuilder::new()
//!     .layer(
//!         StickyLayer::cookie("SERVERID")
//!             .group(&group)
//!             .key(*b"load from your secret store, 32+")
//!             .ttl(Duration::from_secs(3600))
//!             .domain(".phoenix-orch")
//!             .build()?,
//!     )
//!     .service(balance);
//!
//! let rsp = svc.oneshot(Request::new(())).await?;
//! let cookie = rsp.headers()["set-cookie"].to_str()?;
//! assert!(cookie.starts_with("SERVERID="));
//! assert!(cookie.contains("; Domain=.phoenix-orch; HttpOnly; SameSite=Lax; Max-Age=3600; Expires="));
//! # Ok(()) }
//! ```
//!
#![doc = include_str!("../../docs/sticky.md")]

mod codec;
mod cookie;
pub mod error;
pub mod future;
mod layer;
mod service;
mod verified;

pub use self::cookie::{SameSite, cookie_value};
pub use self::error::InvalidSticky;
pub use self::layer::{StickyLayer, StickyLayerBuilder};
pub use self::service::Sticky;
