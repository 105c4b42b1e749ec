//! The forwarding layer and the proxy server, through real loopback sockets: what the client
//! sends, what the proxy makes of it, and what arrived at the backends (counted there).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceBuilder;
use tower_lb::balance::Balance;
use tower_lb::client_ip::{ClientIpLayer, ClientIpResolver, TrustedProxies};
use tower_lb::forward::ForwardLayer;
use tower_lb::server::{RequestBody, Server, ServerBuilder, TlsAcceptor};
use tower_lb::upstream::{ErrorResponseLayer, HttpClient, TargetClient};
use tower_lb::{Target, TargetGroup};

/// Every loop and wait in this file ends within this.
const LIMIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Backends

/// What a backend saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Debug, Clone, Default)]
struct Log {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Requests whose head arrived (counted before the body is read or a delay starts).
    arrived: Arc<AtomicUsize>,
}

impl Log {
    fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// An HTTP/1.1 backend: records each request, waits `x-delay-ms` if asked, answers `ok` with
/// hop-by-hop headers of its own, and echoes bytes after a `101` when asked to upgrade.
async fn h1_backend(log: Log) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle_h1(log.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

async fn handle_h1(
    log: Log,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    log.arrived.fetch_add(1, Ordering::SeqCst);
    if let Some(ms) = req.headers().get("x-delay-ms") {
        let ms: u64 = ms.to_str().unwrap().parse().unwrap();
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let upgrade = req.headers().get("upgrade").cloned();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let mut rsp = Response::new(Full::new(Bytes::new()));
            *rsp.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(rsp);
        }
    };
    log.seen.lock().unwrap().push(Seen {
        path: parts.uri.path().to_owned(),
        version: parts.version,
        headers: parts.headers.clone(),
        body,
    });
    if let Some(proto) = upgrade {
        tokio::spawn(async move {
            if let Ok(up) = on_upgrade.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                // Echo until the client closes.
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut rsp = Response::new(Full::new(Bytes::new()));
        *rsp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        rsp.headers_mut()
            .insert("connection", HeaderValue::from_static("upgrade"));
        rsp.headers_mut().insert("upgrade", proto);
        if let Some(key) = parts.headers.get("sec-websocket-key") {
            // Not the real digest: the test only checks that the proxy passes it through.
            rsp.headers_mut()
                .insert("sec-websocket-accept", key.clone());
        }
        return Ok(rsp);
    }
    let mut rsp = Response::new(Full::new(Bytes::from_static(b"ok")));
    let h = rsp.headers_mut();
    h.insert("connection", HeaderValue::from_static("x-backend-secret"));
    h.insert("x-backend-secret", HeaderValue::from_static("1"));
    h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    h.insert("x-backend", HeaderValue::from_static("h1"));
    if let Ok(path) = HeaderValue::from_str(parts.uri.path()) {
        h.insert("x-path", path);
    }
    if parts.uri.path() == "/first" {
        h.insert("x-first-only", HeaderValue::from_static("1"));
    }
    Ok(rsp)
}

type TrailerBody =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// A cleartext HTTP/2 (h2c) backend answering like a gRPC server: a body, then trailers.
async fn h2c_backend(log: Log) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        log.arrived.fetch_add(1, Ordering::SeqCst);
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        log.seen.lock().unwrap().push(Seen {
                            path: parts.uri.path().to_owned(),
                            version: parts.version,
                            headers: parts.headers,
                            body,
                        });
                        let mut trailers = HeaderMap::new();
                        trailers.insert("grpc-status", HeaderValue::from_static("0"));
                        trailers.insert("grpc-message", HeaderValue::from_static("fine"));
                        let frames = vec![
                            Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x02hi"))),
                            Ok(Frame::trailers(trailers)),
                        ];
                        let mut rsp: Response<TrailerBody> =
                            Response::new(StreamBody::new(futures_util::stream::iter(frames)));
                        rsp.headers_mut()
                            .insert("content-type", HeaderValue::from_static("application/grpc"));
                        Ok::<_, Infallible>(rsp)
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------
// The proxy under test: only the library's public pieces.

struct Proxy {
    addr: SocketAddr,
    tls_addr: SocketAddr,
    group: TargetGroup,
    stop: Option<oneshot::Sender<()>>,
    stop_tls: Option<oneshot::Sender<()>>,
    done: JoinHandle<()>,
    cert_der: Vec<u8>,
}

struct Opts {
    server: ServerBuilder,
    h2c: bool,
    /// `TargetClient` (the per-target pooled client) rather than hyper-util's `HttpClient`.
    target_client: bool,
    forward: ForwardLayer,
    trusted: TrustedProxies,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            server: Server::builder(),
            h2c: false,
            target_client: false,
            forward: ForwardLayer::new()
                .forwarded(true)
                .via(HeaderValue::from_static("tower-lb")),
            trusted: TrustedProxies::none(),
        }
    }
}

/// One response body type whichever client the proxy uses.
fn boxed<B>(rsp: Response<B>) -> Response<UnsyncBoxBody<Bytes, tower_lb::BoxError>>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower_lb::BoxError>,
{
    rsp.map(|b| b.map_err(Into::into).boxed_unsync())
}

async fn proxy(backends: &[SocketAddr], opts: Opts) -> Proxy {
    let mut group = TargetGroup::builder("app");
    for (i, b) in backends.iter().enumerate() {
        group = group.target(Target::new(format!("b{i}"), b.to_string()).unwrap());
    }
    let group = group.build().unwrap();
    let resolver = ClientIpResolver::new(opts.trusted);
    let forward = opts.forward;
    macro_rules! stack {
        ($client:expr) => {
            ServiceBuilder::new()
                .map_response(boxed)
                .layer(ErrorResponseLayer::new())
                .layer(ClientIpLayer::new(resolver))
                .layer(forward)
                .service(Balance::with_maker(group.clone(), $client))
        };
    }
    let stack = if opts.target_client {
        let client = TargetClient::<RequestBody>::builder().preserve_host(true);
        #[cfg(feature = "http2")]
        let client = client.http2_only(opts.h2c);
        tower::util::Either::Left(stack!(client.build::<RequestBody>()))
    } else {
        let client = HttpClient::<RequestBody>::builder()
            .http2_only(opts.h2c)
            .preserve_host(true)
            .build();
        tower::util::Either::Right(stack!(client))
    };
    let server = opts.server.build().unwrap();

    let dev = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let tls = TlsAcceptor::from_pem(
        dev.cert.pem().as_bytes(),
        dev.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls_addr = tls_listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let (stop_tls, stopped_tls) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        let plain = server.serve(listener, stack.clone(), async {
            let _ = stopped.await;
        });
        let secure = server.serve_tls(tls_listener, &tls, stack, async {
            let _ = stopped_tls.await;
        });
        let (a, b) = futures_util::future::join(plain, secure).await;
        a.unwrap();
        b.unwrap();
    });
    Proxy {
        addr,
        tls_addr,
        group,
        stop: Some(stop),
        stop_tls: Some(stop_tls),
        done,
        cert_der: dev.cert.der().to_vec(),
    }
}

