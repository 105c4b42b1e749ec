//! Integration tests for the retry layer (and timeouts around it): mocks on paused time, a
//! retry storm against the budget, body replay, and a fault test with loopback backends.

#[path = "../support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_lb::balance::{AvoidTargets, Balance, ServedBy};
use tower_lb::error::{BoxError, ConnectFailed, is_caused_by};
use tower_lb::retry::{Attempts, Jitter, ReplayBody, RetryLayer, RetryPolicy};
use tower_lb::timeout::TimeoutLayer;
use tower_lb::{Target, TargetGroup};

/// What the backend stub saw: method, body bytes, time of arrival, avoided targets.
#[derive(Debug, Clone)]
struct Seen {
    body: Bytes,
    at: Instant,
    avoid: usize,
    /// The body's exact size hint when the attempt arrived.
    hint: Option<u64>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A backend stub: answers attempt `n` (0-based) with `script(n)`, after reading the body.
fn stub<B>(
    script: impl Fn(u32) -> Result<Response<String>, BoxError> + Clone + Send + Sync + 'static,
) -> (
    impl Service<Request<ReplayBody<B>>, Response = Response<String>, Error = BoxError> + Clone,
    Log,
)
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    let log: Log = Arc::default();
    let n = Arc::new(AtomicU32::new(0));
    let l = log.clone();
    let svc = service_fn(move |req: Request<ReplayBody<B>>| {
        let script = script.clone();
        let log = l.clone();
        let i = n.fetch_add(1, Ordering::SeqCst);
        async move {
            let at = Instant::now();
            let avoid = req
                .extensions()
                .get::<AvoidTargets>()
                .map_or(0, |a| a.len());
            // What hyper would frame the body by: an exact size (`Content-Length`) or none.
            let hint = http_body::Body::size_hint(req.body()).exact();
            let body = req.into_body().collect().await?.to_bytes();
            log.lock().unwrap().push(Seen {
                body,
                at,
                avoid,
                hint,
            });
            script(i)
        }
    });
    (svc, log)
}

fn status(s: u16) -> Result<Response<String>, BoxError> {
    let mut rsp = Response::new(String::new());
    *rsp.status_mut() = StatusCode::from_u16(s).unwrap();
    Ok(rsp)
}

fn policy() -> RetryPolicy {
    RetryPolicy::builder().jitter(Jitter::None).build().unwrap()
}

fn req(method: Method, body: &'static str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri("/x")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn attempts<B>(rsp: &Response<B>) -> u32 {
    Attempts::of(rsp.extensions())
}

#[tokio::test(start_paused = true)]
async fn idempotent_503_is_retried_with_exponential_backoff() {
    let (inner, log) = stub(|n| status(if n < 2 { 503 } else { 200 }));
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy()))
        .service(inner);
    let t0 = Instant::now();
    let rsp = svc.oneshot(req(Method::GET, "payload")).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(attempts(&rsp), 3);
    let log = log.lock().unwrap();
    let at: Vec<_> = log.iter().map(|s| s.at - t0).collect();
    // base 25 ms, then 50 ms (jitter off).
    assert_eq!(
        at,
        [
            Duration::ZERO,
            Duration::from_millis(25),
            Duration::from_millis(75)
        ]
    );
    assert!(
        log.iter().all(|s| s.body == "payload"),
        "the body is replayed whole"
    );
    assert!(
        log.iter().all(|s| s.hint == Some(7)),
        "every attempt is framed as the first (Content-Length: 7): {:?}",
        log.iter().map(|s| s.hint).collect::<Vec<_>>()
    );
}

#[tokio::test(start_paused = true)]
async fn at_most_three_attempts_then_the_last_response() {
    let (inner, log) = stub(|_| status(502));
    let layer = RetryLayer::new(policy());
    let svc = ServiceBuilder::new().layer(layer.clone()).service(inner);
    let rsp = svc.oneshot(req(Method::PUT, "")).await.unwrap();
    assert_eq!(rsp.status(), 502);
    assert_eq!(attempts(&rsp), 3);
    assert_eq!(log.lock().unwrap().len(), 3);
    let stats = layer.stats();
    assert_eq!((stats.requests, stats.retries), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn post_is_never_retried_after_it_was_sent() {
    // A 503 and a reset after sending: both mean the backend may have acted on it.
    for outcome in [503u16, 0] {
        let (inner, log) = stub(move |_| {
            if outcome == 0 {
                Err(std::io::Error::other("connection reset").into())
            } else {
                status(outcome)
            }
        });
        let svc = ServiceBuilder::new()
            .layer(RetryLayer::new(policy()))
            .service(inner);
        let res = svc.oneshot(req(Method::POST, "order")).await;
        match res {
            Ok(rsp) => assert_eq!((rsp.status().as_u16(), attempts(&rsp)), (503, 1)),
            Err(e) => assert!(!is_caused_by::<ConnectFailed>(&*e)),
        }
        assert_eq!(log.lock().unwrap().len(), 1, "POST sent once ({outcome})");
    }
}

#[tokio::test(start_paused = true)]
async fn connect_failure_is_retried_for_any_method() {
    let (inner, log) = stub(|n| {
        if n == 0 {
            Err(ConnectFailed::new(std::io::Error::other("refused")).into())
        } else {
            status(201)
        }
    });
    // The stub reads the body even on "connect failure"; a real client would not have sent it,
    // so what matters is that the retry carries the whole body again.
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy()))
        .service(inner);
    let rsp = svc.oneshot(req(Method::POST, "order")).await.unwrap();
    assert_eq!((rsp.status().as_u16(), attempts(&rsp)), (201, 2));
    assert_eq!(log.lock().unwrap()[1].body, "order");
}

