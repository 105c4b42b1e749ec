//! One client connection: the service around the user's tower service (peer and TLS
//! extensions, body limit, in-flight count), called by hyper or by the server's own HTTP/1.1
//! codec, and the idle timer on the socket.

use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::Either;
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
/// idle only when none is) and requests started, in one word (started in the high half), so
/// that a request costs one atomic add when it starts and one when it ends; and whether the
/// request-head deadline applies (HTTP/1.1 before any upgrade).
#[derive(Debug, Default)]
pub(crate) struct Active {
    requests: AtomicU64,
    no_head_deadline: AtomicBool,
}

const STARTED: u64 = 1 << 32;

impl Active {
    /// Requests in flight and requests started so far (wrapping).
    fn load(&self) -> (u32, u32) {
        let w = self.requests.load(Ordering::Relaxed);
        (w as u32, (w >> 32) as u32)
    }

    /// From now on no request-head deadline applies: HTTP/2, or a connection upgraded to
    /// another protocol.
    pub(crate) fn no_head_deadline(&self) {
        self.no_head_deadline.store(true, Ordering::Relaxed);
    }
}

/// Holds one request in flight until its response body is done.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Active>);

impl InFlight {
    fn new(active: &Arc<Active>) -> Self {
        active.requests.fetch_add(STARTED + 1, Ordering::Relaxed);
        InFlight(active.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.requests.fetch_sub(1, Ordering::Relaxed);
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
                    kind: Kind::TooLarge { _body: PhantomData },
                };
            }
        }
        let (parts, body) = req.into_parts();
        if parts.version == http::Version::HTTP_2 {
            // A connection whose protocol was told only by hyper-util's auto builder (its
            // first bytes were a prefix of the preface): HTTP/2 has no request-head deadline.
            self.active.no_head_deadline();
        }
        let (body, exceeded) = RequestBody::new(body, self.max_body);
        // Called through `&self` (HTTP/2 serves requests at once): a clone per request.
        self.dispatch(&mut self.svc.clone(), parts, body, exceeded)
    }
}

