//! Quickstart: three HTTP backends on loopback, 300 requests through `Balance` with smooth
//! weighted round robin (weights 5/3/1), one backend removed mid-run.
//!
//! Run with `cargo run --example quickstart --features hyper`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_lb::algorithm::SmoothWeightedRoundRobin;
use tower_lb::balance::{Balance, ServedBy};
use tower_lb::upstream::HttpClient;
use tower_lb::{Target, TargetGroup};

const REQUESTS: usize = 300;
const BATCH: usize = 10;

/// Starts a tiny HTTP server on 127.0.0.1:0 that answers with its own name.
async fn backend(name: &'static str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<hyper::body::Incoming>| async move {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), tower_lb::BoxError> {
    let weights = [("alpha", 5u32), ("bravo", 3), ("charlie", 1)];
    let mut targets = Vec::new();
    for (name, weight) in weights {
        let addr = backend(name).await?;
        targets.push(Target::builder(name, addr).weight(weight).build()?);
    }

    let group = TargetGroup::builder("quickstart")
        .algorithm(SmoothWeightedRoundRobin::new())
        .targets(targets)
        .build()?;
    // `served_by(true)`: tag every response with the target that served it.
    let balance =
        Balance::with_maker(group.clone(), HttpClient::<Empty<Bytes>>::new()).served_by(true);

    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    let mut responses = 0;
    let mut mismatches = 0;
    for batch in 0..REQUESTS / BATCH {
        // Send a batch concurrently; halfway through, remove `charlie` while the batch is in flight.
        let calls: Vec<_> = (0..BATCH)
            .map(|_| {
                let req = Request::get("/")
                    .body(Empty::<Bytes>::new())
                    .expect("valid request");
                tokio::spawn(balance.clone().oneshot(req))
            })
            .collect();
        if batch == REQUESTS / BATCH / 2 {
            group.remove(&"charlie".into())?;
            println!(
                "removed `charlie` after {} requests, with a batch in flight",
                batch * BATCH
            );
        }
        for call in calls {
            let rsp = call.await??;
            let target = rsp
                .extensions()
                .get::<ServedBy>()
                .expect("served-by")
                .target()
                .to_string();
            let body = rsp.into_body().collect().await?.to_bytes();
            if body != target.as_bytes() {
                mismatches += 1;
            }
            responses += 1;
            *served.entry(target).or_default() += 1;
        }
    }

    // Before removal all three share 5/3/1 of the traffic; afterwards alpha and bravo share 5/3.
    let half = (REQUESTS / 2) as f64;
    let expected = |w: u32| -> f64 {
        let first = half * f64::from(w) / 9.0;
        let second = if w == 1 {
            0.0
        } else {
            half * f64::from(w) / 8.0
        };
        first + second
    };

    println!();
    println!(
        "{:<10} {:>6} {:>9} {:>10} {:>8}",
        "target", "weight", "requests", "expected", "share"
    );
    for (name, weight) in weights {
        let n = served.get(name).copied().unwrap_or(0);
        println!(
            "{:<10} {:>6} {:>9} {:>10.1} {:>7.1}%",
            name,
            weight,
            n,
            expected(weight),
            100.0 * n as f64 / REQUESTS as f64
        );
    }
    println!();
    println!(
        "requests sent: {REQUESTS}, responses received: {responses}, wrong backend bodies: {mismatches}"
    );

    if responses != REQUESTS || mismatches != 0 {
        return Err("a request was lost or answered by the wrong backend".into());
    }
    println!("every request got exactly one response");
    Ok(())
}