type Frames = futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, BoxError>>>;

fn streaming_body(chunks: usize, size: usize) -> StreamBody<Frames> {
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = (0..chunks)
        .map(|_| Ok(Frame::data(Bytes::from(vec![b'x'; size]))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames))
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_limit_is_sent_exactly_once() {
    // 100 KiB streamed (no size hint): over the 64 KiB replay limit.
    let (inner, log) = stub(|_| status(503));
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy()))
        .service(inner);
    let req = Request::get("/").body(streaming_body(100, 1024)).unwrap();
    let rsp = svc.oneshot(req).await.unwrap();
    assert_eq!((rsp.status().as_u16(), attempts(&rsp)), (503, 1));
    {
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].body.len(), 100 * 1024, "streamed through whole");
    }

    // Known-large body: passed through, never buffered, never retried.
    let (inner, log) = stub::<Full<Bytes>>(|_| status(503));
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy()))
        .service(inner);
    let big = Request::put("/")
        .body(Full::new(Bytes::from(vec![0u8; 70_000])))
        .unwrap();
    let rsp = svc.oneshot(big).await.unwrap();
    assert_eq!(attempts(&rsp), 1);
    assert_eq!(log.lock().unwrap().len(), 1);

    // Under the limit, streamed: replayed.
    let (inner, log) = stub(|n| status(if n == 0 { 503 } else { 200 }));
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy()))
        .service(inner);
    let req = Request::get("/").body(streaming_body(8, 1024)).unwrap();
    let rsp = svc.oneshot(req).await.unwrap();
    assert_eq!(attempts(&rsp), 2);
    let log = log.lock().unwrap();
    assert_eq!(log[1].body, log[0].body);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_respected_within_its_cap() {
    let (inner, log) = stub(|n| {
        let mut rsp = Response::new(String::new());
        if n == 0 {
            *rsp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            rsp.headers_mut()
                .insert("retry-after", "1".parse().unwrap());
        }
        Ok(rsp)
    });
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy()))
        .service(inner);
    let t0 = Instant::now();
    let rsp = svc.oneshot(req(Method::GET, "")).await.unwrap();
    assert_eq!(attempts(&rsp), 2);
    assert_eq!(log.lock().unwrap()[1].at - t0, Duration::from_secs(1));

    // Beyond the cap (1 s): the response is returned as is.
    let (inner, log) = stub(|_| {
        let mut rsp = Response::new(String::new());
        *rsp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        rsp.headers_mut()
            .insert("retry-after", "30".parse().unwrap());
        Ok(rsp)
    });
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy()))
        .service(inner);
    let rsp = svc.oneshot(req(Method::GET, "")).await.unwrap();
    assert_eq!((rsp.status().as_u16(), attempts(&rsp)), (503, 1));
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn client_headers_never_steer_retries() {
    let (inner, log) = stub(|_| status(503));
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy()))
        .service(inner);
    let mut r = req(Method::GET, "");
    for (k, v) in [
        ("retry-after", "0"),
        ("x-envoy-max-retries", "0"),
        ("x-retry", "false"),
        ("idempotency-key", "abc"),
    ] {
        r.headers_mut().insert(k, v.parse().unwrap());
    }
    let rsp = svc.oneshot(r).await.unwrap();
    assert_eq!(attempts(&rsp), 3);
    assert_eq!(log.lock().unwrap().len(), 3);

    // And a client cannot make a POST retried by claiming idempotency.
    let (inner, log) = stub(|_| status(503));
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy()))
        .service(inner);
    let mut r = req(Method::POST, "");
    r.headers_mut()
        .insert("idempotency-key", "abc".parse().unwrap());
    svc.oneshot(r).await.unwrap();
    assert_eq!(log.lock().unwrap().len(), 1);
}

/// Each attempt's target and how many targets it was asked to avoid.
type Tried = Arc<Mutex<Vec<(String, usize)>>>;

