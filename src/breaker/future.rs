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
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Admitted { #[pin] fut: F, permit: Option<Permit> },
        Refused { error: Option<CircuitOpen> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn admitted(fut: F, permit: Permit) -> Self {
        ResponseFuture {
            kind: Kind::Admitted {
                fut,
                permit: Some(permit),
            },
        }
    }

    pub(crate) fn refused(error: CircuitOpen) -> Self {
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

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Refused { error } => Poll::Ready(Err(match error.take() {
                Some(e) => Box::new(e),
                None => "response future polled after completion".into(),
            })),
            KindProj::Admitted { fut, permit } => {
                let res = ready!(fut.poll(cx)).map_err(Into::into);
                if let Some(p) = permit.take() {
                    let outcome = match &res {
                        Ok(rsp) => p.classifier().classify_status(rsp.status()),
                        Err(e) => p.classifier().classify_error(&**e),
                    };
                    p.complete(outcome);
                }
                Poll::Ready(res)
            }
        }
    }
}
