//! A server for proxies built on tower-lb: HTTP/1.1 and HTTP/2 (cleartext h2c by prior
//! knowledge, or negotiated by ALPN over TLS with the `tls` feature) on a `TcpListener`,
//! serving a tower service with the limits an edge needs, and graceful shutdown.
//!
//! Why it exists: a proxy's edge must refuse what would hurt it before any target is involved
//! (oversized headers: `431`; bodies over the limit: `413`; clients that send headers slowly or
//! hold idle connections) and must tell the layers below who the client is. Each request
//! carries the socket peer as a [`ClientAddr`](crate::key::ClientAddr) extension and, over
//! TLS, [`ClientTls`](crate::forward::ClientTls); the [forwarding layer](crate::forward) reads
//! them. `Upgrade`s are served (the connection's upgrade half is in the request's extensions).
//!
//! HTTP/1.1 requests without a body, or with a body of at most 64 KiB framed by one
//! `Content-Length` (most proxied traffic), are read and answered by a codec of the server's
//! own, on `httparse`, hyper's own parser: about 2 600 instructions fewer per forwarded request
//! than hyper's HTTP/1 server (`docs/benchmarks.md`). Such a body is read whole before the
//! stack is called. A request with any other body, an upgrade, `Expect`, `CONNECT` or HTTP/1.0
//! is handed, with the bytes read so far, to hyper's HTTP/1 server, which serves the rest of
//! that connection, so every framing rule against request smuggling but the plainest stays
//! hyper's. [`ServerBuilder::hyper_http1`] turns the codec off.
//!
//! On shutdown the server stops accepting, asks every connection to finish (HTTP/1.1: after
//! the response in progress; HTTP/2: `GOAWAY`), and waits for in-flight requests up to the
//! drain timeout. Relayed upgrades (WebSocket) are not waited for.
//!
//! Long guide: `docs/proxy.md` in the repository.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use tower::service_fn;
//! use tower_lb::server::{RequestBody, Server};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = Server::builder().max_body_bytes(Some(1 << 20)).build()?;
//! let hello = service_fn(|_req: http::Request<RequestBody>| async {
//!     Ok::<_, Infallible>(http::Response::new(String::from("hello")))
//! });
//! // Serves until the shutdown future resolves (here at once), then drains.
//! server.serve(listener, hello, async {}).await?;
//! # Ok(()) }
//! ```
//!
#![doc = include_str!("../../docs/proxy.md")]

mod body;
mod conn;
mod drain;
pub mod error;
mod h1;
#[cfg(feature = "tls")]
mod tls;

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{Either, select};
use http::{Request, Response};
use http_body::Body;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tower_service::Service;

pub use self::body::RequestBody;
use self::conn::{Active, ConnService, IdleIo};
use self::drain::{Drain, Graceful};
use self::error::InvalidServerConfig;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use self::tls::TlsAcceptor;
use crate::error::BoxError;

/// The server's HTTP/1.1 request reader, for the fuzz target `h1_request`.
#[cfg(fuzzing)]
#[doc(hidden)]
pub use self::h1::fuzz_request;

/// Serves a tower service on a listener: see the [module docs](self).
///
/// # Examples
///
/// ```
/// use tower_lb::server::Server;
///
/// let server = Server::builder()
///     .max_header_bytes(16 * 1024)
///     .header_read_timeout(Some(std::time::Duration::from_secs(10)))
///     .build()
///     .unwrap();
/// # let _ = server;
/// ```
#[derive(Debug, Clone)]
pub struct Server {
    config: Arc<ServerBuilder>,
}

/// Configures a [`Server`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ServerBuilder {
    max_header_bytes: usize,
    max_body_bytes: Option<u64>,
    header_read_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    tls_handshake_timeout: Duration,
    drain_timeout: Duration,
    max_concurrent_streams: u32,
    hyper_http1: bool,
}

/// The smallest header limit: hyper reads a request head into a buffer of at least this.
const MIN_HEADER_BYTES: usize = 8 * 1024;

impl Server {
    /// Starts configuring a server. Defaults: headers up to 64 KiB, bodies up to 16 MiB,
    /// 30 s to send a request head, connections idle for 60 s closed, 10 s for a TLS
    /// handshake, up to 30 s of draining on shutdown, 256 concurrent HTTP/2 streams per
    /// connection.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            max_header_bytes: 64 * 1024,
            max_body_bytes: Some(16 * 1024 * 1024),
            header_read_timeout: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(60)),
            tls_handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            max_concurrent_streams: 256,
            hyper_http1: false,
        }
    }
}

