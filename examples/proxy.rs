//! A reverse proxy made only of tower-lb's public pieces: HTTP and HTTPS listeners (TLS with
//! rustls, ALPN h2 and http/1.1), two load-balanced groups (`web` over HTTP/1.1 with active
//! health checks, `grpc` over h2c for requests with a gRPC content type), the forwarding layer
//! (X-Forwarded-*, hop-by-hop stripping, WebSocket relay), the resilience layers (deadline,
//! retries, circuit breaker, per-attempt timeout) and graceful shutdown that drains requests
//! in flight.
//!
//! ```text
//! # Starts loopback backends, sends traffic of every kind through the proxy, shuts it down
//! # with requests in flight, checks that none was lost, and exits:
//! cargo run --example proxy --features full -- --self-test
//!
//! # Serves until Ctrl-C:
//! cargo run --example proxy --features full -- --listen 127.0.0.1:8080 \
//!     --tls-listen 127.0.0.1:8443 --cert cert.pem --key key.pem \
//!     --backend 127.0.0.1:9001 --backend 127.0.0.1:9002 --grpc-backend 127.0.0.1:50051 \
//!     --trusted-proxy 10.0.0.0/8 --admin 127.0.0.1:8404
//!
//! # Serves the load balancers of a configuration file instead (docs/configuration.md),
//! # reloading it on SIGHUP and whenever the file changes:
//! cargo run --example proxy --features full -- --listen 127.0.0.1:8080 \
//!     --config examples/config/seed_api.yaml
//! ```
//!
//! `--admin ADDR` serves the admin endpoint (`tower_lb::admin`: status page at `/admin/`,
//! `/admin/status.json`, `/admin/metrics`) on its own listener; its actions are on only when
//! `ADDR` is a loopback address. With `--config`, the file's `[admin]` section (`enabled`,
//! `actions`, `path`) turns it on instead, at `--admin ADDR` or 127.0.0.1:8404, and it shows
//! the load balancers as they are after each reload.
//!
//! See `docs/proxy.md` for what it does to headers and why.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceBuilder;
use tower::steer::Steer;
use tower_lb::BoxError;
use tower_lb::balance::Balance;
use tower_lb::breaker::CircuitBreakerLayer;
use tower_lb::client_ip::{ClientIpLayer, ClientIpResolver, TrustedProxies};
use tower_lb::forward::ForwardLayer;
use tower_lb::health::{ActiveCheck, HttpCheck};
use tower_lb::retry::{ReplayBody, RetryLayer, RetryPolicy};
use tower_lb::server::{RequestBody, Server, TlsAcceptor};
use tower_lb::timeout::TimeoutLayer;
use tower_lb::upstream::{ErrorResponseLayer, TargetClient};
use tower_lb::{Target, TargetGroup};

/// What the proxy needs to know.
#[derive(Debug, Default)]
struct Config {
    listen: Option<SocketAddr>,
    tls_listen: Option<SocketAddr>,
    cert: Option<String>,
    key: Option<String>,
    backends: Vec<SocketAddr>,
    grpc_backends: Vec<SocketAddr>,
    trusted: Vec<String>,
    admin: Option<SocketAddr>,
    /// `--config FILE`: serve the load balancers of a configuration file (see `config_mode`).
    config: Option<std::path::PathBuf>,
}

fn targets(prefix: &str, addrs: &[SocketAddr]) -> Result<Vec<Target>, BoxError> {
    addrs
        .iter()
        .enumerate()
        .map(|(i, a)| Ok(Target::new(format!("{prefix}{i}"), a.to_string())?))
        .collect()
}

