//! Operations (issue 14): statistics per group and per target, read while traffic flows.
//!
//! Latency figures are checked under tokio's paused clock (deterministic); counts by class and
//! kind, rate limiting and retries through the `LoadBalancer` facade against loopback
//! backends that count what reaches them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::{ServiceExt, service_fn};
use tower_lb::balance::Balance;
use tower_lb::classify::{Classify, Outcome};
use tower_lb::key::ClientAddr;
use tower_lb::lb::{LoadBalancer, RateLimit};
use tower_lb::{Target, TargetGroup, target::AdminState};

/// A backend whose answer depends on the path: `/ok` 200, `/missing` 404, `/broken` 500.
/// Counts the requests that reach it.
async fn backend() -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let h = h.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    h.fetch_add(1, Ordering::SeqCst);
                    let status = match req.uri().path() {
                        "/missing" => StatusCode::NOT_FOUND,
                        "/broken" => StatusCode::INTERNAL_SERVER_ERROR,
                        _ => StatusCode::OK,
                    };
                    async move {
                        let mut rsp = Response::new(Full::new(Bytes::from_static(b"x")));
                        *rsp.status_mut() = status;
                        Ok::<_, Infallible>(rsp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, hits, task)
}

fn get(path: &str) -> Request<Body> {
    let mut req = Request::get(path).body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ClientAddr("198.51.100.7:40000".parse().unwrap()));
    req
}

/// Runs `f` on a current-thread runtime with tokio's clock paused and the statistics' clock
/// (`quanta`) mocked: time moves only when the test moves it.
fn mocked<F: std::future::Future>(f: impl FnOnce(Arc<quanta::Mock>) -> F) -> F::Output {
    let (clock, mock) = quanta::Clock::mock();
    quanta::with_clock(&clock, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(f(mock))
    })
}

/// Latency percentiles over the window, per target and for the group, from attempts of known
/// duration (mocked clock); the window forgets them a minute later.
#[test]
fn latency_percentiles_per_target_and_group() {
    mocked(|clock| async move {
        let group = TargetGroup::builder("api")
            .target(Target::new("fast", "127.0.0.1:1").unwrap())
            .target(Target::new("slow", "127.0.0.1:2").unwrap())
            .build()
            .unwrap();
        let c = clock.clone();
        let balance = Balance::new(group, move |t: &Target| {
            let slow = t.id().as_str() == "slow";
            let c = c.clone();
            service_fn(move |req: Request<u64>| {
                // `fast` answers in the request's milliseconds; `slow` 100 ms later.
                let ms = *req.body() + if slow { 100 } else { 0 };
                c.increment(Duration::from_millis(ms));
                async { Ok::<_, Infallible>(Response::new(String::new())) }
            })
        });
        // Round robin: fast gets 1, 3, …, 199 ms; slow gets 102, 104, …, 300 ms.
        for i in 1..=200u64 {
            let rsp = balance.clone().oneshot(Request::new(i)).await.unwrap();
            drop(rsp);
        }
        let report = balance.report();
        let by = |id: &str| {
            report
                .targets()
                .iter()
                .find(|t| t.id().as_str() == id)
                .unwrap()
                .clone()
        };
        let (fast, slow) = (by("fast"), by("slow"));
        assert_eq!((fast.requests(), slow.requests()), (100, 100));
        assert_eq!(fast.latency().count(), 100);
        assert_eq!(fast.latency().max(), Duration::from_millis(199));
        assert_eq!(slow.latency().max(), Duration::from_millis(300));
        let within = |d: Duration, lo: u64, hi: u64| {
            let ms = d.as_millis() as u64;
            assert!((lo..=hi).contains(&ms), "{ms} ms outside {lo}..={hi}");
        };
        // Buckets are at most 12.5 % wide and report their upper edge.
        within(fast.latency().p50(), 99, 113);
        within(fast.latency().p99(), 197, 199);
        within(slow.latency().p50(), 200, 226);
        // Together: 1, 3, …, 101, then both interleave up to 199, then slow alone: the 100th
        // sample is 150 ms, the 190th 280 ms.
        within(report.latency().p50(), 150, 169);
        within(report.latency().p95(), 280, 300);
        assert_eq!(report.latency().max(), Duration::from_millis(300));
        assert_eq!(report.responses().class(2), 200);
        assert_eq!(report.in_flight(), 0);
        // A minute later the window is empty; the counters are not.
        clock.increment(Duration::from_secs(61));
        let later = balance.report();
        assert_eq!(later.latency().count(), 0);
        assert_eq!(later.requests(), 200);
        assert_eq!(later.responses().class(2), 200);
    })
}

/// In flight counts a streaming body until it ends; the attempt is recorded then, not at the
/// head.
#[test]
fn a_streaming_body_is_recorded_when_it_ends() {
    mocked(|clock| async move {
        let group = TargetGroup::builder("g")
            .target(Target::new("a", "127.0.0.1:1").unwrap())
            .build()
            .unwrap();
        let balance = Balance::new(group, |_t: &Target| {
            service_fn(|_r: Request<()>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"abc"))))
            })
        });
        let rsp = balance.clone().oneshot(Request::new(())).await.unwrap();
        let report = balance.report();
        assert_eq!(report.in_flight(), 1);
        assert_eq!(
            report.responses().total(),
            0,
            "not recorded before the body ends"
        );
        clock.increment(Duration::from_millis(40));
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"abc");
        let report = balance.report();
        assert_eq!(report.in_flight(), 0);
        assert_eq!(report.responses().class(2), 1);
        // The latency runs to the body's end.
        assert_eq!(report.latency().max(), Duration::from_millis(40));
    })
}

