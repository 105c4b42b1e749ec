//! The seeds' load-balancer API sketch, written against tower-lb almost line for line, over
//! loopback backends: build, register, route, add and remove targets, traffic rules with a
//! canary split, sticky sessions, a rate limit, health events printed as they happen. Exits by
//! itself.
//!
//! ```text
//! cargo run --example seed_api --all-features
//! ```
//!
//! Where the sketch and the crate differ: targets are built with their address (`Target::builder(id,
//! address)`), settings are builders rather than struct literals, updates are synchronous (no
//! `.await`), a sticky session needs the key that signs its cookies, and rules send requests to
//! named pools of targets (`with_pool`) rather than to target lists.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower_lb::BoxError;
use tower_lb::algorithm::RoundRobin;
use tower_lb::health::HealthEventKind;
use tower_lb::key::ClientAddr;
use tower_lb::lb::{
    CircuitBreaker, HealthCheck, LoadBalancer, RateLimit, Registry, ResponseBody, Rule, Split,
    StickySession,
};
use tower_lb::target::Target;

/// A loopback backend that answers with its name; `/health` fails while `down` is set.
async fn backend(name: &'static str, down: Arc<AtomicBool>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let down = down.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let sick = req.uri().path() == "/health" && down.load(Ordering::SeqCst);
                    async move {
                        let mut rsp = Response::new(Full::new(Bytes::from(name)));
                        if sick {
                            *rsp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                        }
                        Ok::<_, Infallible>(rsp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn text(response: Response<ResponseBody>) -> Result<String, BoxError> {
    Ok(String::from_utf8(
        response.into_body().collect().await?.to_bytes().to_vec(),
    )?)
}

fn request(path: &str) -> Request<Body> {
    let mut req = Request::get(path)
        .body(Body::empty())
        .expect("valid request");
    // What the server glue records (axum's `ConnectInfo` does it for you): the client's address.
    req.extensions_mut()
        .insert(ClientAddr("198.51.100.7:50000".parse().expect("address")));
    req
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let api2_down = Arc::new(AtomicBool::new(false));
    let up = || Arc::new(AtomicBool::new(false));
    let api1 = backend("api-1", up()).await?;
    let api2 = backend("api-2", api2_down.clone()).await?;
    let api3 = backend("api-3", up()).await?;
    let v2_1 = backend("api-v2-1", up()).await?;
    let v2_2 = backend("api-v2-2", up()).await?;
    let canary = backend("api-canary-1", up()).await?;

    // Configure load balancer
    let lb = LoadBalancer::builder()
        .with_name("api-lb")
        .with_algorithm(RoundRobin::new())
        .with_targets(vec![
            Target::builder("api-1", api1).weight(100).build()?,
            Target::builder("api-2", api2).weight(100).build()?,
        ])
        .with_health_check(
            HealthCheck::http("/health")
                .interval(Duration::from_millis(100)) // the sketch's 10 s, shortened for the demo
                .timeout(Duration::from_secs(2))
                .healthy_threshold(2)
                .unhealthy_threshold(3),
        )
        .with_circuit_breaker(
            CircuitBreaker::new()
                .threshold(0.5)
                .min_requests(100)
                .interval(Duration::from_secs(60))
                .half_open_timeout(Duration::from_secs(30)),
        )
        .with_rate_limit(
            RateLimit::new()
                .with_limit(1000)
                .with_interval(Duration::from_secs(60)),
        )
        .with_sticky_session(
            StickySession::cookie("session_id")
                .ttl(Duration::from_secs(3600))
                .key(*b"demo key: load yours from secrets"),
        )
        .with_pool(
            "api-v2",
            vec![
                Target::new("api-v2-1", v2_1)?,
                Target::new("api-v2-2", v2_2)?,
            ],
        )
        .with_pool("api-canary", vec![Target::new("api-canary-1", canary)?])
        .build::<Body>()?;

    // Initialize load balancer
    let lb_manager = Registry::new();
    lb_manager.register(lb.clone())?;

    // Handle health events, as they happen
    let mut events = lb.health_events();
    let printer = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let target = event.target().map(|t| t.to_string()).unwrap_or_default();
            match event.kind() {
                HealthEventKind::Healthy => println!("  [event] target healthy: {target}"),
                HealthEventKind::Unhealthy { reason } => {
                    println!("  [event] target unhealthy: {target} - {reason}")
                }
                other => println!("  [event] {target}: {other:?}"),
            }
        }
    });

    // Route request
    for _ in 0..4 {
        let response = lb.route(request("/users")).await?;
        println!(
            "route /users -> {} from {}",
            response.status(),
            text(response).await?
        );
    }

    // Update targets
    lb.add_target(Target::builder("api-3", api3).weight(100).build()?)?;
    lb.remove_target("api-1")?;
    println!("added api-3, removed api-1");
    for _ in 0..4 {
        let response = lb.route(request("/users")).await?;
        println!(
            "route /users -> {} from {}",
            response.status(),
            text(response).await?
        );
    }

    // A backend starts failing its health checks: the event is printed as it happens, and
    // traffic moves off it.
    println!("api-2 starts failing /health");
    api2_down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..3 {
        let response = lb.route(request("/users")).await?;
        println!(
            "route /users -> {} from {}",
            response.status(),
            text(response).await?
        );
    }
    api2_down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;

    // Configure rules
    let rules = vec![
        Rule::new("api-v2")
            .path("/api/v2/*")
            .any_method()
            .to("api-v2"),
        Rule::new("api-canary")
            .header("X-Canary", "true")
            .split(Split::new().to("api-canary", 10).to("api-lb", 90)),
    ];

    // Apply rules
    lb.set_rules(rules)?;
    println!(
        "rules: {:?}",
        lb.rules().iter().map(|r| r.name()).collect::<Vec<_>>()
    );

    // Sticky sessions (the sketch's `session_id` cookie, 1 hour) on the api-v2 rule.
    let first = lb.route(request("/api/v2/cart")).await?;
    let cookie = first.headers()[header::SET_COOKIE].to_str()?.to_string();
    println!(
        "/api/v2/cart first served by {}; Set-Cookie: {cookie}",
        text(first).await?
    );
    let pair = cookie.split(';').next().unwrap_or_default().to_string();
    for _ in 0..3 {
        let mut req = request("/api/v2/cart");
        req.headers_mut().insert(header::COOKIE, pair.parse()?);
        println!("  with the cookie -> {}", text(lb.route(req).await?).await?);
    }

    // The canary: 10 % of `X-Canary: true` requests.
    let mut on_canary = 0;
    for _ in 0..100 {
        let mut req = request("/users");
        req.headers_mut().insert("x-canary", "true".parse()?);
        on_canary += (text(lb.route(req).await?).await? == "api-canary-1") as u32;
    }
    println!("X-Canary: true -> {on_canary} of 100 on the canary");

    // Stats, then deregister everything (drains, stops health checks).
    let stats = lb.stats();
    for t in stats.targets() {
        println!(
            "{} {}: {} requests, {} failures",
            stats.name(),
            t.id(),
            t.requests(),
            t.failures()
        );
    }
    println!("registered: {:?}", lb_manager.list());
    for name in lb_manager.list() {
        lb_manager.deregister(&name)?.await;
    }
    drop(lb);
    printer.abort();
    println!("registered after deregistering: {:?}", lb_manager.list());
    Ok(())
}