/// A balancer over targets a, b and c that all answer `code`, logging every attempt.
#[allow(clippy::type_complexity)] // an `impl Service` cannot be named in a type alias
fn answering_all(
    code: u16,
) -> (
    Balance<
        impl Service<Request<ReplayBody<Full<Bytes>>>, Response = Response<String>, Error = BoxError>
        + Clone
        + 'static,
    >,
    Tried,
) {
    let group = TargetGroup::builder("g")
        .targets(["a", "b", "c"].map(|id| Target::new(id, "127.0.0.1:1").unwrap()))
        .build()
        .unwrap();
    let tried: Tried = Arc::new(Mutex::new(Vec::new()));
    let t = tried.clone();
    let balance = Balance::new(group, move |target: &Target| {
        let id = target.id().to_string();
        let tried = t.clone();
        service_fn(move |req: Request<ReplayBody<Full<Bytes>>>| {
            let avoid = req
                .extensions()
                .get::<AvoidTargets>()
                .map_or(0, |a| a.len());
            tried.lock().unwrap().push((id.clone(), avoid));
            async move { status(code) }
        })
    });
    (balance, tried)
}

#[tokio::test(start_paused = true)]
async fn each_retry_avoids_the_targets_already_tried() {
    let (balance, tried) = answering_all(503);
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy()))
        .service(balance);
    for _ in 0..5 {
        let rsp = svc.clone().oneshot(req(Method::GET, "")).await.unwrap();
        assert_eq!(attempts(&rsp), 3);
        assert!(rsp.extensions().get::<ServedBy>().is_some());
        let mut t = tried.lock().unwrap();
        let distinct: std::collections::HashSet<_> = t.iter().map(|(id, _)| id).collect();
        assert_eq!(distinct.len(), 3, "three attempts, three targets: {t:?}");
        t.clear();
    }
}

/// A retried status the classifier does not count as a failure still names its target: a
/// `429` is an error status, which `Balance` tags anyway; a `299` (a success status some
/// backend uses for trouble) is tagged because the retry layer asks for it.
#[tokio::test(start_paused = true)]
async fn retries_of_non_failure_statuses_avoid_the_target_too() {
    for code in [429, 299] {
        let (balance, tried) = answering_all(code);
        let policy = RetryPolicy::builder()
            .jitter(Jitter::None)
            .statuses([code])
            .build()
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(RetryLayer::new(policy))
            .service(balance);
        for _ in 0..5 {
            let rsp = svc.clone().oneshot(req(Method::GET, "")).await.unwrap();
            assert_eq!(attempts(&rsp), 3);
            let mut t = tried.lock().unwrap();
            let avoided: Vec<usize> = t.iter().map(|(_, a)| *a).collect();
            assert_eq!(
                avoided,
                [0, 1, 2],
                "{code}: each retry avoids one more target: {t:?}"
            );
            let distinct: std::collections::HashSet<_> = t.iter().map(|(id, _)| id).collect();
            assert_eq!(
                distinct.len(),
                3,
                "{code}: three attempts, three targets: {t:?}"
            );
            t.clear();
        }
    }
}

#[tokio::test(start_paused = true)]
async fn errors_from_a_target_are_avoided_too() {
    let group = TargetGroup::builder("g")
        .targets(["a", "b"].map(|id| Target::new(id, "127.0.0.1:1").unwrap()))
        .build()
        .unwrap();
    let (inner, log) = stub::<Full<Bytes>>(|n| {
        if n == 0 {
            Err(ConnectFailed::new(std::io::Error::other("refused")).into())
        } else {
            status(200)
        }
    });
    let balance = Balance::new(group, move |_t: &Target| inner.clone());
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy()))
        .service(balance);
    let rsp = svc.oneshot(req(Method::POST, "x")).await.unwrap();
    assert_eq!(attempts(&rsp), 2);
    assert_eq!(
        log.lock().unwrap()[1].avoid,
        1,
        "the retry carries the failed target"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_storm_stays_within_the_budget() {
    // Every attempt fails. Default budget: 20% of requests + 10 retries/s (over 10 s).
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let inner = service_fn(move |_r: Request<ReplayBody<Full<Bytes>>>| {
        c.fetch_add(1, Ordering::Relaxed);
        async { status(503) }
    });
    let layer = RetryLayer::new(
        RetryPolicy::builder()
            .jitter(Jitter::None)
            .backoff(Duration::ZERO, Duration::from_nanos(1))
            .build()
            .unwrap(),
    );
    let svc = ServiceBuilder::new().layer(layer.clone()).service(inner);
    let t0 = Instant::now();
    let requests = 10_000u32;
    // 50 requests every 50 ms: 10 s of traffic.
    for batch in 0..(requests / 50) {
        for _ in 0..50 {
            svc.clone().oneshot(req(Method::GET, "")).await.unwrap();
        }
        if batch + 1 < requests / 50 {
            tokio::time::advance(Duration::from_millis(50)).await;
        }
    }
    let elapsed = (Instant::now() - t0).as_secs_f64();
    let attempts = calls.load(Ordering::Relaxed) as f64;
    // Slack: the budget starts with a reserve of 10/s × its 10 s window (100 retries), so the
    // bound is requests × 1.2 + 10/s × (elapsed + 10 s).
    let bound = requests as f64 * 1.2 + 10.0 * (elapsed + 10.0);
    let stats = layer.stats();
    eprintln!("storm: {requests} requests, {attempts} attempts, bound {bound}, {elapsed:.2} s");
    assert!(attempts <= bound, "attempts {attempts} > bound {bound}");
    assert!(
        attempts > requests as f64 * 1.1,
        "the budget did allow retries: {attempts}"
    );
    assert!(stats.budget_exhausted > 0);
    assert_eq!(stats.requests as f64 + stats.retries as f64, attempts);
}

#[tokio::test(start_paused = true)]
async fn overall_deadline_covers_retries_and_backoff() {
    // Each attempt takes 40 ms and fails; backoff 25 ms: attempt 2 runs 65..105 ms.
    let (inner, log) = stub(|_| status(503));
    let slow = tower::util::MapFutureLayer::new(|f| async move {
        tokio::time::sleep(Duration::from_millis(40)).await;
        f.await
    })
    .layer(inner);
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_millis(100)))
        .layer(RetryLayer::new(policy()))
        .service(slow);
    let t0 = Instant::now();
    let err = svc.oneshot(req(Method::GET, "")).await.unwrap_err();
    assert!(is_caused_by::<tower::timeout::error::Elapsed>(&*err));
    assert_eq!(Instant::now() - t0, Duration::from_millis(100));
    assert_eq!(
        log.lock().unwrap().len(),
        1,
        "the second attempt was cut off"
    );
}

