//! A per-target pooled HTTP/1 client: the fast path for `Balance`. Requests without a body, or
//! with a small one of known size, go through the client's own HTTP/1.1 codec (`h1`), the
//! others through hyper's connection API.
//!
//! Why not hyper-util's client: it keys its pool by URI (parsing the authority of every
//! request) and keeps one pool for every host behind one mutex. Here each target has its own
//! pool, picked once when the balancer builds the target's service, and idle connections sit
//! in per-thread shards. Each hyper connection runs in a task of its own, as in hyper-util:
//! driving hyper's connection from the request's task instead was measured to wake the targets
//! 2.3 times as often (about 1.3 µs more CPU per request in the proxy's kernel time). The own
//! codec writes and reads on the request's task with no such cost: its targets slept 0.027
//! times per request, against 0.036 behind HAProxy (`docs/benchmarks.md`). Knowing
//! whether a connection was reused, and holding the request until a connection is there, also
//! lets this client tell apart what the retry layer must know: nothing sent (a failed
//! connect, hands the untouched body back), a reused idle connection the server closed
//! (nobody's failure), and a real failure of the target.

use std::fmt;
use std::future::{Future, poll_fn};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, HeaderValue, UPGRADE};
use http::uri::Authority;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower_service::Service;

use crate::balance::MakeTarget;
use crate::error::{BoxError, ClientError, ClientErrorKind, ConnectFailed, StaleConnection};
use crate::target::Target;
use crate::util::lock;

use super::h1::{H1, H1Body, Host};

#[cfg(feature = "http2")]
use super::h2::H2Slot;

/// A connection idle at least this long may have been closed by its server by the time a
/// request goes out on it: an idempotent request without a body keeps a copy of its head
/// while it uses one, to go again on a fresh connection if the server had closed it, unless
/// the pool has seen a connection to the same target answer after being idle clearly longer
/// (see [`insure`]). No server closes idle connections sooner on purpose.
const INSURE_AFTER: Duration = Duration::from_millis(1);

/// Whether a request going out on a connection idle for `idle_for` keeps a copy of its head,
/// when connections to the same target have been seen to answer after being idle for
/// `proven` (zero: nothing seen yet). A server closes a connection once it has been idle for
/// its own keep-alive timeout, so one idle for less than what was seen to work is safe; the
/// margin (an eighth, plus `INSURE_AFTER`) covers the two ends measuring idleness from
/// slightly different instants.
fn insure(idle_for: Duration, proven: Duration) -> bool {
    idle_for >= INSURE_AFTER && idle_for + idle_for / 8 + INSURE_AFTER >= proven
}

/// Default idle timeout: below the 5 s keep-alive of Node.js and Apache httpd.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// A per-target pooled HTTP/1 client (or h2c): the cheapest way to send `Balance`'s requests.
///
/// As a [`MakeTarget`] it gives each target a [`TargetService`] with a connection pool of its
/// own. Requests go to the target's address whatever their URI says (they are sent in origin
/// form, `/path?query`), with `Host` set to the target's address unless
/// [`preserve_host`](TargetClientBuilder::preserve_host) is on, so no [`SetTarget`](super::SetTarget)
/// is needed in front.
///
/// What it does on failure (see `docs/resilience.md`):
///
/// - a connect failure is a [`ConnectFailed`] that hands the untouched request body back, so
///   the [`RetryLayer`](crate::retry::RetryLayer) sends it to another target whatever its size;
/// - a request that a reused connection refused before anything of it was written goes again
///   on a fresh connection, inside the client;
/// - a reused connection closed by the target as the request went out, before any byte of a
///   response, is a [`StaleConnection`]: never counted against the target, retried by the
///   retry layer for idempotent methods; an idempotent request the client's own codec sends
///   (below) is resent on a fresh connection by the client itself;
/// - a request body that fails or ends early is a [`ClientError`].
///
/// `101 Switching Protocols` (and a successful `CONNECT`) hand back the upgraded connection
/// through [`hyper::upgrade::on`].
///
/// Requests without a body, or with a body of known size (`size_hint().exact()`) up to 64 KiB,
/// in HTTP/1.1 and asking for no upgrade (most proxied requests), go through an HTTP/1.1 codec
/// of the client's own: the request's task writes the head and reads the response itself,
/// with no channel to a connection task: measured end to end, about 8 000 fewer instructions
/// per forwarded request than through hyper's client, a quarter of the proxy's
/// (`docs/benchmarks.md`). A body is read whole once a connection is had (a failed connect
/// hands it back unread) and goes out with the head, framed by its own length. The request
/// stays with the client until a response arrives, so an idempotent one whose reused
/// connection turns out closed always goes again on a fresh connection. Streamed or larger
/// bodies, upgrades and `CONNECT` go through hyper's HTTP/1 connection; each kind keeps idle
/// connections of its own in the pool. [`TargetClientBuilder::hyper_http1`] sends every
/// request through hyper.
///
/// Response bodies are framed per RFC 9112 (length, chunks with trailers, or the end of the
/// connection; none after `HEAD`, `204`, `304`); `1xx` answers are skipped; a connection is
/// used again only after a response read to its end with a known length, no
/// `Connection: close` from either side, and nothing left over.
///
/// Built with `http2_only(true)` (feature `http2`), it speaks HTTP/2 with prior knowledge
/// (h2c) to the targets instead, over one shared connection per target; see
/// `TargetClientBuilder::http2_only`.
///
/// # Examples
///
/// ```no_run
/// use tower::ServiceExt;
/// use tower_lb::balance::Balance;
/// use tower_lb::upstream::TargetClient;
/// use tower_lb::{Target, TargetGroup};
///
/// # #[tokio::main] async fn main() -> Result<(), tower_lb::BoxError> {
/// let group = TargetGroup::builder("api").target(Target::new("a", "127.0.0.1:8080")?).build()?;
/// let balance = Balance::with_maker(group, TargetClient::<String>::new());
/// let rsp = balance.oneshot(http::Request::get("/health").body(String::new())?).await?;
/// println!("{}", rsp.status());
/// # Ok(()) }
/// ```
pub struct TargetClient<B> {
    config: Arc<Config>,
    _body: PhantomData<fn(B)>,
}

