//! An axum gateway with the whole resilience stack: rate limit, deadline, retries, circuit
//! breaker, per-attempt timeout and load balancing, over three loopback backends (one healthy,
//! one answering 503 half the time, one down). Runs 60 requests against itself and exits.
//!
//! ```text
//! cargo run --example axum_resilient --features hyper,governor
//! ```

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower::util::MapRequestLayer;
use tower_lb::BoxError;
use tower_lb::balance::Balance;
use tower_lb::breaker::CircuitBreakerLayer;
use tower_lb::limit::{ClientAddr, LimitKey, RateLimitLayer};
use tower_lb::retry::{ReplayBody, RetryLayer, RetryPolicy};
use tower_lb::timeout::TimeoutLayer;
use tower_lb::upstream::{ErrorResponseLayer, HttpClient};
use tower_lb::{Target, TargetGroup};

/// A loopback backend; `flaky` answers every other request with 503.
async fn backend(name: &'static str, flaky: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let n = Arc::new(AtomicU32::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let n = n.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                        let fail = flaky && n.fetch_add(1, Ordering::Relaxed) % 2 == 0;
                        async move {
                            let mut rsp = Response::new(Full::new(Bytes::from(name)));
                            if fail {
                                *rsp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                            }
                            Ok::<_, Infallible>(rsp)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let healthy = backend("healthy", false).await;
    let flaky = backend("flaky", true).await;
    let down = {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        l.local_addr()? // dropped: connections are refused
    };
    let group = TargetGroup::builder("api")
        .target(Target::new("healthy", healthy.to_string())?)
        .target(Target::new("flaky", flaky.to_string())?)
        .target(Target::new("down", down.to_string())?)
        .build()?;

    let retry = RetryLayer::new(RetryPolicy::new());
    // Group-wide: trips only when most attempts fail (one dead target of three does not; that
    // is outlier detection's job).
    let breaker = CircuitBreakerLayer::builder("api")
        .failure_rate(0.8)
        .min_requests(20)
        .on_state_change(|c| println!("breaker {}: {} -> {}", c.name, c.from, c.to))
        .build()?;
    let rate_limit = RateLimitLayer::builder(LimitKey::client_ip())
        .rate(10, Duration::from_secs(1))
        .burst(30)
        .build()?;

    // Outermost first. Why this order:
    // 1. ErrorResponseLayer: every error below becomes a short 429/503/504/502 response, so the
    //    stack is infallible, as axum requires.
    // 2. ClientAddr from axum's ConnectInfo, for the per-IP key.
    // 3. Rate limit: the cheapest refusal, before any work; it counts client requests (not
    //    attempts) and a 429 is never retried.
    // 4. Overall deadline (2 s): outside the retries, so it bounds every attempt and backoff.
    //    (tower-lb's TimeoutLayer: tower's error, but no timer for a response ready at once.)
    // 5. Retry: each attempt goes through the breaker and the balancer again (another target).
    // 6. Circuit breaker: sees every attempt; when open, attempts fail fast with a local
    //    rejection that the retry layer does not retry, so an outage is not amplified.
    // 7. Per-attempt timeout (500 ms): inside the breaker so a slow backend counts as failing,
    //    inside the retry so a slow attempt can be retried (idempotent requests only).
    // 8. Balance: picks a target per attempt, skipping targets the retry asked it to avoid.
    let stack = ServiceBuilder::new()
        .layer(ErrorResponseLayer::new())
        .layer(MapRequestLayer::new(|mut req: Request<Body>| {
            if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
                let peer = *peer;
                req.extensions_mut().insert(ClientAddr(peer));
            }
            req
        }))
        .layer(rate_limit)
        .layer(TimeoutLayer::new(Duration::from_secs(2)))
        .layer(retry.clone())
        .layer(breaker.clone())
        .layer(TimeoutLayer::new(Duration::from_millis(500)))
        .service(Balance::with_maker(
            group,
            HttpClient::<ReplayBody<Body>>::new(),
        ));

    let app = Router::new().fallback_service(stack);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let gateway = listener.local_addr()?;
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    // A bounded run against ourselves.
    let client = HttpClient::<Empty<Bytes>>::new();
    let mut statuses = BTreeMap::new();
    let mut bodies = BTreeMap::new();
    for _ in 0..60 {
        let req = Request::get(format!("http://{gateway}/hello")).body(Empty::new())?;
        let rsp = tower::ServiceExt::oneshot(client.clone(), req).await?;
        *statuses.entry(rsp.status().as_u16()).or_insert(0) += 1;
        let body = rsp.into_body().collect().await?.to_bytes();
        *bodies
            .entry(String::from_utf8_lossy(&body).trim().to_string())
            .or_insert(0) += 1;
    }
    println!("statuses: {statuses:?}");
    println!("bodies:   {bodies:?}");
    println!("retries:  {:?}", retry.stats());
    println!("breaker:  {}", breaker.state());
    server.abort();
    Ok(())
}