impl ServerBuilder {
    /// The most bytes of request head (request line and headers) accepted; a larger head gets
    /// `431 Request Header Fields Too Large`. At least 8 KiB.
    pub fn max_header_bytes(mut self, max: usize) -> Self {
        self.max_header_bytes = max;
        self
    }

    /// The most bytes of request body accepted (`None`: no limit). A declared
    /// `Content-Length` over it gets `413 Payload Too Large` before the stack is called; a
    /// streamed body is cut off at the limit and the request answered with `413`.
    pub fn max_body_bytes(mut self, max: Option<u64>) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// How long a client may take to send a request head, counted from when the connection
    /// waits for one (so it also bounds a kept-alive HTTP/1.1 connection waiting for its next
    /// request). `None`: no limit.
    pub fn header_read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Closes a connection that has had no request in flight and no bytes either way for
    /// this long (`None`: never). Also closes a relayed upgrade that is quiet for this long.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long a TLS handshake may take.
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.tls_handshake_timeout = timeout;
        self
    }

    /// How long shutdown waits for in-flight requests before it gives up on them.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// The most concurrent streams per HTTP/2 connection.
    pub fn max_concurrent_streams(mut self, max: u32) -> Self {
        self.max_concurrent_streams = max;
        self
    }

    /// Serves every HTTP/1.1 request with hyper's HTTP/1 server (`true`), instead of reading
    /// requests without a body or with a small one with the server's own codec (the default,
    /// `false`; see the
    /// [module docs](self)). The way back if a client and the codec disagree.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = tower_lb::server::Server::builder().hyper_http1(true).build().unwrap();
    /// # let _ = server;
    /// ```
    pub fn hyper_http1(mut self, on: bool) -> Self {
        self.hyper_http1 = on;
        self
    }

    /// Checks the settings and builds the server.
    ///
    /// # Errors
    ///
    /// [`InvalidServerConfig`] for a header limit under 8 KiB or over 4 GiB, a zero timeout
    /// or zero streams.
    pub fn build(self) -> Result<Server, InvalidServerConfig> {
        if self.max_header_bytes < MIN_HEADER_BYTES {
            return Err(InvalidServerConfig::new("max_header_bytes is under 8 KiB"));
        }
        if u32::try_from(self.max_header_bytes).is_err() {
            return Err(InvalidServerConfig::new("max_header_bytes is over 4 GiB"));
        }
        let zero = |d: Option<Duration>| d.is_some_and(|d| d.is_zero());
        if zero(self.header_read_timeout)
            || zero(self.idle_timeout)
            || self.tls_handshake_timeout.is_zero()
        {
            return Err(InvalidServerConfig::new("a timeout is zero"));
        }
        if self.max_concurrent_streams == 0 {
            return Err(InvalidServerConfig::new("max_concurrent_streams is zero"));
        }
        Ok(Server {
            config: Arc::new(self),
        })
    }
}

/// TLS or not, as the accept loop sees it.
#[derive(Clone)]
enum Accept {
    Plain,
    #[cfg(feature = "tls")]
    Tls(tokio_rustls::TlsAcceptor),
}

/// The protocol a connection speaks, known before hyper serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Http1,
    Http2,
    /// The client's first bytes are a strict prefix of the HTTP/2 preface: hyper-util's
    /// `auto` builder reads on until it can tell.
    Either,
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol builders of one server.
#[derive(Clone)]
struct Protocols {
    /// HTTP/1.1 requests without a body or with a small one are read by the server's own
    /// codec (see [`h1`]).
    own_h1: bool,
    /// The header limit, for the own codec.
    max_head: usize,
    /// The largest request body the own codec reads itself: [`h1::MAX_BODY`], or the body
    /// limit if lower.
    max_body: usize,
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    either: auto::Builder<TokioExecutor>,
}