pub(super) struct Config {
    pub(super) connect_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    max_idle: usize,
    pub(super) preserve_host: bool,
    /// Requests without a body go through hyper too (see `TargetClientBuilder::hyper_http1`).
    hyper_http1: bool,
    shards: usize,
    http1: http1::Builder,
    /// HTTP/2 with prior knowledge instead of HTTP/1.1.
    #[cfg(feature = "http2")]
    http2_only: bool,
}

impl<B> Clone for TargetClient<B> {
    fn clone(&self) -> Self {
        TargetClient {
            config: self.config.clone(),
            _body: PhantomData,
        }
    }
}

impl<B> fmt::Debug for TargetClient<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetClient")
            .field("connect_timeout", &self.config.connect_timeout)
            .field("idle_timeout", &self.config.idle_timeout)
            .field("max_idle", &self.config.max_idle)
            .finish_non_exhaustive()
    }
}

impl<B> Default for TargetClient<B> {
    fn default() -> Self {
        TargetClient::new()
    }
}

impl<B> TargetClient<B> {
    /// A client with the default settings: connect timeout 5 s, idle connections kept 4 s,
    /// `TCP_NODELAY` on, no limit on idle connections per target.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts configuring a client.
    pub fn builder() -> TargetClientBuilder {
        TargetClientBuilder {
            connect_timeout: Some(Duration::from_secs(5)),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_idle: usize::MAX,
            preserve_host: false,
            hyper_http1: false,
            #[cfg(feature = "http2")]
            http2_only: false,
        }
    }

    /// The service for one target, with a pool of its own (what [`MakeTarget`] gives
    /// `Balance`).
    ///
    /// ```no_run
    /// use tower::ServiceExt;
    /// use tower_lb::upstream::TargetClient;
    /// use tower_lb::target::Target;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), tower_lb::BoxError> {
    /// let svc = TargetClient::<String>::new().service(&Target::new("a", "127.0.0.1:8080")?);
    /// let rsp = svc.oneshot(http::Request::get("/").body(String::new())?).await?;
    /// # Ok(()) }
    /// ```
    pub fn service(&self, target: &Target) -> TargetService<B> {
        let authority = target.address().clone();
        TargetService {
            pool: Arc::new(Pool {
                host: HeaderValue::from_str(authority.as_str()).ok(),
                authority,
                shards: (0..self.config.shards)
                    .map(|_| Mutex::new(Vec::new()))
                    .collect(),
                idle: AtomicUsize::new(0),
                proven_open: AtomicU64::new(0),
                #[cfg(feature = "http2")]
                h2: self.config.http2_only.then(H2Slot::new),
                config: self.config.clone(),
            }),
        }
    }
}

/// Configures a [`TargetClient`].
#[derive(Debug, Clone)]
#[must_use]
pub struct TargetClientBuilder {
    connect_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    max_idle: usize,
    preserve_host: bool,
    hyper_http1: bool,
    #[cfg(feature = "http2")]
    http2_only: bool,
}

impl TargetClientBuilder {
    /// How long a connection attempt may take (`None`: no limit; default 5 s).
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout.map(crate::util::cap);
        self
    }

    /// How long an idle connection is kept (`None`: until the server closes it; default 4 s,
    /// below the 5 s keep-alive of Node.js and Apache httpd).
    ///
    /// Expired connections are dropped when the target's pool is next used. A connection the
    /// server closed first costs nothing either way: the client notices the close when it
    /// takes the connection, or resends (see the type's docs).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout.map(crate::util::cap);
        self
    }

    /// The most idle connections kept per target (default: no limit).
    pub fn max_idle_per_target(mut self, max: usize) -> Self {
        self.max_idle = max;
        self
    }

    /// Keeps the client's `Host` header rather than setting it to the target's address.
    /// Over HTTP/2 it becomes the request's `:authority` (a `Host` that is not a valid
    /// authority is replaced by the target's address).
    pub fn preserve_host(mut self, preserve: bool) -> Self {
        self.preserve_host = preserve;
        self
    }

    /// Sends requests without a body (or with a small one of known size) through hyper's HTTP/1
    /// connection too, as it sends every other request (default `false`: they go through the
    /// client's own HTTP/1.1 codec, which
    /// costs less per request; see [`TargetClient`]). For a target that the own codec does not
    /// get along with; the two send the same request line, fields and framing, though not
    /// always the fields in the same order.
    ///
    /// ```
    /// use tower_lb::upstream::TargetClient;
    ///
    /// let client = TargetClient::<String>::builder().hyper_http1(true).build::<String>();
    /// # drop(client);
    /// ```
    pub fn hyper_http1(mut self, on: bool) -> Self {
        self.hyper_http1 = on;
        self
    }

    /// Speaks HTTP/2 with prior knowledge (h2c) to the targets instead of HTTP/1.1 (feature
    /// `http2`): one multiplexed connection per target, shared by all requests, made again
    /// when it dies or the target sends `GOAWAY`. For gRPC and other HTTP/2-only backends;
    /// request trailers and response trailers pass through. Upgrades (`101`) do not exist in
    /// HTTP/2.
    ///
    /// A stream the target refused without processing it (`REFUSED_STREAM`, or above the last
    /// stream id of a `GOAWAY`) is a [`ConnectFailed`], which the retry layer sends elsewhere
    /// for any method (see `docs/resilience.md`).
    ///
    /// ```
    /// use tower_lb::upstream::TargetClient;
    ///
    /// let grpc = TargetClient::<String>::builder().http2_only(true).build::<String>();
    /// # drop(grpc);
    /// ```
    #[cfg(feature = "http2")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
    pub fn http2_only(mut self, on: bool) -> Self {
        self.http2_only = on;
        self
    }

    /// Builds the client. Connections are made on the current Tokio runtime when requests
    /// need them.
    pub fn build<B>(self) -> TargetClient<B> {
        let shards = std::thread::available_parallelism().map_or(1, |n| n.get().min(16));
        TargetClient {
            config: Arc::new(Config {
                connect_timeout: self.connect_timeout,
                idle_timeout: self.idle_timeout,
                max_idle: self.max_idle,
                preserve_host: self.preserve_host,
                hyper_http1: self.hyper_http1,
                shards,
                http1: http1::Builder::new(),
                #[cfg(feature = "http2")]
                http2_only: self.http2_only,
            }),
            _body: PhantomData,
        }
    }
}

