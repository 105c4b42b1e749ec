//! The response body that keeps a request counted against the in-flight limits until the body
//! ends.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use http_body_util::BodyExt;
//! use tower::{service_fn, Layer, ServiceExt};
//! use tower_lb::limit::body::InFlightBody;
//! use tower_lb::limit::InFlightLimitLayer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
//! let limit = InFlightLimitLayer::new(10);
//! let svc = limit.layer(service_fn(|_r: Request<()>| async {
//!     Ok::<_, Infallible>(Response::new("streamed".to_string()))
//! }));
//! let rsp: Response<InFlightBody<String>> = svc.oneshot(Request::new(())).await?;
//! assert_eq!(limit.in_flight(), 1); // the body has not been read yet
//! let body = rsp.into_body().collect().await?.to_bytes();
//! assert_eq!(body, "streamed");
//! assert_eq!(limit.in_flight(), 0);
//! # Ok(()) }
//! ```

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::in_flight::Permit;
use crate::body::{BodyGuard, GuardedBody};

impl BodyGuard for Permit {}

pin_project! {
    /// The body of a response admitted by an [`InFlightLimit`](super::InFlightLimit): the
    /// request keeps its place in the limits (group-wide and per key) until this body has
    /// ended, failed or been dropped, so a long download or an event stream counts for as
    /// long as it flows.
    ///
    /// Everything else is passed through unchanged.
    pub struct InFlightBody<B> {
        #[pin]
        inner: GuardedBody<B, Permit>,
    }
}

impl<B> InFlightBody<B> {
    pub(crate) fn new(inner: B, permit: Option<Permit>) -> Self {
        InFlightBody {
            inner: GuardedBody::new(inner, permit),
        }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        self.inner.get_ref()
    }

    /// Unwraps the body; the request stops counting against the limits.
    pub fn into_inner(self) -> B {
        self.inner.into_inner()
    }
}

impl<B: fmt::Debug> fmt::Debug for InFlightBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlightBody")
            .field("inner", self.inner.get_ref())
            .field("in_flight", &self.inner.is_guarded())
            .finish()
    }
}

impl<B: Body> Body for InFlightBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
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
