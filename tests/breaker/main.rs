//! Integration tests for the circuit breaker: every transition on tower-test mocks with paused
//! time, cancelled probes, local rejections, events, and a proptest against a reference model.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use http::{Request, Response, StatusCode};
use proptest::prelude::*;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_lb::balance::error::NoAvailableTarget;
use tower_lb::breaker::error::CircuitOpen;
use tower_lb::breaker::{BreakerState, CircuitBreakerLayer, StateChange};
use tower_lb::error::{BoxError, is_caused_by};
use tower_lb::upstream::error_response;
use tower_test::mock;

type Handle = mock::Handle<Request<()>, Response<()>>;

fn rsp(status: u16) -> Response<()> {
    let mut r = Response::new(());
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

type Events = Arc<Mutex<Vec<(BreakerState, BreakerState)>>>;

fn layer(min: u32, probes: u32) -> (CircuitBreakerLayer, Events) {
    let events: Events = Arc::default();
    let e = events.clone();
    let layer = CircuitBreakerLayer::builder("t")
        .min_requests(min)
        .failure_rate(0.5)
        .window(Duration::from_secs(10))
        .open_for(Duration::from_secs(5))
        .half_open_probes(probes)
        .on_state_change(move |c: &StateChange| e.lock().unwrap().push((c.from, c.to)))
        .build()
        .unwrap();
    (layer, events)
}

/// Sends one request through `svc` and answers it on the mock with `status`, if it got there.
async fn send<S>(svc: &mut S, handle: &mut Handle, status: u16) -> Result<Response<()>, BoxError>
where
    S: Service<Request<()>, Response = Response<()>, Error = BoxError>,
{
    let fut = svc.ready().await.unwrap().call(Request::new(()));
    tokio::pin!(fut);
    if let Some(res) = (&mut fut).now_or_never() {
        return res; // refused without reaching the backend
    }
    let (_req, send) = handle
        .next_request()
        .await
        .expect("request reached the mock");
    send.send_response(rsp(status));
    fut.await
}

use BreakerState::*;

#[tokio::test(start_paused = true)]
async fn closed_open_half_open_closed() {
    setup();
    let (layer, events) = layer(4, 2);
    let (mock, mut handle) = mock::pair::<Request<()>, Response<()>>();
    let mut svc = layer.layer(mock);

    // Below the minimum volume nothing trips, even at 100% failures.
    for _ in 0..3 {
        send(&mut svc, &mut handle, 500).await.unwrap();
    }
    assert_eq!(layer.state(), Closed);
    send(&mut svc, &mut handle, 500).await.unwrap();
    assert_eq!(layer.state(), Open);

    // Open: fails fast, the backend sees nothing.
    let err = send(&mut svc, &mut handle, 200).await.unwrap_err();
    let open = tower_lb::error::find_cause::<CircuitOpen>(&*err).unwrap();
    assert_eq!(open.retry_after(), Some(Duration::from_secs(5)));
    assert_eq!(error_response::<()>(&*err).status(), 503);
    assert!(handle.next_request().now_or_never().is_none());

    // Half-open after the open period; two successful probes close it.
    tokio::time::advance(Duration::from_secs(5)).await;
    send(&mut svc, &mut handle, 200).await.unwrap();
    assert_eq!(layer.state(), HalfOpen);
    send(&mut svc, &mut handle, 200).await.unwrap();
    assert_eq!(layer.state(), Closed);
    assert_eq!(
        *events.lock().unwrap(),
        [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
    );
}

type Line = (std::thread::ThreadId, tracing::Level, String, String);

/// Every breaker state-change line logged by any test: (thread, level, `from`, `to`).
static LINES: Mutex<Vec<Line>> = Mutex::new(Vec::new());

/// Records the breaker's state-change `tracing` lines, from every thread, as the process-wide
/// subscriber. Every test calls [`setup`] first: tracing caches whether a call site is enabled
/// when the site is first hit, so a subscriber installed after another thread's first breaker
/// line (a thread-scoped one, or a global one installed late) could miss lines.
struct Lines;

impl tracing::Subscriber for Lines {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Fields(String, String, bool);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                match f.name() {
                    "from" => self.0 = format!("{v:?}"),
                    "to" => self.1 = format!("{v:?}"),
                    "message" => self.2 = format!("{v:?}") == "circuit breaker state changed",
                    _ => {}
                }
            }
        }
        if !event.metadata().target().starts_with("tower_lb::breaker") {
            return;
        }
        let mut fields = Fields(String::new(), String::new(), false);
        event.record(&mut fields);
        if fields.2 {
            let line = (
                std::thread::current().id(),
                *event.metadata().level(),
                fields.0,
                fields.1,
            );
            LINES.lock().unwrap().push(line);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Installs [`Lines`] once for the whole test binary; every test calls it before anything else.
fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::subscriber::set_global_default(Lines).expect("the only global subscriber");
    });
}

