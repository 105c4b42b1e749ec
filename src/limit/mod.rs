//! Keyed rate limits and in-flight limits: refuse excess load early, cheaply and visibly.
//!
//! - `RateLimitLayer` (feature `governor`): GCRA per key (client IP with IPv6 grouped by
//!   /64, a header, or a closure); rate, period and burst as in nginx's `limit_req`; bounded
//!   key memory with periodic sweeps and a documented overflow policy; refusals are
//!   [`RateLimited`](error::RateLimited) → `429` with `Retry-After`.
//! - [`InFlightLimitLayer`]: at most N requests in flight group-wide and per key (nginx
//!   `limit_conn`); the excess is shed at once with [`Overloaded`](error::Overloaded) → `503`,
//!   never queued without bound. A request counts until its response body ends (or is
//!   dropped): responses come back as `Response<`[`InFlightBody<B>`](body::InFlightBody)`>`.
//!
//! Both are local rejections: the [classifier](crate::classify) never counts them against a
//! backend, and retries never retry them.
//!
//! # Examples
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_lb::limit::{InFlightLimitLayer, LimitKey};
//!
//! let per_ip = InFlightLimitLayer::builder()
//!     .max_in_flight(10_000)
//!     .per_key(LimitKey::client_ip(), 20)
//!     .build()
//!     .unwrap();
//! let _builder = ServiceBuilder::new().layer(per_ip);
//! ```

pub mod body;
pub mod error;
pub mod future;
mod in_flight;
mod key;
#[cfg(feature = "governor")]
mod rate;
#[cfg(feature = "governor")]
mod store;

pub use self::in_flight::{InFlightLimit, InFlightLimitLayer, InFlightLimitLayerBuilder};
pub use self::key::LimitKey;
#[cfg(feature = "governor")]
#[cfg_attr(docsrs, doc(cfg(feature = "governor")))]
pub use self::rate::{RateLimit, RateLimitLayer, RateLimitLayerBuilder};
/// Re-exported from [`crate::key`]: the request extension client-IP keys read.
pub use crate::key::ClientAddr;
