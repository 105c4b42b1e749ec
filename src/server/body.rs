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
/// [`BodyTooLarge`] past the configured limit. Data and trailers pass through unchanged.
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
    inner: Incoming,
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
        (RequestBody { inner, limit }, flag)
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
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
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
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
