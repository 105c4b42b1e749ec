use std::task::{Context, Poll};
use std::time::Duration;

use tower_service::Service;

use super::TimeoutLayer;
use super::future::ResponseFuture;
use crate::error::BoxError;

/// Fails a request with tower's [`Elapsed`](tower::timeout::error::Elapsed) when it takes
/// longer than a duration, counted from the first poll that finds it pending; built by
/// [`TimeoutLayer`].
///
/// Reads no clock and arms no timer for a response that is ready at its first poll. Works for
/// any request type; `Clone + Send + Sync` when the inner service is.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::timeout::Timeout;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let svc = Timeout::new(
///     service_fn(|n: u32| async move { Ok::<_, Infallible>(n + 1) }),
///     Duration::from_secs(1),
/// );
/// assert_eq!(svc.oneshot(41).await?, 42);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S> Timeout<S> {
    /// Wraps `inner`, failing requests that take longer than `timeout`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        let timeout = crate::util::cap(timeout);
        Timeout { inner, timeout }
    }

    /// The duration.
    pub fn duration(&self) -> Duration {
        self.timeout
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Constructors that need no type annotation: the wrapped service is not known yet.
impl Timeout<()> {
    /// A [`TimeoutLayer`] of `timeout`.
    pub fn layer(timeout: Duration) -> TimeoutLayer {
        let timeout = crate::util::cap(timeout);
        TimeoutLayer::new(timeout)
    }
}

impl<S, R> Service<R> for Timeout<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, req: R) -> Self::Future {
        ResponseFuture::new(self.inner.call(req), self.timeout)
    }
}
