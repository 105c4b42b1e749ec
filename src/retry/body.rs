//! A request body that can be sent again: buffered up to a limit while it streams through.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::error::BodyNotReplayable;
use crate::error::BoxError;
use crate::util::lock;

/// A request body that remembers what it sent, up to a limit, so a retry can send it again.
///
/// The first attempt streams the original body through (nothing waits for the whole body) while
/// the frames are kept in a shared buffer. A clone made for a retry replays the buffered frames,
/// then goes on reading the original body where the last reader left off. Once more than the
/// limit has gone through, the buffer is dropped and the body is no longer replayable: it was
/// sent once and will not be sent again, and it is never held whole in memory.
///
/// Empty bodies cost nothing (no shared state), and a body whose size hint already exceeds the
/// limit is passed through without any buffering.
///
/// [`Retry`](super::Retry) wraps every request body in one; you rarely build one yourself.
///
/// # Examples
///
/// ```
/// use http_body_util::{BodyExt, Full};
/// use bytes::Bytes;
/// use tower_lb::retry::ReplayBody;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let first = ReplayBody::new(Full::new(Bytes::from_static(b"hello")), 64 * 1024);
/// let again = first.try_clone().expect("small bodies are replayable");
/// assert_eq!(first.collect().await.unwrap().to_bytes(), "hello");
/// assert_eq!(again.collect().await.unwrap().to_bytes(), "hello");
/// # }
/// ```
pub struct ReplayBody<B> {
    // Nothing else: the body is as large as the body it wraps (a request body's niche holds
    // the other kinds), so wrapping it does not grow what every layer below moves and keeps.
    kind: Kind<B>,
}

enum Kind<B> {
    Empty,
    /// Too large to ever replay: sent once, as is.
    Once(Option<B>),
    Shared {
        shared: Arc<Mutex<Shared<B>>>,
        /// Frames of `buf` this reader has yielded.
        seen: usize,
        trailers_sent: bool,
    },
}

struct Shared<B> {
    inner: Option<B>,
    buf: Vec<Bytes>,
    buffered: usize,
    limit: usize,
    /// Data frames read from `inner` so far (by any reader).
    pulled: usize,
    /// More than `limit` went through: `buf` was dropped.
    capped: bool,
    ended: bool,
    trailers: Option<HeaderMap>,
    /// The original body's size hint, which every copy reports before its first frame, so
    /// each attempt goes out with the same framing (`Content-Length` or none).
    hint: SizeHint,
}

impl<B: Body<Data = Bytes>> ReplayBody<B> {
    /// Wraps `body`, keeping up to `limit` bytes for replay.
    pub fn new(body: B, limit: usize) -> Self {
        let kind = if body.is_end_stream() {
            Kind::Empty
        } else if body.size_hint().lower() > limit as u64 {
            Kind::Once(Some(body))
        } else {
            let hint = body.size_hint();
            Kind::Shared {
                shared: Arc::new(Mutex::new(Shared {
                    hint,
                    inner: Some(body),
                    buf: Vec::new(),
                    buffered: 0,
                    limit,
                    pulled: 0,
                    capped: false,
                    ended: false,
                    trailers: None,
                })),
                seen: 0,
                trailers_sent: false,
            }
        };
        ReplayBody { kind }
    }
}

impl<B> ReplayBody<B> {
    /// Whether everything that went through so far is still held for replay.
    pub fn is_replayable(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Once(_) => false,
            Kind::Shared { shared, .. } => !lock(shared).capped,
        }
    }

    /// A body that replays this one from the start, or `None` if it can no longer be replayed.
    pub fn try_clone(&self) -> Option<Self> {
        match &self.kind {
            Kind::Empty => Some(ReplayBody { kind: Kind::Empty }),
            Kind::Once(_) => None,
            Kind::Shared { shared, .. } => {
                if lock(shared).capped {
                    return None;
                }
                Some(ReplayBody {
                    kind: Kind::Shared {
                        shared: shared.clone(),
                        seen: 0,
                        trailers_sent: false,
                    },
                })
            }
        }
    }
}

impl<B> ReplayBody<B> {
    /// For a body too large to replay that has not been polled yet: an empty stand-in, for a
    /// retry copy that can only go out if the client hands the untouched body back (a connect
    /// failure: see [`ConnectFailed::with_body`](crate::error::ConnectFailed::with_body)).
    pub(crate) fn handover_slot(&self) -> Option<Self> {
        match &self.kind {
            Kind::Once(Some(_)) => Some(ReplayBody {
                kind: Kind::Once(None),
            }),
            _ => None,
        }
    }

