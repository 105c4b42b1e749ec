//! The future returned by [`Retry`](super::Retry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::retry::Policy;
use tower_service::Service;

use super::{ReplayBody, RetryPolicy};
use crate::error::BoxError;

pin_project! {
    /// Drives the attempts of one request; a response that took more than one attempt carries
    /// [`Attempts`](super::Attempts).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
        RetryPolicy: Policy<Request<ReplayBody<B>>, S::Response, S::Error>,
    {
        #[pin]
        inner: tower::retry::future::ResponseFuture<RetryPolicy, S, Request<ReplayBody<B>>>,
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
    RetryPolicy: Policy<Request<ReplayBody<B>>, S::Response, S::Error>,
{
    #[inline]
    pub(crate) fn new(
        inner: tower::retry::future::ResponseFuture<RetryPolicy, S, Request<ReplayBody<B>>>,
    ) -> Self {
        ResponseFuture { inner }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
    RetryPolicy: Policy<Request<ReplayBody<B>>, S::Response, S::Error>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
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
        self.project().inner.poll(cx)
    }
}