/// Runs the proxy's listeners until `stop` flips, then drains. Returns the bound addresses
/// through `bound` as soon as they are known.
async fn run(
    cfg: Config,
    stop: watch::Receiver<bool>,
    bound: tokio::sync::oneshot::Sender<(SocketAddr, Option<SocketAddr>)>,
) -> Result<(), BoxError> {
    // The `web` and `grpc` groups with their resilience stacks, behind one steering service.
    let web = TargetGroup::builder("web")
        .targets(targets("web", &cfg.backends)?)
        .build()?;
    web.health_check(
        ActiveCheck::builder(HttpCheck::get("/health")?)
            .interval(Duration::from_secs(2))
            .timeout(Duration::from_secs(1))
            .build()?,
    )?;
    let grpc = TargetGroup::builder("grpc")
        .targets(targets("grpc", &cfg.grpc_backends)?)
        .build()?;

    // The per-target pooled client: HTTP/1.1 to the web group, one shared h2c connection per
    // target to the gRPC group.
    let h1 = TargetClient::<ReplayBody<RequestBody>>::builder()
        .preserve_host(true)
        .build();
    let h2c = TargetClient::<ReplayBody<RequestBody>>::builder()
        .http2_only(true)
        .build();
    // Innermost first: per-attempt timeout, breaker, retries, overall deadline.
    let (web_balance, grpc_balance) = (
        Balance::with_maker(web.clone(), h1),
        Balance::with_maker(grpc.clone(), h2c),
    );
    if let Some(addr) = cfg.admin {
        admin(addr, &web_balance, &grpc_balance, stop.clone()).await?;
    }
    let resilient = |balance: Balance<_>| -> Result<_, BoxError> {
        Ok(ServiceBuilder::new()
            .layer(TimeoutLayer::new(Duration::from_secs(10)))
            .layer(RetryLayer::new(RetryPolicy::new()))
            .layer(CircuitBreakerLayer::builder(balance.group().name().to_owned()).build()?)
            .layer(TimeoutLayer::new(Duration::from_secs(5)))
            .service(balance))
    };
    let routes = Steer::new(
        vec![resilient(web_balance)?, resilient(grpc_balance)?],
        |req: &Request<_>, _: &[_]| {
            let grpc = req
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
            usize::from(grpc)
        },
    );
    let trusted = TrustedProxies::new(cfg.trusted.iter().map(String::as_str))?;
    let stack = ServiceBuilder::new()
        // Every error becomes a short 502/503/504 that names no backend.
        .layer(ErrorResponseLayer::new())
        // Who the client is: the peer, or what trusted proxies say.
        .layer(ClientIpLayer::new(ClientIpResolver::new(trusted)))
        // Headers fit to forward; upgrades relayed.
        .layer(
            ForwardLayer::new()
                .forwarded(true)
                .via(HeaderValue::from_static("tower-lb")),
        )
        .service(routes);
    let server = Server::builder()
        .max_body_bytes(Some(8 * 1024 * 1024))
        .drain_timeout(Duration::from_secs(20))
        .build()?;
    let plain = TcpListener::bind(cfg.listen.unwrap_or(([127, 0, 0, 1], 8080).into())).await?;
    let tls = match (cfg.tls_listen, &cfg.cert, &cfg.key) {
        (Some(addr), Some(cert), Some(key)) => Some((
            TcpListener::bind(addr).await?,
            TlsAcceptor::from_pem_files(cert, key)?,
        )),
        (None, _, _) => None,
        _ => return Err("--tls-listen needs --cert and --key".into()),
    };
    let _ = bound.send((
        plain.local_addr()?,
        tls.as_ref().map(|(l, _)| l.local_addr()).transpose()?,
    ));
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let http = server.serve(plain, stack.clone(), stopped(stop.clone()));
    match tls {
        Some((listener, acceptor)) => {
            let https = server.serve_tls(listener, &acceptor, stack, stopped(stop));
            let (a, b) = futures_util::future::join(http, https).await;
            a?;
            b?;
        }
        None => http.await?,
    }
    Ok(())
}

/// Where the admin endpoint listens, once bound (read by the self-test).
static ADMIN_BOUND: std::sync::OnceLock<SocketAddr> = std::sync::OnceLock::new();

/// Serves the admin endpoint for both groups on `addr` under `/admin` until `stop` flips.
/// It has no authentication: bind it to a private address, or put it behind your auth layer.
async fn admin<S: Clone + 'static>(
    addr: SocketAddr,
    web: &Balance<S>,
    grpc: &Balance<S>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BoxError> {
    let endpoint = tower_lb::admin::Admin::builder()
        .balance("proxy", web)
        .balance("proxy", grpc)
        .prefix("/admin")
        .actions(addr.ip().is_loopback())
        .build();
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let _ = ADMIN_BOUND.set(bound);
    println!("proxy: admin on http://{bound}/admin/");
    let server = Server::builder().build()?;
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = server.serve(listener, endpoint, stopped).await {
            eprintln!("proxy: admin endpoint: {e}");
        }
    });
    Ok(())
}

