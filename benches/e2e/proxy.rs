//! The proxy and backends of the end-to-end benchmark (`benches/e2e/run.sh`), made of the
//! library's public pieces: `Server`, `ErrorResponseLayer`, `ForwardLayer`, optionally the
//! resilience layers, `Balance` and a target client.
//!
//! ```text
//! # Three backends answering 100 bytes, on one thread:
//! e2e_proxy backends 127.0.0.1:19001 127.0.0.1:19002 127.0.0.1:19003
//! # The proxy (one worker, the per-target client, forwarding layer only):
//! e2e_proxy proxy --listen 127.0.0.1:18001 --workers 1 --client target --stack bare \
//!     --backend 127.0.0.1:19001 --backend 127.0.0.1:19002 --backend 127.0.0.1:19003
//! ```
//!
//! `--client legacy` uses hyper-util's client (`HttpClient`) instead of `TargetClient`;
//! `--stack resilience` adds the resilience stack (a per-client-IP rate limit of 10 million
//! requests per second with a burst of 1 000, so high that it never refuses here; an overall deadline of 10 s;
//! retries; a circuit breaker; a per-attempt timeout of 5 s), and `--stack full` puts that
//! stack behind a router with 20 rules (see [`twenty_rules`]). `resilience` minus `bare` is what
//! the resilience layers cost, `full` minus `resilience` what the router costs. `--stack
//! rate-limit`, `timeouts` (deadline and per-attempt), `retry` and `breaker` add one kind of
//! those layers alone, to tell what each costs.
//!
//! The forwarding layer writes what nginx and HAProxy write in this benchmark
//! (`X-Forwarded-For`, hop-by-hop headers stripped), so that all three do the same work;
//! `--headers default` writes `ForwardLayer`'s defaults instead (also `X-Forwarded-Proto`,
//! `X-Forwarded-Host` and `X-Real-IP`). `--hyper-h1` has the server read every request with
//! hyper's HTTP/1 server instead of its own codec.
//!
//! `floor` is the other end of the scale: the cheapest HTTP/1 reverse proxy one can write on
//! hyper and tokio alone, with no tower-lb and no tower, so that the benchmark can tell what
//! tower-lb costs from what hyper costs (see [`floor`]):
//!
//! ```text
//! e2e_proxy floor --listen 127.0.0.1:18031 \
//!     --backend 127.0.0.1:19001 --backend 127.0.0.1:19002 --backend 127.0.0.1:19003
//! ```
//!
//! `codec-floor` (same arguments) is the floor without hyper: an HTTP/1 relay with a codec of
//! its own on `httparse` and tokio (see [`codec_floor`]), so that the benchmark can tell what
//! hyper's codec costs from what the kernel and tokio cost. `--busy-ns N` has it spin for N
//! nanoseconds after each response, a proxy that costs that much more CPU per request and is
//! otherwise the same (how a tail depends on CPU per request, `docs/benchmarks.md`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_lb::BoxError;
use tower_lb::balance::Balance;
use tower_lb::breaker::CircuitBreakerLayer;
use tower_lb::forward::ForwardLayer;
use tower_lb::limit::{LimitKey, RateLimitLayer};
use tower_lb::retry::{ReplayBody, RetryLayer, RetryPolicy};
use tower_lb::route::{Router, Rule};
use tower_lb::server::{RequestBody, Server};
use tower_lb::timeout::TimeoutLayer;
use tower_lb::upstream::{ErrorResponseLayer, HttpClient, TargetClient};
use tower_lb::{Target, TargetGroup};

const BODY: &[u8; 100] = b"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789";

async fn backends(addrs: Vec<SocketAddr>) -> Result<(), BoxError> {
    let mut tasks = tokio::task::JoinSet::new();
    for addr in addrs {
        let listener = TcpListener::bind(addr).await?;
        tasks.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = service_fn(|_req: Request<hyper::body::Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BODY))))
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// How the proxy's edge is set up: `--headers default`, `--hyper-h1`.
#[derive(Debug, Clone, Copy, Default)]
struct Edge {
    /// `ForwardLayer`'s default headers rather than the peers' set.
    default_headers: bool,
    /// The server reads every HTTP/1.1 request with hyper (`ServerBuilder::hyper_http1`).
    hyper_h1: bool,
}

/// What stands between the edge and `Balance`: `--stack bare|resilience|full`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Stack {
    /// Nothing.
    #[default]
    Bare,
    /// The resilience layers.
    Resilience,
    /// The resilience layers behind a router with 20 rules.
    Full,
    /// One kind of the resilience layers alone, to tell what each costs: the rate limit, the
    /// two timeouts (deadline and per-attempt), retries, the circuit breaker.
    Only(Only),
}