impl<S, RB> ConnService<S>
where
    S: Service<Request<RequestBody>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    RB: Body<Data = Bytes>,
{
    /// Calls `svc` (this connection's stack, or a clone of it) with one request read from the
    /// connection (by hyper, or by the server's own HTTP/1.1 codec): adds the peer (and TLS)
    /// extensions and counts the request in flight until its response body is done.
    ///
    /// The own codec serves one request at a time and calls the connection's own instance:
    /// no clone of the stack per request (a clone takes and drops a reference on every
    /// shared part of every layer, and starts with its layers' per-clone caches empty).
    pub(crate) fn dispatch(
        &self,
        svc: &mut S,
        mut parts: http::request::Parts,
        body: RequestBody,
        exceeded: Option<Arc<AtomicBool>>,
    ) -> ConnFuture<S, RB> {
        if parts.extensions.is_empty() {
            // A map handed back by the target client on this thread: no allocation but the
            // value's (see `util::spare`).
            parts.extensions = crate::util::spare::extensions();
        }
        parts.extensions.insert(ClientAddr(self.peer));
        if self.tls {
            parts.extensions.insert(ClientTls);
        }
        let guard = InFlight::new(&self.active);
        let req = Request::from_parts(parts, body);
        // Most stacks are ready at once: ask without a waker and call now, so the future
        // holds only the stack's own future. Otherwise wait for readiness in a boxed
        // `Oneshot` (it polls again with this request's waker).
        let fut = match svc.poll_ready(&mut Context::from_waker(std::task::Waker::noop())) {
            Poll::Ready(Ok(())) => Either::Left(svc.call(req)),
            Poll::Ready(Err(e)) => {
                return ConnFuture {
                    kind: Kind::Failed {
                        error: Some(e.into()),
                    },
                };
            }
            Poll::Pending => Either::Right(Box::pin(svc.clone().oneshot(req))),
        };
        ConnFuture {
            kind: Kind::Calling {
                fut,
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
        // Answers are built when polled, so that the future stays small.
        TooLarge { _body: PhantomData<fn() -> RB> },
        Failed { error: Option<BoxError> },
        Calling {
            #[pin]
            fut: Either<S::Future, Pin<Box<Oneshot<S, Request<RequestBody>>>>>,
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
            KindProj::TooLarge { .. } => {
                Poll::Ready(Ok(short(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE)))
            }
            KindProj::Failed { error } => Poll::Ready(Ok(match error.take() {
                Some(e) => error_response(&*e),
                None => short(StatusCode::INTERNAL_SERVER_ERROR, "\n"),
            })),
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
                    Ok(rsp) => {
                        if rsp.status() == StatusCode::SWITCHING_PROTOCOLS {
                            // The connection becomes a relay: no request head will follow.
                            if let Some(g) = guard.as_ref() {
                                g.0.no_head_deadline();
                            }
                        }
                        rsp.map(|b| ResponseBody::new(GuardedBody::new(b, guard.take())))
                    }
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
    /// A client socket with the connection's two deadlines, kept by ONE timer per connection
    /// that is re-armed only when it fires, never per request:
    ///
    /// - the request-head deadline (HTTP/1.1, until an upgrade): reads fail with `TimedOut`
    ///   once the connection has waited `head` for a request head, counted from when it
    ///   started waiting (the connection's start, or the end of the last request);
    /// - the idle deadline: reads fail with `TimedOut` once the connection has had no request
    ///   in flight and no bytes either way for `idle`.
    ///
    /// The timer ticks every eighth of the shorter deadline and samples the connection's
    /// state (requests in flight, requests started, bytes moved); a deadline is therefore
    /// enforced between its value and a quarter more. A request costs nothing here but the
    /// atomic adds of its in-flight guard and a flag set when bytes move.
    pub(crate) struct IdleIo<T> {
        #[pin]
        inner: T,
        sleep: Option<Pin<Box<Sleep>>>,
        state: Deadlines,
        active: Arc<Active>,
    }
}

/// What the timer of [`IdleIo`] samples and remembers between ticks.
#[derive(Debug)]
struct Deadlines {
    head: Option<Duration>,
    idle: Option<Duration>,
    tick: Duration,
    moved: bool,
    waiting_since: Option<Instant>,
    quiet_since: Instant,
    seen_started: u32,
}

impl<T> IdleIo<T> {
    pub(crate) fn new(
        inner: T,
        head: Option<Duration>,
        idle: Option<Duration>,
        active: Arc<Active>,
    ) -> Self {
        let shortest = match (head, idle) {
            (Some(h), Some(i)) => h.min(i),
            (Some(d), None) | (None, Some(d)) => d,
            (None, None) => Duration::MAX,
        };
        IdleIo {
            inner,
            sleep: None,
            state: Deadlines {
                head,
                idle,
                tick: (shortest / 8).max(Duration::from_millis(1)),
                moved: false,
                waiting_since: None,
                quiet_since: Instant::now(),
                seen_started: 0,
            },
            active,
        }
    }
}

/// Why a connection was timed out.
fn timed_out(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what)
}

impl Deadlines {
    /// One tick at `now`: updates what the connection has been doing since the last one and
    /// says which deadline, if any, has passed.
    fn tick(&mut self, active: &Active, now: Instant) -> Option<io::Error> {
        let (in_flight, started) = active.load();
        let busy = in_flight != 0;
        if busy || std::mem::take(&mut self.moved) {
            self.quiet_since = now;
        }
        if busy {
            self.waiting_since = None;
        } else if started != self.seen_started || self.waiting_since.is_none() {
            // A request ended since the last tick: the wait for the next head started
            // then, at the latest now.
            self.waiting_since = Some(now);
        }
        self.seen_started = started;
        if let (Some(head), Some(since)) = (self.head, self.waiting_since) {
            if !active.no_head_deadline.load(Ordering::Relaxed)
                && now.saturating_duration_since(since) >= head
            {
                return Some(timed_out("client sent no request head in time"));
            }
        }
        match self.idle {
            Some(idle) if !busy && now.saturating_duration_since(self.quiet_since) >= idle => {
                Some(timed_out("client connection idle"))
            }
            _ => None,
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
        let state = this.state;
        let before = buf.filled().len();
        if let Poll::Ready(r) = this.inner.poll_read(cx, buf) {
            state.moved |= buf.filled().len() != before;
            return Poll::Ready(r);
        }
        if state.head.is_none() && state.idle.is_none() {
            return Poll::Pending;
        }
        // The connection waits for the client: make sure the timer runs (armed once per
        // connection, at its first wait).
        let sleep = match this.sleep {
            // Still registered with this task's waker from its last poll: until it fires
            // there is nothing to do. (A relay after an upgrade may read from another task,
            // and HTTP/2 has no head deadline: those poll the timer every time.)
            Some(sleep)
                if !sleep.is_elapsed() && !this.active.no_head_deadline.load(Ordering::Relaxed) =>
            {
                return Poll::Pending;
            }
            Some(sleep) => sleep,
            None => {
                let now = Instant::now();
                state.waiting_since = Some(now);
                state.quiet_since = now;
                this.sleep
                    .insert(Box::pin(tokio::time::sleep_until(now + state.tick)))
            }
        };
        // Bounded: each turn moves the deadline past the clock.
        while sleep.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if let Some(e) = state.tick(this.active, now) {
                return Poll::Ready(Err(e));
            }
            sleep.as_mut().reset(now + state.tick);
        }
        Poll::Pending
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
            this.state.moved = true;
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
            this.state.moved = true;
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
