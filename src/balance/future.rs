//! The future returned by [`Balance`](super::Balance).
//!
//! [`ResponseFuture`] is a named type, not a boxed future, so stacks built on `Balance` stay
//! nameable and allocation-free.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{service_fn, Service};
//! use tower_lb::balance::{future::ResponseFuture, Balance};
//! use tower_lb::target::{Target, TargetGroup};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
//! let group = TargetGroup::builder("g").target(Target::new("a", "127.0.0.1:1")?).build()?;
//! let mut balance = Balance::new(group, |_t: &Target| {
//!     service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) })
//! });
//! let fut = balance.call(Request::new(()));
//! let rsp = fut.await?;
//! assert_eq!(rsp.status(), 200);
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::ServedBy;
use super::body::{InFlight, TrackedBody};
use crate::classify::{Classify, DefaultClassifier};
use crate::error::BoxError;

pin_project! {
    /// Drives the picked target's service (ready, then call) and tags the response with the
    /// target that served it.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
        guard: Option<InFlight>,
        served_by: Option<ServedBy>,
        classifier: Option<Arc<dyn Classify>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Failed { error: Option<BoxError> },
        NotReady { svc: S, req: Option<Req> },
        Called { #[pin] fut: S::Future },
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    /// Starts an attempt. A target service that is ready at once is called right away (the
    /// common case: pooled clients are always ready), so the request is never parked in the
    /// future; otherwise readiness is awaited when the future is polled. Polling readiness here
    /// with a no-op waker is harmless: a pending service is polled again, with the caller's
    /// waker, before anything waits on it.
    #[inline]
    pub(crate) fn start(
        mut svc: S,
        req: Req,
        guard: InFlight,
        served_by: Option<ServedBy>,
        classifier: Option<Arc<dyn Classify>>,
    ) -> Self
    where
        S::Error: Into<BoxError>,
    {
        let mut cx = Context::from_waker(Waker::noop());
        let state = match svc.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => State::Called { fut: svc.call(req) },
            Poll::Pending => State::NotReady {
                svc,
                req: Some(req),
            },
            Poll::Ready(Err(e)) => {
                let mut slot = Some(guard);
                let error = fail(&mut slot, classifier.as_deref(), served_by, e.into());
                return ResponseFuture {
                    state: State::Failed { error: Some(error) },
                    guard: None,
                    served_by: None,
                    classifier: None,
                };
            }
        };
        ResponseFuture {
            state,
            guard: Some(guard),
            served_by,
            classifier,
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
            guard: None,
            served_by: None,
            classifier: None,
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("served_by", &self.served_by)
            .finish_non_exhaustive()
    }
}

impl<S, B, RB> Future for ResponseFuture<S, Request<B>>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: Body,
{
    type Output = Result<Response<TrackedBody<RB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Failed { error } => {
                    let e = error
                        .take()
                        .unwrap_or_else(|| "response future polled after completion".into());
                    return Poll::Ready(Err(e));
                }
                StateProj::NotReady { svc, req } => {
                    if let Err(e) = ready!(svc.poll_ready(cx)) {
                        return Poll::Ready(Err(fail(
                            this.guard,
                            this.classifier.as_deref(),
                            this.served_by.take(),
                            e.into(),
                        )));
                    }
                    let Some(req) = req.take() else {
                        return Poll::Ready(Err("response future polled after completion".into()));
                    };
                    let fut = svc.call(req);
                    this.state.set(State::Called { fut });
                }
                StateProj::Called { fut } => {
                    let res = ready!(fut.poll(cx));
                    this.state.set(State::Failed { error: None });
                    return Poll::Ready(match res {
                        Ok(rsp) => {
                            if let Some(g) = this.guard.as_mut() {
                                let outcome = match this.classifier.as_deref() {
                                    Some(c) => c.classify_status(rsp.status()),
                                    None => DefaultClassifier::new().classify_status(rsp.status()),
                                };
                                g.observe(outcome);
                            }
                            if let Some(g) = this.guard.as_mut().filter(|g| g.is_timed()) {
                                observe_response_latency(g, &rsp);
                            }
                            let (mut parts, body) = rsp.into_parts();
                            if let Some(served) = this.served_by.take() {
                                parts.extensions.insert(served);
                            }
                            // An empty body has nothing left to wait for.
                            let guard = this.guard.take().filter(|_| !body.is_end_stream());
                            Ok(Response::from_parts(parts, TrackedBody::new(body, guard)))
                        }
                        Err(e) => Err(fail(
                            this.guard,
                            this.classifier.as_deref(),
                            this.served_by.take(),
                            e.into(),
                        )),
                    });
                }
            }
        }
    }
}

fn fail(
    guard: &mut Option<InFlight>,
    classifier: Option<&dyn Classify>,
    served_by: Option<ServedBy>,
    e: BoxError,
) -> BoxError {
    if let Some(mut g) = guard.take() {
        g.observe_latency(true, true, None);
        let outcome = match classifier {
            Some(c) => c.classify_error(&*e),
            None => DefaultClassifier::new().classify_error(&*e),
        };
        g.observe(outcome);
    }
    // Name the target, so a retry can avoid it.
    match served_by {
        Some(s) => Box::new(super::error::AttemptFailed::new(s, e)),
        None => e,
    }
}

/// Latency feedback from a response head: `5xx` and `429` count as failures, and their
/// `Retry-After` (seconds or an HTTP-date) is passed on.
fn observe_response_latency<B>(g: &mut InFlight, rsp: &Response<B>) {
    let status = rsp.status();
    let failed = status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS;
    let retry_after = if failed {
        crate::http::retry_after(rsp.headers())
    } else {
        None
    };
    g.observe_latency(failed, false, retry_after);
}