/// The breaker lines logged on this thread.
fn lines_of_this_thread() -> Vec<(tracing::Level, String, String)> {
    let me = std::thread::current().id();
    LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.0 == me)
        .map(|l| (l.1, l.2.clone(), l.3.clone()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn every_state_change_is_an_event_and_a_tracing_line() {
    setup();
    use futures_util::StreamExt;
    use tower_lb::breaker::BreakerEvent;

    let (layer, _) = layer(4, 2);
    let mut events = layer.events();
    let (mock, mut handle) = mock::pair::<Request<()>, Response<()>>();
    let mut svc = layer.layer(mock);
    let mut from_service = svc.events();

    for _ in 0..4 {
        send(&mut svc, &mut handle, 500).await.unwrap();
    }
    tokio::time::advance(Duration::from_secs(5)).await;
    send(&mut svc, &mut handle, 200).await.unwrap();
    send(&mut svc, &mut handle, 200).await.unwrap();
    assert_eq!(layer.state(), Closed);

    for stream in [&mut events, &mut from_service] {
        let mut seen = Vec::new();
        while let Some(Some(event)) = stream.next().now_or_never() {
            match event {
                BreakerEvent::StateChanged(c) => {
                    assert_eq!(&*c.name, "t");
                    assert_eq!(c.failure_rate.is_some(), c.to == Open && c.from == Closed);
                    seen.push((c.from, c.to));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]);
    }
    let lines = lines_of_this_thread();
    let expected = [
        (tracing::Level::WARN, "closed", "open"),
        (tracing::Level::INFO, "open", "half-open"),
        (tracing::Level::INFO, "half-open", "closed"),
    ];
    assert_eq!(lines.len(), expected.len(), "{lines:?}");
    for (got, want) in lines.iter().zip(expected) {
        assert_eq!((got.0, got.1.as_str(), got.2.as_str()), want);
    }

    // The stream ends once the breaker is gone.
    drop((svc, layer));
    assert!(events.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_slow_subscriber_is_told_it_lagged() {
    setup();
    use futures_util::StreamExt;
    use tower_lb::breaker::BreakerEvent;

    let (layer, _) = layer(1, 1);
    let mut events = layer.events();
    let (mock, mut handle) = mock::pair::<Request<()>, Response<()>>();
    let mut svc = layer.layer(mock);
    // Each round is three changes: closed → open on a failure, then open → half-open → closed
    // on one successful probe. 90 changes overflow the 64 kept for a subscriber.
    for _ in 0..30 {
        send(&mut svc, &mut handle, 500).await.unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        send(&mut svc, &mut handle, 200).await.unwrap();
    }
    assert_eq!(layer.state(), Closed);
    match events.next().await {
        Some(BreakerEvent::Lagged { name, missed }) => {
            assert_eq!(&*name, "t");
            assert_eq!(missed, 90 - 64);
        }
        other => panic!("expected a lag notice, got {other:?}"),
    }
    let mut rest = 0;
    while let Some(Some(BreakerEvent::StateChanged(_))) = events.next().now_or_never() {
        rest += 1;
    }
    assert_eq!(rest, 64);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens() {
    setup();
    let (layer, events) = layer(2, 2);
    let (mock, mut handle) = mock::pair::<Request<()>, Response<()>>();
    let mut svc = layer.layer(mock);
    send(&mut svc, &mut handle, 502).await.unwrap();
    send(&mut svc, &mut handle, 502).await.unwrap();
    assert_eq!(layer.state(), Open);
    tokio::time::advance(Duration::from_secs(5)).await;
    send(&mut svc, &mut handle, 503).await.unwrap();
    assert_eq!(layer.state(), Open);
    // Open again for a full period, counted from the failed probe.
    tokio::time::advance(Duration::from_secs(4)).await;
    assert!(send(&mut svc, &mut handle, 200).await.is_err());
    tokio::time::advance(Duration::from_secs(1)).await;
    send(&mut svc, &mut handle, 200).await.unwrap();
    assert_eq!(layer.state(), HalfOpen);
    assert_eq!(
        *events.lock().unwrap(),
        [
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Open),
            (Open, HalfOpen)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_probes_are_bounded_and_a_cancelled_probe_frees_its_permit() {
    setup();
    let (layer, _) = layer(1, 2);
    let (mock, mut handle) = mock::pair::<Request<()>, Response<()>>();
    let mut svc = layer.layer(mock);
    send(&mut svc, &mut handle, 500).await.unwrap();
    assert_eq!(layer.state(), Open);
    tokio::time::advance(Duration::from_secs(5)).await;

    let p1 = svc.ready().await.unwrap().call(Request::new(()));
    let p2 = svc.ready().await.unwrap().call(Request::new(()));
    // Both probe permits are taken: a third request is refused.
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap_err();
    assert!(is_caused_by::<CircuitOpen>(&*err));

    // Cancel one probe mid-flight: its permit comes back.
    drop(p1);
    let p3 = svc.ready().await.unwrap().call(Request::new(()));
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap_err();
    assert!(is_caused_by::<CircuitOpen>(&*err));

    // The two live probes succeed: closed.
    tokio::pin!(p2);
    tokio::pin!(p3);
    assert!((&mut p2).now_or_never().is_none());
    for _ in 0..3 {
        if let Some(Some((_r, send))) = handle.next_request().now_or_never() {
            send.send_response(rsp(200));
        }
    }
    p2.await.unwrap();
    p3.await.unwrap();
    assert_eq!(layer.state(), Closed);
}

#[tokio::test(start_paused = true)]
async fn local_rejections_never_count() {
    setup();
    let (layer, events) = layer(4, 1);
    let mut svc = layer.layer(service_fn(|_r: Request<()>| async {
        Err::<Response<()>, BoxError>(Box::new(NoAvailableTarget::new("g")))
    }));
    for _ in 0..200 {
        let err = svc
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap_err();
        assert!(is_caused_by::<NoAvailableTarget>(&*err));
    }
    assert_eq!(layer.state(), Closed);
    assert!(events.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn failures_age_out_of_the_window() {
    setup();
    let (layer, _) = layer(4, 1);
    let (mock, mut handle) = mock::pair::<Request<()>, Response<()>>();
    let mut svc = layer.layer(mock);
    for _ in 0..3 {
        send(&mut svc, &mut handle, 500).await.unwrap();
    }
    // 10 s later the three failures are out of the 10 s window.
    tokio::time::advance(Duration::from_secs(10)).await;
    send(&mut svc, &mut handle, 500).await.unwrap();
    assert_eq!(layer.state(), Closed);
    // Below the threshold rate: 1 failure in 4 stays closed.
    for _ in 0..3 {
        send(&mut svc, &mut handle, 200).await.unwrap();
    }
    assert_eq!(layer.state(), Closed);
    send(&mut svc, &mut handle, 500).await.unwrap();
    assert_eq!(layer.state(), Closed, "2 of 5 failed");
    send(&mut svc, &mut handle, 500).await.unwrap();
    assert_eq!(layer.state(), Open, "3 of 6 failed");
}

#[tokio::test(start_paused = true)]
async fn errors_count_as_failures() {
    setup();
    let (layer, _) = layer(3, 1);
    let mut svc = layer.layer(service_fn(|_r: Request<()>| async {
        Err::<Response<()>, BoxError>(std::io::Error::other("reset").into())
    }));
    for _ in 0..3 {
        let _ = svc.ready().await.unwrap().call(Request::new(())).await;
    }
    assert_eq!(layer.state(), Open);
}

/// Two threads race through the closed state with the same failure pattern, so both cross
/// the threshold at about the same time: in every round the circuit opens exactly once, with
/// one event, and nothing reaches the backend once it is open. Real time here (two OS
/// threads), but the window and open period are far longer than the test, so the expected
/// result is deterministic; the rounds give the race many chances to show.
#[test]
fn two_threads_racing_to_the_threshold_open_it_once() {
    setup();
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicU64, Ordering};

    const ROUNDS: usize = 40;
    const PER_THREAD: u64 = 2_000;
    const MIN: u32 = 1_000;
    for round in 0..ROUNDS {
        let events: Events = Arc::default();
        let e = events.clone();
        let layer = CircuitBreakerLayer::builder("race")
            .min_requests(MIN)
            .failure_rate(0.5)
            .window(Duration::from_secs(3600))
            .open_for(Duration::from_secs(3600))
            .on_state_change(move |c: &StateChange| e.lock().unwrap().push((c.from, c.to)))
            .build()
            .unwrap();
        let reached = Arc::new(AtomicU64::new(0));
        let barrier = Arc::new(Barrier::new(2));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (layer, reached, barrier) = (layer.clone(), reached.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let r = reached.clone();
                    let mut svc = layer.layer(service_fn(move |req: Request<u16>| {
                        r.fetch_add(1, Ordering::Relaxed);
                        std::future::ready(Ok::<_, BoxError>(rsp(*req.body())))
                    }));
                    let mut refused = 0u64;
                    barrier.wait();
                    for i in 0..PER_THREAD {
                        // Two failures in three.
                        let status = if i % 3 == 0 { 200 } else { 500 };
                        let fut = svc.call(Request::new(status));
                        match fut.now_or_never().expect("ready at once") {
                            Ok(_) => {}
                            Err(e) if is_caused_by::<CircuitOpen>(&*e) => refused += 1,
                            Err(e) => panic!("unexpected error: {e}"),
                        }
                    }
                    refused
                })
            })
            .collect();
        let refused: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        let reached = reached.load(Ordering::Relaxed);
        assert_eq!(*events.lock().unwrap(), [(Closed, Open)], "round {round}");
        assert_eq!(layer.state(), Open);
        assert_eq!(reached + refused, 2 * PER_THREAD);
        // At least the minimum volume went through before it opened; after that, nothing did.
        assert!(reached >= u64::from(MIN), "{reached} reached the backend");
        assert!(refused > 0);
    }
}

#[test]
fn breaker_is_clone_send_sync() {
    setup();
    fn check<T: Clone + Send + Sync>(_: &T) {}
    let (layer, _) = layer(1, 1);
    check(&layer);
    check(&layer.layer(service_fn(|_r: Request<()>| async {
        Ok::<_, BoxError>(Response::new(()))
    })));
}

// ---- Reference model -------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Op {
    Ok,
    Fail,
    Rejected,
    /// Acquire and drop before completion.
    Cancel,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Ok),
        4 => Just(Op::Fail),
        1 => Just(Op::Rejected),
        1 => Just(Op::Cancel),
        2 => (0u64..4000).prop_map(Op::Advance),
    ]
}

const MIN: u32 = 5;
const RATE: f64 = 0.5;
const BUCKET_MS: u64 = 1000; // window 10 s in 10 buckets
const OPEN_MS: u64 = 3000;
const PROBES: u32 = 2;

/// The breaker's rules written plainly: a list of (bucket, failed) outcomes.
struct Model {
    state: BreakerState,
    outcomes: Vec<(u64, bool)>,
    opened_at: u64,
    successes: u32,
    changes: usize,
}

impl Model {
    fn to(&mut self, s: BreakerState, now: u64) {
        self.state = s;
        self.changes += 1;
        self.successes = 0;
        if s == Open {
            self.opened_at = now;
        }
        if s == Closed {
            self.outcomes.clear();
        }
    }

    /// Returns whether the request is admitted.
    fn call(&mut self, now: u64, outcome: Option<(bool, bool)>) -> bool {
        if self.state == Open {
            if now < self.opened_at + OPEN_MS {
                return false;
            }
            self.to(HalfOpen, now);
        }
        // Requests complete one at a time here, so a probe slot is always free when half-open.
        let Some((failed, rejected)) = outcome else {
            return true; // cancelled: nothing recorded, permit back
        };
        if rejected {
            return true;
        }
        match self.state {
            Closed => {
                let epoch = now / BUCKET_MS;
                self.outcomes.push((epoch, failed));
                let live: Vec<_> = self
                    .outcomes
                    .iter()
                    .filter(|(e, _)| e + 10 > epoch)
                    .collect();
                let total = live.len() as f64;
                let fails = live.iter().filter(|(_, f)| *f).count() as f64;
                if total >= MIN as f64 && fails / total >= RATE {
                    self.to(Open, now);
                }
            }
            HalfOpen => {
                if failed {
                    self.to(Open, now);
                } else {
                    self.successes += 1;
                    if self.successes >= PROBES {
                        self.to(Closed, now);
                    }
                }
            }
            _ => unreachable!(),
        }
        true
    }
}

proptest! {
    // Seeded (deterministic runs), like the other property tests; the regression found while
    // writing it is pinned below as a plain test.
    #![proptest_config(ProptestConfig {
        cases: 96,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x6272_6b72),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn breaker_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..250)) {
        check_against_model(ops)?;
    }
}