impl Proxy {
    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.stop_tls.take().unwrap().send(());
        tokio::time::timeout(LIMIT, self.done)
            .await
            .unwrap()
            .unwrap();
    }

    fn in_flight(&self) -> u32 {
        self.group.stats().iter().map(|s| s.in_flight()).sum()
    }
}

// ---------------------------------------------------------------------------------------
// Clients

/// Writes `bytes` and reads what comes back until the proxy closes (or 10 s pass).
async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    raw_until_closed(addr, bytes).await.0
}

/// As [`raw`], and whether the proxy closed the connection (rather than the 10 s passing).
async fn raw_until_closed(addr: SocketAddr, bytes: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(LIMIT, s.read_to_end(&mut out))
        .await
        .is_ok_and(|r| r.is_ok());
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

fn status_of(raw: &str) -> u16 {
    raw.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

async fn h1_client(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let s = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// A TLS client trusting only the proxy's dev certificate, offering `alpn`.
async fn tls_stream(proxy: &Proxy, alpn: &[&[u8]]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            proxy.cert_der.clone(),
        ))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(proxy.tls_addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

async fn h2_over_tls(proxy: &Proxy) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let tls = tls_stream(proxy, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

/// Reads a response head byte by byte (nothing after it), within 4 KiB and 10 s.
async fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 4096);
        tokio::time::timeout(LIMIT, s.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    head
}

async fn wait_until(mut cond: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < LIMIT,
            "condition not met within {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn headers_are_rewritten_and_hop_by_hop_stripped_both_ways() {
    let log = Log::default();
    let proxy = proxy(&[h1_backend(log.clone()).await], Opts::default()).await;
    let mut client = h1_client(proxy.addr).await;
    let req = Request::post("/p?q=1")
        .header("host", "app.example")
        .header("connection", "keep-alive, X-Drop-Me")
        .header("x-drop-me", "secret")
        .header("keep-alive", "timeout=9")
        .header("proxy-authorization", "Basic eDp5")
        .header("te", "trailers")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .header("x-real-ip", "6.6.6.6")
        .header("forwarded", "for=6.6.6.6")
        .header("x-kept", "yes")
        .body(Full::new(Bytes::from_static(b"body")))
        .unwrap();
    let rsp = client.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let h = rsp.headers();
    assert!(
        h.get("x-backend-secret").is_none(),
        "named in the backend's Connection: {h:?}"
    );
    assert!(h.get("keep-alive").is_none(), "{h:?}");
    assert_eq!(h["x-backend"], "h1");
    assert_eq!(h["via"], "1.1 tower-lb");
    assert_eq!(rsp.into_body().collect().await.unwrap().to_bytes(), "ok");

    let seen = log.all();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    for gone in ["x-drop-me", "keep-alive", "proxy-authorization", "upgrade"] {
        assert!(h.get(gone).is_none(), "{gone} reached the backend: {h:?}");
    }
    // hyper's client adds its own `connection` only when it needs one; ours never passes.
    assert!(
        h.get_all("connection")
            .iter()
            .all(|v| v != "keep-alive, X-Drop-Me")
    );
    assert_eq!(h["te"], "trailers");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "app.example");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(
        h["forwarded"],
        "for=127.0.0.1;proto=http;host=\"app.example\""
    );
    assert_eq!(h["via"], "1.1 tower-lb");
    assert_eq!(h["host"], "app.example");
    assert_eq!(h["x-kept"], "yes");
    assert_eq!(seen[0].body, "body");
    proxy.shutdown().await;
}

/// The codecs reuse header maps from one request to the next on a thread (`util::spare`):
/// nothing of a request or a response may reach the next one.
#[tokio::test]
async fn nothing_of_one_request_or_response_reaches_the_next() {
    let log = Log::default();
    let opts = Opts {
        target_client: true,
        ..Opts::default()
    };
    let proxy = proxy(&[h1_backend(log.clone()).await], opts).await;
    let out = raw(
        proxy.addr,
        b"GET /first HTTP/1.1\r\nhost: a\r\nx-first-only: secret\r\n\r\n\
          GET /second HTTP/1.1\r\nhost: a\r\n\r\n\
          GET /third HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    let answers: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 3, "{out}");
    for (answer, path) in answers.iter().zip(["/first", "/second", "/third"]) {
        assert!(answer.starts_with("200"), "{answer}");
        // One `x-path`, this response's own.
        assert_eq!(answer.matches("x-path:").count(), 1, "{answer}");
        assert!(answer.contains(&format!("x-path: {path}\r\n")), "{answer}");
        assert_eq!(
            answer.contains("x-first-only"),
            path == "/first",
            "{answer}"
        );
    }
    let seen = log.all();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].headers["x-first-only"], "secret");
    for later in &seen[1..] {
        assert!(
            later.headers.get("x-first-only").is_none(),
            "{:?}",
            later.headers
        );
        assert_eq!(later.headers.get_all("host").iter().count(), 1);
        assert_eq!(later.headers.get_all("x-forwarded-for").iter().count(), 1);
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn untrusted_peer_cannot_forge_its_address_with_several_header_lines() {
    let log = Log::default();
    let proxy = proxy(&[h1_backend(log.clone()).await], Opts::default()).await;
    let out = raw(
        proxy.addr,
        b"GET / HTTP/1.1\r\nhost: a\r\nx-forwarded-for: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2\r\n\
          forwarded: for=1.1.1.1\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&out), 200, "{out}");
    let seen = log.all();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(seen[0].headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(
        seen[0].headers["forwarded"],
        "for=127.0.0.1;proto=http;host=\"a\""
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_trusted_proxy_s_forwarding_headers_are_kept_and_appended_to() {
    let log = Log::default();
    let backend = h1_backend(log.clone()).await;
    let req: &[u8] = b"GET / HTTP/1.1\r\nhost: app.example\r\nx-forwarded-for: 203.0.113.9\r\n\
        x-forwarded-proto: https\r\nx-forwarded-host: public.example\r\n\
        forwarded: for=203.0.113.9;proto=https\r\nconnection: close\r\n\r\n";

    // The loopback peer is a trusted proxy: its headers stand, the peer is appended.
    let opts = Opts {
        trusted: TrustedProxies::new(["127.0.0.1/32"]).unwrap(),
        ..Opts::default()
    };
    let trusting = proxy(&[backend], opts).await;
    assert_eq!(status_of(&raw(trusting.addr, req).await), 200);
    // A proxy that trusts only 10/8: the same headers are the client's own words.
    let opts = Opts {
        trusted: TrustedProxies::new(["10.0.0.0/8"]).unwrap(),
        ..Opts::default()
    };
    let wary = proxy(&[backend], opts).await;
    assert_eq!(status_of(&raw(wary.addr, req).await), 200);

    let seen = log.all();
    assert_eq!(seen.len(), 2);
    let t = &seen[0].headers;
    assert_eq!(t["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(t["x-real-ip"], "203.0.113.9");
    assert_eq!(t["x-forwarded-proto"], "https");
    assert_eq!(t["x-forwarded-host"], "public.example");
    assert_eq!(
        t["forwarded"],
        "for=203.0.113.9;proto=https, for=127.0.0.1;proto=http;host=\"app.example\""
    );
    let u = &seen[1].headers;
    assert_eq!(u["x-forwarded-for"], "127.0.0.1");
    assert_eq!(u["x-real-ip"], "127.0.0.1");
    assert_eq!(u["x-forwarded-proto"], "http");
    assert_eq!(u["x-forwarded-host"], "app.example");
    assert_eq!(
        u["forwarded"],
        "for=127.0.0.1;proto=http;host=\"app.example\""
    );
    trusting.shutdown().await;
    wary.shutdown().await;
}

#[tokio::test]
async fn websocket_upgrade_is_relayed_both_ways_and_holds_the_target() {
    let log = Log::default();
    let proxy = proxy(&[h1_backend(log.clone()).await], Opts::default()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(
        b"GET /chat HTTP/1.1\r\nhost: app.example\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
          sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let head = String::from_utf8(read_head(&mut s).await)
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: dghlihnhbxbszsbub25jzq=="),
        "{head}"
    );

    // The backend saw the upgrade request with its end-to-end headers.
    let seen = log.all();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["upgrade"], "websocket");
    assert_eq!(
        seen[0].headers["sec-websocket-key"],
        "dGhlIHNhbXBsZSBub25jZQ=="
    );

    // Bytes both ways, several rounds, while the target stays counted in flight.
    for round in 0..3u8 {
        let msg = [b'm', b'0' + round, 0x81, 0x00, 0xff];
        s.write_all(&msg).await.unwrap();
        let mut back = [0u8; 5];
        tokio::time::timeout(LIMIT, s.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, msg);
        assert_eq!(proxy.in_flight(), 1, "the upgraded target is held");
    }
    // The client closes: the relay ends both ways and the target is released.
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
    wait_until(|| proxy.in_flight() == 0).await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_fixed_host_replaces_the_client_s() {
    let log = Log::default();
    let opts = Opts {
        forward: ForwardLayer::new().host(HeaderValue::from_static("internal.svc")),
        ..Opts::default()
    };
    let proxy = proxy(&[h1_backend(log.clone()).await], opts).await;
    let out = raw(
        proxy.addr,
        b"GET / HTTP/1.1\r\nhost: public.example\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&out), 200, "{out}");
    let seen = log.all();
    assert_eq!(seen[0].headers["host"], "internal.svc");
    assert_eq!(seen[0].headers["x-forwarded-host"], "public.example");
    proxy.shutdown().await;
}

#[tokio::test]
async fn upgrades_off_strip_the_upgrade() {
    let log = Log::default();
    let opts = Opts {
        forward: ForwardLayer::new().upgrades(false),
        ..Opts::default()
    };
    let proxy = proxy(&[h1_backend(log.clone()).await], opts).await;
    let out = raw(
        proxy.addr,
        b"GET / HTTP/1.1\r\nhost: a\r\nconnection: upgrade, close\r\nupgrade: websocket\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&out), 200, "{out}");
    assert!(log.all()[0].headers.get("upgrade").is_none());
    proxy.shutdown().await;
}

#[tokio::test]
async fn tls_with_the_dev_certificate_negotiates_h2_and_reaches_an_h1_backend() {
    let log = Log::default();
    let proxy = proxy(&[h1_backend(log.clone()).await], Opts::default()).await;
    let mut client = h2_over_tls(&proxy).await;
    for i in 0..3 {
        let req = Request::get(format!("https://app.example/tls/{i}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let rsp = client.send_request(req).await.unwrap();
        assert_eq!(rsp.status(), 200);
        assert_eq!(rsp.version(), Version::HTTP_2);
        assert_eq!(rsp.headers()["via"], "1.1 tower-lb");
        assert_eq!(rsp.into_body().collect().await.unwrap().to_bytes(), "ok");
    }
    let seen = log.all();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.version, Version::HTTP_11);
        assert_eq!(s.headers["x-forwarded-proto"], "https");
        assert_eq!(s.headers["host"], "app.example");
        assert_eq!(s.headers["x-forwarded-host"], "app.example");
        assert_eq!(s.headers["via"], "2 tower-lb");
    }
    // HTTP/1.1 over TLS too, when the client offers only that.
    let tls = tls_stream(&proxy, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    // Three requests on the one connection (the server's own codec flushes each answer
    // through TLS).
    for _ in 0..3 {
        let rsp = send
            .send_request(
                Request::get("/")
                    .header("host", "a")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200);
        assert_eq!(rsp.into_body().collect().await.unwrap().to_bytes(), "ok");
    }
    assert_eq!(log.count(), 6);
    proxy.shutdown().await;
}

#[tokio::test]
async fn h2c_upstream_passes_grpc_trailers_back_to_an_h2_client() {
    for target_client in [false, true] {
        h2c_upstream_passes_grpc_trailers(target_client).await;
    }
}

/// Through hyper-util's `HttpClient`, or `TargetClient` with `http2_only`.
async fn h2c_upstream_passes_grpc_trailers(target_client: bool) {
    let log = Log::default();
    let opts = Opts {
        h2c: true,
        target_client,
        ..Opts::default()
    };
    let proxy = proxy(&[h2c_backend(log.clone()).await], opts).await;
    let mut client = h2_over_tls(&proxy).await;
    let req = Request::post("https://grpc.example/pkg.Svc/Call")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\x02yo")))
        .unwrap();
    let rsp = client.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let collected = rsp.into_body().collect().await.unwrap();
    let trailers = collected
        .trailers()
        .cloned()
        .expect("trailers passed through");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "fine");
    assert_eq!(collected.to_bytes(), &b"\0\0\0\0\x02hi"[..]);

    let seen = log.all();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].version,
        Version::HTTP_2,
        "h2c towards the target ({target_client})"
    );
    assert_eq!(seen[0].headers["te"], "trailers");
    assert_eq!(seen[0].body, &b"\0\0\0\0\x02yo"[..]);
    proxy.shutdown().await;
}

#[tokio::test]
async fn request_smuggling_attempts_are_rejected_before_any_backend() {
    let log = Log::default();
    let proxy = proxy(&[h1_backend(log.clone()).await], Opts::default()).await;
    let rejected: [&[u8]; 4] = [
        // Two different Content-Lengths.
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ncontent-length: 30\r\n\r\nabc",
        // A list in one Content-Length.
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3, 3\r\n\r\nabc",
        // obs-fold: a header continued on the next line.
        b"GET / HTTP/1.1\r\nhost: a\r\nx-folded: one\r\n two\r\n\r\n",
        // A transfer coding other than chunked last.
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    ];
    for attempt in rejected {
        let out = raw(proxy.addr, attempt).await;
        assert_eq!(
            status_of(&out),
            400,
            "{}\n-> {out}",
            String::from_utf8_lossy(attempt)
        );
    }
    // A reverse proxy opens no tunnel to where a client says.
    let out = raw(
        proxy.addr,
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nhost: 127.0.0.1:22\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&out), 405, "{out}");
    assert_eq!(
        log.arrived.load(Ordering::SeqCst),
        0,
        "nothing reached a backend"
    );

    // Content-Length with Transfer-Encoding (the CL.TE / TE.CL desync): the parser frames it by
    // Transfer-Encoding alone, drops the Content-Length and closes the connection after the
    // answer (RFC 9112 §6.1), so the request hidden behind it is never read, and the target
    // gets the proxy's own framing of the (empty) body.
    for attempt in [
        &b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n\
           0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n"[..],
        &b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n\
           0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n"[..],
    ] {
        let (out, closed) = raw_until_closed(proxy.addr, attempt).await;
        assert!(closed, "the proxy closed the connection: {out}");
        assert_eq!(
            out.matches("HTTP/1.1 ").count(),
            1,
            "one answer, then closed: {out}"
        );
        assert_eq!(status_of(&out), 200, "{out}");
        assert!(
            out.to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "the answer says the connection closes: {out}"
        );
    }
    // Two equal Content-Lengths are one (RFC 9110 §8.6).
    let out = raw(
        proxy.addr,
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc",
    )
    .await;
    assert_eq!(status_of(&out), 200, "{out}");
    let seen = log.all();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|s| s.path == "/"),
        "nothing smuggled: {seen:?}"
    );
    for s in &seen[..2] {
        assert!(s.body.is_empty());
        assert_ne!(
            s.headers.get("content-length").map(|v| v.as_bytes()),
            Some(&b"4"[..])
        );
    }
    assert_eq!(seen[2].headers.get_all("content-length").iter().count(), 1);
    assert_eq!(seen[2].body, "abc");
    proxy.shutdown().await;
}

#[tokio::test]
async fn header_and_body_limits_answer_431_and_413() {
    let log = Log::default();
    let opts = Opts {
        server: Server::builder()
            .max_header_bytes(8 * 1024)
            .max_body_bytes(Some(1024)),
        ..Opts::default()
    };
    let proxy = proxy(&[h1_backend(log.clone()).await], opts).await;

    let big = format!(
        "GET / HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n",
        "a".repeat(10 * 1024)
    );
    assert_eq!(status_of(&raw(proxy.addr, big.as_bytes()).await), 431);

    let declared = format!(
        "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 2000\r\nconnection: close\r\n\r\n{}",
        "b".repeat(2000)
    );
    assert_eq!(status_of(&raw(proxy.addr, declared.as_bytes()).await), 413);
    assert_eq!(
        log.arrived.load(Ordering::SeqCst),
        0,
        "refused before any backend"
    );

    // Chunked: cut off at the limit while streaming; the client still gets a 413.
    let mut chunked =
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(format!("200\r\n{}\r\n", "c".repeat(512)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(status_of(&raw(proxy.addr, &chunked).await), 413);
    assert_eq!(log.count(), 0, "no backend saw a whole oversized body");

    // Within the limits: fine.
    let ok = "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";
    assert_eq!(status_of(&raw(proxy.addr, ok.as_bytes()).await), 200);
    assert_eq!(log.all()[0].body, "hello");
    proxy.shutdown().await;
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off() {
    let log = Log::default();
    let opts = Opts {
        server: Server::builder()
            .header_read_timeout(Some(Duration::from_millis(300)))
            .idle_timeout(Some(Duration::from_millis(300))),
        ..Opts::default()
    };
    let proxy = proxy(&[h1_backend(log.clone()).await], opts).await;

    // A head that never ends: closed after the header read timeout.
    let start = tokio::time::Instant::now();
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: a\r\nx-slow: ")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .ok();
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );

    // An HTTP/2 connection with nothing in flight: closed after the idle timeout, while a
    // request slower than the timeout on it is not cut off.
    let mut client = h2_over_tls(&proxy).await;
    let req = Request::get("https://a/slow")
        .header("x-delay-ms", "600")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let rsp = client.send_request(req).await.unwrap();
    assert_eq!(
        rsp.status(),
        200,
        "a slow request outlives the idle timeout"
    );
    rsp.into_body().collect().await.unwrap();
    let idle_from = tokio::time::Instant::now();
    wait_until(|| client.is_closed()).await;
    assert!(idle_from.elapsed() >= Duration::from_millis(250));
    assert_eq!(log.count(), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_drains_requests_in_flight() {
    let log = Log::default();
    let backends = [h1_backend(log.clone()).await, h1_backend(log.clone()).await];
    let proxy = proxy(&backends, Opts::default()).await;
    const N: usize = 20;
    let mut clients = Vec::new();
    for i in 0..N {
        let addr = proxy.addr;
        clients.push(tokio::spawn(async move {
            let mut c = h1_client(addr).await;
            let req = Request::get(format!("/slow/{i}"))
                .header("host", "a")
                .header("x-delay-ms", "300")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let rsp = c.send_request(req).await.unwrap();
            let status = rsp.status();
            let body = rsp.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        }));
    }
    // And five more multiplexed on one HTTP/2 connection over TLS (drained with GOAWAY).
    const H2: usize = 5;
    let h2 = h2_over_tls(&proxy).await;
    let mut streams = Vec::new();
    for i in 0..H2 {
        let mut h2 = h2.clone();
        streams.push(tokio::spawn(async move {
            let req = Request::get(format!("https://a/slow/h2/{i}"))
                .header("x-delay-ms", "300")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let rsp = h2.send_request(req).await.unwrap();
            let status = rsp.status();
            (status, rsp.into_body().collect().await.unwrap().to_bytes())
        }));
    }
    // Every request has reached a backend and is waiting there: now shut down.
    wait_until(|| log.arrived.load(Ordering::SeqCst) == N + H2).await;
    assert_eq!(proxy.in_flight(), (N + H2) as u32);
    let addr = proxy.addr;
    proxy.shutdown().await;
    for c in clients.into_iter().chain(streams) {
        let (status, body) = c.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, "ok");
    }
    assert_eq!(log.count(), N + H2, "none lost");
    // The listener is closed after shutdown.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_101_nobody_asked_for_is_a_bad_gateway() {
    // A backend that answers every request with 101.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: x\r\n\r\n")
                    .await;
            });
        }
    });
    let proxy = proxy(&[backend], Opts::default()).await;
    let out = raw(
        proxy.addr,
        b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&out), 502, "{out}");
    wait_until(|| proxy.in_flight() == 0).await;
    proxy.shutdown().await;
}

/// Reads until the proxy closes the connection; returns when, measured from `start`.
async fn closed_after(
    mut s: tokio::net::tcp::OwnedReadHalf,
    start: tokio::time::Instant,
) -> Duration {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(LIMIT, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("not closed within {LIMIT:?}"),
        }
    }
}

/// One timer per connection keeps both deadlines (it ticks every eighth of the shorter one),
/// so each is enforced between its value and a quarter more: bytes trickling in do not extend
/// the request-head deadline, a kept-alive connection waiting for its next request is bound
/// by it, and a connection upgraded to a relay is not.
#[tokio::test]
async fn the_head_deadline_holds_against_trickles_and_between_requests_but_not_after_an_upgrade() {
    const HEAD: Duration = Duration::from_millis(400);
    // The upper bound: a quarter more, plus scheduling slack on a loaded machine.
    const LATE: Duration = Duration::from_millis(400 + 100 + 600);
    let log = Log::default();
    let opts = Opts {
        server: Server::builder()
            .header_read_timeout(Some(HEAD))
            .idle_timeout(Some(Duration::from_secs(30))),
        ..Opts::default()
    };
    let proxy = proxy(&[h1_backend(log.clone()).await], opts).await;

    // A head trickled one byte every 40 ms (2 s of it at most): cut off after HEAD.
    let start = tokio::time::Instant::now();
    let (r, mut w) = TcpStream::connect(proxy.addr).await.unwrap().into_split();
    let reader = tokio::spawn(closed_after(r, start));
    for b in b"GET / HTTP/1.1\r\nhost: a\r\nx-slow: "
        .iter()
        .chain(&[b'a'; 40])
    {
        if reader.is_finished() || w.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let took = reader.await.unwrap();
    assert!(
        took >= HEAD && took < LATE,
        "trickled head cut off after {took:?}"
    );

    // A kept-alive connection: one request answered, then nothing: closed HEAD after it.
    let (r, mut w) = TcpStream::connect(proxy.addr).await.unwrap().into_split();
    w.write_all(b"GET /one HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    let took = closed_after(r, start).await;
    assert!(
        took >= HEAD - Duration::from_millis(50) && took < LATE,
        "kept-alive wait cut off after {took:?}"
    );
    assert_eq!(log.count(), 1, "the request itself was served");

    // An upgraded connection quiet for twice HEAD still relays.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(
        b"GET /chat HTTP/1.1\r\nhost: a\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
          sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(read_head(&mut s).await.starts_with(b"HTTP/1.1 101"));
    tokio::time::sleep(HEAD * 2).await;
    s.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    tokio::time::timeout(LIMIT, s.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"ping", "the relay outlived the head deadline");
    drop(s);
    proxy.shutdown().await;
}

/// The server tells HTTP/2 from HTTP/1.1 by the client's first bytes: h2c with prior
/// knowledge on the plain listener, and an HTTP/1.1 request whose first byte alone could
/// still have been the HTTP/2 preface (it waits for more).
#[tokio::test]
async fn h2c_prior_knowledge_and_a_preface_like_first_byte_are_both_served() {
    let log = Log::default();
    let proxy = proxy(&[h1_backend(log.clone()).await], Opts::default()).await;

    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    for i in 0..3 {
        let req = Request::get(format!("http://a/h2c/{i}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let rsp = h2.send_request(req).await.unwrap();
        assert_eq!(rsp.status(), 200);
        assert_eq!(rsp.version(), Version::HTTP_2);
        assert_eq!(rsp.into_body().collect().await.unwrap().to_bytes(), "ok");
    }

    // An h2c client whose preface arrives in two pieces 50 ms apart: the server cannot tell
    // from the first piece and leaves it to hyper-util's auto builder.
    let tcp = Stutter::new(TcpStream::connect(proxy.addr).await.unwrap());
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://a/h2c/stutter")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let rsp = h2.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.version(), Version::HTTP_2);

    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"P").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"OST /p HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&out)), 200);
    let seen = log.all();
    assert_eq!(seen.len(), 5, "four over h2c, one over HTTP/1.1");
    assert_eq!(seen[4].body, "hi");
    proxy.shutdown().await;
}

/// A client socket whose first write sends only 5 bytes, and whose next write waits 50 ms.
struct Stutter {
    inner: TcpStream,
    first: bool,
    pause: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl Stutter {
    fn new(inner: TcpStream) -> Self {
        Stutter {
            inner,
            first: true,
            pause: None,
        }
    }
}

impl tokio::io::AsyncRead for Stutter {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Stutter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.first {
            self.first = false;
            self.pause = Some(Box::pin(tokio::time::sleep(Duration::from_millis(50))));
            let n = buf.len().min(5);
            return std::pin::Pin::new(&mut self.inner).poll_write(cx, &buf[..n]);
        }
        if let Some(pause) = self.pause.as_mut() {
            std::task::ready!(pause.as_mut().poll(cx));
            self.pause = None;
        }
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
