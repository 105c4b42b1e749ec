//! Integration tests for rate limits and in-flight limits, on paused time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_lb::breaker::{BreakerState, CircuitBreakerLayer};
use tower_lb::error::{BoxError, is_caused_by};
use tower_lb::limit::error::{Overloaded, RateLimited};
use tower_lb::limit::{ClientAddr, InFlightLimitLayer, LimitKey, RateLimitLayer};
use tower_lb::upstream::{ErrorResponseLayer, error_response};
use tower_test::mock;

fn ok_svc() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
    service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(())) })
}

fn from(ip: &str) -> Request<()> {
    let mut r = Request::new(());
    let addr: SocketAddr = format!("{ip}:40000")
        .parse()
        .or_else(|_| format!("[{ip}]:40000").parse())
        .unwrap();
    r.extensions_mut().insert(ClientAddr(addr));
    r
}

/// Calls `svc` and reports whether the request passed the limit.
async fn passes<S>(svc: &mut S, req: Request<()>) -> bool
where
    S: Service<Request<()>, Response = Response<()>, Error = BoxError>,
{
    match svc.ready().await.unwrap().call(req).await {
        Ok(_) => true,
        Err(e) => {
            assert!(is_caused_by::<RateLimited>(&*e), "{e}");
            false
        }
    }
}

#[tokio::test(start_paused = true)]
async fn nginx_rate_10rs_burst_20_nodelay() {
    let layer = RateLimitLayer::builder(LimitKey::client_ip())
        .rate(10, Duration::from_secs(1))
        .burst(20)
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_svc());
    // 21 at once (the steady one + a burst of 20), then refused.
    for i in 0..21 {
        assert!(passes(&mut svc, from("192.0.2.1")).await, "request {i}");
    }
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(from("192.0.2.1"))
        .await
        .unwrap_err();
    let limited = tower_lb::error::find_cause::<RateLimited>(&*err).unwrap();
    assert_eq!(limited.retry_after(), Duration::from_millis(100));
    let rsp = error_response::<()>(&*err);
    assert_eq!(rsp.status(), 429);
    assert_eq!(rsp.headers()["retry-after"], "1");

    // Another client is unaffected.
    assert!(passes(&mut svc, from("192.0.2.2")).await);

    // One slot per 100 ms comes back.
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(passes(&mut svc, from("192.0.2.1")).await);
    assert!(!passes(&mut svc, from("192.0.2.1")).await);
    // After a second: 10 more.
    tokio::time::advance(Duration::from_secs(1)).await;
    let passed = {
        let mut n = 0;
        for _ in 0..15 {
            n += passes(&mut svc, from("192.0.2.1")).await as u32;
        }
        n
    };
    assert_eq!(passed, 10);
}

#[tokio::test(start_paused = true)]
async fn ipv6_clients_are_grouped_by_64() {
    let layer = RateLimitLayer::builder(LimitKey::client_ip())
        .rate(1, Duration::from_secs(60))
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_svc());
    assert!(passes(&mut svc, from("2001:db8:0:1::1")).await);
    assert!(
        !passes(&mut svc, from("2001:db8:0:1:ffff::2")).await,
        "same /64"
    );
    assert!(
        passes(&mut svc, from("2001:db8:0:2::1")).await,
        "another /64"
    );
    // No client address: one shared bucket for all such requests.
    assert!(passes(&mut svc, Request::new(())).await);
    assert!(!passes(&mut svc, Request::new(())).await);
}

#[tokio::test(start_paused = true)]
async fn header_and_closure_keys() {
    let layer =
        RateLimitLayer::builder(LimitKey::header(http::HeaderName::from_static("x-api-key")))
            .rate(1, Duration::from_secs(60))
            .build()
            .unwrap();
    let mut svc = layer.layer(ok_svc());
    let keyed = |k: &str| {
        let mut r = Request::new(());
        r.headers_mut().insert("x-api-key", k.parse().unwrap());
        r
    };
    assert!(passes(&mut svc, keyed("a")).await);
    assert!(!passes(&mut svc, keyed("a")).await);
    assert!(passes(&mut svc, keyed("b")).await);

    let layer = RateLimitLayer::builder(LimitKey::custom(|h| Some(h.uri().path().len() as u64)))
        .rate(1, Duration::from_secs(60))
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_svc());
    let path = |p: &str| Request::get(p).body(()).unwrap();
    assert!(passes(&mut svc, path("/ab")).await);
    assert!(!passes(&mut svc, path("/cd")).await, "same closure key");
    assert!(passes(&mut svc, path("/abc")).await);
}

