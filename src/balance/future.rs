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
//! use tower_lb::{Target, TargetGroup};
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
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::{InFlight, TrackedBody};
use crate::error::BoxError;

/// Which outcomes of an attempt name their target (see [`Balance::served_by`](super::Balance::served_by)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tagging {
    /// Every response carries `ServedBy`; errors are wrapped in `AttemptFailed`.
    Every,
    /// Responses with an error status (`4xx`, `5xx`) or classified as failures carry
    /// `ServedBy`; errors are wrapped in `AttemptFailed`.
    Errors,
    /// Nothing is tagged.
    Never,
}

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
        tagging: Tagging,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Failed { error: Option<BoxError> },
        // The request is boxed: a target not ready at once is rare, and an inline request
        // would make every layer's future above this one as large as a request.
        NotReady { svc: S, req: Option<Box<Req>> },
        Called { #[pin] fut: S::Future },
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    /// An attempt whose target's service was ready and has been called.
    #[inline(always)]
    pub(crate) fn called(fut: S::Future, guard: InFlight, tagging: Tagging) -> Self {
        ResponseFuture {
            state: State::Called { fut },
            guard: Some(guard),
            tagging,
        }
    }

    /// An attempt waiting for its target's service to become ready; the request waits in
    /// the future.
    #[cold]
    pub(crate) fn parked(svc: S, req: Req, guard: InFlight, tagging: Tagging) -> Self {
        ResponseFuture {
            state: State::NotReady {
                svc,
                req: Some(Box::new(req)),
            },
            guard: Some(guard),
            tagging,
        }
    }

    /// An attempt whose target's service failed before the request was sent.
    #[cold]
    pub(crate) fn refused(e: S::Error, guard: InFlight, tagging: Tagging) -> Self
    where
        S::Error: Into<BoxError>,
    {
        ResponseFuture::failed(fail(&mut Some(guard), tagging, e.into()))
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
            guard: None,
            tagging: Tagging::Never,
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field(
                "served_by",
                &self.guard.as_ref().and_then(InFlight::served_by),
            )
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
                // The guard leaves with the outcome: without it the attempt is over.
                _ if this.guard.is_none() => {
                    return Poll::Ready(Err("response future polled after completion".into()));
                }
                StateProj::NotReady { svc, req } => {
                    if let Err(e) = ready!(svc.poll_ready(cx)) {
                        return Poll::Ready(Err(fail(this.guard, *this.tagging, e.into())));
                    }
                    let Some(req) = req.take() else {
                        return Poll::Ready(Err("response future polled after completion".into()));
                    };
                    let fut = svc.call(*req);
                    this.state.set(State::Called { fut });
                }
                StateProj::Called { fut } => {
                    let res = ready!(fut.poll(cx));
                    return Poll::Ready(match res {
                        Ok(rsp) => Ok(respond(this.guard.take(), *this.tagging, rsp)),
                        Err(e) => Err(fail(this.guard, *this.tagging, e.into())),
                    });
                }
            }
        }
    }
}

/// Classifies a response, feeds the target's health and latency, tags the response if asked
/// and wraps its body so the request stays in flight until the body ends.
#[inline]
fn respond<RB: Body>(
    guard: Option<InFlight>,
    tagging: Tagging,
    mut rsp: Response<RB>,
) -> Response<TrackedBody<RB>> {
    let Some(mut g) = guard else {
        return rsp.map(|body| TrackedBody::new(body, None));
    };
    let outcome = g.classify_status(rsp.status());
    g.responded(rsp.status());
    if g.is_timed() {
        observe_response_latency(&mut g, &rsp);
    }
    let tag = match tagging {
        Tagging::Every => true,
        Tagging::Errors => outcome.is_failure() || rsp.status().as_u16() >= 400,
        Tagging::Never => false,
    };
    g.observe(outcome);
    if tag {
        tag_response(&g, &mut rsp);
    }
    // An empty body has nothing left to wait for, except after a 101: the target is busy with
    // the upgraded connection until whoever relays it drops the body.
    let held = !rsp.body().is_end_stream() || rsp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
    let guard = held.then_some(g);
    rsp.map(|body| TrackedBody::new(body, guard))
}

#[inline(never)]
fn tag_response<RB>(g: &InFlight, rsp: &mut Response<RB>) {
    if let Some(served) = g.served_by() {
        rsp.extensions_mut().insert(served);
    }
}

#[cold]
fn fail(guard: &mut Option<InFlight>, tagging: Tagging, e: BoxError) -> BoxError {
    let Some(mut g) = guard.take() else {
        return e;
    };
    let outcome = g.classify_error(&*e);
    if outcome.is_neutral() {
        // The request's fault (or a local refusal): no latency penalty for the target.
        g.untime();
    } else {
        g.observe_latency(true, true, None);
    }
    g.observe(outcome);
    // Name the target, so a retry can avoid it.
    match g.served_by().filter(|_| tagging != Tagging::Never) {
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
        crate::util::retry_after(rsp.headers())
    } else {
        None
    };
    g.observe_latency(failed, false, retry_after);
}
