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
/// request that came without a body has an empty one (ended from the start); a small body
/// the server's own HTTP/1.1 codec read whole comes as one data frame of its exact size.
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
    inner: Inner,
    limit: Option<Limit>,
}

#[derive(Debug)]
enum Inner {
    /// Read by hyper.
    Hyper(Incoming),
    /// Read whole by the server's own HTTP/1.1 codec, within the limit; `None` once taken
    /// (or for a request without a body).
    Whole(Option<Bytes>),
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
                inner: Inner::Hyper(inner),
                limit,
            },
            flag,
        )
    }

    /// The body of a request that came without one.
    pub(crate) fn empty() -> Self {
        RequestBody {
            inner: Inner::Whole(None),
            limit: None,
        }
    }

    /// A body read whole (within the server's limit) by its own HTTP/1.1 codec.
    pub(crate) fn whole(data: Bytes) -> Self {
        RequestBody {
            inner: Inner::Whole(Some(data).filter(|d| !d.is_empty())),
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
        let inner = match &mut this.inner {
            Inner::Hyper(inner) => inner,
            Inner::Whole(data) => return Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
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
        match &self.inner {
            Inner::Hyper(inner) => inner.is_end_stream(),
            Inner::Whole(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Hyper(inner) => inner.size_hint(),
            Inner::Whole(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}
