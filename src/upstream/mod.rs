//! HTTP glue towards targets (named `upstream` so that `http::…` always means the `http`
//! crate): pointing requests at targets, turning errors into responses, and (with the
//! `hyper` feature) a pooled client to send requests with.
//!
//! - [`SetTarget`] rewrites a request's URI and `Host` for the picked target;
//! - [`ErrorResponseLayer`] maps every error of a stack to a short `503`/`502`/`504` response
//!   that never names a backend, making the stack's error type `Infallible` for axum;
//! - `TargetClient` (feature `hyper`) is a pooled HTTP/1 client with a pool per target: the
//!   fast path, and the one that hands an unsent body back for a retry elsewhere. Requests
//!   without a body or with a small one of known size go through an HTTP/1.1 codec of its
//!   own, the rest through hyper's
//!   connection API; with `http2_only` (feature `http2`) it keeps one shared HTTP/2 (h2c)
//!   connection per target instead;
//! - `HttpClient` (feature `hyper`) is a hyper-util pooled client usable as a
//!   [`MakeTarget`](crate::balance::MakeTarget) (one pool for every target).
//!
//! # Examples
//!
//! ```
//! use tower_lb::balance::error::NoAvailableTarget;
//! use tower_lb::upstream::{error_response, ResponseBody};
//!
//! let rsp = error_response::<ResponseBody<String>>(&NoAvailableTarget::new("api"));
//! assert_eq!(rsp.status(), 503);
//! ```

#[cfg(feature = "hyper")]
mod client;
#[cfg(feature = "hyper")]
mod h1;
#[cfg(feature = "http2")]
mod h2;
#[cfg(feature = "hyper")]
mod pool;
mod response;

#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub use self::client::{HttpClient, HttpClientBuilder};
#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub use self::pool::{PooledBody, TargetClient, TargetClientBuilder, TargetService};
pub use self::response::{
    ErrorResponse, ErrorResponseLayer, ResponseBody, error_response, status_for_error,
};
pub use crate::balance::SetTarget;

/// The futures of this module's services: [`ResponseFuture`](future::ResponseFuture) for
/// [`ErrorResponse`], and (feature `hyper`) one per client named after it.
pub mod future {
    #[cfg(feature = "hyper")]
    #[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
    pub use super::client::HttpClientFuture;
    #[cfg(feature = "hyper")]
    #[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
    pub use super::pool::TargetClientFuture;
    pub use super::response::ResponseFuture;
}
pub use crate::util::retry_after;

/// The target client's HTTP/1 response parser, for the fuzz target `h1_response`.
#[cfg(all(fuzzing, feature = "hyper"))]
#[doc(hidden)]
pub use self::h1::fuzz_response;
