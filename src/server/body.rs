use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::error::BodyTooLarge;
use crate::error::BoxError;

/// The body of a request received by the [server](super): the client's bytes, cut off with
/// [`BodyTooLarge`] past the configured limit. Data and trailers pass through unchanged. A
/// request that came without a body has an empty one (ended from the start).
///
/// # Examples
///
/// ```
/// use http_body::Body;
/// use tower_lb::server::RequestBody;
///
/// fn streams<B: Body<Data = bytes::Bytes>>() {}
/// streams::<RequestBody>();
/// ```
#[derive(Debug)]
pub struct RequestBody {
    /// `None`: a request without a body, read by the server's own HTTP/1.1 codec.
    inner: Option<Incoming>,
    limit: Option<Limit>,
}

#[derive(Debug)]
pub(crate) struct Limit {
    left: u64,
    max: u64,
    exceeded: Arc<AtomicBool>,
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming, max: Option<u64>) -> (Self, Option<Arc<AtomicBool>>) {
        let mut flag = None;
        let limit = match max {
            Some(max) if !inner.is_end_stream() => {
                let exceeded = Arc::new(AtomicBool::new(false));
                flag = Some(exceeded.clone());
                Some(Limit {
                    left: max,
                    max,
                    exceeded,
                })
            }
            _ => None,
        };
        (
            RequestBody {
                inner: Some(inner),
                limit,
            },
            flag,
        )
    }

    /// The body of a request that came without one.
    pub(crate) fn empty() -> Self {
        RequestBody {
            inner: None,
            limit: None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        let Some(limit) = this.limit.as_mut() else {
            return polled.map_err(Into::into);
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > limit.left {
                    limit.exceeded.store(true, Ordering::Relaxed);
                    limit.left = 0;
                    return Poll::Ready(Some(Err(BodyTooLarge::new(limit.max).into())));
                }
                limit.left -= len;
                Poll::Ready(Some(Ok(frame)))
            }
            other => other.map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
