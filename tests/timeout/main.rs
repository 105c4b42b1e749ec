//! Integration tests for `tower_lb::timeout`: on paused time, the deadline fires after the
//! duration when the response is pending, never when it is ready at its first poll (no timer is
//! armed then: it works without a runtime), counts from the first poll, and maps to `504`.

use std::convert::Infallible;
use std::future::{Future, pending, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_lb::error::is_caused_by;
use tower_lb::timeout::{Timeout, TimeoutLayer};
use tower_lb::upstream::{ErrorResponseLayer, status_for_error};

type Elapsed = tower::timeout::error::Elapsed;

/// A service answering after `delay` (at once when zero, without awaiting anything).
fn after(
    delay: Duration,
) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone {
    service_fn(move |_r: Request<()>| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(Response::new("ok".to_owned()))
    })
}

#[tokio::test(start_paused = true)]
async fn fires_after_the_duration_when_pending() {
    let svc = TimeoutLayer::new(Duration::from_millis(100)).layer(after(Duration::from_secs(5)));
    let t0 = Instant::now();
    let err = svc.oneshot(Request::new(())).await.unwrap_err();
    assert!(is_caused_by::<Elapsed>(&*err), "{err}");
    assert_eq!(Instant::now() - t0, Duration::from_millis(100));
    assert_eq!(status_for_error(&*err), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn a_response_within_the_duration_passes() {
    let svc = TimeoutLayer::new(Duration::from_millis(100)).layer(after(Duration::from_millis(99)));
    let t0 = Instant::now();
    let rsp = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(rsp.into_body(), "ok");
    assert_eq!(Instant::now() - t0, Duration::from_millis(99));
}

#[tokio::test(start_paused = true)]
async fn the_inner_error_passes_through() {
    let svc = Timeout::new(
        service_fn(|_r: Request<()>| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Err::<Response<()>, _>(std::io::Error::other("reset"))
        }),
        Duration::from_secs(1),
    );
    let err = svc.oneshot(Request::new(())).await.unwrap_err();
    assert!(!is_caused_by::<Elapsed>(&*err));
    assert!(is_caused_by::<std::io::Error>(&*err), "{err}");
}

/// Ready at the first poll: no clock read and no timer. Polled by hand, outside any runtime
/// (tokio's `sleep` panics there), even with a zero duration.
#[test]
fn never_fires_and_arms_no_timer_when_ready_at_once() {
    for d in [Duration::ZERO, Duration::from_secs(1)] {
        let mut svc = Timeout::new(service_fn(|n: u32| ready(Ok::<_, Infallible>(n + 1))), d);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(svc.poll_ready(&mut cx).is_ready());
        let fut = pin!(svc.call(41));
        match fut.poll(&mut cx) {
            Poll::Ready(Ok(n)) => assert_eq!(n, 42),
            other => panic!("expected Ready(Ok(42)), got {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_zero_duration_fails_only_what_is_pending() {
    let ready_svc = Timeout::new(after(Duration::ZERO), Duration::ZERO);
    assert!(ready_svc.oneshot(Request::new(())).await.is_ok());
    let pending_svc = Timeout::new(after(Duration::from_millis(1)), Duration::ZERO);
    let t0 = Instant::now();
    let err = pending_svc.oneshot(Request::new(())).await.unwrap_err();
    assert!(is_caused_by::<Elapsed>(&*err));
    assert_eq!(Instant::now(), t0);
}

/// The documented start of the deadline: the first poll that finds the response pending, not
/// `call`.
#[tokio::test(start_paused = true)]
async fn the_deadline_counts_from_the_first_poll() {
    let mut svc = Timeout::new(
        service_fn(|_r: ()| pending::<Result<(), Infallible>>()),
        Duration::from_millis(100),
    );
    let fut = svc.ready().await.unwrap().call(());
    tokio::time::advance(Duration::from_secs(1)).await;
    let t1 = Instant::now();
    let err = fut.await.unwrap_err();
    assert!(is_caused_by::<Elapsed>(&*err));
    assert_eq!(Instant::now() - t1, Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn error_response_layer_maps_it_to_504() {
    let svc = ServiceBuilder::new()
        .layer(ErrorResponseLayer::new())
        .layer(TimeoutLayer::new(Duration::from_millis(50)))
        .service(after(Duration::from_secs(1)));
    let rsp = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[test]
fn layer_and_service_are_clone_send_sync() {
    fn check<T: Clone + Send + Sync + 'static>(_: &T) {}
    let layer = TimeoutLayer::new(Duration::from_secs(1));
    check(&layer);
    check(&layer.layer(after(Duration::ZERO)));
    fn check_future<F: Send + Sync + 'static>(_: &F) {}
    let mut svc = layer.layer(service_fn(|n: u32| ready(Ok::<_, Infallible>(n))));
    check_future(&svc.call(1));
}

/// A service whose attempts hang, behind a per-attempt timeout, inside a layer that answers
/// the first timeout by waiting `then` (a backoff, say) and then forever: the overall deadline
/// around it must fire on time whatever the inner timer did.
fn hanging_attempt_then(
    attempt: Duration,
    then: Duration,
) -> impl Service<Request<()>, Response = Response<String>, Error = tower_lb::BoxError> + Clone {
    let inner = TimeoutLayer::new(attempt).layer(service_fn(|_r: Request<()>| async {
        pending::<()>().await;
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    tower::util::MapFuture::new(inner, move |fut| async move {
        let res: Result<Response<String>, tower_lb::BoxError> = fut.await;
        assert!(res.is_err(), "the attempt hangs until its timeout");
        tokio::time::sleep(then).await;
        pending::<()>().await;
        res
    })
}

/// An overall deadline over a shorter per-attempt timeout: after the attempt timed out, the
/// overall one arms its own timer and fires at its deadline, counted from the first poll.
#[tokio::test(start_paused = true)]
async fn nested_deadline_fires_after_the_inner_timer_fired() {
    for (attempt, then) in [
        (Duration::from_millis(50), Duration::from_millis(10)),
        (Duration::from_millis(50), Duration::from_secs(60)),
        // The inner timer due exactly at the overall deadline.
        (Duration::from_millis(100), Duration::ZERO),
        // The inner timer due after it: the overall timer cannot rely on it.
        (Duration::from_millis(250), Duration::ZERO),
    ] {
        let svc = TimeoutLayer::new(Duration::from_millis(100))
            .layer(hanging_attempt_then(attempt, then));
        let t0 = Instant::now();
        let err = bounded(svc.oneshot(Request::new(()))).await.unwrap_err();
        assert!(is_caused_by::<Elapsed>(&*err), "{err}");
        assert_eq!(
            Instant::now() - t0,
            Duration::from_millis(100),
            "attempt {attempt:?}, then {then:?}"
        );
    }
}

/// A future inside the overall deadline that polls a timed attempt once and drops it in the
/// same poll (a `select` whose other branch won, say), then waits forever: the overall
/// deadline does not rely on the timer that went away with the attempt.
#[tokio::test(start_paused = true)]
async fn nested_deadline_does_not_rely_on_a_timer_dropped_in_the_same_poll() {
    let svc = service_fn(|_r: Request<()>| async {
        let mut attempt = hung_attempt();
        std::future::poll_fn(|cx| {
            assert!(attempt.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
        drop(attempt);
        pending::<()>().await;
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    fires_at_100ms(svc).await;
}

/// A timed attempt polled with another waker than the overall deadline's (a task of its own
/// here) wakes that task, not the deadline's: the overall deadline keeps a timer of its own.
#[tokio::test(start_paused = true)]
async fn nested_deadline_does_not_rely_on_a_timer_of_another_waker() {
    let svc = service_fn(|_r: Request<()>| async {
        let mut attempt = hung_attempt();
        std::future::poll_fn(|_cx| {
            // Polled with a waker nobody listens to (ready once its timer is due).
            let mut other = Context::from_waker(Waker::noop());
            let _ = attempt.as_mut().poll(&mut other);
            Poll::<()>::Pending
        })
        .await;
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    fires_at_100ms(svc).await;
}

/// A per-attempt timeout of 10 ms over a target that never answers, called.
fn hung_attempt()
-> std::pin::Pin<Box<impl Future<Output = Result<Response<String>, tower_lb::BoxError>>>> {
    Box::pin(
        TimeoutLayer::new(Duration::from_millis(10))
            .layer(service_fn(|_r: Request<()>| {
                pending::<Result<Response<String>, Infallible>>()
            }))
            .oneshot(Request::new(())),
    )
}

/// `svc` under an overall deadline of 100 ms fails with `Elapsed` exactly then.
async fn fires_at_100ms<S>(svc: S)
where
    S: Service<Request<()>, Response = Response<String>, Error = Infallible>,
{
    let svc = TimeoutLayer::new(Duration::from_millis(100)).layer(svc);
    let t0 = Instant::now();
    let err = bounded(svc.oneshot(Request::new(()))).await.unwrap_err();
    assert!(is_caused_by::<Elapsed>(&*err), "{err}");
    assert_eq!(Instant::now() - t0, Duration::from_millis(100));
}

/// `fut`, failing the test (rather than hanging) if nothing fired within ten seconds.
async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("no deadline fired within 10 s")
}

/// Timers are reused from request to request on a thread: after requests that armed one and
/// finished early (their timers left registered for later deadlines, or earlier ones), each
/// new request still fails at exactly its own deadline, and one that answers in time passes.
#[tokio::test(start_paused = true)]
async fn reused_timers_fire_at_each_requests_own_deadline() {
    let quick = TimeoutLayer::new(Duration::from_secs(10)).layer(after(Duration::from_millis(5)));
    for _ in 0..3 {
        quick.clone().oneshot(Request::new(())).await.unwrap();
    }
    for (timeout, hang) in [(300, 1_000), (20_000, 30_000), (50, 60)] {
        let svc = TimeoutLayer::new(Duration::from_millis(timeout))
            .layer(after(Duration::from_millis(hang)));
        let t0 = Instant::now();
        let err = svc.oneshot(Request::new(())).await.unwrap_err();
        assert!(is_caused_by::<Elapsed>(&*err), "{err}");
        assert_eq!(Instant::now() - t0, Duration::from_millis(timeout));
        quick.clone().oneshot(Request::new(())).await.unwrap();
    }
    let svc = TimeoutLayer::new(Duration::from_millis(100)).layer(after(Duration::from_millis(99)));
    let t0 = Instant::now();
    svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(Instant::now() - t0, Duration::from_millis(99));
}