impl<B> MakeTarget<TargetService<B>> for TargetClient<B>
where
    B: 'static,
{
    fn make_target(&self, target: &Target) -> TargetService<B> {
        self.service(target)
    }
}

/// One target's pooled HTTP/1 client (see [`TargetClient`]). Clones share the pool.
pub struct TargetService<B> {
    pool: Arc<Pool<B>>,
}

impl<B> Clone for TargetService<B> {
    fn clone(&self) -> Self {
        TargetService {
            pool: self.pool.clone(),
        }
    }
}

impl<B> fmt::Debug for TargetService<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetService")
            .field("target", &self.pool.authority)
            .field("idle", &self.pool.idle.load(Ordering::Relaxed))
            .finish()
    }
}

impl<B> TargetService<B> {
    /// Idle connections in this target's pool right now (over HTTP/2: 1 while the shared
    /// connection is up, busy or not).
    pub fn idle_connections(&self) -> usize {
        #[cfg(feature = "http2")]
        if let Some(slot) = &self.pool.h2 {
            return usize::from(slot.is_up());
        }
        self.pool.idle.load(Ordering::Relaxed)
    }
}

impl<B> TargetService<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Opens connections until `n` are idle in the pool (warming it before traffic), and
    /// returns how many are idle. They are connections for requests without a body, the
    /// common kind (see [`TargetClient`]). Connect failures stop the warming early; they are not
    /// reported as target failures (nothing was asked of the target yet).
    ///
    /// ```no_run
    /// use tower_lb::upstream::TargetClient;
    /// use tower_lb::target::Target;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), tower_lb::BoxError> {
    /// let svc = TargetClient::<String>::new().service(&Target::new("a", "127.0.0.1:8080")?);
    /// let idle = svc.warm(4).await;
    /// println!("{idle} connections ready");
    /// # Ok(()) }
    /// ```
    pub async fn warm(&self, n: usize) -> usize {
        let n = n.min(self.pool.config.max_idle);
        #[cfg(feature = "http2")]
        if let Some(slot) = &self.pool.h2 {
            if n > 0 && !self.pool.h2_warm(slot).await {
                tracing::debug!("warming an h2c connection: connect failed");
            }
            return self.idle_connections();
        }
        // Connections for requests without a body, the common kind (see `h1`).
        while self.idle_connections() < n {
            match self.pool.connect_own().await {
                Ok(conn) => self.pool.checkin(Pooled::Own(conn)),
                Err(e) => {
                    tracing::debug!(error = %e, "warming a pool: connect failed");
                    break;
                }
            }
        }
        self.idle_connections()
    }
}

impl<B> Service<Request<B>> for TargetService<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<PooledBody<B>>;
    type Error = BoxError;
    type Future = TargetClientFuture<B>;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Two futures rather than one with both paths: the HTTP/1 one stays small enough for
        // the allocator's fast path.
        #[cfg(feature = "http2")]
        if self.pool.h2.is_some() {
            return TargetClientFuture {
                inner: Box::pin(send_h2(self.pool.clone(), req)),
            };
        }
        if !self.pool.config.hyper_http1 && own_codec(&req) {
            // Written from the parts as they are (origin form and `Host` are seen to as it
            // is written), with the body if there is one, read whole first.
            let (mut parts, body) = req.into_parts();
            recycle_extensions(&mut parts.extensions);
            let body = (!body.is_end_stream()).then_some(body);
            return TargetClientFuture {
                inner: Box::pin(send_own(self.pool.clone(), parts, body)),
            };
        }
        // Prepared here, so that the future holds one request, not the one it was given and
        // the one it sends.
        let req = self.pool.prepare(req);
        TargetClientFuture {
            inner: Box::pin(send(self.pool.clone(), req)),
        }
    }
}

/// The future of [`TargetService`].
pub struct TargetClientFuture<B> {
    #[allow(clippy::type_complexity)]
    inner: Pin<Box<dyn Future<Output = Result<Response<PooledBody<B>>, BoxError>> + Send>>,
}

impl<B> fmt::Debug for TargetClientFuture<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetClientFuture").finish_non_exhaustive()
    }
}

