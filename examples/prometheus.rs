//! Prometheus metrics through the `metrics` facade: two loopback backends behind a
//! `LoadBalancer`, 60 requests (one in ten fails with a 500), one export of the statistics to
//! `metrics-exporter-prometheus` with real histogram buckets, and the scrape printed. Exits by
//! itself.
//!
//! Run with `cargo run --example prometheus --features admin,metrics`.
//!
//! In an application, install the exporter with its HTTP listener (feature `http-listener` of
//! `metrics-exporter-prometheus`) and call `MetricsExporter::spawn(period)`; or skip the facade
//! and mount `admin::Admin`, whose `/metrics` renders the same names on each scrape.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use metrics_util::MetricKindMask;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_lb::Target;
use tower_lb::admin::MetricsExporter;
use tower_lb::lb::{LoadBalancer, Registry};
use tower_lb::stats::LatencyHistogram;

/// A loopback backend: `/fail` answers 500, anything else 200 after `delay`.
async fn backend(delay: Duration) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                    tokio::time::sleep(delay).await;
                    let mut rsp = Response::new(Full::new(Bytes::from_static(b"ok")));
                    if req.uri().path() == "/fail" {
                        *rsp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    Ok::<_, Infallible>(rsp)
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
    // The exporter: our bucket bounds for the latency histogram (so its buckets are ours),
    // and an idle timeout that drops the series of targets that left.
    let bounds: Vec<f64> = LatencyHistogram::bounds()
        .iter()
        .map(Duration::as_secs_f64)
        .collect();
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("tower_lb_request_duration_seconds".into()),
            &bounds,
        )?
        .idle_timeout(MetricKindMask::ALL, Some(Duration::from_secs(60)))
        .build_recorder();
    let scrape = recorder.handle();
    metrics::set_global_recorder(recorder)?;

    let fast = backend(Duration::from_millis(1)).await?;
    let slow = backend(Duration::from_millis(20)).await?;
    let lb = LoadBalancer::builder()
        .with_name("api")
        .with_targets([Target::new("fast", fast)?, Target::new("slow", slow)?])
        .build::<Empty<Bytes>>()?;
    let registry = Registry::new();
    registry.register(lb.clone())?;
    let exporter = MetricsExporter::new(&registry);

    for i in 0..60 {
        let path = if i % 10 == 9 { "/fail" } else { "/" };
        let rsp = lb
            .clone()
            .oneshot(Request::get(path).body(Empty::new())?)
            .await?;
        rsp.into_body().collect().await?;
    }
    // Once here; `exporter.spawn(Duration::from_secs(5))` in an application.
    exporter.export();

    let text = scrape.render();
    println!("{text}");
    let requests = text
        .lines()
        .filter(|l| l.starts_with("tower_lb_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum::<u64>();
    assert_eq!(requests, 60, "every request is counted");
    assert!(text.contains("tower_lb_request_duration_seconds_bucket{"));
    println!(
        "# {requests} requests exported; latency as a histogram with {} buckets",
        bounds.len() + 1
    );
    Ok(())
}