#[tokio::test(start_paused = true)]
async fn a_million_keys_stay_within_max_keys() {
    const MAX: usize = 10_000;
    let layer = RateLimitLayer::builder(LimitKey::custom({
        let n = AtomicU64::new(0);
        move |_| Some(n.fetch_add(1, Ordering::Relaxed))
    }))
    .rate(1, Duration::from_secs(1))
    .max_keys(MAX)
    .sweep_every(Duration::from_secs(10))
    .build()
    .unwrap();
    let mut svc = layer.layer(ok_svc());
    for i in 0..1_000_000u32 {
        // The decision is taken in `call`; the future need not run.
        drop(svc.call(Request::new(())));
        if i % 50_000 == 0 {
            assert!(layer.stored_keys() <= MAX);
            tokio::time::advance(Duration::from_secs(1)).await;
        }
    }
    assert!(layer.stored_keys() <= MAX, "{}", layer.stored_keys());
    assert!(
        layer.stored_keys() > MAX / 2,
        "the store is used: {}",
        layer.stored_keys()
    );
    // Every key has gone stale: a sweep empties the store.
    tokio::time::advance(Duration::from_secs(5)).await;
    layer.sweep();
    assert_eq!(layer.stored_keys(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_key_flood_shares_the_overflow_and_cannot_reset_known_keys() {
    let layer = RateLimitLayer::builder(LimitKey::client_ip())
        .rate(1, Duration::from_secs(60))
        .max_keys(16)
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_svc());
    assert!(passes(&mut svc, from("198.51.100.1")).await);
    let mut passed = 0;
    for i in 0..1000u32 {
        let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        passed += passes(&mut svc, from(&ip)).await as u32;
    }
    assert!(layer.stored_keys() <= 16);
    // At most one new key per free slot plus one per overflow cell (16 shards).
    assert!(passed <= 32, "{passed} flood requests passed");
    assert!(
        !passes(&mut svc, from("198.51.100.1")).await,
        "known key keeps its state"
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limited_becomes_429_and_never_trips_the_breaker() {
    let breaker = CircuitBreakerLayer::builder("g")
        .min_requests(2)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(ErrorResponseLayer::new())
        .layer(breaker.clone())
        .layer(
            RateLimitLayer::builder(LimitKey::global())
                .rate(1, Duration::from_secs(1))
                .build()
                .unwrap(),
        )
        .service(ok_svc());
    let mut statuses = Vec::new();
    for _ in 0..50 {
        let rsp = svc.clone().oneshot(Request::new(())).await.unwrap();
        statuses.push(rsp.status().as_u16());
    }
    assert_eq!(statuses[0], 200);
    assert!(statuses[1..].iter().all(|s| *s == 429));
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_global_limit_decides_as_a_keyed_limit_with_one_key() {
    // The global key takes governor's direct (one-atomic) limiter; any other key the keyed
    // store. Same quota, same schedule: the same answers and the same Retry-After.
    let build = |key: LimitKey| {
        RateLimitLayer::builder(key)
            .rate(10, Duration::from_secs(1))
            .burst(3)
            .build()
            .unwrap()
            .layer(ok_svc())
    };
    let mut global = build(LimitKey::global());
    let mut keyed = build(LimitKey::custom(|_| Some(7)));
    let mut answers = Vec::new();
    // Gaps in ms between requests: a burst, a pause, then a steady trickle and another burst.
    let gaps = [
        0, 0, 0, 0, 0, 0, 250, 0, 0, 0, 50, 50, 100, 100, 0, 0, 0, 0, 1000, 0, 0, 0, 0, 0,
    ];
    for gap in gaps {
        tokio::time::advance(Duration::from_millis(gap)).await;
        let mut pair = Vec::new();
        for svc in [&mut global, &mut keyed] {
            let res = svc.ready().await.unwrap().call(Request::new(())).await;
            pair.push(match res {
                Ok(_) => None,
                Err(e) => {
                    let limited = tower_lb::error::find_cause::<RateLimited>(&*e).unwrap();
                    Some(limited.retry_after())
                }
            });
        }
        assert_eq!(pair[0], pair[1], "after a {gap} ms gap");
        answers.push(pair[0]);
    }
    let refused = answers.iter().filter(|a| a.is_some()).count();
    assert!(refused > 5 && refused < answers.len() - 5, "{answers:?}");
}

#[tokio::test(start_paused = true)]
async fn in_flight_limit_sheds_with_503_and_recovers() {
    let (mock, mut handle) = mock::pair::<Request<()>, Response<()>>();
    let layer = InFlightLimitLayer::new(2);
    let mut svc = layer.layer(mock);
    let a = svc.ready().await.unwrap().call(Request::new(()));
    let b = svc.ready().await.unwrap().call(Request::new(()));
    assert_eq!(layer.in_flight(), 2);
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap_err();
    assert!(is_caused_by::<Overloaded>(&*err));
    assert_eq!(error_response::<()>(&*err).status(), 503);

    // A dropped (cancelled) request frees its slot; a finished one too.
    drop(a);
    assert_eq!(layer.in_flight(), 1);
    let c = svc.ready().await.unwrap().call(Request::new(()));
    // The mock got a (cancelled), b and c.
    for _ in 0..3 {
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(Response::new(()));
    }
    b.await.unwrap();
    c.await.unwrap();
    assert_eq!(layer.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn per_key_in_flight_limit() {
    let (mock, _handle) = mock::pair::<Request<()>, Response<()>>();
    let layer = InFlightLimitLayer::builder()
        .per_key(LimitKey::client_ip(), 1)
        .max_keys(2)
        .build()
        .unwrap();
    let mut svc = layer.layer(mock);
    let a1 = svc.ready().await.unwrap().call(from("192.0.2.1"));
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(from("192.0.2.1"))
        .await
        .unwrap_err();
    assert!(
        tower_lb::error::find_cause::<Overloaded>(&*err)
            .unwrap()
            .is_per_key()
    );
    let b1 = svc.ready().await.unwrap().call(from("192.0.2.2"));
    assert_eq!(layer.tracked_keys(), 2);
    // The key map is full: a third client is shed (bounded memory), known ones are not.
    let mut c1 = svc.ready().await.unwrap().call(from("192.0.2.3"));
    assert!(matches!((&mut c1).now_or_never(), Some(Err(_))));
    drop((a1, b1));
    assert_eq!(layer.tracked_keys(), 0);
    assert_eq!(layer.in_flight(), 0);
}

type Chunk = Result<Frame<Bytes>, &'static str>;

/// The frames of one streaming response, as the test sends them.
#[derive(Debug)]
struct Chunks(mpsc::Receiver<Chunk>);

impl futures_core::Stream for Chunks {
    type Item = Chunk;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Chunk>> {
        self.0.poll_recv(cx)
    }
}

type Streamed = Response<StreamBody<Chunks>>;
/// The senders of the responses' frames, one per call, in call order.
type Senders = mpsc::UnboundedReceiver<mpsc::Sender<Chunk>>;

/// A service whose response bodies stream: each body is fed by a channel whose sender is
/// handed to the test (one per call, in call order), like a download or an event stream.
fn streaming() -> (
    impl Service<Request<()>, Response = Streamed, Error = Infallible> + Clone,
    Senders,
) {
    let (senders, rx) = mpsc::unbounded_channel();
    let svc = service_fn(move |_r: Request<()>| {
        let (tx, chunks) = mpsc::channel::<Chunk>(4);
        let _ = senders.send(tx);
        async move { Ok::<_, Infallible>(Response::new(StreamBody::new(Chunks(chunks)))) }
    });
    (svc, rx)
}

/// Every wait in these tests is bounded: on paused time a hang turns into a failure at once.
async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("no progress within 5 s")
}

/// How the first response's body finishes.
#[derive(Clone, Copy, Debug)]
enum Finish {
    /// Read to its end.
    Ended,
    /// Dropped unread.
    Dropped,
    /// Broken off with an error.
    Failed,
}

/// With a limit of one (group-wide, or for `req`'s key), a second request is shed while the
/// first response's body is still open, and admitted once that body has finished.
/// `other`: a request of another key, admitted even while the first body is open.
async fn streaming_body_holds_its_place(
    layer: InFlightLimitLayer,
    req: fn() -> Request<()>,
    other: Option<fn() -> Request<()>>,
    finish: Finish,
) {
    let (inner, mut senders) = streaming();
    let mut svc = layer.layer(inner);
    let rsp = within(svc.ready().await.unwrap().call(req()))
        .await
        .unwrap();
    let tx = senders.try_recv().unwrap();
    let mut body = rsp.into_body();
    tx.send(Ok(Frame::data(Bytes::from_static(b"data: 1\n\n"))))
        .await
        .unwrap();
    let frame = within(body.frame()).await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "data: 1\n\n");

    // The head and a first frame are out, the body is still open: the request still counts.
    assert_eq!(layer.in_flight(), 1, "{finish:?}");
    let err = within(svc.ready().await.unwrap().call(req()))
        .await
        .unwrap_err();
    assert!(is_caused_by::<Overloaded>(&*err), "{finish:?}: {err}");
    assert!(
        senders.try_recv().is_err(),
        "a shed request reaches nothing"
    );
    if let Some(other) = other {
        let rsp = within(svc.ready().await.unwrap().call(other()))
            .await
            .unwrap();
        assert_eq!(layer.in_flight(), 2);
        assert_eq!(layer.tracked_keys(), 2);
        drop(rsp);
        drop(senders.try_recv().unwrap());
        assert_eq!(layer.in_flight(), 1);
    }

    match finish {
        Finish::Ended => {
            drop(tx);
            assert!(within(body.frame()).await.is_none(), "the body has ended");
        }
        Finish::Dropped => drop(body),
        Finish::Failed => {
            tx.send(Err("reset")).await.unwrap();
            assert!(within(body.frame()).await.unwrap().is_err());
        }
    }
    // Released by the end of the body (which, when ended or failed, is still alive here).
    assert_eq!(layer.in_flight(), 0, "{finish:?}");
    assert_eq!(layer.tracked_keys(), 0, "{finish:?}");
    let rsp = within(svc.ready().await.unwrap().call(req()))
        .await
        .unwrap();
    assert_eq!(layer.in_flight(), 1, "{finish:?}: admitted again");
    drop(rsp);
    assert_eq!(layer.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn group_limit_holds_until_the_body_ends() {
    for finish in [Finish::Ended, Finish::Dropped, Finish::Failed] {
        let layer = InFlightLimitLayer::new(1);
        streaming_body_holds_its_place(layer, || Request::new(()), None, finish).await;
    }
}

#[tokio::test(start_paused = true)]
async fn per_key_limit_holds_until_the_body_ends() {
    for finish in [Finish::Ended, Finish::Dropped, Finish::Failed] {
        let layer = InFlightLimitLayer::builder()
            .per_key(LimitKey::client_ip(), 1)
            .build()
            .unwrap();
        streaming_body_holds_its_place(
            layer,
            || from("192.0.2.1"),
            Some(|| from("192.0.2.2")),
            finish,
        )
        .await;
    }
}

/// Over a `Balance`, both counts (the limit's and the target's) last until the body ends.
#[tokio::test(start_paused = true)]
async fn limit_over_balance_counts_the_body_in_both() {
    use tower_lb::balance::Balance;
    use tower_lb::{Target, TargetGroup};
    let group = TargetGroup::builder("g")
        .target(Target::new("a", "127.0.0.1:1").unwrap())
        .build()
        .unwrap();
    let (inner, mut senders) = streaming();
    let layer = InFlightLimitLayer::new(1);
    let mut svc = layer.layer(Balance::new(group.clone(), move |_t: &Target| {
        inner.clone()
    }));
    let rsp = within(svc.ready().await.unwrap().call(Request::new(())))
        .await
        .unwrap();
    let tx = within(senders.recv()).await.unwrap();
    assert_eq!((layer.in_flight(), group.stats()[0].in_flight()), (1, 1));
    let err = within(svc.ready().await.unwrap().call(Request::new(())))
        .await
        .unwrap_err();
    assert!(is_caused_by::<Overloaded>(&*err), "{err}");
    tx.send(Ok(Frame::data(Bytes::from_static(b"last"))))
        .await
        .unwrap();
    drop(tx);
    let body = within(rsp.into_body().collect()).await.unwrap().to_bytes();
    assert_eq!(body, "last");
    assert_eq!((layer.in_flight(), group.stats()[0].in_flight()), (0, 0));
}

#[test]
fn limits_are_clone_send_sync() {
    fn check<T: Clone + Send + Sync>(_: &T) {}
    let rate = RateLimitLayer::builder(LimitKey::client_ip())
        .build()
        .unwrap();
    check(&rate);
    check(&rate.layer(ok_svc()));
    let conc = InFlightLimitLayer::new(1);
    check(&conc);
    check(&conc.layer(ok_svc()));
    fn body<T: Send + Sync + Unpin>() {}
    body::<tower_lb::limit::body::InFlightBody<http_body_util::Full<Bytes>>>();
}

#[test]
fn invalid_limits_are_typed_errors() {
    for b in [
        RateLimitLayer::builder(LimitKey::global()).rate(0, Duration::from_secs(1)),
        RateLimitLayer::builder(LimitKey::global()).rate(1, Duration::ZERO),
        RateLimitLayer::builder(LimitKey::global()).rate(u32::MAX, Duration::from_nanos(1)),
        RateLimitLayer::builder(LimitKey::global()).burst(u32::MAX),
        RateLimitLayer::builder(LimitKey::global()).max_keys(0),
    ] {
        assert!(b.build().is_err());
    }
    let _ = Arc::new(());
}

#[tokio::test(start_paused = true)]
async fn layers_compose_in_any_order() {
    use tower_lb::retry::{ReplayBody, RetryLayer, RetryPolicy};
    let inner = || {
        service_fn(|_r: Request<ReplayBody<String>>| async {
            Ok::<_, BoxError>(Response::new(String::new()))
        })
    };
    let rate = || {
        RateLimitLayer::builder(LimitKey::global())
            .rate(100, Duration::from_secs(1))
            .build()
            .unwrap()
    };
    // The recommended order…
    let a = ServiceBuilder::new()
        .layer(ErrorResponseLayer::new())
        .layer(rate())
        .layer(RetryLayer::new(RetryPolicy::new()))
        .layer(CircuitBreakerLayer::new("a"))
        .layer(InFlightLimitLayer::new(10))
        .service(inner());
    // …and the reverse of it.
    let b = ServiceBuilder::new()
        .layer(ErrorResponseLayer::new())
        .layer(InFlightLimitLayer::new(10))
        .layer(CircuitBreakerLayer::new("b"))
        .layer(RetryLayer::new(RetryPolicy::new()))
        .layer(rate())
        .service(inner());
    fn check<T: Clone + Send + Sync>(_: &T) {}
    check(&a);
    check(&b);
    assert_eq!(
        a.oneshot(Request::new(String::new()))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        b.oneshot(Request::new(String::new()))
            .await
            .unwrap()
            .status(),
        200
    );
}

/// One instance of the limiter (as a connection keeps one) serving clients that alternate
/// (a connection from a trusted proxy carries many): each request counts against its own
/// client's key, never against the key of the client before it.
#[tokio::test(start_paused = true)]
async fn one_instance_alternating_clients_keeps_their_keys_apart() {
    let layer = RateLimitLayer::builder(LimitKey::client_ip())
        .rate(1, Duration::from_secs(60))
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_svc());
    assert!(passes(&mut svc, from("192.0.2.1")).await);
    assert!(passes(&mut svc, from("192.0.2.2")).await, "a new client");
    assert!(!passes(&mut svc, from("192.0.2.1")).await, "its own bucket");
    assert!(!passes(&mut svc, from("192.0.2.2")).await);
    assert!(passes(&mut svc, from("2001:db8::1")).await, "a new client");
    assert!(!passes(&mut svc, from("2001:db8::1")).await);
    // The instance's clone (the server clones the stack per HTTP/2 request) too.
    let mut clone = svc.clone();
    assert!(passes(&mut clone, from("192.0.2.3")).await);
    assert!(!passes(&mut clone, from("192.0.2.2")).await);
}