/// One kind of resilience layer (see [`Stack::Only`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Only {
    RateLimit,
    Timeouts,
    Retry,
    Breaker,
}

impl std::str::FromStr for Stack {
    type Err = BoxError;

    fn from_str(s: &str) -> Result<Self, BoxError> {
        match s {
            "bare" => Ok(Stack::Bare),
            "resilience" => Ok(Stack::Resilience),
            "full" => Ok(Stack::Full),
            "rate-limit" => Ok(Stack::Only(Only::RateLimit)),
            "timeouts" => Ok(Stack::Only(Only::Timeouts)),
            "retry" => Ok(Stack::Only(Only::Retry)),
            "breaker" => Ok(Stack::Only(Only::Breaker)),
            other => Err(format!(
                "unknown stack {other}: bare, resilience, full, rate-limit, timeouts, retry or breaker"
            )
            .into()),
        }
    }
}

/// Serves the proxy: `ErrorResponseLayer`, `ForwardLayer`, then (unless `bare`) the
/// resilience stack (rate limit, deadline, retries, breaker, per-attempt timeout; with `full`
/// behind 20 routing rules), then `Balance` over `client`.
async fn proxy(
    listener: TcpListener,
    group: TargetGroup,
    client: &str,
    stack: Stack,
    edge: Edge,
) -> Result<(), BoxError> {
    let server = Server::builder().hyper_http1(edge.hyper_h1).build()?;
    let forward = if edge.default_headers {
        ForwardLayer::new()
    } else {
        // What `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for` and HAProxy's
        // `option forwardfor` write.
        ForwardLayer::new()
            .x_forwarded_proto(false)
            .x_forwarded_host(false)
            .x_real_ip(false)
    };
    let edge = || {
        ServiceBuilder::new()
            .layer(ErrorResponseLayer::new())
            .layer(forward.clone())
    };
    macro_rules! serve {
        ($client:ident) => {{
            if let Stack::Only(only) = stack {
                let balance = || Balance::with_maker(group.clone(), $client::<RequestBody>::new());
                match only {
                    Only::RateLimit => {
                        let layer = RateLimitLayer::builder(LimitKey::client_ip())
                            .rate(10_000_000, Duration::from_secs(1))
                            .burst(1_000)
                            .build()?;
                        let svc = edge().layer(layer).service(balance());
                        server.serve(listener, svc, std::future::pending()).await?
                    }
                    Only::Timeouts => {
                        let svc = edge()
                            .layer(TimeoutLayer::new(Duration::from_secs(10)))
                            .layer(TimeoutLayer::new(Duration::from_secs(5)))
                            .service(balance());
                        server.serve(listener, svc, std::future::pending()).await?
                    }
                    Only::Retry => {
                        let balance = Balance::with_maker(
                            group.clone(),
                            $client::<ReplayBody<RequestBody>>::new(),
                        );
                        let svc = edge()
                            .layer(RetryLayer::new(RetryPolicy::new()))
                            .service(balance);
                        server.serve(listener, svc, std::future::pending()).await?
                    }
                    Only::Breaker => {
                        let layer =
                            CircuitBreakerLayer::builder(group.name().to_owned()).build()?;
                        let svc = edge().layer(layer).service(balance());
                        server.serve(listener, svc, std::future::pending()).await?
                    }
                }
            } else if stack != Stack::Bare {
                let balance =
                    Balance::with_maker(group.clone(), $client::<ReplayBody<RequestBody>>::new());
                // Per client IP, as a proxy limits; 10 million per second (burst 1 000) never
                // refuses here.
                let rate_limit = RateLimitLayer::builder(LimitKey::client_ip())
                    .rate(10_000_000, Duration::from_secs(1))
                    .burst(1_000)
                    .build()?;
                let resilient = ServiceBuilder::new()
                    .layer(rate_limit)
                    .layer(TimeoutLayer::new(Duration::from_secs(10)))
                    .layer(RetryLayer::new(RetryPolicy::new()))
                    .layer(CircuitBreakerLayer::builder(group.name().to_owned()).build()?)
                    .layer(TimeoutLayer::new(Duration::from_secs(5)))
                    .service(balance);
                if stack == Stack::Full {
                    let svc = edge().service(twenty_rules(resilient)?);
                    server.serve(listener, svc, std::future::pending()).await?
                } else {
                    let svc = edge().service(resilient);
                    server.serve(listener, svc, std::future::pending()).await?
                }
            } else {
                let balance = Balance::with_maker(group.clone(), $client::<RequestBody>::new());
                let svc = edge().service(balance);
                server.serve(listener, svc, std::future::pending()).await?
            }
        }};
    }
    match client {
        "target" => serve!(TargetClient),
        "legacy" => serve!(HttpClient),
        other => return Err(format!("unknown client {other}").into()),
    }
    Ok(())
}

