//! The one body wrapper behind every "counted until the body ends" type of the crate
//! ([`TrackedBody`](crate::balance::body::TrackedBody),
//! [`InFlightBody`](crate::limit::body::InFlightBody)): a response body that holds a guard
//! until the body ends, fails or is dropped, and passes everything else through.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// Something a [`GuardedBody`] holds until its body is done; dropping it releases it.
pub(crate) trait BodyGuard {
    /// The body broke off with an error; called once, just before the guard drops.
    fn on_error(&mut self) {}
}

pin_project! {
    /// A body holding `guard` until its last frame, its first error or its drop.
    pub(crate) struct GuardedBody<B, G> {
        #[pin]
        inner: B,
        guard: Option<G>,
    }
}

impl<B, G> GuardedBody<B, G> {
    pub(crate) fn new(inner: B, guard: Option<G>) -> Self {
        GuardedBody { inner, guard }
    }

    pub(crate) fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Unwraps the body, releasing the guard.
    pub(crate) fn into_inner(self) -> B {
        self.inner
    }

    /// Whether the guard is still held.
    pub(crate) fn is_guarded(&self) -> bool {
        self.guard.is_some()
    }
}

impl<B: Body, G: BodyGuard> Body for GuardedBody<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(None) => *this.guard = None,
            Poll::Ready(Some(Err(_))) => {
                if let Some(mut g) = this.guard.take() {
                    g.on_error();
                }
            }
            Poll::Ready(Some(Ok(_))) => {
                if this.inner.is_end_stream() {
                    *this.guard = None;
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