fn parse_args() -> Result<(Config, bool), BoxError> {
    let mut cfg = Config::default();
    let mut self_test = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--self-test" => self_test = true,
            "--listen" => cfg.listen = Some(value()?.parse()?),
            "--tls-listen" => cfg.tls_listen = Some(value()?.parse()?),
            "--cert" => cfg.cert = Some(value()?),
            "--key" => cfg.key = Some(value()?),
            "--backend" => cfg.backends.push(value()?.parse()?),
            "--grpc-backend" => cfg.grpc_backends.push(value()?.parse()?),
            "--trusted-proxy" => cfg.trusted.push(value()?),
            "--admin" => cfg.admin = Some(value()?.parse()?),
            "--config" => cfg.config = Some(value()?.into()),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok((cfg, self_test))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (cfg, self_test) = parse_args()?;
    if self_test {
        self_test_run().await?;
        return config_mode::self_test().await;
    }
    if let Some(path) = cfg.config.clone() {
        return config_mode::main(path, cfg).await;
    }
    let (stop_tx, stop) = watch::channel(false);
    let (bound_tx, bound) = tokio::sync::oneshot::channel();
    let proxy = tokio::spawn(run(cfg, stop, bound_tx));
    if let Ok((http, https)) = bound.await {
        println!("proxy: http on {http}, https on {https:?}; Ctrl-C drains and stops");
    }
    tokio::signal::ctrl_c().await?;
    println!("proxy: draining");
    let _ = stop_tx.send(true);
    proxy.await??;
    println!("proxy: stopped");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Self-test: loopback backends, traffic of every kind, shutdown with requests in flight.

/// An HTTP/1.1 backend answering with its name (after `x-delay-ms`), `/health` with 200, and
/// echoing bytes after an upgrade. Counts the requests it answered.
async fn web_backend(name: &'static str, served: Arc<AtomicUsize>) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let served = served.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    let served = served.clone();
                    async move {
                        if req.uri().path() == "/health" {
                            return Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())));
                        }
                        if let Some(ms) = req.headers().get("x-delay-ms") {
                            let ms = ms.to_str().ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        let mut rsp = Response::new(Full::new(Bytes::from(name)));
                        if let Some(proto) = req.headers().get("upgrade").cloned() {
                            let up = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                if let Ok(up) = up.await {
                                    let mut io = TokioIo::new(up);
                                    let mut buf = [0u8; 256];
                                    while let Ok(n) = io.read(&mut buf).await {
                                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                            break;
                                        }
                                    }
                                }
                            });
                            *rsp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                            rsp.headers_mut()
                                .insert("connection", HeaderValue::from_static("upgrade"));
                            rsp.headers_mut().insert("upgrade", proto);
                        }
                        served.fetch_add(1, Ordering::SeqCst);
                        Ok(rsp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Ok(addr)
}

type Frames = futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;

/// An h2c backend that answers like a gRPC server: a message, then `grpc-status` trailers.
async fn grpc_backend(served: Arc<AtomicUsize>) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let served = served.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    served.fetch_add(1, Ordering::SeqCst);
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", HeaderValue::from_static("0"));
                    let frames = vec![
                        Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x02ok"))),
                        Ok(Frame::trailers(trailers)),
                    ];
                    let body: StreamBody<Frames> =
                        StreamBody::new(futures_util::stream::iter(frames));
                    async move { Ok::<_, Infallible>(Response::new(body)) }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn h1_get(
    addr: SocketAddr,
    path: String,
    delay_ms: u64,
) -> Result<(StatusCode, Bytes), BoxError> {
    let stream = TcpStream::connect(addr).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "selftest.example")
        .header("x-delay-ms", delay_ms.to_string())
        .body(Full::new(Bytes::new()))?;
    let rsp = send.send_request(req).await?;
    let status = rsp.status();
    Ok((status, rsp.into_body().collect().await?.to_bytes()))
}