#[tokio::test(start_paused = true)]
async fn per_attempt_timeout_is_retried_only_when_idempotent() {
    for (method, expect_ok) in [(Method::GET, true), (Method::POST, false)] {
        let n = Arc::new(AtomicU32::new(0));
        let c = n.clone();
        let inner = service_fn(move |_r: Request<ReplayBody<Full<Bytes>>>| {
            let first = c.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                status(200)
            }
        });
        let svc = ServiceBuilder::new()
            .layer(RetryLayer::new(policy()))
            .layer(TimeoutLayer::new(Duration::from_millis(50)))
            .service(inner);
        let res = svc.oneshot(req(method.clone(), "")).await;
        assert_eq!(res.is_ok(), expect_ok, "{method}");
        assert_eq!(n.load(Ordering::SeqCst), if expect_ok { 2 } else { 1 });
    }
}

/// Real loopback backends answering 503 or dropping connections mid-request (after reading
/// it), plus a refused port and a healthy one. Every request gets exactly one outcome, and
/// no POST is received twice.
#[cfg(feature = "hyper")]
#[tokio::test]
async fn fault_test_with_loopback_backends() {
    use std::collections::HashMap;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower_lb::upstream::{ErrorResponseLayer, HttpClient};

    type Seen = Arc<Mutex<HashMap<String, u32>>>;
    let seen: Seen = Arc::default();

    // A raw backend: reads one request head, records its id, then answers 503 or hangs up.
    async fn raw(seen: Seen, answer: bool) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut got = 0;
                    loop {
                        let Ok(n) = s.read(&mut buf[got..]).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        got += n;
                        let text = String::from_utf8_lossy(&buf[..got]).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let id = text[..end]
                                .lines()
                                .find_map(|l| l.strip_prefix("x-id: "))
                                .unwrap_or("?")
                                .to_string();
                            *seen.lock().unwrap().entry(id).or_default() += 1;
                            if answer {
                                let _ = s
                                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                    .await;
                            }
                            return; // drop: hang up
                        }
                    }
                });
            }
        });
        (addr, task)
    }

    let (a503, t1) = raw(seen.clone(), true).await;
    let (adrop, t2) = raw(seen.clone(), false).await;
    let refused = support::refused_addr().await;
    let ok = support::backend("ok").await;
    let group = TargetGroup::builder("faulty")
        .target(Target::new("503", a503.to_string()).unwrap())
        .target(Target::new("drop", adrop.to_string()).unwrap())
        .target(Target::new("refused", refused.to_string()).unwrap())
        .target(Target::new("ok", ok.addr.to_string()).unwrap())
        .build()
        .unwrap();
    let client = HttpClient::<ReplayBody<Full<Bytes>>>::builder()
        .pool_max_idle_per_host(0)
        .build();
    let balance = Balance::with_maker(group, client);
    // Enough attempts to try every target, and a budget that never runs dry, so every small
    // GET must end on the healthy one.
    let policy = RetryPolicy::builder()
        .jitter(Jitter::None)
        .backoff(Duration::from_millis(1), Duration::from_millis(2))
        .max_attempts(4)
        .retry_errors(true)
        .budget(Duration::from_secs(10), 1000, 1000.0)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(ErrorResponseLayer::new())
        .layer(RetryLayer::new(policy))
        .service(balance.clone());

    let n = 80;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let svc = svc.clone();
        // Every fourth request is a GET with a body over the replay limit: never sent twice.
        let big = i % 4 == 3;
        let method = if i % 2 == 0 || big {
            Method::GET
        } else {
            Method::POST
        };
        tasks.spawn(async move {
            let (tag, body) = if big {
                ("BIG", Bytes::from(vec![b'x'; 70 * 1024]))
            } else {
                (method.as_str(), Bytes::from_static(b"data"))
            };
            let r = Request::builder()
                .method(method.clone())
                .uri("/")
                .header("x-id", format!("{tag}-{i}"))
                .body(Full::new(body))
                .unwrap();
            let rsp = svc.oneshot(r).await.unwrap();
            (method, big, rsp.status())
        });
    }
    let outcomes = tokio::time::timeout(Duration::from_secs(20), async {
        let mut v = Vec::new();
        while let Some(r) = tasks.join_next().await {
            v.push(r.unwrap());
        }
        v
    })
    .await
    .expect("every request finishes");
    assert_eq!(outcomes.len(), n, "exactly one outcome per request");
    // Bound: every small GET succeeds (4 attempts cover the 4 targets); a POST or an
    // over-limit GET may fail, but only with a gateway status.
    for (i, (method, big, status)) in outcomes.iter().enumerate() {
        if *method == Method::GET && !big {
            assert_eq!(*status, StatusCode::OK, "small GET {i}");
        }
        assert!(
            *status == StatusCode::OK
                || *status == StatusCode::BAD_GATEWAY
                || *status == StatusCode::SERVICE_UNAVAILABLE,
            "request {i}: {method} {status}"
        );
    }
    let small_gets = outcomes
        .iter()
        .filter(|(m, big, _)| *m == Method::GET && !big)
        .count();
    assert_eq!(small_gets, n / 2);
    let seen = seen.lock().unwrap();
    for (id, count) in seen.iter() {
        if id.starts_with("POST") || id.starts_with("BIG") {
            assert_eq!(*count, 1, "{id} was received {count} times");
        }
    }
    assert!(
        seen.iter().any(|(id, c)| id.starts_with("GET") && *c > 1),
        "idempotent requests were retried across the failing backends"
    );
    // Failures land where they happened: the healthy target counts none.
    let ok_stats = balance
        .group()
        .stats()
        .into_iter()
        .find(|s| s.id().as_str() == "ok")
        .unwrap();
    assert_eq!(ok_stats.failures(), 0);
    t1.abort();
    t2.abort();
}

