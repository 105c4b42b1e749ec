//! The future returned by [`Retry`](super::Retry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::headers::HeaderCopy;
use super::{ReplayBody, RetryPolicy};
use crate::error::BoxError;

pin_project! {
    /// Drives the attempts of one request; a response that took more than one attempt carries
    /// [`Attempts`](super::Attempts).
    ///
    /// Small whatever the request: the copy kept for a retry, the service a retry is sent
    /// through and a backoff's timer are boxed, so this future (which every layer above holds
    /// and moves) is the attempt's future plus two words.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        state: State<S::Future>,
        // `None` when no retry is possible (no copy was taken).
        retry: Option<Box<Retrier<S, B>>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // An attempt is in flight.
        Called {
            #[pin]
            future: F,
        },
        // The backoff before the next attempt.
        Waiting {
            backoff: Pin<Box<Sleep>>,
        },
        // Waiting for the service to be ready for the next attempt.
        Retrying,
    }
}

/// What a retry needs, kept apart from the attempt in flight: tower's `Retry` drives the
/// policy in the same order (`clone_request` before each attempt, `retry` after it, the copy
/// sent only when `retry` asked for it).
pub(crate) struct Retrier<S, B> {
    /// A clone of the inner service, taken once the first attempt was called (as tower's
    /// `Retry` does); `None` only until then.
    service: Option<S>,
    /// This request's session of the policy (its attempt count).
    policy: RetryPolicy,
    /// The copy for the next attempt, without its header fields; `None` once the policy could
    /// not take one.
    copy: Option<Request<ReplayBody<B>>>,
    /// The copy's header fields, put back into it when a retry is wanted.
    headers: HeaderCopy,
}

impl<S, B> Retrier<S, B> {
    /// Before the first attempt of `req`: what a retry would take (a copy, see
    /// `RetryPolicy::copy_request`, and the header fields, in one allocation), or `None` when no
    /// retry is possible. `template` is the service's policy; the box gets a session of it.
    #[inline]
    pub(crate) fn first(
        template: &mut RetryPolicy,
        req: &Request<ReplayBody<B>>,
    ) -> Option<Box<Self>> {
        let copy = template.copy_request(req)?;
        let mut retrier = Box::new(Retrier {
            service: None,
            policy: template.clone(),
            copy: Some(copy),
            headers: HeaderCopy::empty(),
        });
        // Filled in place: the fields are the largest part of the box.
        retrier.headers.fill(req.headers()).then_some(retrier)
    }

    /// The service a retry goes through (see `service`).
    #[inline]
    pub(crate) fn set_service(&mut self, service: S) {
        self.service = Some(service);
    }
}

impl<S, B> Drop for Retrier<S, B> {
    fn drop(&mut self) {
        // A copy never sent: its map serves the next request's copy (`util::spare`).
        if let Some(copy) = &mut self.copy {
            crate::balance::extensions::recycle_plain(copy.extensions_mut());
        }
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    /// The first attempt's future; `retry` holds what a retry takes, `None` when there is no
    /// copy of the request to send again.
    #[inline]
    pub(crate) fn new(future: S::Future, retry: Option<Box<Retrier<S, B>>>) -> Self {
        ResponseFuture {
            state: State::Called { future },
            retry,
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Waiting { .. } => "waiting",
            State::Retrying => "retrying",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field(
                "retryable",
                &self.retry.as_ref().is_some_and(|r| r.copy.is_some()),
            )
            .finish_non_exhaustive()
    }
}

impl<S, B, RB> Future for ResponseFuture<S, B>
where
    B: Send + 'static,
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>, Error = BoxError>,
{
    type Output = Result<Response<RB>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let mut result = ready!(future.poll(cx));
                    let Some(retrier) = this.retry.as_deref_mut() else {
                        return Poll::Ready(result);
                    };
                    let Some(copy) = retrier.copy.as_mut() else {
                        return Poll::Ready(result);
                    };
                    let headers = &retrier.headers;
                    let restore =
                        |req: &mut Request<ReplayBody<B>>| headers.restore(req.headers_mut());
                    match retrier.policy.decide(copy, &mut result, restore) {
                        Some(backoff) => this.state.set(State::Waiting {
                            backoff: Box::pin(backoff),
                        }),
                        None => return Poll::Ready(result),
                    }
                }
                StateProj::Waiting { backoff } => {
                    ready!(backoff.as_mut().poll(cx));
                    this.state.set(State::Retrying);
                }
                StateProj::Retrying => {
                    // Only `Called` moves here, and only with a copy to send.
                    let Some(retrier) = this.retry.as_deref_mut() else {
                        return Poll::Ready(Err("retry future polled after completion".into()));
                    };
                    let Some(service) = retrier.service.as_mut() else {
                        return Poll::Ready(Err("retry future polled after completion".into()));
                    };
                    ready!(service.poll_ready(cx))?;
                    let Some(req) = retrier.copy.take() else {
                        return Poll::Ready(Err("retry future polled after completion".into()));
                    };
                    // The copy for the attempt after this one.
                    let headers = &mut retrier.headers;
                    retrier.copy =
                        (retrier.policy.copy_request(&req)).filter(|_| headers.fill(req.headers()));
                    let future = service.call(req);
                    this.state.set(State::Called { future });
                }
            }
        }
    }
}