async fn self_test_run() -> Result<(), BoxError> {
    let served = Arc::new(AtomicUsize::new(0));
    let grpc_served = Arc::new(AtomicUsize::new(0));
    let mut backends = Vec::new();
    for name in ["web-a", "web-b", "web-c"] {
        backends.push(web_backend(name, served.clone()).await?);
    }
    let grpc_backends = vec![grpc_backend(grpc_served.clone()).await?];

    // A dev certificate, written to PEM files as an operator's would be.
    let dev = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let dir = std::env::temp_dir().join(format!("tower-lb-proxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, dev.cert.pem())?;
    std::fs::write(&key, dev.signing_key.serialize_pem())?;

    let cfg = Config {
        listen: Some(([127, 0, 0, 1], 0).into()),
        tls_listen: Some(([127, 0, 0, 1], 0).into()),
        cert: Some(cert.to_string_lossy().into_owned()),
        key: Some(key.to_string_lossy().into_owned()),
        backends,
        grpc_backends,
        trusted: Vec::new(),
        admin: Some(([127, 0, 0, 1], 0).into()),
        config: None,
    };
    let (stop_tx, stop) = watch::channel(false);
    let (bound_tx, bound) = tokio::sync::oneshot::channel();
    let proxy = tokio::spawn(run(cfg, stop, bound_tx));
    let (http, https) = bound.await?;
    let https = https.ok_or("no https listener")?;
    println!("self-test: proxy on http://{http} and https://{https}");

    // 1. HTTP/1.1, spread over the three backends.
    let mut names = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..30 {
        let (status, body) = h1_get(http, format!("/hello/{i}"), 0).await?;
        if status != StatusCode::OK {
            return Err(format!("http request {i}: {status}").into());
        }
        *names
            .entry(String::from_utf8_lossy(&body).into_owned())
            .or_default() += 1;
    }
    println!("self-test: 30 HTTP/1.1 requests served by {names:?}");
    if names.len() != 3 {
        return Err("not every backend served".into());
    }
    let admin = *ADMIN_BOUND.get().ok_or("no admin endpoint")?;
    let (status, body) = h1_get(admin, "/admin/status.json".into(), 0).await?;
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    let web_requests = &json["load_balancers"][0]["groups"][0]["requests"];
    println!("self-test: admin status.json -> {status}, web requests {web_requests}");
    if status != StatusCode::OK || web_requests != 30 {
        return Err("admin status disagrees with the traffic".into());
    }

    // 2. HTTPS with ALPN h2: a web request and a gRPC-style call with trailers.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(dev.cert.der().clone())?;
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect("localhost".try_into()?, TcpStream::connect(https).await?)
        .await?;
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let rsp = h2
        .send_request(Request::get("https://selftest.example/tls").body(Full::new(Bytes::new()))?)
        .await?;
    println!(
        "self-test: HTTPS h2 request -> {} {:?}",
        rsp.status(),
        rsp.version()
    );
    if rsp.status() != StatusCode::OK {
        return Err("https request failed".into());
    }
    let rsp = h2
        .send_request(
            Request::post("https://selftest.example/pkg.Svc/Call")
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(Full::new(Bytes::from_static(b"\0\0\0\0\x02hi")))?,
        )
        .await?;
    let collected = rsp.into_body().collect().await?;
    let grpc_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .cloned();
    println!("self-test: gRPC over h2c upstream -> grpc-status {grpc_status:?}");
    if grpc_status.as_ref().map(|v| v.as_bytes()) != Some(b"0") {
        return Err("grpc trailers lost".into());
    }

    // 3. A WebSocket-style upgrade, echoed through the proxy.
    let mut ws = TcpStream::connect(http).await?;
    ws.write_all(b"GET /ws HTTP/1.1\r\nhost: selftest.example\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n")
        .await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        ws.read_exact(&mut byte).await?;
        head.push(byte[0]);
    }
    ws.write_all(b"ping").await?;
    let mut echo = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), ws.read_exact(&mut echo)).await??;
    println!(
        "self-test: upgrade -> {}, echoed {:?}",
        String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap_or_default(),
        String::from_utf8_lossy(&echo)
    );
    if &echo != b"ping" {
        return Err("upgrade relay failed".into());
    }
    drop(ws);

    // 4. Graceful shutdown with 10 slow requests in flight: all must complete.
    let before = served.load(Ordering::SeqCst);
    let slow: Vec<_> = (0..10)
        .map(|i| tokio::spawn(h1_get(http, format!("/slow/{i}"), 300)))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = stop_tx.send(true);
    let mut ok = 0;
    for s in slow {
        if let Ok(Ok((StatusCode::OK, _))) = s.await {
            ok += 1;
        }
    }
    tokio::time::timeout(Duration::from_secs(30), proxy).await???;
    let after = served.load(Ordering::SeqCst);
    println!(
        "self-test: shutdown with 10 in flight -> {ok} completed, backends served {}",
        after - before
    );
    let _ = std::fs::remove_dir_all(&dir);
    if ok != 10 || after - before != 10 {
        return Err("requests lost on shutdown".into());
    }
    if grpc_served.load(Ordering::SeqCst) != 1 {
        return Err("grpc backend count".into());
    }
    println!("self-test: ok");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Configuration file mode (`--config FILE`): the load balancers of a TOML or YAML file
