//! The [`Balance`] service and its layer.
//!
//! `Balance` turns a [`TargetGroup`](crate::group::TargetGroup) into one tower `Service` over
//! `http::Request`: every request is sent to the target the group's algorithm picks, counted
//! as in flight until its response body ends, and tagged with [`ServedBy`] where a reader needs
//! it (error statuses and failures, requests marked [`WantServedBy`], or every response with
//! [`Balance::served_by(true)`](Balance::served_by)).
//!
//! Layers cooperate through typed extensions: [`ServedBy`] on responses, [`WantServedBy`] and
//! [`AvoidTargets`] on requests (a retry's "tell me who answered" and "send this somewhere
//! else"), and [`Affinity`] (sticky sessions' "send this to that target if you can").
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{service_fn, ServiceExt};
//! use tower_lb::balance::{AvoidTargets, Balance, ServedBy};
//! use tower_lb::{Target, TargetGroup};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
//! let group = TargetGroup::builder("api")
//!     .target(Target::new("a", "127.0.0.1:8080")?)
//!     .target(Target::new("b", "127.0.0.1:8081")?)
//!     .build()?;
//! let balance = Balance::new(group, |_t: &Target| {
//!     service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) })
//! })
//! .served_by(true);
//!
//! // Ask for any target but `a`.
//! let mut req = Request::new(());
//! req.extensions_mut().insert(AvoidTargets::from_iter(["a".into()]));
//! let rsp = balance.oneshot(req).await?;
//! assert_eq!(rsp.extensions().get::<ServedBy>().unwrap().target().as_str(), "b");
//! # Ok(()) }
//! ```

pub mod body;
pub mod error;
pub(crate) mod extensions;
pub mod future;
mod layer;
mod service;
mod set_target;

pub use self::extensions::{Affinity, AvoidTargets, ServedBy, WantServedBy};
pub use self::layer::BalanceLayer;
#[cfg_attr(not(feature = "hyper"), allow(unused_imports))]
pub(crate) use self::service::Reporter;
pub use self::service::{Balance, MakeTarget};
pub use self::set_target::SetTarget;