impl Server {
    /// hyper's builders. hyper's own request-head timer is off: [`IdleIo`] keeps both
    /// deadlines with one timer per connection instead of one armed per request.
    fn protocols(&self) -> Protocols {
        let c = &self.config;
        let header_list = u32::try_from(c.max_header_bytes).unwrap_or(u32::MAX);
        let mut h1 = http1::Builder::new();
        h1.header_read_timeout(None)
            .max_buf_size(c.max_header_bytes)
            .keep_alive(true);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(header_list)
            .max_concurrent_streams(c.max_concurrent_streams);
        let mut either = auto::Builder::new(TokioExecutor::new());
        either
            .http1()
            .header_read_timeout(None)
            .max_buf_size(c.max_header_bytes)
            .keep_alive(true);
        either
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(header_list)
            .max_concurrent_streams(c.max_concurrent_streams);
        Protocols {
            own_h1: !c.hyper_http1,
            max_head: c.max_header_bytes,
            max_body: c.max_body_bytes.map_or(h1::MAX_BODY, |max| {
                usize::try_from(max).map_or(h1::MAX_BODY, |max| max.min(h1::MAX_BODY))
            }),
            h1,
            h2,
            either,
        }
    }

    /// The shorter of the two connection deadlines: how long a new connection may take to
    /// send its first bytes.
    fn first_bytes_limit(&self) -> Option<Duration> {
        match (self.config.header_read_timeout, self.config.idle_timeout) {
            (Some(h), Some(i)) => Some(h.min(i)),
            (h, i) => h.or(i),
        }
    }

    /// Serves `service` on `listener` (cleartext HTTP/1.1 and h2c) until `shutdown` resolves,
    /// then drains (see the [module docs](self)).
    ///
    /// # Errors
    ///
    /// None today beyond what the type allows: accept errors (such as running out of file
    /// descriptors) are logged and retried after a short pause.
    pub async fn serve<S, RB, F>(
        &self,
        listener: TcpListener,
        service: S,
        shutdown: F,
    ) -> io::Result<()>
    where
        S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        RB: Body<Data = Bytes> + Send + 'static,
        RB::Error: Into<BoxError>,
        F: Future<Output = ()>,
    {
        self.run(listener, Accept::Plain, service, shutdown).await
    }

