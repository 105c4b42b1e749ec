//! One client connection: the hyper service around the user's tower service (peer and TLS
//! extensions, body limit, in-flight count) and the idle timer on the socket.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tower::util::{Oneshot, ServiceExt};
use tower_service::Service;

use super::RequestBody;
use crate::body::{BodyGuard, GuardedBody};
use crate::error::BoxError;
use crate::forward::ClientTls;
use crate::key::ClientAddr;
use crate::upstream::{ResponseBody, error_response};

/// What a connection's requests and its socket share: requests in flight (the connection is
/// idle only when none is).
#[derive(Debug, Default)]
pub(crate) struct Active {
    in_flight: AtomicUsize,
}

/// Holds one request in flight until its response body is done.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Active>);

impl InFlight {
    fn new(active: &Arc<Active>) -> Self {
        active.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(active.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BodyGuard for InFlight {}

pub(crate) type ConnBody<RB> = ResponseBody<GuardedBody<RB, InFlight>>;

/// The hyper service of one connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnService<S> {
    pub(crate) svc: S,
    pub(crate) peer: SocketAddr,
    pub(crate) tls: bool,
    pub(crate) max_body: Option<u64>,
    pub(crate) active: Arc<Active>,
}

fn short<B>(status: StatusCode, text: &'static str) -> Response<ResponseBody<B>> {
    let mut rsp = Response::new(ResponseBody::full(Bytes::from_static(text.as_bytes())));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    rsp
}

const TOO_LARGE: &str = "payload too large\n";

impl<S, RB> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<RequestBody>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    RB: Body<Data = Bytes>,
{
    type Response = Response<ConnBody<RB>>;
    type Error = std::convert::Infallible;
    type Future = ConnFuture<S, RB>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        if let (Some(max), Some(len)) = (self.max_body, req.body().size_hint().exact()) {
            if len > max {
                return ConnFuture {
                    kind: Kind::Done {
                        rsp: Some(short(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE)),
                    },
                };
            }
        }
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(ClientAddr(self.peer));
        if self.tls {
            parts.extensions.insert(ClientTls);
        }
        let (body, exceeded) = RequestBody::new(body, self.max_body);
        let guard = InFlight::new(&self.active);
        ConnFuture {
            kind: Kind::Calling {
                fut: self.svc.clone().oneshot(Request::from_parts(parts, body)),
                exceeded,
                guard: Some(guard),
            },
        }
    }
}

pin_project! {
    /// The response future of one request on a connection.
    pub(crate) struct ConnFuture<S, RB>
    where
        S: Service<Request<RequestBody>>,
    {
        #[pin]
        kind: Kind<S, RB>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, RB>
    where
        S: Service<Request<RequestBody>>,
    {
        Done { rsp: Option<Response<ConnBody<RB>>> },
        Calling {
            #[pin]
            fut: Oneshot<S, Request<RequestBody>>,
            exceeded: Option<Arc<AtomicBool>>,
            guard: Option<InFlight>,
        },
    }
}

impl<S, RB> Future for ConnFuture<S, RB>
where
    S: Service<Request<RequestBody>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: Body<Data = Bytes>,
{
    type Output = Result<Response<ConnBody<RB>>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Done { rsp } => Poll::Ready(Ok(rsp
                .take()
                .unwrap_or_else(|| short(StatusCode::INTERNAL_SERVER_ERROR, "\n")))),
            KindProj::Calling {
                fut,
                exceeded,
                guard,
            } => {
                let result = ready!(fut.poll(cx));
                // Whatever the stack made of a body cut off at the limit, it is the client's
                // fault: a 413.
                if exceeded.as_ref().is_some_and(|e| e.load(Ordering::Relaxed)) {
                    return Poll::Ready(Ok(short(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE)));
                }
                Poll::Ready(Ok(match result {
                    Ok(rsp) => rsp.map(|b| ResponseBody::new(GuardedBody::new(b, guard.take()))),
                    Err(e) => {
                        let e: BoxError = e.into();
                        error_response(&*e)
                    }
                }))
            }
        }
    }
}

pin_project! {
    /// A socket that fails reads with `TimedOut` once the connection has had no request in
    /// flight and no bytes either way for the idle timeout.
    pub(crate) struct IdleIo<T> {
        #[pin]
        inner: T,
        idle: Option<Duration>,
        sleep: Option<Pin<Box<Sleep>>>,
        moved: bool,
        active: Arc<Active>,
    }
}

impl<T> IdleIo<T> {
    pub(crate) fn new(inner: T, idle: Option<Duration>, active: Arc<Active>) -> Self {
        IdleIo {
            inner,
            idle,
            sleep: None,
            moved: true,
            active,
        }
    }
}

impl<T: AsyncRead> AsyncRead for IdleIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        match this.inner.poll_read(cx, buf) {
            Poll::Ready(r) => {
                *this.moved |= buf.filled().len() != before;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let Some(idle) = *this.idle else {
                    return Poll::Pending;
                };
                if this.active.in_flight.load(Ordering::Relaxed) != 0 {
                    *this.moved = true;
                    return Poll::Pending;
                }
                // One clock read per wait, only after traffic moved.
                if *this.moved || this.sleep.is_none() {
                    *this.moved = false;
                    let deadline = Instant::now() + idle;
                    match this.sleep.as_mut() {
                        Some(s) => s.as_mut().reset(deadline),
                        None => *this.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                }
                match this.sleep.as_mut().map(|s| s.as_mut().poll(cx)) {
                    Some(Poll::Ready(())) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client connection idle",
                    ))),
                    _ => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncWrite> AsyncWrite for IdleIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            *this.moved = true;
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            *this.moved = true;
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
