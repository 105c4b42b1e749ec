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
use crate::balance::WantServedBy;
use crate::error::BoxError;
use crate::key::ClientAddr;

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
    /// The copy for the next attempt, without its header fields and extensions; `None` once
    /// the policy could not take one.
    copy: Option<Request<ReplayBody<B>>>,
    /// The copy's header fields, put back into it when a retry is wanted.
    headers: HeaderCopy,
    /// The copy's extensions, put back into it when a retry is wanted (`None` once they are).
    extensions: Option<ExtensionsCopy>,
}

/// A request's extensions as a retry needs them back.
enum ExtensionsCopy {
    /// Nothing but this crate's plain values (see `balance::extensions::plain`), the common
    /// map: kept as values, so a request that is not retried builds, fills and empties no map
    /// for its copy.
    Plain(Option<ClientAddr>, bool),
    /// Anything else: the map, cloned.
    Map(http::Extensions),
}

impl ExtensionsCopy {
    #[inline]
    fn of(ext: &http::Extensions) -> Self {
        match crate::balance::extensions::plain(ext) {
            Some((addr, mark)) => ExtensionsCopy::Plain(addr, mark),
            None => ExtensionsCopy::Map(ext.clone()),
        }
    }

    /// Puts the extensions into `ext` (a copy's map, empty until now).
    fn restore(self, ext: &mut http::Extensions) {
        match self {
            ExtensionsCopy::Plain(addr, mark) => {
                if let Some(addr) = addr {
                    ext.insert(addr);
                }
                if mark {
                    ext.insert(WantServedBy);
                }
            }
            ExtensionsCopy::Map(map) => ext.extend(map),
        }
    }
}

impl<S, B> Retrier<S, B> {
    /// Before the first attempt of `req`: what a retry would take (a copy, see
    /// `RetryPolicy::copy_request`, the header fields and the extensions, in one allocation),
    /// or `None` when no retry is possible. `template` is the service's policy; the box gets a
    /// session of it.
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
            extensions: Some(ExtensionsCopy::of(req.extensions())),
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
                    let Some(Retrier {
                        copy: Some(copy),
                        policy,
                        headers,
                        extensions,
                        ..
                    }) = this.retry.as_deref_mut()
                    else {
                        return Poll::Ready(result);
                    };
                    let restore = |req: &mut Request<ReplayBody<B>>| {
                        if let Some(extensions) = extensions.take() {
                            extensions.restore(req.extensions_mut());
                        }
                        headers.restore(req.headers_mut())
                    };
                    match policy.decide(copy, &mut result, restore) {
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
                    retrier.extensions = Some(ExtensionsCopy::of(req.extensions()));
                    let future = service.call(req);
                    this.state.set(State::Called { future });
                }
            }
        }
    }
}
