//! The future returned by [`Retry`](super::Retry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::ReplayBody;
use super::copy::PooledHead;
use super::service::Shared;
use crate::error::BoxError;

pin_project! {
    /// Drives the attempts of one request; a response that took more than one attempt carries
    /// [`Attempts`](super::Attempts).
    ///
    /// Small whatever the request: what a retry needs is the attempt's future plus a few words
    /// (the body's replay, the attempt count, one reference to the policy and to the service
    /// retries go through); the head of the copy is in a buffer reused from request to request
    /// (see `retry::copy`), and a request waiting to go again (with its clone of the service)
    /// and a backoff's timer are boxed.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        state: State<S::Future>,
        retry: Retrier<S, B>,
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
    /// The policy and the service a retry goes through (one reference for both); `None` when
    /// no retry is possible (no copy was taken).
    shared: Option<Arc<Shared<S>>>,
    /// This request's session of the policy: the attempts finished.
    attempts: u32,
    /// The copy for the next attempt: its body, and its head without which it is not sent;
    /// `None` once the policy could not take one.
    body: Option<ReplayBody<B>>,
    head: Option<PooledHead>,
    /// A granted retry, during the backoff and until its service is ready.
    next: Option<Box<Next<S, B>>>,
}

/// A retry about to be sent: the request, and the clone of the wrapped service it goes
/// through.
struct Next<S, B> {
    req: Request<ReplayBody<B>>,
    service: S,
}

impl<S, B> Retrier<S, B> {
    /// Before the first attempt of `req`: what a retry would take (a replay of the body, see
    /// `RetryPolicy::copy_body`, and the head), or nothing when no retry is possible.
    #[inline(always)]
    pub(crate) fn first(shared: &Arc<Shared<S>>, req: &Request<ReplayBody<B>>) -> Self {
        let copy = shared
            .policy
            .copy_body(0, req)
            .and_then(|body| Some((body, PooledHead::of(req)?)));
        match copy {
            Some((body, head)) => Retrier {
                shared: Some(shared.clone()),
                attempts: 0,
                body: Some(body),
                head: Some(head),
                next: None,
            },
            None => Retrier {
                shared: None,
                attempts: 0,
                body: None,
                head: None,
                next: None,
            },
        }
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    /// The first attempt's future; `retry` holds what a retry takes.
    #[inline(always)]
    pub(crate) fn new(future: S::Future, retry: Retrier<S, B>) -> Self {
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
            .field("retryable", &self.retry.body.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, B, RB> Future for ResponseFuture<S, B>
where
    B: Send + 'static,
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>, Error = BoxError> + Clone,
{
    type Output = Result<Response<RB>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    // The outcome is looked at in place and returned as polled: a response is
                    // a few hundred bytes, not to be moved more than needed.
                    let mut polled = future.poll(cx);
                    let Poll::Ready(result) = &mut polled else {
                        return Poll::Pending;
                    };
                    let Retrier {
                        shared,
                        attempts,
                        body,
                        head,
                        next,
                    } = &mut *this.retry;
                    let Some(shared) = shared.as_deref() else {
                        return polled;
                    };
                    let policy = &shared.policy;
                    // The common case: settled without looking at the copy.
                    if policy.settle(attempts, result) {
                        return polled;
                    }
                    let (Some(body), Some(head)) = (body.take(), head.as_mut()) else {
                        policy.no_copy(*attempts, result);
                        return polled;
                    };
                    let mut req = head.request(body);
                    let restore = |req: &mut Request<ReplayBody<B>>| head.restore(req);
                    match policy.decide_unsettled(*attempts, &mut req, result, restore) {
                        Some(backoff) => {
                            let service = shared.service();
                            *next = Some(Box::new(Next { req, service }));
                            this.state.set(State::Waiting {
                                backoff: Box::pin(backoff),
                            });
                        }
                        None => return polled,
                    }
                }
                StateProj::Waiting { backoff } => {
                    ready!(backoff.as_mut().poll(cx));
                    this.state.set(State::Retrying);
                }
                StateProj::Retrying => {
                    // Only `Called` moves here, and only with a retry to send.
                    let retry = &mut *this.retry;
                    let (Some(shared), Some(next)) = (retry.shared.as_deref(), retry.next.as_mut())
                    else {
                        return Poll::Ready(Err("retry future polled after completion".into()));
                    };
                    ready!(next.service.poll_ready(cx))?;
                    let Some(next) = retry.next.take() else {
                        return Poll::Ready(Err("retry future polled after completion".into()));
                    };
                    let Next { req, mut service } = *next;
                    // The copy for the attempt after this one.
                    retry.body = shared.policy.copy_body(retry.attempts, &req);
                    if retry.body.is_some() && !retry.head.as_mut().is_some_and(|h| h.fill(&req)) {
                        retry.body = None;
                    }
                    let future = service.call(req);
                    this.state.set(State::Called { future });
                }
            }
        }
    }
}