/// Whole requests received over loopback (head and body as they came), per `x-id`, in arrival
/// order.
#[cfg(feature = "hyper")]
type Arrivals = Arc<Mutex<std::collections::HashMap<String, Vec<Vec<u8>>>>>;

/// Where the request at the start of `buf` ends, once it is all there: its head, then a body
/// by `content-length` or in chunks.
#[cfg(feature = "hyper")]
fn request_end(buf: &[u8]) -> Option<usize> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase();
    if text.contains("transfer-encoding: chunked") {
        let last = buf[head..].windows(5).position(|w| w == b"0\r\n\r\n")?;
        return Some(head + last + 5);
    }
    let len = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
    (buf.len() >= head + len).then_some(head + len)
}

/// A backend that reads one whole request per connection into `seen`, answers `503` the first
/// time an `x-id` is seen and `200` after, and closes the connection.
#[cfg(feature = "hyper")]
async fn flaky_backend(seen: Arrivals) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 64 * 1024];
                // Bounded: a request here is under 1 MiB.
                let end = loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 || buf.len() > 1 << 20 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = request_end(&buf) {
                        break end;
                    }
                };
                let request = buf[..end].to_vec();
                let id = String::from_utf8_lossy(&request)
                    .lines()
                    .find_map(|l| l.strip_prefix("x-id: "))
                    .unwrap_or("?")
                    .to_string();
                let first = {
                    let mut seen = seen.lock().unwrap();
                    let all = seen.entry(id).or_default();
                    all.push(request);
                    all.len() == 1
                };
                let answer: &[u8] = if first {
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                };
                let _ = s.write_all(answer).await;
            });
        }
    });
    addr
}

/// A group of two [`flaky_backend`]s recording into `seen`, so that a retry (which avoids the
/// target that answered `503`) has somewhere to go.
#[cfg(feature = "hyper")]
async fn flaky_group(seen: &Arrivals) -> TargetGroup {
    let (a, b) = (
        flaky_backend(seen.clone()).await,
        flaky_backend(seen.clone()).await,
    );
    TargetGroup::builder("g")
        .target(Target::new("a", a.to_string()).unwrap())
        .target(Target::new("b", b.to_string()).unwrap())
        .build()
        .unwrap()
}

