//! HTTP glue: pointing requests at targets, turning errors into responses, and (with the
//! `hyper` feature) a pooled client to send requests with.
//!
//! - [`SetTarget`] rewrites a request's URI and `Host` for the picked target;
//! - [`ErrorResponseLayer`] maps every error of a stack to a short `503`/`502`/`504` response
//!   that never names a backend, making the stack's error type `Infallible` for axum;
//! - `HttpClient` (feature `hyper`) is a hyper-util pooled client usable as a
//!   [`MakeTarget`](crate::balance::MakeTarget).
//!
//! # Examples
//!
//! ```
//! use tower_lb::balance::error::NoAvailableTarget;
//! use tower_lb::http::{error_response, ResponseBody};
//!
//! let rsp = error_response::<ResponseBody<String>>(&NoAvailableTarget::new("api"));
//! assert_eq!(rsp.status(), 503);
//! ```

#[cfg(feature = "hyper")]
mod client;
mod response;

#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub use self::client::{HttpClient, HttpClientBuilder, HttpClientFuture};
pub use self::response::{
    ErrorResponse, ErrorResponseFuture, ErrorResponseLayer, ResponseBody, error_response,
    status_for_error,
};
pub use crate::balance::SetTarget;
pub use crate::util::retry_after;
