use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::future::{ResponseFuture, Retrier};
use super::{ReplayBody, RetryLayer, RetryPolicy, RetryStats};
use crate::balance::WantServedBy;
use crate::error::BoxError;

/// Retries failed attempts per a [`RetryPolicy`]; built by [`RetryLayer`].
///
/// Wraps each request body in a [`ReplayBody`] (so the inner service sees
/// `Request<ReplayBody<B>>`) and drives the attempts with the policy, in the order tower's
/// `Retry` does; a response that took more than one attempt carries
/// [`Attempts`](super::Attempts). `Clone + Send + Sync`; clones share the policy's budget and
/// counters.
///
/// What a retry needs (a copy of the request, a clone of the inner service) is taken only when
/// a retry is possible, and without an allocation once the thread has served a request: the
/// copy's head (method, target, header fields as bytes, extensions) goes into a buffer the
/// last request on the thread left behind, and the rest (the body's replay, the policy's
/// session, the service) is a few words of the response future.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response, StatusCode};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_lb::retry::{Attempts, Jitter, ReplayBody, RetryLayer, RetryPolicy};
/// use http_body_util::Full;
/// use bytes::Bytes;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
/// let c = calls.clone();
/// let flaky = service_fn(move |_req: Request<ReplayBody<Full<Bytes>>>| {
///     let n = c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///     async move {
///         let mut rsp = Response::new(());
///         if n == 0 { *rsp.status_mut() = StatusCode::SERVICE_UNAVAILABLE; }
///         Ok::<_, tower_lb::BoxError>(rsp)
///     }
/// });
/// let policy = RetryPolicy::builder().jitter(Jitter::None).build()?;
/// let svc = ServiceBuilder::new().layer(RetryLayer::new(policy)).service(flaky);
/// let rsp = svc.oneshot(Request::get("/").body(Full::new(Bytes::new()))?).await?;
/// assert_eq!(rsp.status(), 200);
/// assert_eq!(Attempts::of(rsp.extensions()), 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Retry<S> {
    inner: S,
    /// The template every request's session is cloned from (its attempt count stays 0).
    policy: RetryPolicy,
    /// The policy retries a status below `400`, which `Balance` does not tag by default.
    mark: bool,
}

impl<S> Retry<S> {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: S, policy: RetryPolicy) -> Self {
        Retry {
            inner,
            mark: policy.retries_non_error_status(),
            policy,
        }
    }

    /// The policy's counters.
    pub fn stats(&self) -> RetryStats {
        self.policy.stats()
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
impl Retry<()> {
    /// A [`RetryLayer`] with `policy`.
    pub fn layer(policy: RetryPolicy) -> RetryLayer {
        RetryLayer::new(policy)
    }
}

impl<S, B, RB> Service<Request<B>> for Retry<S>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>, Error = BoxError> + Clone,
    B: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    #[inline(always)]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        let limit = self.policy.body_limit();
        let mut req = req.map(|b| ReplayBody::new(b, limit));
        if self.mark {
            // A retry avoids the target that answered: `Balance` names it on error statuses
            // anyway, and on this one only when asked.
            req.extensions_mut().insert(WantServedBy);
        }
        // As tower's `Retry`: the copy is taken before the request goes, and the service a
        // retry goes through is cloned after this call.
        let mut retry = Retrier::first(&mut self.policy, &req);
        let future = self.inner.call(req);
        if retry.wants_service() {
            retry.set_service(self.inner.clone());
        }
        ResponseFuture::new(future, retry)
    }
}