/// The heads (without their blank line) of what `flaky_backend` received, per `x-id`.
#[cfg(feature = "hyper")]
fn heads_of(seen: &Arrivals) -> std::collections::HashMap<String, Vec<String>> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|(id, all)| {
            let heads = all
                .iter()
                .map(|r| {
                    let end = r.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                    String::from_utf8_lossy(&r[..end]).into_owned()
                })
                .collect();
            (id.clone(), heads)
        })
        .collect()
}

/// Over loopback through the target client's own codec, on one thread (so that the head of
/// each request's retry copy is the buffer the request before it left behind): every request
/// a backend first answers with `503` arrives twice with the same head, byte for byte, and
/// with nothing of any other request. Requests differ in their number of header fields, and
/// one carries a field too large for the copy's buffer.
#[cfg(feature = "hyper")]
#[tokio::test(flavor = "current_thread")]
async fn retried_requests_arrive_with_their_own_head_over_loopback() {
    use tower_lb::upstream::TargetClient;

    let seen = Arrivals::default();
    let group = flaky_group(&seen).await;
    // The client's own `Host`, so that both targets get the same bytes.
    let client = TargetClient::<ReplayBody<Full<Bytes>>>::builder()
        .preserve_host(true)
        .build();
    let balance = Balance::with_maker(group, client);
    let policy = RetryPolicy::builder()
        .jitter(Jitter::None)
        .backoff(Duration::from_millis(1), Duration::from_millis(2))
        .budget(Duration::from_secs(10), 1000, 1000.0)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .service(balance);

    let n = 8;
    for i in 0..n {
        let mut req = Request::builder().uri(format!("/r/{i}?q={i}"));
        req = req
            .header("host", "example.test")
            .header("x-id", i.to_string());
        for f in 0..i {
            req = req.header(format!("x-field-{f}"), format!("{i}-{f}"));
        }
        if i == 5 {
            req = req.header("x-large", "L".repeat(2_000));
        }
        let req = req.body(Full::new(Bytes::new())).unwrap();
        let rsp = tokio::time::timeout(Duration::from_secs(10), svc.clone().oneshot(req))
            .await
            .expect("answered")
            .unwrap();
        assert_eq!(rsp.status(), StatusCode::OK, "request {i}");
        assert_eq!(attempts(&rsp), 2, "request {i}");
    }

    let heads = heads_of(&seen);
    assert_eq!(heads.len(), n, "one id per request");
    for i in 0..n {
        let seen = &heads[&i.to_string()];
        assert_eq!(seen.len(), 2, "request {i} arrived twice");
        assert_eq!(
            seen[0], seen[1],
            "request {i}: the retry's head, byte for byte"
        );
        let lines: Vec<&str> = seen[1].lines().collect();
        assert_eq!(lines[0], format!("GET /r/{i}?q={i} HTTP/1.1"));
        let fields = lines.iter().filter(|l| l.starts_with("x-field-")).count();
        assert_eq!(fields, i, "request {i}: its own fields, no other request's");
        for f in 0..i {
            assert!(lines.contains(&format!("x-field-{f}: {i}-{f}").as_str()));
        }
        assert_eq!(
            lines.iter().any(|l| l.starts_with("x-large: ")),
            i == 5,
            "request {i}"
        );
    }
}

/// Bodies, whichever codec writes them (the target client's own for a body of known size up
/// to 64 KiB, hyper's for a larger one or one of unknown size): a retry sends the same bytes
/// with the same framing, counted at the backend over loopback.
#[cfg(feature = "hyper")]
#[tokio::test]
async fn a_retried_body_arrives_with_the_same_bytes_and_framing_over_loopback() {
    use tower_lb::upstream::TargetClient;

    let seen = Arrivals::default();
    let group = flaky_group(&seen).await;
    type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;
    let client = TargetClient::<ReplayBody<Body>>::builder()
        .preserve_host(true)
        .build();
    let policy = RetryPolicy::builder()
        .jitter(Jitter::None)
        .backoff(Duration::from_millis(1), Duration::from_millis(2))
        .budget(Duration::from_secs(10), 1000, 1000.0)
        // Room to replay the large body too.
        .body_limit(128 * 1024)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .service(Balance::with_maker(group, client));

    let large = vec![b'L'; 70 * 1024];
    let cases: Vec<(&str, Body, &[u8], &str)> = vec![
        (
            "small",
            Full::new(Bytes::from_static(b"hello world")).boxed_unsync(),
            b"hello world",
            "content-length: 11",
        ),
        ("empty", Full::new(Bytes::new()).boxed_unsync(), b"", ""),
        (
            "large",
            Full::new(Bytes::from(large.clone())).boxed_unsync(),
            &large,
            "content-length: 71680",
        ),
        (
            "streamed",
            StreamBody::new(futures_util::stream::iter(
                [&b"abc"[..], b"defg"].map(|c| Ok(Frame::data(Bytes::from_static(c)))),
            ))
            .boxed_unsync(),
            b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
            "transfer-encoding: chunked",
        ),
    ];
    let mut expected = Vec::new();
    for (id, body, wire, framing) in cases {
        let req = Request::put(format!("/up/{id}"))
            .header("host", "example.test")
            .header("x-id", id)
            .body(body)
            .unwrap();
        let rsp = tokio::time::timeout(Duration::from_secs(10), svc.clone().oneshot(req))
            .await
            .expect("answered")
            .unwrap();
        assert_eq!(rsp.status(), StatusCode::OK, "{id}");
        assert_eq!(attempts(&rsp), 2, "{id}");
        expected.push((id, wire.to_vec(), framing));
    }
    let seen = seen.lock().unwrap();
    for (id, wire, framing) in expected {
        let all = &seen[id];
        assert_eq!(all.len(), 2, "{id} arrived twice");
        assert_eq!(all[0], all[1], "{id}: the retry's bytes, byte for byte");
        let head_end = all[1].windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&all[1][..head_end]).to_ascii_lowercase();
        assert!(
            head.starts_with(&format!("put /up/{id} http/1.1\r\n")),
            "{head}"
        );
        assert!(head.contains(framing), "{id}: {head}");
        assert_eq!(&all[1][head_end..], &wire[..], "{id}: the body");
    }
}

