//! Integration tests for `Balance`: tower-test mocks, real loopback backends, churn.

#[path = "../support/mod.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_lb::algorithm::{LeastConnections, RoundRobin, SmoothWeightedRoundRobin, WeightedRandom};
use tower_lb::balance::error::{AttemptFailed, NoAvailableTarget};
use tower_lb::balance::{AvoidTargets, Balance, BalanceLayer, ServedBy, WantServedBy};
use tower_lb::classify::{Classify, DefaultClassifier, FailureKind, Outcome};
use tower_lb::discover::{self, Change};
use tower_lb::error::find_cause;
use tower_lb::error::is_caused_by;
use tower_lb::upstream::{ErrorResponseLayer, HttpClient};
use tower_lb::{Target, TargetGroup, target::AdminState};
use tower_test::mock;

type Mock = mock::Mock<Request<&'static str>, Response<String>>;
type Handle = mock::Handle<Request<&'static str>, Response<String>>;

fn target(id: &str) -> Target {
    Target::new(id, "127.0.0.1:1").unwrap()
}

/// A balancer whose targets are tower-test mocks, one per id.
fn mocked(group: TargetGroup, ids: &[&str]) -> (Balance<Mock>, HashMap<String, Handle>) {
    let mut mocks = HashMap::new();
    let mut handles = HashMap::new();
    for id in ids {
        let (m, h) = mock::pair();
        mocks.insert(id.to_string(), m);
        handles.insert(id.to_string(), h);
    }
    let balance =
        Balance::new(group, move |t: &Target| mocks[t.id().as_str()].clone()).served_by(true);
    (balance, handles)
}

/// A balancer whose targets answer at once with their own id.
fn echo(
    group: TargetGroup,
) -> Balance<impl Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone> {
    Balance::new(group, |t: &Target| {
        let id = t.id().to_string();
        service_fn(move |_r: Request<()>| {
            let id = id.clone();
            async move { Ok::<_, Infallible>(Response::new(id)) }
        })
    })
    .served_by(true)
}

fn served(rsp: &Response<impl Sized>) -> String {
    rsp.extensions()
        .get::<ServedBy>()
        .expect("served-by")
        .target()
        .to_string()
}

async fn pick<S>(b: &Balance<S>) -> Result<String, tower_lb::BoxError>
where
    S: Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone + 'static,
{
    b.clone()
        .oneshot(Request::new(()))
        .await
        .map(|r| served(&r))
}

#[tokio::test(start_paused = true)]
async fn mock_target_receives_request_and_response_is_tagged() {
    let group = TargetGroup::builder("g")
        .target(target("a"))
        .build()
        .unwrap();
    let (balance, mut handles) = mocked(group.clone(), &["a"]);
    let h = handles.get_mut("a").unwrap();
    h.allow(1);
    let fut = tokio::spawn(balance.oneshot(Request::new("hello")));
    let (req, send) = h.next_request().await.unwrap();
    assert_eq!(*req.body(), "hello");
    assert_eq!(group.stats()[0].in_flight(), 1);
    send.send_response(Response::new("world".to_string()));
    let rsp = fut.await.unwrap().unwrap();
    assert_eq!(rsp.extensions().get::<ServedBy>().unwrap().group(), "g");
    assert_eq!(served(&rsp), "a");
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "world");
    assert_eq!(group.stats()[0].in_flight(), 0);
    assert_eq!(group.stats()[0].requests(), 1);
}

