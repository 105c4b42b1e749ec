//! The futures returned by the limit services: [`ResponseFuture`] for the rate limit,
//! [`InFlightLimitFuture`] (which hands its permit to the response body) for the in-flight limit.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::body::InFlightBody;
use super::in_flight::Permit;
use crate::error::BoxError;

pin_project! {
    /// The inner service's future, or a refusal.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Admitted { #[pin] fut: F },
        Refused { error: Option<BoxError> },
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn admitted(fut: F) -> Self {
        ResponseFuture {
            kind: Kind::Admitted { fut },
        }
    }

    #[inline]
    pub(crate) fn refused(error: BoxError) -> Self {
        ResponseFuture {
            kind: Kind::Refused { error: Some(error) },
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let admitted = matches!(self.kind, Kind::Admitted { .. });
        f.debug_struct("ResponseFuture")
            .field("admitted", &admitted)
            .finish()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Refused { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "response future polled after completion".into()))),
            KindProj::Admitted { fut } => fut.poll(cx).map_err(Into::into),
        }
    }
}

pin_project! {
    /// The inner service's future, or a refusal, for an
    /// [`InFlightLimit`](super::InFlightLimit): holds the request's in-flight permit until the
    /// response arrives, then hands it to the response's [`InFlightBody`]. An error (or
    /// dropping the future) releases it.
    pub struct InFlightLimitFuture<F> {
        #[pin]
        inner: ResponseFuture<F>,
        permit: Option<Permit>,
    }
}

impl<F> InFlightLimitFuture<F> {
    pub(crate) fn admitted(fut: F, permit: Permit) -> Self {
        InFlightLimitFuture {
            inner: ResponseFuture::admitted(fut),
            permit: Some(permit),
        }
    }

    pub(crate) fn refused(error: BoxError) -> Self {
        InFlightLimitFuture {
            inner: ResponseFuture::refused(error),
            permit: None,
        }
    }
}

impl<F> fmt::Debug for InFlightLimitFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlightLimitFuture")
            .field("admitted", &self.permit.is_some())
            .finish()
    }
}

impl<F, B, E> Future for InFlightLimitFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<InFlightBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx));
        let permit = this.permit.take();
        Poll::Ready(res.map(|rsp| rsp.map(|body| InFlightBody::new(body, permit))))
    }
}