impl<B> Future for TargetClientFuture<B> {
    type Output = Result<Response<PooledBody<B>>, BoxError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// The request body as handed to hyper: an empty body is replaced by a unit stand-in (same
/// framing: hyper sees an ended body either way), so a request without a body can be rebuilt.
pub(super) enum Sendable<B> {
    Body(B),
    Empty,
}

impl<B> Body for Sendable<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        match self.get_mut() {
            Sendable::Body(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Sendable::Empty => Poll::Ready(None),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self {
            Sendable::Body(b) => b.is_end_stream(),
            Sendable::Empty => true,
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match self {
            Sendable::Body(b) => b.size_hint(),
            Sendable::Empty => SizeHint::with_exact(0),
        }
    }
}

/// One HTTP/1 connection: the sender. The connection itself runs in a task of its own,
/// spawned when it is opened (as hyper-util's pool does): a request written from the
/// request's own task, at once, wakes the target for every request, where a connection task
/// scheduled after the requests that are ready writes them in a batch; measured end to end,
/// the inline way cost more kernel time (waking the targets) than the task hop it saved.
struct Conn<B> {
    send: http1::SendRequest<Sendable<B>>,
}

impl<B> Conn<B> {
    /// Whether the connection is still open (it may still be finishing its last exchange).
    fn usable(&mut self, cx: &mut Context<'_>) -> bool {
        !self.send.is_closed() && !matches!(self.send.poll_ready(cx), Poll::Ready(Err(_)))
    }
}

/// An idle connection: driven by hyper (streamed or larger bodies, upgrades), or by this crate's
/// own codec (requests without a body or with a small one, see [`h1`]). A request takes one of
/// its own kind.
enum Pooled<B> {
    Hyper(Conn<B>),
    Own(Box<H1>),
}

impl<B> Pooled<B> {
    fn is_own(&self) -> bool {
        matches!(self, Pooled::Own(_))
    }
}

struct Idle<B> {
    conn: Pooled<B>,
    since: Instant,
}

pub(super) struct Pool<B> {
    pub(super) authority: Authority,
    host: Option<HeaderValue>,
    /// Idle connections, LIFO, per thread shard (oldest first in each).
    shards: Box<[Mutex<Vec<Idle<B>>>]>,
    idle: AtomicUsize,
    /// The longest idle time after which a reused connection was seen to answer, in
    /// nanoseconds (see [`insure`]); back to zero when a connection idle for no longer
    /// turns out closed by the server.
    proven_open: AtomicU64,
    /// With `http2_only`: the target's shared HTTP/2 connection (the shards stay empty).
    #[cfg(feature = "http2")]
    h2: Option<H2Slot<B>>,
    pub(super) config: Arc<Config>,
}

thread_local! {
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

impl<B> Pool<B> {
    /// A TCP connection to the target within the connect timeout, with `TCP_NODELAY` (for
    /// the HTTP/1 pool and the shared h2c connection alike).
    pub(super) async fn tcp_connect(&self) -> std::io::Result<TcpStream> {
        let connecting = TcpStream::connect(self.authority.as_str());
        let stream = match self.config.connect_timeout {
            Some(t) => tokio::time::timeout(t, connecting)
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??,
            None => connecting.await?,
        };
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    fn expired(&self, since: Instant, now: Instant) -> bool {
        self.config
            .idle_timeout
            .is_some_and(|t| now.saturating_duration_since(since) >= t)
    }

    /// The most recently used idle connection of the wanted kind (this thread's shard first),
    /// dropping expired ones on the way.
    fn pop(&self, now: Instant, own: bool) -> Option<Idle<B>> {
        let n = self.shards.len();
        let start = SHARD.try_with(|s| *s).unwrap_or(0) % n;
        for k in 0..n {
            let shard = &self.shards[(start + k) % n];
            let mut idle = if k == 0 {
                lock(shard)
            } else {
                match shard.try_lock() {
                    Ok(g) => g,
                    Err(_) => continue,
                }
            };
            // Oldest first: the newest of the kind is the last one of it.
            let Some(i) = idle.iter().rposition(|i| i.conn.is_own() == own) else {
                continue;
            };
            if !self.expired(idle[i].since, now) {
                let found = idle.remove(i);
                drop(idle);
                self.idle.fetch_sub(1, Ordering::Relaxed);
                return Some(found);
            }
            // Expired: so is everything older in this shard.
            let old: Vec<Idle<B>> = idle.drain(..=i).collect();
            drop(idle);
            self.idle.fetch_sub(old.len(), Ordering::Relaxed);
            drop(old);
        }
        None
    }

    /// Returns a connection whose response has ended.
    fn checkin(&self, conn: Pooled<B>) {
        if matches!(&conn, Pooled::Hyper(c) if c.send.is_closed()) {
            return;
        }
        if self.idle.load(Ordering::Relaxed) >= self.config.max_idle {
            return;
        }
        let now = Instant::now();
        let n = self.shards.len();
        let shard = &self.shards[SHARD.try_with(|s| *s).unwrap_or(0) % n];
        let mut idle = lock(shard);
        let expired = match idle.first() {
            Some(oldest) if self.expired(oldest.since, now) => idle
                .iter()
                .take_while(|i| self.expired(i.since, now))
                .count(),
            _ => 0,
        };
        let old: Vec<Idle<B>> = idle.drain(..expired).collect();
        idle.push(Idle { conn, since: now });
        drop(idle);
        self.idle.fetch_add(1, Ordering::Relaxed);
        self.idle.fetch_sub(old.len(), Ordering::Relaxed);
    }

    fn proven_open(&self) -> Duration {
        Duration::from_nanos(self.proven_open.load(Ordering::Relaxed))
    }

    /// A connection idle for `idle_for` answered: the server keeps connections at least that
    /// long.
    fn seen_open(&self, idle_for: Duration) {
        let nanos = u64::try_from(idle_for.as_nanos()).unwrap_or(u64::MAX);
        if nanos > self.proven_open.load(Ordering::Relaxed) {
            self.proven_open.fetch_max(nanos, Ordering::Relaxed);
        }
    }

    /// A connection idle for `idle_for` was closed by the server: if that contradicts what
    /// was seen (the server's timeout changed), start over.
    #[cold]
    fn seen_closed(&self, idle_for: Duration) {
        if self.proven_open() >= idle_for {
            self.proven_open.store(0, Ordering::Relaxed);
        }
    }

    /// Drops every idle connection that has been idle for `at_least`: after one such turned
    /// out closed by the server, the others most likely are too.
    #[cold]
    fn evict_idle_for(&self, at_least: Duration) {
        self.seen_closed(at_least);
        let now = Instant::now();
        for shard in &*self.shards {
            let mut idle = lock(shard);
            let keep = idle
                .iter()
                .position(|i| now.saturating_duration_since(i.since) < at_least)
                .unwrap_or(idle.len());
            let old: Vec<Idle<B>> = idle.drain(..keep).collect();
            drop(idle);
            self.idle.fetch_sub(old.len(), Ordering::Relaxed);
        }
    }
}

impl<B> Pool<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// An idle connection that can take a request now, and how long it was idle. (Never
    /// waits: a plain function, so that it adds no state to the request's future.)
    fn checkout(&self, cx: &mut Context<'_>) -> Option<(Conn<B>, Duration)> {
        // Shared: a timeout around this request starts from the same reading.
        let now = crate::util::clock::now();
        loop {
            let Idle { conn, since } = self.pop(now, false)?;
            let idle_for = now.saturating_duration_since(since);
            if let Pooled::Hyper(mut conn) = conn {
                if conn.usable(cx) {
                    return Some((conn, idle_for));
                }
            }
            self.seen_closed(idle_for);
        }
    }

    /// [`checkout`](Self::checkout) for a request this crate's own codec sends.
    fn checkout_own(&self) -> Option<(Box<H1>, Duration)> {
        // Shared: a timeout around this request starts from the same reading.
        let now = crate::util::clock::now();
        loop {
            let Idle { conn, since } = self.pop(now, true)?;
            let idle_for = now.saturating_duration_since(since);
            if let Pooled::Own(mut conn) = conn {
                if conn.usable() {
                    return Some((conn, idle_for));
                }
            }
            self.seen_closed(idle_for);
        }
    }

    async fn connect_own(&self) -> Result<Box<H1>, BoxError> {
        Ok(H1::new(self.tcp_connect().await?))
    }

    async fn connect(&self) -> Result<Conn<B>, BoxError> {
        let stream = self.tcp_connect().await?;
        let (send, conn) = self
            .config
            .http1
            .handshake::<_, Sendable<B>>(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(Conn { send })
    }

    /// Origin-form URI, the target's `Host`, and an ended body replaced by a stand-in.
    fn prepare(&self, req: Request<B>) -> Request<Sendable<B>> {
        let (mut parts, body) = req.into_parts();
        if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
            // Where the request goes is the target's business, not the request's.
            let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            parts.uri = Uri::try_from(pq).unwrap_or_else(|_| Uri::from_static("/"));
        }
        if !self.config.preserve_host || !parts.headers.contains_key(HOST) {
            match &self.host {
                Some(h) => parts.headers.insert(HOST, h.clone()),
                None => parts.headers.remove(HOST),
            };
        }
        recycle_extensions(&mut parts.extensions);
        let body = if body.is_end_stream() {
            Sendable::Empty
        } else {
            Sendable::Body(body)
        };
        Request::from_parts(parts, body)
    }
}

/// Hands a map that holds only this crate's plain values (the client's address, the retry's
/// mark) back for the next request on this thread, instead of freeing it with the request head
/// (see `util::spare`): this client's HTTP/1 connections read no extension (see `head_copy`).
/// Any other entry (a user's, hyper's own) stays with the request, as before.
fn recycle_extensions(extensions: &mut http::Extensions) {
    crate::balance::extensions::recycle_plain(extensions);
}

/// Sends one request over the target's shared HTTP/2 connection (`http2_only`).
#[cfg(feature = "http2")]
async fn send_h2<B>(
    pool: Arc<Pool<B>>,
    req: Request<B>,
) -> Result<Response<PooledBody<B>>, BoxError>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    // `pool` owns the slot; the h2 path borrows it through a second handle.
    let owner = pool.clone();
    let Some(slot) = &pool.h2 else {
        return Err("no HTTP/2 connection slot".into());
    };
    let slot: &H2Slot<B> = slot;
    super::h2::send(owner, slot, req).await
}

/// Sends one request, [prepared](Pool::prepare), to the pool's target (see [`TargetClient`]
/// for what happens on failure).
async fn send<B>(
    pool: Arc<Pool<B>>,
    mut req: Request<Sendable<B>>,
) -> Result<Response<PooledBody<B>>, BoxError>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let upgrade_on_success = req.method() == Method::CONNECT;
    // Set once the request goes again after a reused connection failed it: at most once, on a
    // connection of its own.
    let mut fresh = false;
    loop {
        let checked_out = if fresh {
            None
        } else {
            poll_fn(|cx| Poll::Ready(pool.checkout(cx))).await
        };
        let (mut conn, reused) = match checked_out {
            Some((conn, idle_for)) => (conn, Some(idle_for)),
            // Boxed: connecting (resolution, TCP, handshake) is the largest state by far and
            // the rare one; inline it would make every request's future too large for the
            // allocator's fast path.
            None => match Box::pin(pool.connect()).await {
                Ok(conn) => (conn, None),
                Err(e) => return Err(connect_failed(e, req)),
            },
        };
        let insurance = match reused {
            Some(idle_for) if !fresh && insure(idle_for, pool.proven_open()) => head_copy(&req),
            _ => None,
        };
        if reused.is_some() {
            // A connection back in the pool may still be finishing its last exchange.
            if poll_fn(|cx| conn.send.poll_ready(cx)).await.is_err() {
                if let Some(idle_for) = reused {
                    pool.seen_closed(idle_for);
                }
                continue;
            }
        }
        let result = conn.send.try_send_request(req).await;
        let mut failed = match result {
            Ok(rsp) => {
                if let Some(idle_for) = reused {
                    pool.seen_open(idle_for);
                }
                return Ok(respond(pool, conn, rsp, upgrade_on_success));
            }
            Err(failed) => failed,
        };
        drop(conn);
        match (failed.take_message(), reused) {
            // Nothing of it was written: a reused connection goes again on a fresh one.
            (Some(back), Some(_)) if !fresh => {
                req = back;
                fresh = true;
            }
            // A fresh connection that took nothing: as good as a failed connect.
            (Some(back), _) => return Err(connect_failed(failed.into_error().into(), back)),
            (None, reused) => {
                let err = failed.into_error();
                if is_client_fault(&err) {
                    return Err(Box::new(ClientError::new(
                        ClientErrorKind::BodyAborted,
                        err,
                    )));
                }
                let Some(idle_for) = reused.filter(|_| closed_by_peer(&err)) else {
                    return Err(Box::new(err));
                };
                pool.evict_idle_for(idle_for);
                match insurance {
                    Some(copy) => {
                        req = *copy;
                        fresh = true;
                    }
                    None => return Err(Box::new(StaleConnection::new(err))),
                }
            }
        }
    }
}

/// A copy of an idempotent request without a body, to resend if a long-idle connection turns
/// out closed.
#[cold]
fn head_copy<B>(req: &Request<Sendable<B>>) -> Option<Box<Request<Sendable<B>>>> {
    if !matches!(req.body(), Sendable::Empty) || !req.method().is_idempotent() {
        return None;
    }
    let mut copy = Request::new(Sendable::Empty);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    // No extensions: the copy goes straight to hyper's HTTP/1 connection, which reads none
    // of them (this client's `http1::Builder` keeps no header case or order), so copying
    // them would only cost allocations. Boxed: a request held inline would grow every
    // request's future by its size.
    Some(Box::new(copy))
}

/// Nothing of the request was sent: hand its body back untouched.
#[cold]
pub(super) fn connect_failed<B: Send + 'static>(
    e: BoxError,
    req: Request<Sendable<B>>,
) -> BoxError {
    match req.into_body() {
        Sendable::Body(b) => Box::new(ConnectFailed::with_body(e, b)),
        Sendable::Empty => Box::new(ConnectFailed::new(e)),
    }
}