/// A router with 20 rules in front of `app`: 19 path prefixes no benchmark request matches
/// (`/svc0/` … `/svc18/`, each also limited to `GET`), then `/` to `app`, so that every request
/// is matched against all 20.
fn twenty_rules<S>(app: S) -> Result<Router<S>, BoxError> {
    let mut rules: Vec<Rule> = (0..19)
        .map(|i| {
            Rule::new(format!("svc{i}"))
                .prefix(format!("/svc{i}/"))
                .method(http::Method::GET)
                .to("app")
        })
        .collect();
    rules.push(Rule::new("rest").prefix("/").to("app"));
    Ok(Router::builder()
        .destination("app", app)
        .rules(rules)
        .build()?)
}

/// The floor of any hyper-based proxy, run on one current-thread runtime: each accepted client
/// connection gets ONE upstream connection of its own (`hyper::client::conn::http1`, to the
/// backends in turn over accepted connections, its connection task spawned on the same
/// runtime), and `hyper::server::conn::http1` serves the client connection with a
/// `service_fn` that sends each request over it as is, once the connection is ready: the
/// incoming request body goes upstream unchanged and the upstream response (its body
/// streamed) comes back unchanged.
///
/// It does only what correctness strictly needs: an absolute-form request URI is reduced to
/// origin form. No pool, no balancer, no timeouts, no `X-Forwarded-For` (nginx and HAProxy add
/// it in this benchmark), no hop-by-hop header stripping, no error responses (an upstream
/// error closes the client connection), so it does less than the other proxies measured:
/// it is a lower bound, not a peer.
async fn floor(listener: TcpListener, backends: Vec<SocketAddr>) -> Result<(), BoxError> {
    if backends.is_empty() {
        return Err("floor needs at least one --backend".into());
    }
    let mut next = 0usize;
    loop {
        let (stream, _) = listener.accept().await?;
        let backend = backends[next % backends.len()];
        next = next.wrapping_add(1);
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let Ok(upstream) = tokio::net::TcpStream::connect(backend).await else {
                return;
            };
            let _ = upstream.set_nodelay(true);
            let Ok((sender, conn)) = hyper::client::conn::http1::handshake::<
                _,
                hyper::body::Incoming,
            >(TokioIo::new(upstream))
            .await
            else {
                return;
            };
            tokio::spawn(conn);
            // The server calls the service through `&self`, one request at a time on an
            // HTTP/1 connection, so the lock is never contended; it is held only inside one
            // poll or one `send_request`, never across an await.
            let sender = std::sync::Arc::new(std::sync::Mutex::new(sender));
            let svc = service_fn(move |mut req: Request<hyper::body::Incoming>| {
                if req.uri().authority().is_some() {
                    let origin = req
                        .uri()
                        .path_and_query()
                        .map_or_else(|| http::Uri::from_static("/"), |pq| pq.clone().into());
                    *req.uri_mut() = origin;
                }
                let sender = sender.clone();
                async move {
                    let lock = || sender.lock().unwrap_or_else(|e| e.into_inner());
                    std::future::poll_fn(|cx| lock().poll_ready(cx)).await?;
                    let response = lock().send_request(req);
                    response.await
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let mut workers = 1;
    let mut listen: SocketAddr = ([127, 0, 0, 1], 18001).into();
    let mut targets = Vec::new();
    let mut client = "target".to_owned();
    let mut stack = Stack::Bare;
    let mut edge = Edge::default();
    let mut per_core = false;
    let mut busy_ns = 0u64;
    let mut rest = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--workers" => workers = value()?.parse()?,
            "--listen" => listen = value()?.parse()?,
            "--backend" => targets.push(value()?),
            "--client" => client = value()?,
            "--stack" => stack = value()?.parse()?,
            "--headers" => edge.default_headers = value()? == "default",
            "--hyper-h1" => edge.hyper_h1 = true,
            "--per-core" => per_core = true,
            "--busy-ns" => busy_ns = value()?.parse()?,
            _ => rest.push(arg.parse::<SocketAddr>()?),
        }
    }
    if per_core && mode == "proxy" {
        return per_core_proxy(workers, listen, targets, client, stack, edge);
    }
    let rt = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()?
    };
    rt.block_on(async move {
        match mode.as_str() {
            "backends" => backends(rest).await,
            "floor" | "codec-floor" => {
                let backends = targets
                    .iter()
                    .map(|a| a.parse::<SocketAddr>())
                    .collect::<Result<Vec<_>, _>>()?;
                let listener = TcpListener::bind(listen).await?;
                if mode == "floor" {
                    floor(listener, backends).await
                } else {
                    codec_floor(listener, backends, busy_ns).await
                }
            }
            "proxy" => {
                let group = TargetGroup::builder("bench")
                    .targets(
                        targets
                            .iter()
                            .enumerate()
                            .map(|(i, a)| Target::new(format!("b{i}"), a.as_str()))
                            .collect::<Result<Vec<_>, _>>()?,
                    )
                    .build()?;
                let listener = TcpListener::bind(listen).await?;
                proxy(listener, group, &client, stack, edge).await
            }
            _ => Err("usage: e2e_proxy backends ADDR... | floor|codec-floor [--workers N] [--busy-ns N] [--listen ADDR] --backend ADDR... | proxy [--workers N] [--per-core] [--listen ADDR] [--client target|legacy] [--stack bare|resilience|full|rate-limit|timeouts|retry|breaker] [--headers peers|default] [--hyper-h1] --backend ADDR...".into()),
        }
    })
}

/// `--per-core`: one single-threaded runtime per worker, each with its own listener on the same
/// address (`SO_REUSEPORT`, the kernel spreads connections) and its own balancer and client
/// over the one shared target group: a request never leaves its thread (nginx's worker model).
fn per_core_proxy(
    workers: usize,
    listen: SocketAddr,
    targets: Vec<String>,
    client: String,
    stack: Stack,
    edge: Edge,
) -> Result<(), BoxError> {
    let group = TargetGroup::builder("bench")
        .targets(
            targets
                .iter()
                .enumerate()
                .map(|(i, a)| Target::new(format!("b{i}"), a.as_str()))
                .collect::<Result<Vec<_>, _>>()?,
        )
        .build()?;
    let threads: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let (group, client) = (group.clone(), client.clone());
            std::thread::spawn(move || -> Result<(), BoxError> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let socket = tokio::net::TcpSocket::new_v4()?;
                    socket.set_reuseport(true)?;
                    socket.set_reuseaddr(true)?;
                    socket.bind(listen)?;
                    let listener = socket.listen(1024)?;
                    proxy(listener, group, &client, stack, edge).await
                })
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "worker panicked")??;
    }
    Ok(())
}

