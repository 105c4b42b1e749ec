use std::sync::Arc;

use crate::target::TargetId;

pub use crate::target::AvoidTargets;

/// Response extension: the group and target that served the request.
///
/// Set by [`Balance`](super::Balance) on responses with an error status (`4xx`, `5xx`), on
/// responses the group's classifier counts as failures and on responses to requests that carry
/// [`WantServedBy`], or on every response with
/// [`Balance::served_by(true)`](super::Balance::served_by); read it for access logs, metrics,
/// sticky sessions or retries. An error names its target through
/// [`AttemptFailed`](super::error::AttemptFailed).
///
/// # Examples
///
/// ```
/// use tower_lb::balance::ServedBy;
///
/// # fn f(response: http::Response<()>) {
/// if let Some(served) = response.extensions().get::<ServedBy>() {
///     println!("{} / {}", served.group(), served.target());
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedBy {
    group: Arc<str>,
    target: TargetId,
}

impl ServedBy {
    pub(crate) fn new(group: Arc<str>, target: TargetId) -> Self {
        ServedBy { group, target }
    }

    /// The name of the group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The id of the target.
    pub fn target(&self) -> &TargetId {
        &self.target
    }
}

/// Request extension: asks [`Balance`](super::Balance) to tag this request's response with
/// [`ServedBy`], whatever its outcome.
///
/// Error statuses are tagged anyway; the [`RetryLayer`](crate::retry::RetryLayer) adds this
/// marker to its requests only when it is configured to retry a status below `400`, so that a
/// retry can still avoid the target that answered. A layer that reads `ServedBy` on every
/// response can use [`Balance::served_by(true)`](super::Balance::served_by) instead.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::balance::{Balance, ServedBy, WantServedBy};
/// use tower_lb::{Target, TargetGroup};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let group = TargetGroup::builder("g").target(Target::new("a", "127.0.0.1:1")?).build()?;
/// let balance = Balance::new(group, |_t: &Target| {
///     service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) })
/// });
/// let mut req = Request::new(());
/// req.extensions_mut().insert(WantServedBy);
/// let rsp = balance.oneshot(req).await?;
/// assert_eq!(rsp.extensions().get::<ServedBy>().unwrap().target().as_str(), "a");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WantServedBy;