#[test]
fn layers_are_clone_send_sync() {
    fn check<T: Clone + Send + Sync>(_: &T) {}
    check(&RetryLayer::new(policy()));
    let (inner, _) = stub::<Full<Bytes>>(|_| status(200));
    check(
        &ServiceBuilder::new()
            .layer(RetryLayer::new(policy()))
            .service(inner),
    );
}

/// The retry's copy keeps the headers outside a `HeaderMap` until a retry is granted: every
/// attempt still gets the same head (method, URI, every header value in order, extensions).
#[tokio::test(start_paused = true)]
async fn every_attempt_gets_the_same_head() {
    type Head = (Method, http::Uri, Vec<(String, String)>, Option<u32>);
    let seen: Arc<Mutex<Vec<Head>>> = Arc::default();
    let log = seen.clone();
    let inner = service_fn(move |r: Request<ReplayBody<Full<Bytes>>>| {
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        let ext = r.extensions().get::<u32>().copied();
        let mut log = log.lock().unwrap();
        log.push((r.method().clone(), r.uri().clone(), headers, ext));
        let n = log.len();
        async move { status(if n < 3 { 503 } else { 200 }) }
    });
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy()))
        .service(inner);
    let mut request = Request::builder()
        .method(Method::PUT)
        .uri("/a?b=c")
        .header("x-one", "1")
        .header("accept", "text/plain")
        .header("accept", "text/html")
        .header("x-two", "2")
        .body(Full::new(Bytes::from_static(b"body")))
        .unwrap();
    request.extensions_mut().insert(7u32);
    let rsp = svc.oneshot(request).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(attempts(&rsp), 3);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    let expected: Vec<(String, String)> = [
        ("x-one", "1"),
        ("accept", "text/plain"),
        ("accept", "text/html"),
        ("x-two", "2"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (i, (method, uri, headers, ext)) in seen.iter().enumerate() {
        assert_eq!(method, Method::PUT, "attempt {i}");
        assert_eq!(uri, "/a?b=c", "attempt {i}");
        assert_eq!(headers, &expected, "attempt {i}");
        assert_eq!(*ext, Some(7), "attempt {i}");
    }
}

/// A request whose extensions are only the client's address (the server's) and the retry's
/// own mark: the copy keeps them as values, and every attempt gets them back, nothing else.
#[tokio::test(start_paused = true)]
async fn every_attempt_gets_the_client_address_and_the_mark_back() {
    use tower_lb::balance::WantServedBy;
    use tower_lb::key::ClientAddr;
    type Seen = (Option<ClientAddr>, bool, usize);
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    let inner = service_fn(move |r: Request<ReplayBody<Full<Bytes>>>| {
        let ext = r.extensions();
        let mut log = log.lock().unwrap();
        log.push((
            ext.get::<ClientAddr>().copied(),
            ext.get::<WantServedBy>().is_some(),
            ext.len(),
        ));
        let n = log.len();
        async move { status(if n < 3 { 307 } else { 200 }) }
    });
    // A status below 400 among those retried: the layer marks its requests.
    let policy = RetryPolicy::builder()
        .statuses([307])
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .service(inner);
    let addr = ClientAddr("192.0.2.7:4711".parse().unwrap());
    let mut request = req(Method::GET, "");
    request.extensions_mut().insert(addr);
    let rsp = svc.oneshot(request).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(attempts(&rsp), 3);
    let seen = seen.lock().unwrap();
    assert_eq!(*seen, vec![(Some(addr), true, 2); 3]);
}

/// Driven by tower's own `Retry` (through the `Policy` interface), a retry goes out with the
/// first attempt's header lines and extensions, and nothing the policy kept on the way is
/// visible to the service.
#[tokio::test(start_paused = true)]
async fn towers_retry_with_the_policy_resends_the_same_head() {
    #[derive(Clone, Debug, PartialEq)]
    struct Tag(u32);
    type Head = (http::HeaderMap, usize, Option<Tag>);
    let heads: Arc<Mutex<Vec<Head>>> = Arc::default();
    let seen = heads.clone();
    let inner = service_fn(move |req: Request<ReplayBody<Full<Bytes>>>| {
        let mut heads = seen.lock().unwrap();
        heads.push((
            req.headers().clone(),
            req.extensions().len(),
            req.extensions().get::<Tag>().cloned(),
        ));
        let code = if heads.len() == 1 { 503 } else { 200 };
        std::future::ready(status(code))
    });
    let mut svc = tower::retry::Retry::new(policy(), inner);
    let mut request = Request::get("/x")
        .header("x-dup", "one")
        .header("x-dup", "two")
        .header("host", "example.com")
        .body(ReplayBody::new(Full::new(Bytes::from_static(b"hi")), 1024))
        .unwrap();
    request.extensions_mut().insert(Tag(7));
    let rsp = svc.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 2);
    assert_eq!(
        heads[0], heads[1],
        "the retry's head is the first attempt's"
    );
    assert_eq!(heads[1].1, 1, "only the caller's extension");
    assert_eq!(heads[1].2, Some(Tag(7)));
    let dup: Vec<_> = heads[1].0.get_all("x-dup").iter().collect();
    assert_eq!(dup, ["one", "two"]);
}