/// Responses by class and failures by kind, as the group's classifier judges them; a client's
/// fault (here a 404 the classifier calls the client's) is no failure of the target.
#[tokio::test]
async fn classes_and_failure_kinds_through_the_facade() {
    let (addr, hits, task) = backend().await;
    // A port with nothing listening: connection refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let lb = LoadBalancer::builder()
        .with_name("ops")
        .with_target(Target::new("up", addr).unwrap())
        .build::<Body>()
        .unwrap();
    for path in ["/ok", "/ok", "/missing", "/broken"] {
        let rsp = lb.route(get(path)).await.unwrap();
        drop(rsp.into_body().collect().await);
    }
    let stats = lb.stats();
    let group = &stats.groups()[0];
    assert_eq!(group.name(), "ops");
    let up = &group.targets()[0];
    assert_eq!(up.requests() as usize, hits.load(Ordering::SeqCst));
    assert_eq!(up.responses().class(2), 2);
    assert_eq!(up.responses().class(4), 1);
    assert_eq!(up.responses().class(5), 1);
    assert_eq!(up.failures().status(), 1, "only the 500");
    assert_eq!(up.failures().connect(), 0);
    assert_eq!(up.admin(), AdminState::Enabled);
    assert!(up.health().unwrap().is_healthy());
    assert!(up.latency().count() == 4 && up.latency().max() > Duration::ZERO);

    // The unreachable target: no response, a connect failure.
    lb.add_target(Target::new("down", closed).unwrap()).unwrap();
    lb.remove_target("up").unwrap();
    let rsp = lb.route(get("/ok")).await.unwrap();
    assert!(rsp.status().is_server_error());
    let stats = lb.stats();
    let down = &stats.groups()[0].targets()[0];
    assert_eq!(down.id().as_str(), "down");
    assert!(down.responses().no_response() >= 1);
    assert_eq!(down.failures().connect(), down.responses().no_response());
    // The removed target's series is gone.
    assert_eq!(stats.groups()[0].targets().len(), 1);
    task.abort();
}

/// A target that leaves and comes back starts from zero; one that stays keeps its figures
/// across membership changes.
#[tokio::test(start_paused = true)]
async fn figures_persist_while_a_target_stays() {
    let group = TargetGroup::builder("g")
        .target(Target::new("a", "127.0.0.1:1").unwrap())
        .build()
        .unwrap();
    let balance = Balance::new(group.clone(), |_t: &Target| {
        service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) })
    });
    for _ in 0..3 {
        drop(balance.clone().oneshot(Request::new(())).await.unwrap());
    }
    group.insert(Target::new("b", "127.0.0.1:2").unwrap());
    for _ in 0..2 {
        drop(balance.clone().oneshot(Request::new(())).await.unwrap());
    }
    let r = balance.report();
    let a = r.targets().iter().find(|t| t.id().as_str() == "a").unwrap();
    assert_eq!(a.responses().class(2), 4, "3 before the change, 1 after");
    group.remove(&"a".into()).unwrap();
    drop(balance.clone().oneshot(Request::new(())).await.unwrap());
    group.insert(Target::new("a", "127.0.0.1:1").unwrap());
    drop(balance.clone().oneshot(Request::new(())).await.unwrap());
    let r = balance.report();
    let a = r.targets().iter().find(|t| t.id().as_str() == "a").unwrap();
    assert!(
        a.responses().class(2) <= 1,
        "a returning target starts afresh"
    );
}

/// The rate limit's refusals are counted; a refused request never reaches a target.
#[tokio::test]
async fn rate_limited_requests_are_counted() {
    let (addr, hits, task) = backend().await;
    let lb = LoadBalancer::builder()
        .with_target(Target::new("up", addr).unwrap())
        .with_rate_limit(
            RateLimit::new()
                .with_limit(2)
                .with_interval(Duration::from_secs(3600)),
        )
        .build::<Body>()
        .unwrap();
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(lb.route(get("/ok")).await.unwrap().status());
    }
    assert_eq!(codes.iter().filter(|c| **c == StatusCode::OK).count(), 2);
    let stats = lb.stats();
    assert_eq!(stats.rate_limited(), 3);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_eq!(stats.groups()[0].requests(), 2);
    task.abort();
}

/// A classifier that calls every status a success: the group's own judgement decides what a
/// failure is in the statistics too.
#[derive(Debug)]
struct Lenient;

impl Classify for Lenient {
    fn classify_status(&self, _status: StatusCode) -> Outcome {
        Outcome::Success
    }
    fn classify_error(&self, _err: &(dyn std::error::Error + 'static)) -> Outcome {
        Outcome::Client
    }
}

#[tokio::test(start_paused = true)]
async fn failures_follow_the_groups_classifier() {
    let group = TargetGroup::builder("g")
        .classifier(Lenient)
        .target(Target::new("a", "127.0.0.1:1").unwrap())
        .build()
        .unwrap();
    let balance = Balance::new(group, |_t: &Target| {
        service_fn(|_r: Request<()>| async {
            let mut rsp = Response::new(String::new());
            *rsp.status_mut() = StatusCode::BAD_GATEWAY;
            Ok::<_, Infallible>(rsp)
        })
    });
    drop(balance.clone().oneshot(Request::new(())).await.unwrap());
    let r = balance.report();
    assert_eq!(r.responses().class(5), 1);
    assert_eq!(r.failures().total(), 0);
}
