use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
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
/// What a retry needs is taken only when a retry is possible, and without an allocation once
/// the thread has served a request: the copy's head (method, target, header fields as bytes,
/// extensions) goes into a buffer the last request on the thread left behind, and the rest
/// (the body's replay, the policy's session) is a few words of the response future. The
/// service a retry goes through is a clone of the wrapped service as it was wrapped, made
/// only when a retry is sent: a request takes one reference on what every clone of this
/// service shares, not a clone of every layer below it.
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
#[derive(Clone)]
pub struct Retry<S> {
    inner: S,
    /// The policy and the service retries go through, shared by every clone and by every
    /// request's future.
    shared: Arc<Shared<S>>,
    /// The policy retries a status below `400`, which `Balance` does not tag by default.
    mark: bool,
}

/// What a request's future reaches only through its one reference: the policy (whose
/// attempt count stays 0: each future keeps its own) and the service a retry is sent
/// through, cloned from the one wrapped.
pub(crate) struct Shared<S> {
    pub(crate) policy: RetryPolicy,
    /// Behind a lock so that `Retry<S>` is `Send` for a service that is `Send` but not
    /// `Sync`; locked only to clone it for a retry.
    service: Mutex<S>,
}

impl<S: Clone> Shared<S> {
    /// A clone of the wrapped service, for a retry.
    pub(crate) fn service(&self) -> S {
        self.service
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl<S: fmt::Debug> fmt::Debug for Retry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

impl<S: Clone> Retry<S> {
    /// Wraps `inner` with `policy`.
    ///
    /// Retries go through clones of `inner` as it is now (a clone is kept for them):
    /// changes made later through [`get_mut`](Self::get_mut) reach first attempts only.
    pub fn new(inner: S, policy: RetryPolicy) -> Self {
        Retry {
            mark: policy.retries_non_error_status(),
            shared: Arc::new(Shared {
                policy,
                service: Mutex::new(inner.clone()),
            }),
            inner,
        }
    }
}

impl<S> Retry<S> {
    /// The policy's counters.
    pub fn stats(&self) -> RetryStats {
        self.shared.policy.stats()
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
        let limit = self.shared.policy.body_limit();
        let mut req = req.map(|b| ReplayBody::new(b, limit));
        if self.mark {
            // A retry avoids the target that answered: `Balance` names it on error statuses
            // anyway, and on this one only when asked.
            req.extensions_mut().insert(WantServedBy);
        }
        // As tower's `Retry`: the copy is taken before the request goes.
        let retry = Retrier::first(&self.shared, &req);
        ResponseFuture::new(self.inner.call(req), retry)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;
    use tower::ServiceExt;
    use tower::util::BoxCloneService;

    use super::*;

    /// The service retries go through is kept behind a lock, so a service that is `Send` but
    /// not `Sync` (tower's boxed services are) still makes a `Send` retry service and future.
    #[test]
    fn a_send_only_service_makes_a_send_retry() {
        fn send<T: Send>(_: &T) {}
        type Inner =
            BoxCloneService<Request<ReplayBody<Full<Bytes>>>, Response<()>, crate::BoxError>;
        let inner: Inner = BoxCloneService::new(tower::service_fn(|_| async {
            Ok::<_, crate::BoxError>(Response::new(()))
        }));
        let retry = Retry::new(inner, RetryPolicy::new());
        send(&retry);
        send(&retry.oneshot(Request::new(Full::new(Bytes::new()))));
    }
}