/// Wrapping the server's request body for replay does not grow it: every layer below the
/// retry moves and keeps the request (and the target client boxes its send future, which a
/// larger body pushed past the allocator's per-thread cache).
#[cfg(feature = "server")]
#[test]
fn a_replay_body_is_as_large_as_the_request_body_it_wraps() {
    use std::mem::size_of;
    use tower_lb::server::RequestBody;
    assert_eq!(
        size_of::<ReplayBody<RequestBody>>(),
        size_of::<RequestBody>()
    );
    assert_eq!(
        size_of::<Request<ReplayBody<RequestBody>>>(),
        size_of::<Request<RequestBody>>()
    );
}

/// The resilience stack of `examples/proxy.rs` over the target client: each layer's future
/// holds the one below it, and every future is moved when it is built and again as the layers
/// above build theirs. What a layer adds must stay small: the head of the retry's copy is in a
/// buffer reused across requests and its timers are boxed or shared, and no layer holds a
/// request (or a response) inline, which would be copied through every layer above on every
/// request.
#[cfg(feature = "server")]
#[test]
fn the_resilience_layers_futures_hold_no_request() {
    use std::mem::size_of;
    use tower_lb::breaker::CircuitBreaker;
    use tower_lb::retry::Retry;
    use tower_lb::server::RequestBody;
    use tower_lb::timeout::Timeout;
    use tower_lb::upstream::TargetService;

    type Attempt = Request<ReplayBody<RequestBody>>;
    type Req = Request<RequestBody>;
    type Client = Balance<TargetService<ReplayBody<RequestBody>>>;
    type PerTry = Timeout<Client>;
    type Breaker = CircuitBreaker<PerTry>;
    type Retried = Retry<Breaker>;
    type Overall = Timeout<Retried>;
    let balance = size_of::<<Client as Service<Attempt>>::Future>();
    let per_try = size_of::<<PerTry as Service<Attempt>>::Future>();
    let breaker = size_of::<<Breaker as Service<Attempt>>::Future>();
    let retry = size_of::<<Retried as Service<Req>>::Future>();
    let overall = size_of::<<Overall as Service<Req>>::Future>();
    let req = size_of::<Req>();
    let sleep = size_of::<tokio::time::Sleep>();
    let word = size_of::<usize>();
    // (layer, bytes it adds, the most it may add)
    let added = [
        ("per-try Timeout", per_try - balance, sleep + 6 * word),
        ("CircuitBreaker", breaker - per_try, 6 * word),
        // The retry's own few words: the service a retry goes through, the policy's
        // session, the replay of the body, and pointers to the head of its copy and to a
        // request waiting for its backoff.
        (
            "Retry",
            retry - breaker,
            size_of::<Breaker>()
                + size_of::<RetryPolicy>()
                + size_of::<ReplayBody<RequestBody>>()
                + 4 * word,
        ),
        ("overall Timeout", overall - retry, sleep + 6 * word),
    ];
    for (layer, adds, most) in added {
        assert!(
            adds <= most && adds < req,
            "{layer} adds {adds} bytes to its inner future (at most {most}; a request is {req})"
        );
    }
}
