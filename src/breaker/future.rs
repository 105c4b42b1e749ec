//! The future returned by [`CircuitBreaker`](super::CircuitBreaker).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::error::CircuitOpen;
use super::state::Permit;
use crate::error::BoxError;

pin_project! {
    /// Reports the response's outcome to the breaker, or fails at once when it was refused.
    ///
    /// Dropping it before it completes hands a half-open probe's permit back.
    pub struct ResponseFuture<F> {
        // One flat struct rather than an enum of admitted/refused: the inner future is moved
        // into place once (it is most of this future's size).
        #[pin]
        fut: Option<F>,
        permit: Option<Permit>,
        refused: Option<BoxError>,
    }
}

impl<F> ResponseFuture<F> {
    #[inline(always)]
    pub(crate) fn admitted(fut: F, permit: Permit) -> Self {
        ResponseFuture {
            fut: Some(fut),
            permit: Some(permit),
            refused: None,
        }
    }

    #[inline]
    pub(crate) fn refused(error: CircuitOpen) -> Self {
        ResponseFuture {
            fut: None,
            permit: None,
            refused: Some(Box::new(error)),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let admitted = self.fut.is_some();
        f.debug_struct("ResponseFuture")
            .field("admitted", &admitted)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<B>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(fut) = this.fut.as_pin_mut() else {
            return Poll::Ready(Err(this
                .refused
                .take()
                .unwrap_or_else(|| "response future polled after completion".into())));
        };
        let res = ready!(fut.poll(cx)).map_err(Into::into);
        if let Some(p) = this.permit.take() {
            let outcome = match &res {
                Ok(rsp) => p.classifier().classify_status(rsp.status()),
                Err(e) => p.classifier().classify_error(&**e),
            };
            p.complete(outcome);
        }
        Poll::Ready(res)
    }
}