/// hyper reports the request body's own error as a user error carrying it as its source, and
/// a body shorter than its `Content-Length` as an aborted body write (as `HttpClient` does).
pub(super) fn is_client_fault(e: &hyper::Error) -> bool {
    e.is_body_write_aborted() || (e.is_user() && std::error::Error::source(e).is_some())
}

/// The connection was closed or reset under the request, before any response.
fn closed_by_peer(e: &hyper::Error) -> bool {
    e.is_incomplete_message()
        || e.is_canceled()
        || crate::error::find_cause::<std::io::Error>(e).is_some_and(closed_io)
}

fn respond<B>(
    pool: Arc<Pool<B>>,
    conn: Conn<B>,
    rsp: Response<Incoming>,
    connect: bool,
) -> Response<PooledBody<B>> {
    let upgraded =
        rsp.status() == StatusCode::SWITCHING_PROTOCOLS || (connect && rsp.status().is_success());
    // After an upgrade the connection belongs to whoever takes it: its task goes on, handing
    // the socket over.
    let conn = (!upgraded).then_some(conn);
    rsp.map(|body| PooledBody {
        kind: Kind::Hyper { body, conn },
        pool,
    })
}

/// The body of a response from [`TargetService`]: streams the target's response (no copy) and
/// returns the connection to the pool when it ends. Dropped before its end, it closes the
/// connection.
///
/// Its errors are `hyper::Error`s for responses hyper read (requests with a body, upgrades,
/// HTTP/2) and `std::io::Error`s for those read by the client's own codec (requests without a
/// body): a response cut short, or framing that breaks the protocol.
pub struct PooledBody<B> {
    kind: Kind<B>,
    pool: Arc<Pool<B>>,
}

