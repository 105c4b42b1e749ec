//! The future returned by [`Timeout`](super::Timeout).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::timeout::error::Elapsed;

use crate::error::BoxError;

pin_project! {
    /// The inner response future, with a timer armed at the first poll that finds it pending.
    pub struct ResponseFuture<F> {
        // `None` once dropped for the deadline.
        #[pin]
        inner: Option<F>,
        // `None` until the inner future first returns `Pending`; inline (not boxed), so a
        // pending request does not allocate.
        #[pin]
        sleep: Option<Sleep>,
        timeout: Duration,
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn new(inner: F, timeout: Duration) -> Self {
        ResponseFuture {
            inner: Some(inner),
            sleep: None,
            timeout,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("timeout", &self.timeout)
            .field("armed", &self.sleep.is_some())
            .finish_non_exhaustive()
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
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(Elapsed::new().into()));
        };
        if let Poll::Ready(res) = inner.poll(cx) {
            return Poll::Ready(res.map_err(Into::into));
        }
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep(*this.timeout)));
        }
        match this.sleep.as_pin_mut().map(|sleep| sleep.poll(cx)) {
            Some(Poll::Ready(())) => {
                // Drop the attempt now, marked as cut off by a deadline, so the target it
                // was waiting on counts a timeout (a caller that merely goes away does not).
                crate::classify::drop_for_deadline(|| this.inner.set(None));
                Poll::Ready(Err(Elapsed::new().into()))
            }
            _ => Poll::Pending,
        }
    }
}
