//! The future returned by [`Retry`](super::Retry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::retry::Policy;
use tower_service::Service;

use super::{Attempts, ReplayBody, RetryPolicy};
use crate::error::BoxError;

pin_project! {
    /// Drives the attempts of one request and tags the final response with [`Attempts`].
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
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>, Error = BoxError> + Clone,
{
    type Output = Result<Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut res = ready!(self.project().inner.poll(cx));
        if let Ok(rsp) = &mut res {
            // Requests that could not be replayed never reach the policy's last word.
            if rsp.extensions().get::<Attempts>().is_none() {
                rsp.extensions_mut().insert(Attempts::new(1));
            }
        }
        Poll::Ready(res)
    }
}
