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
//! `--stack full` adds the resilience stack of `examples/proxy.rs` (deadline, retries,
//! breaker, per-attempt timeout) behind a router with 20 rules (see [`twenty_rules`]).
//!
//! The forwarding layer writes what nginx and HAProxy write in this benchmark
//! (`X-Forwarded-For`, hop-by-hop headers stripped), so that all three do the same work;
//! `--headers default` writes `ForwardLayer`'s defaults instead (also `X-Forwarded-Proto`,
//! `X-Forwarded-Host` and `X-Real-IP`).
//!
//! `floor` is the other end of the scale: the cheapest HTTP/1 reverse proxy one can write on
//! hyper and tokio alone, with no tower-lb and no tower, so that the benchmark can tell what
//! tower-lb costs from what hyper costs (see [`floor`]):
//!
//! ```text
//! e2e_proxy floor --listen 127.0.0.1:18031 \
//!     --backend 127.0.0.1:19001 --backend 127.0.0.1:19002 --backend 127.0.0.1:19003
//! ```

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

/// Serves the proxy: `ErrorResponseLayer`, `ForwardLayer`, then (with `full`) the resilience
/// stack of `examples/proxy.rs`, then `Balance` over `client`.
async fn proxy(
    listener: TcpListener,
    group: TargetGroup,
    client: &str,
    full: bool,
    default_headers: bool,
) -> Result<(), BoxError> {
    let server = Server::builder().build()?;
    let forward = if default_headers {
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
            if full {
                let balance =
                    Balance::with_maker(group.clone(), $client::<ReplayBody<RequestBody>>::new());
                let resilient = ServiceBuilder::new()
                    .layer(TimeoutLayer::new(Duration::from_secs(10)))
                    .layer(RetryLayer::new(RetryPolicy::new()))
                    .layer(CircuitBreakerLayer::builder(group.name().to_owned()).build()?)
                    .layer(TimeoutLayer::new(Duration::from_secs(5)))
                    .service(balance);
                let svc = edge().service(twenty_rules(resilient)?);
                server.serve(listener, svc, std::future::pending()).await?
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
    let mut full = false;
    let mut default_headers = false;
    let mut per_core = false;
    let mut rest = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--workers" => workers = value()?.parse()?,
            "--listen" => listen = value()?.parse()?,
            "--backend" => targets.push(value()?),
            "--client" => client = value()?,
            "--stack" => full = value()? == "full",
            "--headers" => default_headers = value()? == "default",
            "--per-core" => per_core = true,
            _ => rest.push(arg.parse::<SocketAddr>()?),
        }
    }
    if per_core && mode == "proxy" {
        return per_core_proxy(workers, listen, targets, client, full, default_headers);
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
            "floor" => {
                let backends = targets
                    .iter()
                    .map(|a| a.parse::<SocketAddr>())
                    .collect::<Result<Vec<_>, _>>()?;
                floor(TcpListener::bind(listen).await?, backends).await
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
                proxy(listener, group, &client, full, default_headers).await
            }
            _ => Err("usage: e2e_proxy backends ADDR... | floor [--listen ADDR] --backend ADDR... | proxy [--workers N] [--per-core] [--listen ADDR] [--client target|legacy] [--stack bare|full] [--headers peers|default] --backend ADDR...".into()),
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
    full: bool,
    default_headers: bool,
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
                    proxy(listener, group, &client, full, default_headers).await
                })
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "worker panicked")??;
    }
    Ok(())
}