// (docs/configuration.md) behind the same client-IP and forwarding layers, reloaded on
// SIGHUP and whenever the file changes; a broken file is refused and the one in force stays.

mod config_mode {
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use http::Request;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{mpsc, oneshot, watch};
    use tower::ServiceBuilder;
    use tower_lb::BoxError;
    use tower_lb::client_ip::{ClientIpLayer, ClientIpResolver, TrustedProxies};
    use tower_lb::config::Config;
    use tower_lb::forward::ForwardLayer;
    use tower_lb::server::{RequestBody, Server};

    /// Where the configured admin endpoint listens, once bound (read by the self-test).
    static ADMIN_BOUND: std::sync::OnceLock<SocketAddr> = std::sync::OnceLock::new();

    /// Serves the first load balancer of the file at `path` on `listen` until `stop`; each
    /// message on `reload` re-reads the file (SIGHUP), and so does every change of the file.
    pub(super) async fn serve(
        path: PathBuf,
        listen: SocketAddr,
        trusted: Vec<String>,
        admin: Option<SocketAddr>,
        mut stop: watch::Receiver<bool>,
        mut reload: mpsc::Receiver<()>,
        bound: oneshot::Sender<SocketAddr>,
    ) -> Result<(), BoxError> {
        let runtime = Config::from_path(&path)?.build::<RequestBody>()?;
        let name = runtime.registry().list().into_iter().next();
        let name = name.ok_or("the configuration has no load balancer")?;
        let _watcher = runtime.watch(&path, Duration::from_millis(200))?;
        // The file's `[admin]` section turns the admin endpoint on (on `--admin ADDR`, default
        // 127.0.0.1:8404); it shows whatever the registry holds after each reload.
        if let Some(settings) = runtime.admin().filter(|a| a.enabled) {
            let endpoint = tower_lb::admin::Admin::builder()
                .registry(runtime.registry())
                .prefix(settings.path)
                .actions(settings.actions)
                .build();
            let listener =
                TcpListener::bind(admin.unwrap_or(([127, 0, 0, 1], 8404).into())).await?;
            let _ = ADMIN_BOUND.set(listener.local_addr()?);
            println!("proxy: admin on http://{}", listener.local_addr()?);
            let server = Server::builder().build()?;
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = server.serve(listener, endpoint, stopped).await {
                    eprintln!("proxy: admin endpoint: {e}");
                }
            });
        }
        let reloader = runtime.clone();
        tokio::spawn(async move {
            while reload.recv().await.is_some() {
                match reloader.reload_from_path(&path) {
                    Ok(report) => println!("proxy: configuration reloaded: {report:?}"),
                    Err(e) => eprintln!("proxy: configuration refused, the old one stays: {e}"),
                }
            }
        });
        let trusted = TrustedProxies::new(trusted.iter().map(String::as_str))?;
        let stack = ServiceBuilder::new()
            .layer(ClientIpLayer::new(ClientIpResolver::new(trusted)))
            .layer(ForwardLayer::new())
            .service(runtime.service(&name));
        let listener = TcpListener::bind(listen).await?;
        let _ = bound.send(listener.local_addr()?);
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        Server::builder()
            .build()?
            .serve(listener, stack, stopped)
            .await?;
        Ok(())
    }

    pub(super) async fn main(path: PathBuf, cfg: super::Config) -> Result<(), BoxError> {
        let listen = cfg.listen.unwrap_or(([127, 0, 0, 1], 8080).into());
        let (stop_tx, stop) = watch::channel(false);
        let (reload_tx, reload) = mpsc::channel(1);
        let (bound_tx, bound) = oneshot::channel();
        let proxy = tokio::spawn(serve(
            path,
            listen,
            cfg.trusted,
            cfg.admin,
            stop,
            reload,
            bound_tx,
        ));
        if let Ok(addr) = bound.await {
            println!("proxy: http on {addr}; SIGHUP reloads the configuration; Ctrl-C stops");
        }
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = hangup.recv() => { let _ = reload_tx.try_send(()); }
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        let _ = stop_tx.send(true);
        proxy.await??;
        Ok(())
    }

    fn write_config(path: &Path, backends: &[(&str, SocketAddr)]) -> Result<(), BoxError> {
        let targets: Vec<String> = backends
            .iter()
            .map(|(id, addr)| format!("{{ id = \"{id}\", address = \"{addr}\" }}"))
            .collect();
        let text = format!(
            "[admin]\nenabled = true\n\n[[load_balancers]]\nname = \"web\"\ntargets = [{}]\n",
            targets.join(", ")
        );
        // Written whole and renamed into place, as a config manager does.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    async fn get(addr: SocketAddr) -> Result<String, BoxError> {
        get_path(addr, "/config").await
    }

    async fn get_path(addr: SocketAddr, path: &str) -> Result<String, BoxError> {
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(TcpStream::connect(addr).await?))
                .await?;
        tokio::spawn(conn);
        let req = Request::get(path).body(Full::new(bytes::Bytes::new()))?;
        let rsp = send.send_request(req).await?;
        let body = rsp.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Serves a configuration file, reloads it on an explicit signal and on a file change,
    /// refuses a broken one, and checks where requests go after each step.
    pub(super) async fn self_test() -> Result<(), BoxError> {
        let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let a = super::web_backend("web-a", served.clone()).await?;
        let b = super::web_backend("web-b", served.clone()).await?;
        let dir =
            std::env::temp_dir().join(format!("tower-lb-proxy-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("lb.toml");
        write_config(&path, &[("a", a)])?;

        let (stop_tx, stop) = watch::channel(false);
        let (reload_tx, reload) = mpsc::channel(1);
        let (bound_tx, bound) = oneshot::channel();
        let listen = ([127, 0, 0, 1], 0).into();
        let proxy = tokio::spawn(serve(
            path.clone(),
            listen,
            Vec::new(),
            Some(([127, 0, 0, 1], 0).into()),
            stop,
            reload,
            bound_tx,
        ));
        let addr = bound.await?;
        let first = get(addr).await?;
        println!("self-test (config): {} -> {first}", path.display());

        // A broken file, then an explicit reload (what SIGHUP does): refused, web-a stays.
        std::fs::write(
            &path,
            "[[load_balancers]]\nname = \"web\"\ntargets = [{ id = \"a\" }]\n",
        )?;
        reload_tx.send(()).await?;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let kept = get(addr).await?;
        // A good file: picked up (by the watcher or a reload) within a bounded wait.
        write_config(&path, &[("b", b)])?;
        let _ = reload_tx.try_send(());
        let mut now = String::new();
        for _ in 0..100 {
            now = get(addr).await?;
            if now == "web-b" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("self-test (config): broken file refused -> {kept}; new file -> {now}");
        // The file's [admin] section serves the registry as it is after the reload.
        let admin = *ADMIN_BOUND
            .get()
            .ok_or("no admin endpoint from the [admin] section")?;
        let status = get_path(admin, "/admin/status.json").await?;
        let admin_ok = status.contains("\"web\"") && status.contains("\"b\"");
        println!("self-test (config): admin status.json names the reloaded target: {admin_ok}");
        let _ = stop_tx.send(true);
        tokio::time::timeout(Duration::from_secs(30), proxy).await???;
        let _ = std::fs::remove_dir_all(&dir);
        if first != "web-a" || kept != "web-a" || now != "web-b" || !admin_ok {
            return Err("configuration reload self-test failed".into());
        }
        println!("self-test (config): ok");
        Ok(())
    }
}