enum Kind<B> {
    Hyper {
        body: Incoming,
        conn: Option<Conn<B>>,
    },
    Own(H1Body),
}

impl<B> fmt::Debug for PooledBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("PooledBody");
        match &self.kind {
            Kind::Hyper { body, .. } => d.field("body", body),
            Kind::Own(_) => d.field("body", &"http/1.1"),
        };
        d.finish_non_exhaustive()
    }
}

impl<B> PooledBody<B> {
    /// A response whose connection is not pooled per request (HTTP/2: shared).
    #[cfg(feature = "http2")]
    pub(super) fn unpooled(pool: Arc<Pool<B>>, rsp: Response<Incoming>) -> Response<Self> {
        rsp.map(|body| PooledBody {
            kind: Kind::Hyper { body, conn: None },
            pool,
        })
    }

    /// The response has been read whole: the connection can serve again.
    fn finish(&mut self) {
        let conn = match &mut self.kind {
            Kind::Hyper { conn, .. } => conn.take().map(Pooled::Hyper),
            Kind::Own(body) => body.take_reusable().map(Pooled::Own),
        };
        if let Some(conn) = conn {
            self.pool.checkin(conn);
        }
    }
}

impl<B> Drop for PooledBody<B> {
    fn drop(&mut self) {
        // A body that ended without being read to its end (empty, `HEAD`, `204`) leaves the
        // connection reusable; one dropped midway does not.
        let ended = match &self.kind {
            Kind::Hyper { body, conn } => conn.is_some() && body.is_end_stream(),
            Kind::Own(body) => body.is_end_stream(),
        };
        if ended {
            self.finish();
        }
    }
}