    /// Puts a handed-back body into this copy.
    pub(crate) fn adopt(&mut self, handed_back: Self) {
        self.kind = handed_back.kind;
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Empty => "empty",
            Kind::Once(_) => "once",
            Kind::Shared { .. } => "buffered",
        };
        f.debug_struct("ReplayBody")
            .field("kind", &kind)
            .field("replayable", &self.is_replayable())
            .finish()
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Once(body) => match body {
                Some(b) => {
                    let polled = Pin::new(b).poll_frame(cx);
                    if let Poll::Ready(None) = polled {
                        *body = None;
                    }
                    polled.map(|o| o.map(|r| r.map_err(Into::into)))
                }
                None => Poll::Ready(None),
            },
            Kind::Shared {
                shared,
                seen,
                trailers_sent,
            } => {
                let mut s = lock(shared);
                if !s.capped && *seen < s.buf.len() {
                    let data = s.buf[*seen].clone();
                    *seen += 1;
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                if *seen < s.pulled {
                    // Another reader went past the limit; this one missed data it needs.
                    return Poll::Ready(Some(Err(Box::new(BodyNotReplayable::new()))));
                }
                if s.ended {
                    if !*trailers_sent {
                        *trailers_sent = true;
                        if let Some(t) = s.trailers.clone() {
                            return Poll::Ready(Some(Ok(Frame::trailers(t))));
                        }
                    }
                    return Poll::Ready(None);
                }
                let Some(inner) = s.inner.as_mut() else {
                    return Poll::Ready(None);
                };
                match Pin::new(inner).poll_frame(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(None) => {
                        s.ended = true;
                        s.inner = None;
                        Poll::Ready(None)
                    }
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => {
                            s.pulled += 1;
                            *seen += 1;
                            if !s.capped {
                                if s.buffered + data.len() <= s.limit {
                                    s.buffered += data.len();
                                    s.buf.push(data.clone());
                                } else {
                                    s.capped = true;
                                    s.buf = Vec::new();
                                    s.buffered = 0;
                                }
                            }
                            if s.inner.as_ref().is_some_and(|b| b.is_end_stream()) {
                                s.ended = true;
                                s.inner = None;
                                *trailers_sent = true;
                            }
                            Poll::Ready(Some(Ok(Frame::data(data))))
                        }
                        Err(frame) => {
                            // Not data: trailers, the last frame of a body.
                            let trailers = frame.into_trailers().ok();
                            s.trailers = trailers.clone();
                            s.ended = true;
                            s.inner = None;
                            *trailers_sent = true;
                            Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))))
                        }
                    },
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Once(b) => b.as_ref().is_none_or(|b| b.is_end_stream()),
            Kind::Shared {
                shared,
                seen,
                trailers_sent,
            } => {
                let s = lock(shared);
                s.ended
                    && *seen >= s.buf.len()
                    && *seen >= s.pulled
                    && (*trailers_sent || s.trailers.is_none())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Once(b) => b
                .as_ref()
                .map_or(SizeHint::with_exact(0), |b| b.size_hint()),
            Kind::Shared { shared, seen, .. } => {
                let s = lock(shared);
                if *seen == 0 {
                    // Not started: the original's hint, whichever copy this is.
                    return s.hint;
                }
                // Started: what is left of an exact size, else unknown.
                match s.hint.exact() {
                    Some(n) if !s.capped => {
                        let sent: usize = s.buf[..(*seen).min(s.buf.len())]
                            .iter()
                            .map(Bytes::len)
                            .sum();
                        SizeHint::with_exact(n.saturating_sub(sent as u64))
                    }
                    _ => SizeHint::default(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    fn chunks(
        n: usize,
        size: usize,
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = (0..n)
            .map(|i| Ok(Frame::data(Bytes::from(vec![i as u8; size]))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn replays_small_streaming_body() {
        let a = ReplayBody::new(chunks(4, 10), 64);
        let b = a.try_clone().unwrap();
        let first = a.collect().await.unwrap().to_bytes();
        assert_eq!(first.len(), 40);
        assert_eq!(b.collect().await.unwrap().to_bytes(), first);
    }

    #[tokio::test]
    async fn clone_before_read_takes_over_the_original() {
        let a = ReplayBody::new(chunks(3, 5), 64);
        let b = a.try_clone().unwrap();
        drop(a);
        assert_eq!(b.collect().await.unwrap().to_bytes().len(), 15);
    }

    #[tokio::test]
    async fn large_streaming_body_is_sent_once_and_not_kept() {
        let a = ReplayBody::new(chunks(10, 10), 64);
        let b = a.try_clone().unwrap();
        assert_eq!(a.collect().await.unwrap().to_bytes().len(), 100);
        // A clone made earlier notices it cannot replay.
        assert!(b.collect().await.is_err());
        let c = ReplayBody::new(chunks(10, 10), 64);
        let mut c = c;
        while c.frame().await.is_some() {}
        assert!(!c.is_replayable());
        assert!(c.try_clone().is_none());
    }

    #[tokio::test]
    async fn known_large_body_is_passed_through() {
        let a = ReplayBody::new(Full::new(Bytes::from(vec![0u8; 100])), 64);
        assert!(a.try_clone().is_none());
        assert_eq!(a.collect().await.unwrap().to_bytes().len(), 100);
    }

    #[test]
    fn empty_body_has_no_shared_state() {
        let a = ReplayBody::new(Full::new(Bytes::new()), 64);
        assert!(matches!(a.kind, Kind::Empty));
        assert!(a.try_clone().is_some());
    }
}