/// Runs `ops` against the breaker and the model side by side.
fn check_against_model(ops: Vec<Op>) -> Result<(), TestCaseError> {
    setup();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let changes = Arc::new(Mutex::new(0usize));
        let c = changes.clone();
        let layer = CircuitBreakerLayer::builder("model")
            .min_requests(MIN)
            .failure_rate(RATE)
            .window(Duration::from_millis(BUCKET_MS * 10))
            .open_for(Duration::from_millis(OPEN_MS))
            .half_open_probes(PROBES)
            .on_state_change(move |_| *c.lock().unwrap() += 1)
            .build()
            .unwrap();
        let t0 = tokio::time::Instant::now();
        let mut model = Model {
            state: Closed,
            outcomes: Vec::new(),
            opened_at: 0,
            successes: 0,
            changes: 0,
        };
        let mut svc = layer.layer(service_fn(|req: Request<u16>| async move {
            match *req.body() {
                0 => Err::<Response<()>, BoxError>(Box::new(NoAvailableTarget::new("g"))),
                s => Ok(rsp(s)),
            }
        }));
        for op in ops {
            let now = (tokio::time::Instant::now() - t0).as_millis() as u64;
            let (body, outcome) = match op {
                Op::Advance(ms) => {
                    tokio::time::advance(Duration::from_millis(ms)).await;
                    continue;
                }
                Op::Ok => (200, Some((false, false))),
                Op::Fail => (500, Some((true, false))),
                Op::Rejected => (0, Some((false, true))),
                Op::Cancel => (200, None),
            };
            let expected = model.call(now, outcome);
            let fut = svc.ready().await.unwrap().call(Request::new(body));
            let admitted = if outcome.is_none() {
                // Admitted or not, the breaker decided in `call`; dropping cancels.
                let state = layer.state();
                drop(fut);
                state != Open
            } else {
                match fut.await {
                    Ok(_) => true,
                    Err(e) => !is_caused_by::<CircuitOpen>(&*e),
                }
            };
            prop_assert_eq!(admitted, expected, "admission at {} ms after {:?}", now, op);
            prop_assert_eq!(
                layer.state(),
                model.state,
                "state at {} ms after {:?}",
                now,
                op
            );
            prop_assert_eq!(*changes.lock().unwrap(), model.changes);
        }
        Ok(())
    })?;
    Ok(())
}

#[test]
fn exactly_at_the_threshold_opens() {
    setup();
    use Op::*;
    let ops = vec![
        Ok,
        Fail,
        Ok,
        Fail,
        Fail,
        Advance(3000),
        Ok,
        Ok,
        Ok,
        Ok,
        Ok,
        Fail,
        Fail,
        Fail,
    ];
    check_against_model(ops).unwrap();
}