    /// Like [`serve`](Self::serve), terminating TLS with `tls` first (HTTP/2 when the client
    /// negotiates `h2`). Each request carries [`ClientTls`](crate::forward::ClientTls).
    ///
    /// # Errors
    ///
    /// As [`serve`](Self::serve).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub async fn serve_tls<S, RB, F>(
        &self,
        listener: TcpListener,
        tls: &TlsAcceptor,
        service: S,
        shutdown: F,
    ) -> io::Result<()>
    where
        S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        RB: Body<Data = Bytes> + Send + 'static,
        RB::Error: Into<BoxError>,
        F: Future<Output = ()>,
    {
        self.run(listener, Accept::Tls(tls.inner.clone()), service, shutdown)
            .await
    }

    async fn run<S, RB, F>(
        &self,
        listener: TcpListener,
        accept: Accept,
        service: S,
        shutdown: F,
    ) -> io::Result<()>
    where
        S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        RB: Body<Data = Bytes> + Send + 'static,
        RB::Error: Into<BoxError>,
        F: Future<Output = ()>,
    {
        let protocols = self.protocols();
        let drain = Drain::new();
        let mut shutdown = pin!(shutdown);
        loop {
            let accepted = match select(shutdown.as_mut(), pin!(listener.accept())).await {
                Either::Left(((), _)) => break,
                Either::Right((accepted, _)) => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(error) => {
                    // Out of descriptors or a connection reset before accept: not fatal.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let active = Arc::new(Active::default());
            let svc = ConnService {
                svc: service.clone(),
                peer,
                tls: !matches!(accept, Accept::Plain),
                max_body: self.config.max_body_bytes,
                active: active.clone(),
            };
            let (head, idle) = (self.config.header_read_timeout, self.config.idle_timeout);
            let protocols = protocols.clone();
            let graceful = drain.watcher();
            match &accept {
                Accept::Plain => {
                    let limit = self.first_bytes_limit();
                    tokio::spawn(async move {
                        let Some(proto) = sniff(&stream, limit, &graceful).await else {
                            return;
                        };
                        if proto == Proto::Http2 {
                            active.no_head_deadline();
                        }
                        let io = IdleIo::new(stream, head, idle, active);
                        serve_connection(&protocols, proto, &graceful, io, svc).await;
                    });
                }
                #[cfg(feature = "tls")]
                Accept::Tls(tls) => {
                    let handshake = tls.accept(IdleIo::new(stream, head, idle, active.clone()));
                    let limit = self.config.tls_handshake_timeout;
                    tokio::spawn(async move {
                        match tokio::time::timeout(limit, handshake).await {
                            Ok(Ok(io)) => {
                                let proto = if io.get_ref().1.alpn_protocol() == Some(b"h2") {
                                    active.no_head_deadline();
                                    Proto::Http2
                                } else {
                                    Proto::Http1
                                };
                                serve_connection(&protocols, proto, &graceful, io, svc).await;
                            }
                            Ok(Err(error)) => tracing::debug!(%error, "tls handshake failed"),
                            Err(_) => tracing::debug!("tls handshake timed out"),
                        }
                    });
                }
            }
        }
        drop(listener);
        if !drain.shutdown(self.config.drain_timeout).await {
            tracing::warn!("drain timeout: connections still open at shutdown");
        }
        Ok(())
    }
}

/// Tells HTTP/2 from HTTP/1.x by the client's first bytes, without taking them from the
/// socket (one `MSG_PEEK` read per connection). `None`: the client closed, sent nothing in
/// time, or the server is shutting down.
async fn sniff(stream: &TcpStream, limit: Option<Duration>, graceful: &Graceful) -> Option<Proto> {
    let mut buf = [0u8; PREFACE.len()];
    let n = {
        let first = async {
            match select(pin!(stream.peek(&mut buf)), pin!(graceful.stopped())).await {
                Either::Left((Ok(n), _)) => Some(n),
                _ => None,
            }
        };
        match limit {
            Some(limit) => tokio::time::timeout(limit, first).await.ok().flatten()?,
            None => first.await?,
        }
    };
    if n == 0 {
        return None;
    }
    Some(if buf[..n] != PREFACE[..n] {
        Proto::Http1
    } else if n == PREFACE.len() {
        Proto::Http2
    } else {
        Proto::Either
    })
}

/// Serves one connection with the builder for its protocol until it ends or, once shutdown
/// begins, until it has finished what is in flight.
async fn serve_connection<I, S, RB>(
    protocols: &Protocols,
    proto: Proto,
    graceful: &Graceful,
    io: I,
    svc: ConnService<S>,
) where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    if proto == Proto::Http1 && protocols.own_h1 {
        graceful
            .watch(serve_own_h1(protocols, graceful, io, svc), |_| {})
            .await;
        return;
    }
    let io = TokioIo::new(io);
    let result: Result<(), BoxError> = match proto {
        Proto::Http1 => {
            let conn = protocols.h1.serve_connection(io, svc).with_upgrades();
            graceful
                .watch(conn, |c| c.graceful_shutdown())
                .await
                .map_err(Into::into)
        }
        Proto::Http2 => {
            let conn = protocols.h2.serve_connection(io, svc);
            graceful
                .watch(conn, |c| c.graceful_shutdown())
                .await
                .map_err(Into::into)
        }
        Proto::Either => {
            let conn = protocols.either.serve_connection_with_upgrades(io, svc);
            graceful.watch(conn, |c| c.graceful_shutdown()).await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "client connection ended with an error");
    }
}

