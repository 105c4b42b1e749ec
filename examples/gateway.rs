//! An axum API gateway with traffic rules: `/api/v1` and `/api/v2` go to their own services,
//! a header canary sends 10 % of `X-Canary: true` traffic to a canary build, `/admin` is
//! allowed from loopback only, and anything else is a 404. The gateway sits behind a (simulated)
//! local proxy, so the client IP comes from `X-Forwarded-For`, believed only because the
//! proxy is a trusted loopback peer. Sends 1 000 requests to itself, prints where they went,
//! and exits.
//!
//! ```text
//! cargo run --example gateway --features hyper,axum
//! ```

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};
use tower_lb::BoxError;
use tower_lb::balance::Balance;
use tower_lb::client_ip::{ClientIpLayer, ClientIpResolver, TrustedProxies};
use tower_lb::route::{Access, Router, Rule, Split};
use tower_lb::upstream::{ErrorResponseLayer, HttpClient};
use tower_lb::{Target, TargetGroup};

/// A loopback backend answering with its name.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |_req: Request<hyper::body::Incoming>| async move {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name))))
                    },
                );
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
    // One target group per service (two instances for the API versions), each behind a Balance
    // whose errors become short 502/503/504 responses.
    let mut builder = Router::builder();
    for (service, instances) in [
        ("api-v1", 2),
        ("api-v2", 2),
        ("api-canary", 1),
        ("admin", 1),
    ] {
        let mut group = TargetGroup::builder(service);
        for i in 0..instances {
            let addr = backend(service).await;
            group = group.target(Target::new(format!("{service}-{i}"), addr.to_string())?);
        }
        let balance = Balance::with_maker(group.build()?, HttpClient::<Body>::new());
        builder = builder.destination(service, ErrorResponseLayer::new().layer(balance));
    }
    let router = builder
        .rules([
            // The canary first: it takes X-Canary traffic before the path rules see it,
            // consistently by client IP (a user stays on one side).
            Rule::new("canary")
                .priority(10)
                .header("x-canary", "true")
                .split(
                    Split::new()
                        .to("api-canary", 10)
                        .to("api-v2", 90)
                        .by_client_ip(),
                ),
            Rule::new("api-v1").prefix("/api/v1").to("api-v1"),
            Rule::new("api-v2").path("/api/v2/*").to("api-v2"),
            Rule::new("admin")
                .prefix("/admin")
                .to("admin")
                .access(Access::parse("allow 127.0.0.1; deny all;")?),
        ])
        .build()?;

    // The local proxy in front of us is a trusted peer: its X-Forwarded-For is believed.
    let client_ip = ClientIpLayer::new(ClientIpResolver::new(TrustedProxies::loopback()));
    let app = axum::Router::new()
        .fallback_service(router.clone())
        .layer(client_ip);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let gateway = listener.local_addr()?;
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    // 1 000 requests from 200 simulated clients, as the proxy forwards them.
    let client = HttpClient::<Empty<Bytes>>::new();
    let mut table: BTreeMap<&str, BTreeMap<String, u32>> = BTreeMap::new();
    for i in 0..1000u32 {
        let user = format!("203.0.113.{}", i % 200);
        let (kind, path, canary, from) = match i % 10 {
            0..=2 => ("GET /api/v1/users", "/api/v1/users", false, user.as_str()),
            3..=5 => ("GET /api/v2/users", "/api/v2/users", false, user.as_str()),
            6 | 7 => (
                "GET /api/v2/users + X-Canary",
                "/api/v2/users",
                true,
                user.as_str(),
            ),
            8 if i % 20 == 8 => ("GET /admin from 127.0.0.1", "/admin", false, "127.0.0.1"),
            8 => (
                "GET /admin from 203.0.113.x",
                "/admin",
                false,
                user.as_str(),
            ),
            _ => ("GET /unknown", "/unknown", false, user.as_str()),
        };
        let mut req =
            Request::get(format!("http://{gateway}{path}")).header("x-forwarded-for", from);
        if canary {
            req = req.header("x-canary", "true");
        }
        let rsp = client.clone().oneshot(req.body(Empty::new())?).await?;
        let status = rsp.status();
        let body = rsp.into_body().collect().await?.to_bytes();
        let outcome = if status.is_success() {
            String::from_utf8_lossy(&body).into_owned()
        } else {
            format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
        };
        *table.entry(kind).or_default().entry(outcome).or_default() += 1;
    }

    println!("| request | went to | count |");
    println!("|---|---|---:|");
    for (kind, outcomes) in &table {
        for (outcome, n) in outcomes {
            println!("| {kind} | {outcome} | {n} |");
        }
    }
    println!(
        "\nrules in force: {:?}",
        router.rules().iter().map(|r| r.name()).collect::<Vec<_>>()
    );
    server.abort();
    Ok(())
}