/// The floor of a proxy on tokio with an HTTP/1 codec of its own, run like [`floor`] (one
/// current-thread runtime, one upstream connection per client connection, to the backends in
/// turn): each request head is parsed with `httparse` and written again for the backend
/// (request line in origin form, hop-by-hop headers dropped, an `X-Forwarded-For` line
/// added, as nginx and HAProxy do here), then the response head likewise, each head with the
/// body bytes already read in one write.
///
/// It relays only what this benchmark sends: messages framed by `Content-Length` or without a
/// body; anything else (chunked framing, a response without a length, pipelining beyond what
/// one read brings, upgrades) closes the connection. No timeouts, limits or error responses. A
/// measure of what hyper's HTTP/1 server and client cost against a minimal codec, not a proxy.
async fn codec_floor(
    listener: TcpListener,
    backends: Vec<SocketAddr>,
    busy_ns: u64,
) -> Result<(), BoxError> {
    if backends.is_empty() {
        return Err("codec-floor needs at least one --backend".into());
    }
    let mut next = 0usize;
    loop {
        let (client, peer) = listener.accept().await?;
        let backend = backends[next % backends.len()];
        next = next.wrapping_add(1);
        tokio::spawn(async move {
            let _ = relay(client, peer, backend, busy_ns).await;
        });
    }
}

/// Headers of one hop only (RFC 9110 §7.6.1), not passed on; `Transfer-Encoding` is refused
/// before this is asked.
fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