impl<B> Body for PooledBody<B> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Hyper { body, .. } => {
                ready!(Pin::new(body).poll_frame(cx)).map(|r| r.map_err(Into::into))
            }
            Kind::Own(body) => ready!(body.poll_frame(cx)).map(|r| r.map_err(Into::into)),
        };
        match polled {
            None => {
                this.finish();
                Poll::Ready(None)
            }
            Some(Ok(frame)) => {
                if this.is_end_stream() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                // The connection is not used again (the own codec's body let go of it).
                if let Kind::Hyper { conn, .. } = &mut this.kind {
                    *conn = None;
                }
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Hyper { body, .. } => body.is_end_stream(),
            Kind::Own(body) => body.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Hyper { body, .. } => body.size_hint(),
            Kind::Own(body) => body.size_hint(),
        }
    }
}

/// The largest request body this crate's own HTTP/1 codec sends (read whole once a connection
/// is had); a larger one, or one of unknown size, goes through hyper, streamed.
const OWN_BODY_MAX: u64 = 64 * 1024;

/// Whether a request goes out through this crate's own HTTP/1 codec: one in HTTP/1.1, asking
/// for no upgrade, without a body or with one of a known size of at most [`OWN_BODY_MAX`]
/// (see [`h1`]). Everything else goes through hyper.
fn own_codec<B: Body>(req: &Request<B>) -> bool {
    let body = req.body();
    (body.is_end_stream() || body.size_hint().exact().is_some_and(|n| n <= OWN_BODY_MAX))
        && req.version() == Version::HTTP_11
        && req.method() != Method::CONNECT
        && !req.headers().contains_key(UPGRADE)
}

/// Reads a body of known size (at most [`OWN_BODY_MAX`]) whole. A body that fails, or that
/// turns out longer or shorter than it said, is the request's fault: a [`ClientError`], and
/// nothing of it is written.
///
/// A body that comes in one frame of `Bytes` (the server's codec hands on such a body) is kept
/// as it is: no allocation, no copy. Frames after the first are gathered in one buffer.
async fn read_whole<B>(mut body: B) -> Result<Bytes, ClientError>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    use bytes::{Buf, BufMut, BytesMut};
    let said = body.size_hint().exact().unwrap_or(0).min(OWN_BODY_MAX) as usize;
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut got = 0;
    // Ends when the body does; a byte past `said` ends it at once.
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| ClientError::new(ClientErrorKind::BodyAborted, e))?;
        // Trailers: a body framed by its length has none to carry (hyper drops them too).
        let Ok(mut chunk) = frame.into_data() else {
            continue;
        };
        let n = chunk.remaining();
        if n > said - got {
            return Err(ClientError::new(
                ClientErrorKind::InvalidRequest,
                "request body longer than its size hint",
            ));
        }
        got += n;
        if first.is_none() && rest.is_empty() {
            // `Bytes` hands itself over; any other `Buf` is copied once.
            first = Some(chunk.copy_to_bytes(n));
            continue;
        }
        if let Some(first) = first.take() {
            rest.reserve(said);
            rest.put(first);
        }
        rest.put(chunk);
    }
    if got != said {
        return Err(ClientError::new(
            ClientErrorKind::InvalidRequest,
            "request body shorter than its size hint",
        ));
    }
    Ok(first.unwrap_or_else(|| rest.freeze()))
}

