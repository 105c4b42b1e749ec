//! Health in action, as a timeline: three loopback backends behind a `Balance`, one of which
//! starts failing, gets ejected by outlier detection and marked unhealthy by active checks,
//! then recovers and ramps back in with slow start.
//!
//! Run with `cargo run --example health --features hyper` (about five seconds). Every line is
//! stamped with the time since start: `action` lines are what the example does to backend `b`,
//! `event` lines come from `TargetGroup::events`, `traffic` lines summarize the last 50
//! requests (one every 10 ms).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use futures_util::StreamExt;
use tokio::time::Instant;
use tower::ServiceExt;
use tower_lb::balance::{Balance, ServedBy};
use tower_lb::health::{ActiveCheck, HttpCheck, OutlierDetection, SlowStart};
use tower_lb::upstream::HttpClient;
use tower_lb::{Target, TargetGroup};

/// A backend that answers 200, or 500 while `broken` is set.
async fn backend(broken: Arc<AtomicBool>) -> SocketAddr {
    let status = move || {
        let broken = broken.clone();
        async move {
            if broken.load(Ordering::Relaxed) {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            }
        }
    };
    let app = Router::new()
        .route("/health", get(status.clone()))
        .route("/", get(status));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), tower_lb::BoxError> {
    let start = Instant::now();
    let stamp = move || format!("[{:>5.2}s]", start.elapsed().as_secs_f64());

    let b_broken = Arc::new(AtomicBool::new(false));
    let mut targets = Vec::new();
    for (id, broken) in [
        ("a", Arc::default()),
        ("b", b_broken.clone()),
        ("c", Arc::default()),
    ] {
        targets.push(Target::new(id, backend(broken).await)?);
    }

    let group = TargetGroup::builder("api")
        // The default algorithm, smooth weighted round robin, honours slow start.
        .targets(targets)
        // Short times so the whole story fits in a few seconds.
        .outlier_detection(
            OutlierDetection::builder()
                .consecutive_failures(5)
                .base_ejection_time(Duration::from_secs(1))
                .build()?,
        )
        .slow_start(SlowStart::builder(Duration::from_millis(1500)).build()?)
        .build()?;
    group.health_check(
        ActiveCheck::builder(HttpCheck::get("/health")?)
            .interval(Duration::from_millis(250))
            .timeout(Duration::from_millis(200))
            .rise(2)
            .fall(3)
            .jitter(0.0)
            .build()?,
    )?;

    // The event stream, printed as it happens.
    let mut events = group.events();
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            println!("{} event   {e}", stamp());
        }
    });

    // Tag every response with the target that served it.
    let balance = Balance::with_maker(group.clone(), HttpClient::<String>::new()).served_by(true);
    let mut served = std::collections::BTreeMap::<String, u32>::new();
    let mut failed = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for step in 1..=450u32 {
        tick.tick().await;
        match step {
            100 => {
                println!("{} action  backend b starts answering 500", stamp());
                b_broken.store(true, Ordering::Relaxed);
            }
            250 => {
                println!("{} action  backend b is fixed", stamp());
                b_broken.store(false, Ordering::Relaxed);
            }
            _ => {}
        }
        let req = http::Request::get("/").body(String::new())?;
        match balance.clone().oneshot(req).await {
            Ok(rsp) if rsp.status().is_success() => {
                let id = rsp
                    .extensions()
                    .get::<ServedBy>()
                    .unwrap()
                    .target()
                    .to_string();
                *served.entry(id).or_default() += 1;
            }
            _ => failed += 1,
        }
        if step % 50 == 0 {
            let b = group.health(&"b".into())?;
            println!(
                "{} traffic last 50 requests: {served:?}, failed {failed}; b routable={} ejected={} healthy={} ramping={}",
                stamp(),
                b.is_routable(),
                b.is_ejected(),
                b.is_healthy(),
                b.is_ramping(),
            );
            served.clear();
            failed = 0;
        }
    }
    let summary = group.health_summary();
    println!(
        "{} done    ejections {}, panics {}",
        stamp(),
        summary.ejections,
        summary.panics
    );
    Ok(())
}