#[tokio::test(start_paused = true)]
async fn target_readiness_is_awaited_inside_the_future() {
    let group = TargetGroup::builder("g")
        .target(target("a"))
        .build()
        .unwrap();
    let (balance, mut handles) = mocked(group.clone(), &["a"]);
    let h = handles.get_mut("a").unwrap();
    h.allow(0);
    let mut fut = tokio_test::task::spawn(balance.oneshot(Request::new("x")));
    assert!(fut.poll().is_pending());
    // Waiting for readiness counts as load.
    assert_eq!(group.stats()[0].in_flight(), 1);
    h.allow(1);
    assert!(fut.poll().is_pending());
    let (_req, send) = h.next_request().await.unwrap();
    send.send_response(Response::new(String::new()));
    assert!(fut.await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn in_flight_lasts_until_the_body_ends() {
    let group = TargetGroup::builder("g")
        .target(target("a"))
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, Infallible>>(4);
    let rx = Arc::new(Mutex::new(Some(rx)));
    let balance = Balance::new(group.clone(), move |_t: &Target| {
        let rx = rx.clone();
        service_fn(move |_r: Request<()>| {
            let rx = rx.lock().unwrap().take().expect("one request");
            async move {
                let stream = tokio_stream_from(rx);
                Ok::<_, Infallible>(Response::new(StreamBody::new(stream)))
            }
        })
    });
    let rsp = balance.oneshot(Request::new(())).await.unwrap();
    assert_eq!(
        group.stats()[0].in_flight(),
        1,
        "head received, body still streaming"
    );
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"part"))))
        .await
        .unwrap();
    drop(tx);
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "part");
    assert_eq!(group.stats()[0].in_flight(), 0);
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_core::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(start_paused = true)]
async fn dropping_a_response_releases_in_flight() {
    let group = TargetGroup::builder("g")
        .target(target("a"))
        .build()
        .unwrap();
    let balance = echo(group.clone());
    let rsp = balance.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(group.stats()[0].in_flight(), 1);
    drop(rsp);
    assert_eq!(group.stats()[0].in_flight(), 0);
    // A future dropped before completion releases too.
    let (balance, _handles) = mocked(group.clone(), &["a"]);
    let fut = balance.oneshot(Request::new("x"));
    drop(fut);
    assert_eq!(group.stats()[0].in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn no_available_target_fails_at_once() {
    let group = TargetGroup::builder("g")
        .targets([target("a"), target("b")])
        .build()
        .unwrap();
    group.set_admin(&"a".into(), AdminState::Disabled).unwrap();
    group.set_admin(&"b".into(), AdminState::Draining).unwrap();
    let mut balance = echo(group.clone());
    let fut = balance.call(Request::new(()));
    // Resolves on the first poll: never a hang.
    let err = fut.now_or_never().expect("ready at once").unwrap_err();
    assert!(is_caused_by::<NoAvailableTarget>(&*err));
    assert_eq!(err.to_string(), "no available target in group `g`");

    let empty = echo(TargetGroup::new("empty"));
    assert!(pick(&empty).await.is_err());

    group.set_admin(&"b".into(), AdminState::Enabled).unwrap();
    assert_eq!(pick(&echo(group)).await.unwrap(), "b");
}

#[tokio::test(start_paused = true)]
async fn avoid_targets_is_honoured_while_another_is_available() {
    let group = TargetGroup::builder("g")
        .algorithm(RoundRobin::new())
        .targets([target("a"), target("b"), target("c")])
        .build()
        .unwrap();
    let balance = echo(group.clone());
    for _ in 0..9 {
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(AvoidTargets::from_iter(["a".into(), "b".into()]));
        let rsp = balance.clone().oneshot(req).await.unwrap();
        assert_eq!(served(&rsp), "c");
    }
    // With everything avoided, the request still goes somewhere rather than failing.
    let mut req = Request::new(());
    req.extensions_mut().insert(AvoidTargets::from_iter([
        "a".into(),
        "b".into(),
        "c".into(),
    ]));
    assert!(balance.clone().oneshot(req).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn backups_only_when_no_primary_is_available() {
    let group = TargetGroup::builder("g")
        .targets([
            target("p1"),
            target("p2"),
            Target::builder("backup", "127.0.0.1:1")
                .backup(true)
                .build()
                .unwrap(),
        ])
        .build()
        .unwrap();
    let balance = echo(group.clone());
    for _ in 0..20 {
        assert_ne!(pick(&balance).await.unwrap(), "backup");
    }
    group.set_admin(&"p1".into(), AdminState::Disabled).unwrap();
    for _ in 0..5 {
        assert_eq!(pick(&balance).await.unwrap(), "p2");
    }
    group.set_admin(&"p2".into(), AdminState::Draining).unwrap();
    assert_eq!(pick(&balance).await.unwrap(), "backup");
    group.set_admin(&"p2".into(), AdminState::Enabled).unwrap();
    assert_eq!(pick(&balance).await.unwrap(), "p2");
}

#[tokio::test(start_paused = true)]
async fn full_targets_are_skipped() {
    let group = TargetGroup::builder("g")
        .algorithm(RoundRobin::new())
        .targets([
            Target::builder("small", "127.0.0.1:1")
                .max_conns(1)
                .build()
                .unwrap(),
            Target::builder("big", "127.0.0.1:1")
                .max_conns(2)
                .build()
                .unwrap(),
        ])
        .build()
        .unwrap();
    let balance = echo(group.clone());
    // Hold responses (and so their in-flight counts) open.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(balance.clone().oneshot(Request::new(())).await.unwrap());
    }
    let mut counts = HashMap::new();
    for r in &held {
        *counts.entry(served(r)).or_insert(0) += 1;
    }
    assert_eq!(counts["small"], 1);
    assert_eq!(counts["big"], 2);
    let err = balance.clone().oneshot(Request::new(())).await.unwrap_err();
    assert!(is_caused_by::<NoAvailableTarget>(&*err));
    held.pop();
    assert!(balance.oneshot(Request::new(())).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn removing_a_target_does_not_cancel_its_in_flight_request() {
    let group = TargetGroup::builder("g")
        .targets([target("a"), target("b")])
        .build()
        .unwrap();
    let (balance, mut handles) = mocked(group.clone(), &["a", "b"]);
    for h in handles.values_mut() {
        h.allow(1);
    }
    let fut = tokio::spawn(balance.clone().oneshot(Request::new("x")));
    // Whichever target got it, remove that one while the request is in flight.
    let mut ha = handles.remove("a").unwrap();
    let mut hb = handles.remove("b").unwrap();
    let (victim, send) = tokio::select! {
        r = ha.next_request() => ("a", r.unwrap().1),
        r = hb.next_request() => ("b", r.unwrap().1),
    };
    group.remove(&victim.into()).unwrap();
    send.send_response(Response::new("done".into()));
    let rsp = fut.await.unwrap().unwrap();
    assert_eq!(served(&rsp), victim);
    assert_eq!(rsp.into_body().collect().await.unwrap().to_bytes(), "done");
    // New requests go to the remaining target only.
    let other = if victim == "a" { "b" } else { "a" };
    let fut = tokio::spawn(balance.oneshot(Request::new("y")));
    let h = if other == "a" { &mut ha } else { &mut hb };
    let (_r, send) = h.next_request().await.unwrap();
    send.send_response(Response::new(String::new()));
    assert_eq!(served(&fut.await.unwrap().unwrap()), other);
}

#[tokio::test(start_paused = true)]
async fn a_target_error_fails_that_request_only() {
    let group = TargetGroup::builder("g")
        .target(target("a"))
        .build()
        .unwrap();
    let (balance, mut handles) = mocked(group.clone(), &["a"]);
    let h = handles.get_mut("a").unwrap();
    h.allow(2);
    let fut = tokio::spawn(balance.clone().oneshot(Request::new("1")));
    let (_r, send) = h.next_request().await.unwrap();
    send.send_error(std::io::Error::other("reset by peer"));
    assert!(fut.await.unwrap().is_err());
    assert_eq!(group.stats()[0].failures(), 1);
    assert_eq!(group.len(), 1, "an erroring target stays in the group");
    let fut = tokio::spawn(balance.oneshot(Request::new("2")));
    let (_r, send) = h.next_request().await.unwrap();
    send.send_response(Response::new(String::new()));
    assert!(fut.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn discovery_updates_are_applied() {
    let group = TargetGroup::new("g");
    let balance = echo(group.clone());
    let (tx, rx) = discover::channel(8);
    group.attach(rx).unwrap();
    tx.insert(target("a")).await.unwrap();
    tx.send(Change::from(tower::discover::Change::Insert(
        "b",
        target("b"),
    )))
    .await
    .unwrap();
    tx.remove("a".into()).await.unwrap();
    for _ in 0..100 {
        if group
            .targets()
            .iter()
            .map(|t| t.id().to_string())
            .collect::<Vec<_>>()
            == ["b"]
        {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(pick(&balance).await.unwrap(), "b");
    group.attach(discover::static_list([target("c")])).unwrap();
    for _ in 0..100 {
        if group.len() == 2 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(group.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn burst_of_changes_is_coalesced() {
    let group = TargetGroup::new("g");
    let (tx, rx) = discover::channel(256);
    for i in 0..200 {
        tx.insert(target(&format!("t{i:03}"))).await.unwrap();
    }
    let before = group.version();
    group.attach(rx).unwrap();
    for _ in 0..100 {
        if group.len() == 200 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(group.len(), 200);
    assert_eq!(
        group.version(),
        before + 1,
        "200 queued changes, one snapshot"
    );
}

#[tokio::test]
async fn real_backends_get_exact_weighted_shares() {
    let backends = [
        support::backend("a").await,
        support::backend("b").await,
        support::backend("c").await,
    ];
    let group = TargetGroup::builder("real")
        .algorithm(SmoothWeightedRoundRobin::new())
        .targets(
            ["a", "b", "c"]
                .iter()
                .zip([5, 3, 1])
                .zip(&backends)
                .map(|((id, w), b)| Target::builder(*id, b.addr).weight(w).build().unwrap()),
        )
        .build()
        .unwrap();
    let balance =
        Balance::with_maker(group.clone(), HttpClient::<Empty<Bytes>>::new()).served_by(true);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..90 {
        let rsp = balance
            .clone()
            .oneshot(Request::get("/").body(Empty::new()).unwrap())
            .await
            .unwrap();
        let id = served(&rsp);
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            body,
            id.as_bytes(),
            "the body comes from the backend named in ServedBy"
        );
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!((counts["a"], counts["b"], counts["c"]), (50, 30, 10));
    assert!(group.stats().iter().all(|s| s.in_flight() == 0));
}

#[tokio::test]
async fn errors_map_to_short_responses_without_addresses() {
    let refused = support::refused_addr().await;
    let group = TargetGroup::builder("g")
        .target(Target::new("dead", refused).unwrap())
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(ErrorResponseLayer::new())
        .service(Balance::with_maker(
            group.clone(),
            HttpClient::<Empty<Bytes>>::new(),
        ));
    let rsp = svc
        .clone()
        .oneshot(Request::get("/").body(Empty::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY);
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(
        !text.contains("127.0.0.1") && !text.contains(&refused.port().to_string()),
        "{text}"
    );
    assert_eq!(group.stats()[0].failures(), 1);

    group
        .set_admin(&"dead".into(), AdminState::Disabled)
        .unwrap();
    let rsp = svc
        .oneshot(Request::get("/").body(Empty::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn balance_layer_with_shared_client_and_axum() {
    let backend = support::backend("only").await;
    let group = TargetGroup::builder("api")
        .target(Target::new("only", backend.addr).unwrap())
        .build()
        .unwrap();
    let client = HttpClient::<axum::body::Body>::new();
    let svc = ServiceBuilder::new()
        .layer(ErrorResponseLayer::new())
        .layer(BalanceLayer::new(group))
        .service(client);
    let app = axum::Router::new().route_service("/api", svc);
    let rsp = app
        .oneshot(
            Request::get("/api")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(rsp.status(), StatusCode::OK);
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "only");
}

#[test]
fn balance_future_and_layer_are_send_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn clone<T: Clone>() {}
    type Svc = tower_lb::upstream::SetTarget<HttpClient<Empty<Bytes>>>;
    send_sync::<Balance<Svc>>();
    clone::<Balance<Svc>>();
    send_sync::<BalanceLayer>();
    clone::<BalanceLayer>();
    send_sync::<TargetGroup>();
    fn send<T: Send>(_: &T) {}
    let group = TargetGroup::new("g");
    let mut b = Balance::with_maker(group, HttpClient::<Empty<Bytes>>::new());
    let fut = b.call(Request::new(Empty::new()));
    send(&fut);
    fn sync_future<T: Sync>(_: &T) {}
    sync_future(&fut);
}

/// 100 000 random insert / remove / admin steps on one thread while another picks without pause.
/// Target ids are never reused, so a removal is final: once `remove` has returned (the snapshot
/// without the target is published), no pick that starts afterwards may return it.
#[test]
fn churn_stress() {
    const STEPS: usize = 100_000;
    let group = TargetGroup::builder("churn")
        .algorithm(LeastConnections::new().seed(1))
        .targets((0..8).map(|i| target(&format!("init{i}"))))
        .build()
        .unwrap();
    let removed: Arc<Mutex<HashSet<String>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let picker = {
        let group = group.clone();
        let removed = removed.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut balance = echo(group);
            let (mut picks, mut misses) = (0u64, 0u64);
            // Up to 16 responses stay unread, so requests are in flight across the changes and
            // their counts must come back to the targets' (carried-over) state.
            let mut held = std::collections::VecDeque::new();
            let started = std::time::SystemTime::now();
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                assert!(
                    started.elapsed().unwrap() < Duration::from_secs(120),
                    "bounded in time"
                );
                let removed_before: HashSet<String> = removed.lock().unwrap().clone();
                match balance
                    .call(Request::new(()))
                    .now_or_never()
                    .expect("immediate")
                {
                    Ok(rsp) => {
                        let id = served(&rsp);
                        assert!(
                            !removed_before.contains(&id),
                            "picked `{id}` after its removal was published"
                        );
                        picks += 1;
                        held.push_back(rsp);
                        if held.len() > 16 {
                            held.pop_front();
                        }
                    }
                    Err(e) => {
                        assert!(is_caused_by::<NoAvailableTarget>(&*e));
                        misses += 1;
                    }
                }
            }
            drop(held);
            (picks, misses)
        })
    };

    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut live: Vec<String> = (0..8).map(|i| format!("init{i}")).collect();
    for step in 0..STEPS {
        match next() % 4 {
            0 | 1 if live.len() < 32 => {
                let id = format!("t{step}");
                let w = (next() % 5 + 1) as u32;
                group.insert(
                    Target::builder(id.as_str(), "127.0.0.1:1")
                        .weight(w)
                        .build()
                        .unwrap(),
                );
                live.push(id);
            }
            0..=2 if !live.is_empty() => {
                let id = live.swap_remove((next() % live.len() as u64) as usize);
                group.remove(&id.as_str().into()).unwrap();
                removed.lock().unwrap().insert(id);
            }
            _ if !live.is_empty() => {
                let id = &live[(next() % live.len() as u64) as usize];
                let admin = [
                    AdminState::Enabled,
                    AdminState::Draining,
                    AdminState::Disabled,
                ][(next() % 3) as usize];
                group.set_admin(&id.as_str().into(), admin).unwrap();
            }
            _ => {}
        }
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    let (picks, misses) = picker.join().expect("picker thread must not panic");
    assert!(
        picks >= 100,
        "the picker made progress ({picks} picks, {misses} misses)"
    );
    assert_eq!(group.len(), live.len());
    // Every request held across membership changes released its target.
    for s in group.stats() {
        assert_eq!(
            s.in_flight(),
            0,
            "{} still counts requests in flight",
            s.id()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn weighted_random_and_least_conn_spread_by_weight() {
    for algo in [0, 1] {
        let builder = TargetGroup::builder("g").targets([
            Target::builder("heavy", "127.0.0.1:1")
                .weight(3)
                .build()
                .unwrap(),
            Target::builder("light", "127.0.0.1:1")
                .weight(1)
                .build()
                .unwrap(),
        ]);
        let group = if algo == 0 {
            builder
                .algorithm(WeightedRandom::new().seed(7))
                .build()
                .unwrap()
        } else {
            builder
                .algorithm(LeastConnections::new().seed(7))
                .build()
                .unwrap()
        };
        let balance = echo(group);
        let mut heavy = 0;
        for _ in 0..4000 {
            heavy += usize::from(pick(&balance).await.unwrap() == "heavy");
        }
        // Expected 3000; binomial sd ≈ 27, so ±200 is over 7 sd.
        assert!(
            (2800..=3200).contains(&heavy),
            "algo {algo}: heavy got {heavy} of 4000"
        );
    }
}

/// A balancer over one target `a` that answers with the status in the request path
/// (`/503`), or fails with an error on `/error`.
fn by_path(
    group: TargetGroup,
) -> Balance<
    impl Service<Request<()>, Response = Response<String>, Error = tower_lb::BoxError> + Clone,
> {
    Balance::new(group, |_t: &Target| {
        service_fn(|r: Request<()>| async move {
            let path = r.uri().path().trim_start_matches('/').to_string();
            if path == "error" {
                return Err::<Response<String>, tower_lb::BoxError>("backend broke".into());
            }
            let mut rsp = Response::new(String::new());
            *rsp.status_mut() = path.parse().unwrap_or(StatusCode::OK);
            Ok(rsp)
        })
    })
}

fn get(path: &str) -> Request<()> {
    Request::get(path).body(()).unwrap()
}

fn tagged(rsp: &Response<impl Sized>) -> Option<String> {
    rsp.extensions()
        .get::<ServedBy>()
        .map(|s| format!("{}/{}", s.group(), s.target()))
}

/// Default tagging: error statuses, failures and marked requests name their target, plain
/// successes do not; `served_by(true)` tags everything, `served_by(false)` nothing.
#[tokio::test(start_paused = true)]
async fn served_by_is_set_where_a_reader_needs_it() {
    let group = TargetGroup::builder("g")
        .target(target("a"))
        .build()
        .unwrap();
    let auto = by_path(group.clone());
    assert_eq!(
        tagged(&auto.clone().oneshot(get("/200")).await.unwrap()),
        None
    );
    assert_eq!(
        tagged(&auto.clone().oneshot(get("/302")).await.unwrap()),
        None
    );
    assert_eq!(
        tagged(&auto.clone().oneshot(get("/404")).await.unwrap()).as_deref(),
        Some("g/a"),
        "an error status names its target"
    );
    assert_eq!(
        tagged(&auto.clone().oneshot(get("/503")).await.unwrap()).as_deref(),
        Some("g/a"),
        "a failure names its target"
    );
    let mut marked = get("/200");
    marked.extensions_mut().insert(WantServedBy);
    assert_eq!(
        tagged(&auto.clone().oneshot(marked).await.unwrap()).as_deref(),
        Some("g/a"),
        "a marked request gets its target named"
    );
    let err = auto.clone().oneshot(get("/error")).await.unwrap_err();
    let failed = find_cause::<AttemptFailed>(&*err).expect("an error names its target");
    assert_eq!(failed.served_by().target().as_str(), "a");

    let always = by_path(group.clone()).served_by(true);
    assert_eq!(
        tagged(&always.clone().oneshot(get("/200")).await.unwrap()).as_deref(),
        Some("g/a")
    );

    let never = by_path(group.clone()).served_by(false);
    assert_eq!(
        tagged(&never.clone().oneshot(get("/503")).await.unwrap()),
        None
    );
    let mut marked = get("/503");
    marked.extensions_mut().insert(WantServedBy);
    assert_eq!(tagged(&never.clone().oneshot(marked).await.unwrap()), None);
    let err = never.oneshot(get("/error")).await.unwrap_err();
    assert!(find_cause::<AttemptFailed>(&*err).is_none());
    // The in-flight count came back down every time.
    assert_eq!(group.stats()[0].in_flight(), 0);
}

/// A classifier that counts `299` as a failure (some backends signal trouble that way).
#[derive(Debug)]
struct Fails299;

impl Classify for Fails299 {
    fn classify_status(&self, status: StatusCode) -> Outcome {
        if status.as_u16() == 299 {
            Outcome::Failure(FailureKind::Status(status))
        } else {
            DefaultClassifier::new().classify_status(status)
        }
    }

    fn classify_error(&self, err: &(dyn std::error::Error + 'static)) -> Outcome {
        DefaultClassifier::new().classify_error(err)
    }
}

/// A success status the group's classifier counts as a failure is tagged by default too.
#[tokio::test(start_paused = true)]
async fn served_by_follows_the_groups_classifier() {
    let plain = TargetGroup::builder("g")
        .target(target("a"))
        .build()
        .unwrap();
    let rsp = by_path(plain).oneshot(get("/299")).await.unwrap();
    assert_eq!(tagged(&rsp), None);
    let strict = TargetGroup::builder("g")
        .target(target("a"))
        .classifier(Fails299)
        .build()
        .unwrap();
    let rsp = by_path(strict).oneshot(get("/299")).await.unwrap();
    assert_eq!(tagged(&rsp).as_deref(), Some("g/a"));
}

/// Each clone dispatches with the service table it last used and moves to a new one as soon
/// as the group changes: a clone made before a change sees the change, a removed target's
/// service is dropped once the clones that served have moved on, and a clone that never
/// served (a router's prototype) holds no table at all.
#[tokio::test(start_paused = true)]
async fn clones_follow_membership_changes_and_release_old_services() {
    let group = TargetGroup::builder("g")
        .targets([target("a"), target("b")])
        .build()
        .unwrap();
    let tokens: Arc<Mutex<HashMap<String, std::sync::Weak<()>>>> = Arc::default();
    let t = tokens.clone();
    let prototype = Balance::new(group.clone(), move |tg: &Target| {
        let id = tg.id().to_string();
        let token = Arc::new(());
        t.lock().unwrap().insert(id.clone(), Arc::downgrade(&token));
        service_fn(move |_r: Request<()>| {
            let _keep = &token;
            let id = id.clone();
            async move { Ok::<_, Infallible>(Response::new(id)) }
        })
    })
    .served_by(true);
    let alive = |id: &str| tokens.lock().unwrap()[id].upgrade().is_some();

    let mut worker = prototype.clone();
    let mut seen = HashSet::new();
    for _ in 0..4 {
        seen.insert(served(
            &worker
                .ready()
                .await
                .unwrap()
                .call(Request::new(()))
                .await
                .unwrap(),
        ));
    }
    assert_eq!(seen, HashSet::from(["a".to_string(), "b".to_string()]));
    let idle = worker.clone(); // holds the same table, never called again

    group.remove(&"b".into()).unwrap();
    for _ in 0..4 {
        let rsp = worker
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        assert_eq!(served(&rsp), "a", "the worker moved to the new membership");
    }
    assert!(alive("b"), "the idle clone still holds the old table");
    drop(idle);
    assert!(
        !alive("b"),
        "no clone that served holds b's service any more"
    );
    assert!(alive("a"));

    // A fresh clone of the prototype sees the current membership too.
    let rsp = prototype.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(served(&rsp), "a");
}

/// A finished response future answers a second poll with an error: it never polls the target's
/// finished future again (a `Ready` would panic), nor counts the attempt twice.
#[test]
fn polling_a_finished_future_again_is_an_error() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let group = TargetGroup::builder("g")
        .target(target("a"))
        .build()
        .unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    for path in ["/200", "/error"] {
        let mut balance = by_path(group.clone());
        let mut fut = Box::pin(balance.call(get(path)));
        let first = fut.as_mut().poll(&mut cx);
        assert!(
            matches!(first, Poll::Ready(ref r) if r.is_ok() == (path == "/200")),
            "{path}"
        );
        drop(first);
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(Err(e)) => assert!(e.to_string().contains("after completion"), "{e}"),
            other => panic!("{path}: {:?}", other.map(|r| r.map(|_| ()))),
        }
        assert_eq!(group.stats()[0].in_flight(), 0);
    }
    assert_eq!(group.stats()[0].requests(), 2);
    assert_eq!(group.stats()[0].failures(), 1, "the error counted once");
}