/// Sends a request with this crate's own codec (see [`h1`]), its body (if any) read whole once
/// a connection is had, then written with the head; what happens on failure is what [`send`]
/// does, except that the request is never lost: its head and body are written from what stays
/// here until a response arrives.
async fn send_own<B>(
    pool: Arc<Pool<B>>,
    parts: http::request::Parts,
    body: Option<B>,
) -> Result<Response<PooledBody<B>>, BoxError>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    // Unread until a connection is had: a failed connect hands the body back untouched, so
    // that the request can go elsewhere whatever its size (as `send` does).
    let mut unread = body;
    let mut data: Option<Bytes> = None;
    let head_request = parts.method == Method::HEAD;
    let host = Host {
        target: pool.host.as_ref(),
        preserve: pool.config.preserve_host,
    };
    // Set once the request goes again after a reused connection failed it: at most once, on a
    // connection of its own.
    let mut fresh = false;
    loop {
        let checked_out = if fresh { None } else { pool.checkout_own() };
        let (mut conn, reused) = match checked_out {
            Some((conn, idle_for)) => (conn, Some(idle_for)),
            None => match Box::pin(pool.connect_own()).await {
                Ok(conn) => (conn, None),
                Err(e) => {
                    return Err(Box::new(match unread.take() {
                        Some(body) => ConnectFailed::with_body(e, body),
                        None => ConnectFailed::new(e),
                    }));
                }
            },
        };
        if let Some(body) = unread.take() {
            match read_whole(body).await {
                Ok(whole) => data = Some(whole),
                Err(e) => {
                    // The request's fault, and nothing was written: the connection serves
                    // the next request.
                    pool.checkin(Pooled::Own(conn));
                    return Err(Box::new(e));
                }
            }
        }
        let failed = match conn
            .exchange(&parts, data.as_deref(), host, head_request)
            .await
        {
            Ok(head) => {
                if let Some(idle_for) = reused {
                    pool.seen_open(idle_for);
                }
                let body = H1Body::new(conn, head.state, head.reusable);
                let rsp = head.response.map(|()| PooledBody {
                    kind: Kind::Own(body),
                    pool,
                });
                // Answered: the request's map serves the next head read on this thread
                // (`util::spare`).
                crate::util::spare::give_back_headers(parts.headers);
                return Ok(rsp);
            }
            Err(failed) => failed,
        };
        drop(conn);
        match reused {
            // Nothing of it was written: a reused connection goes again on a fresh one.
            Some(_) if !failed.written && !fresh => fresh = true,
            // A fresh connection that took nothing: as good as a failed connect.
            _ if !failed.written => return Err(Box::new(ConnectFailed::new(failed.error))),
            // Closed under the request before any byte of a response: the server had closed
            // it while idle. The request is still here: an idempotent one goes again.
            Some(idle_for) if !failed.answered && closed_io(&failed.error) => {
                pool.evict_idle_for(idle_for);
                if fresh || !parts.method.is_idempotent() {
                    return Err(Box::new(StaleConnection::new(failed.error)));
                }
                fresh = true;
            }
            _ => return Err(Box::new(failed.error)),
        }
    }
}

/// An I/O error that says the peer closed or reset the connection.
fn closed_io(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | BrokenPipe | ConnectionAborted | UnexpectedEof
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_copy_is_kept_unless_a_longer_idle_time_was_seen_to_work() {
        let ms = Duration::from_millis;
        // Under the floor: never (the connection was in use a moment ago).
        assert!(!insure(Duration::from_micros(500), Duration::ZERO));
        // Nothing seen yet: from the floor on.
        assert!(insure(ms(1), Duration::ZERO));
        assert!(insure(ms(3_000), Duration::ZERO));
        // Connections idle 100 ms were seen to answer: 50 ms is safe, 90 ms is within the
        // margin, 200 ms is not covered.
        assert!(!insure(ms(50), ms(100)));
        assert!(insure(ms(90), ms(100)));
        assert!(insure(ms(200), ms(100)));
        // A server closing after 3 ms: what is seen stays under 3 ms, so every connection
        // idle near the limit keeps its copy.
        assert!(insure(ms(2), ms(3)));
    }

    #[test]
    fn what_was_seen_to_work_grows_and_is_forgotten_when_contradicted() {
        let pool = TargetClient::<String>::new()
            .service(&Target::new("a", "127.0.0.1:9").unwrap())
            .pool;
        let ms = Duration::from_millis;
        pool.seen_open(ms(40));
        pool.seen_open(ms(10));
        assert_eq!(pool.proven_open(), ms(40));
        // A connection idle 60 ms found closed says nothing against 40 ms.
        pool.seen_closed(ms(60));
        assert_eq!(pool.proven_open(), ms(40));
        // One idle 30 ms found closed: the server changed; start over.
        pool.seen_closed(ms(30));
        assert_eq!(pool.proven_open(), Duration::ZERO);
    }

    #[test]
    fn defaults_and_caps() {
        let b = TargetClient::<String>::builder();
        assert!(b.idle_timeout.is_some_and(|d| d < Duration::from_secs(5)));
        let b = b
            .idle_timeout(Some(Duration::MAX))
            .connect_timeout(Some(Duration::MAX));
        assert_eq!(b.idle_timeout, Some(crate::util::FOREVER));
        assert_eq!(b.connect_timeout, Some(crate::util::FOREVER));
    }

    #[tokio::test]
    async fn the_request_cannot_choose_where_it_goes() {
        let client = TargetClient::<String>::new();
        let svc = client.service(&Target::new("a", "127.0.0.1:9").unwrap());
        let req = Request::get("https://evil.example/x?y=1")
            .header(HOST, "evil.example")
            .body(String::new())
            .unwrap();
        let req = svc.pool.prepare(req);
        assert_eq!(req.uri(), "/x?y=1");
        assert_eq!(req.headers()[HOST], "127.0.0.1:9");
        assert!(matches!(req.body(), Sendable::Empty));
    }
}
#[cfg(test)]
mod future_size {
    use bytes::Bytes;
    use http_body_util::Empty;

    /// A request's future is allocated once per request: kept at or under 1 KiB it stays on
    /// the allocator's fast path (glibc's per-thread cache). The rare states (connecting, the
    /// head copy, HTTP/2) are boxed on their own to keep it there.
    #[test]
    fn the_http1_send_future_fits_the_allocator_s_fast_path() {
        let t = super::TargetClient::<Empty<Bytes>>::new()
            .service(&crate::Target::new("a", "127.0.0.1:9").unwrap());
        let req = t.pool.prepare(http::Request::new(Empty::<Bytes>::new()));
        let fut = super::send(t.pool.clone(), req);
        let size = std::mem::size_of_val(&fut);
        assert!(size <= 1024, "{size} bytes");
    }
}