fn unsupported(what: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// A message head parsed into `out`, written again for the next hop.
struct Head {
    /// Bytes of the head in the input.
    len: usize,
    /// `Content-Length`, or 0.
    body: usize,
    /// The connection ends after this exchange.
    close: bool,
}

/// Writes `headers` to `out` except hop-by-hop ones, noting the length and `Connection: close`.
fn copy_headers(
    headers: &[httparse::Header<'_>],
    out: &mut Vec<u8>,
) -> std::io::Result<(usize, bool)> {
    let (mut body, mut close) = (0, false);
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(unsupported("transfer-encoding"));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            body = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(unsupported("content-length"))?;
        }
        if h.name.eq_ignore_ascii_case("connection") {
            close |= h.value.eq_ignore_ascii_case(b"close");
        }
        if hop_by_hop(h.name) {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    Ok((body, close))
}

fn request_head(input: &[u8], out: &mut Vec<u8>, xff: &[u8]) -> std::io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(input).map_err(|_| unsupported("request head"))? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(unsupported("request line"));
    };
    if method == "CONNECT" || !path.starts_with('/') {
        return Err(unsupported("request target"));
    }
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let (body, close) = copy_headers(req.headers, out)?;
    out.extend_from_slice(b"x-forwarded-for: ");
    out.extend_from_slice(xff);
    out.extend_from_slice(b"\r\n\r\n");
    Ok(Some(Head {
        len,
        body,
        close: close || version == 0,
    }))
}

fn response_head(input: &[u8], out: &mut Vec<u8>) -> std::io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut rsp = httparse::Response::new(&mut headers);
    let len = match rsp.parse(input).map_err(|_| unsupported("response head"))? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let Some(code) = rsp.code.filter(|c| *c >= 200) else {
        return Err(unsupported("status"));
    };
    if !rsp
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        return Err(unsupported("response without a length"));
    }
    out.clear();
    out.extend_from_slice(format!("HTTP/1.1 {code} ").as_bytes());
    out.extend_from_slice(rsp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let (body, close) = copy_headers(rsp.headers, out)?;
    out.extend_from_slice(b"\r\n");
    Ok(Some(Head {
        len,
        body,
        close: close || rsp.version == Some(0),
    }))
}

/// Reads from `from` into `buf` until `parse` finds a whole head (at most 64 KiB); `None` when
/// the peer closed before sending any byte of one.
async fn read_head(
    from: &mut tokio::net::TcpStream,
    buf: &mut bytes::BytesMut,
    mut parse: impl FnMut(&[u8]) -> std::io::Result<Option<Head>>,
) -> std::io::Result<Option<Head>> {
    use tokio::io::AsyncReadExt;
    loop {
        if !buf.is_empty() {
            if let Some(head) = parse(buf)? {
                return Ok(Some(head));
            }
        }
        if buf.len() >= 64 * 1024 {
            return Err(unsupported("head too large"));
        }
        if from.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
    }
}

/// Writes `out` (a head) followed by `len` body bytes: those already in `buf` in the same
/// write, the rest as they come from `from`.
async fn write_message(
    to: &mut tokio::net::TcpStream,
    from: &mut tokio::net::TcpStream,
    buf: &mut bytes::BytesMut,
    out: &mut Vec<u8>,
    len: usize,
) -> std::io::Result<()> {
    use bytes::Buf;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let now = len.min(buf.len());
    out.extend_from_slice(&buf[..now]);
    buf.advance(now);
    to.write_all(out).await?;
    let mut left = len - now;
    while left > 0 {
        if from.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let n = left.min(buf.len());
        to.write_all(&buf[..n]).await?;
        buf.advance(n);
        left -= n;
    }
    Ok(())
}

/// One client connection of [`codec_floor`].
async fn relay(
    mut client: tokio::net::TcpStream,
    peer: SocketAddr,
    backend: SocketAddr,
    busy_ns: u64,
) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut up = tokio::net::TcpStream::connect(backend).await?;
    up.set_nodelay(true)?;
    let xff = peer.ip().to_string();
    let mut from_client = bytes::BytesMut::with_capacity(8 * 1024);
    let mut from_up = bytes::BytesMut::with_capacity(8 * 1024);
    let mut out = Vec::with_capacity(1024);
    loop {
        use bytes::Buf;
        let parse = |input: &[u8]| request_head(input, &mut out, xff.as_bytes());
        let Some(req) = read_head(&mut client, &mut from_client, parse).await? else {
            return Ok(());
        };
        from_client.advance(req.len);
        write_message(&mut up, &mut client, &mut from_client, &mut out, req.body).await?;
        let parse = |input: &[u8]| response_head(input, &mut out);
        let Some(rsp) = read_head(&mut up, &mut from_up, parse).await? else {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        };
        from_up.advance(rsp.len);
        write_message(&mut client, &mut up, &mut from_up, &mut out, rsp.body).await?;
        if busy_ns > 0 {
            // `--busy-ns`: CPU spent as if on more work, without a system call or a wake-up.
            let start = tokio::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_nanos(busy_ns) {
                std::hint::spin_loop();
            }
        }
        if req.close || rsp.close {
            return Ok(());
        }
    }
}
