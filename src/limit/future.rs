//! The future returned by the limit services.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::in_flight::Permit;
use crate::error::BoxError;

pin_project! {
    /// The inner service's future, or a refusal; holds an in-flight permit until it completes
    /// (or is dropped).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Admitted { #[pin] fut: F, permit: Option<Permit> },
        Refused { error: Option<BoxError> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn admitted(fut: F, permit: Option<Permit>) -> Self {
        ResponseFuture {
            kind: Kind::Admitted { fut, permit },
        }
    }

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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Refused { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "response future polled after completion".into()))),
            KindProj::Admitted { fut, permit } => {
                let res = ready!(fut.poll(cx));
                drop(permit.take());
                Poll::Ready(res.map_err(Into::into))
            }
        }
    }
}