/// Serves an HTTP/1.1 connection with the server's own codec (see [`h1`]) until it ends, the
/// server shuts down, or a request comes that the codec leaves to hyper: then hyper serves the
/// rest of the connection, starting with the bytes the codec read.
async fn serve_own_h1<I, S, RB>(
    protocols: &Protocols,
    graceful: &Graceful,
    io: I,
    svc: ConnService<S>,
) where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let mut conn = h1::Conn::new(io, protocols.max_head, protocols.max_body);
    // The connection's own instance of the stack, called for each of its requests in turn.
    let mut stack = svc.svc.clone();
    loop {
        let parsed = match conn.next(|| graceful.stopping()).await {
            h1::Next::Request(parsed) => parsed,
            h1::Next::Closed => return,
        };
        let h1::Parsed::Request {
            parts,
            body,
            close,
            trailers,
        } = parsed
        else {
            let (io, read) = conn.into_parts();
            let io = TokioIo::new(h1::Rewind::new(io, read));
            let hyper = protocols.h1.serve_connection(io, svc).with_upgrades();
            if let Err(error) = graceful.watch(hyper, |c| c.graceful_shutdown()).await {
                tracing::debug!(%error, "client connection ended with an error");
            }
            return;
        };
        let head = parts.method == http::Method::HEAD;
        let body = if body == 0 {
            RequestBody::empty()
        } else {
            // Read whole before the stack is called, within the head's deadline (the
            // connection has no request in flight yet).
            match conn.body(body).await {
                Some(data) => RequestBody::whole(data),
                None => return,
            }
        };
        // Pinned where it is made: the stack's future is not moved again while it is served.
        let call = std::pin::pin!(svc.dispatch(&mut stack, parts, body, None));
        let Some(rsp) = conn.response(call).await else {
            // The client went away: its request is dropped.
            return;
        };
        let close = close || graceful.stopping();
        if !conn.respond(rsp, head, close, trailers).await {
            conn.close().await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_are_refused_not_panicked_on() {
        assert!(Server::builder().build().is_ok());
        assert!(Server::builder().max_header_bytes(8 * 1024).build().is_ok());
        assert!(Server::builder().max_header_bytes(100).build().is_err());
        assert!(
            Server::builder()
                .max_header_bytes(usize::MAX)
                .build()
                .is_err()
        );
        assert!(
            Server::builder()
                .header_read_timeout(Some(Duration::ZERO))
                .build()
                .is_err()
        );
        assert!(
            Server::builder()
                .idle_timeout(Some(Duration::ZERO))
                .build()
                .is_err()
        );
        assert!(
            Server::builder()
                .tls_handshake_timeout(Duration::ZERO)
                .build()
                .is_err()
        );
        assert!(Server::builder().max_concurrent_streams(0).build().is_err());
        assert!(
            Server::builder()
                .header_read_timeout(None)
                .idle_timeout(None)
                .max_body_bytes(None)
                .build()
                .is_ok()
        );
        let e = Server::builder().max_header_bytes(1).build().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid server configuration: max_header_bytes is under 8 KiB"
        );
    }

    #[cfg(feature = "tls")]
    #[test]
    fn bad_pem_is_a_typed_error() {
        assert!(TlsAcceptor::from_pem(b"", b"").is_err());
        assert!(TlsAcceptor::from_pem(b"not pem", b"not pem").is_err());
        let dev = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = dev.cert.pem();
        assert!(
            TlsAcceptor::from_pem(cert.as_bytes(), dev.signing_key.serialize_pem().as_bytes())
                .is_ok()
        );
        // A key that does not belong to the certificate.
        let e = TlsAcceptor::from_pem(
            cert.as_bytes(),
            other.signing_key.serialize_pem().as_bytes(),
        )
        .unwrap_err();
        assert!(std::error::Error::source(&e).is_some());
        assert!(
            TlsAcceptor::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem").is_err()
        );
    }
}
#[cfg(test)]
mod future_sizes {
    use tower_service::Service;

    use crate::balance::Balance;
    use crate::forward::Forward;
    use crate::server::RequestBody;
    use crate::upstream::{ErrorResponse, ResponseBody, TargetService};

    type Req = http::Request<RequestBody>;
    type Stack = ErrorResponse<Forward<Balance<TargetService<RequestBody>>>>;
    /// What the stack answers with (`Response<Body>`).
    type Body = ResponseBody<
        ResponseBody<crate::balance::body::TrackedBody<crate::upstream::PooledBody<RequestBody>>>,
    >;

    /// Every layer's future holds the one below it, and each is moved when built: a request
    /// (288 bytes) or a response held inline in a rare branch would be copied through every
    /// layer on every request. The forwarding stack's futures hold neither.
    #[test]
    fn the_forwarding_stack_s_futures_hold_no_request_or_response() {
        let req = std::mem::size_of::<Req>();
        let each = [
            (
                "Balance",
                std::mem::size_of::<<Balance<TargetService<RequestBody>> as Service<Req>>::Future>(
                ),
            ),
            (
                "Forward",
                std::mem::size_of::<
                    <Forward<Balance<TargetService<RequestBody>>> as Service<Req>>::Future,
                >(),
            ),
            (
                "ErrorResponse",
                std::mem::size_of::<<Stack as Service<Req>>::Future>(),
            ),
            (
                "ConnFuture",
                std::mem::size_of::<super::conn::ConnFuture<Stack, Body>>(),
            ),
        ];
        for (name, size) in each {
            assert!(
                size < req,
                "{name}'s future is {size} bytes, a request {req}"
            );
        }
    }
}
