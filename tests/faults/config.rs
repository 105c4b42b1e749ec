//! Item 7 of issue 10: no configuration value makes anything panic. Every builder that takes a
//! duration, rate, share or count gets extreme values (0, 1 ns, `Duration::MAX`, NaN, ±∞,
//! `u32::MAX`); each either refuses with a typed error or builds a layer that serves requests,
//! opens, ejects, ramps and checks for hours of paused time without a panic anywhere on the
//! runtime's thread (spawned health checks included).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use proptest::prelude::*;
use tower::util::BoxCloneService;
use tower::{Layer, ServiceExt, service_fn};
use tower_lb::algorithm::P2cPeakEwma;
use tower_lb::balance::Balance;
use tower_lb::breaker::CircuitBreakerLayer;
use tower_lb::health::{ActiveCheck, OutlierDetection, PanicThreshold, SlowStart, check_fn};
use tower_lb::limit::{InFlightLimitLayer, LimitKey, RateLimitLayer};
use tower_lb::retry::{Jitter, ReplayBody, RetryLayer, RetryPolicy};

type Svc<B> = BoxCloneService<Request<B>, Response<()>, tower_lb::BoxError>;
use tower_lb::timeout::TimeoutLayer;
use tower_lb::{Target, TargetGroup};

/// Threads that panicked, recorded by a hook installed once (a spawned task's panic is
/// otherwise swallowed by its runtime).
fn panicked() -> &'static Mutex<Vec<ThreadId>> {
    static PANICKED: OnceLock<Mutex<Vec<ThreadId>>> = OnceLock::new();
    PANICKED.get_or_init(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(p) = PANICKED.get() {
                p.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(std::thread::current().id());
            }
            prev(info);
        }));
        Mutex::new(Vec::new())
    })
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::MAX),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::from_millis(10)),
        (0u64..=u64::MAX).prop_map(Duration::from_nanos),
        (0u64..=u64::MAX).prop_map(Duration::from_secs),
    ]
}

fn count() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), Just(1), Just(2), Just(u32::MAX), any::<u32>()]
}

fn share() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-1.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MIN_POSITIVE),
        Just(0.5),
        Just(1.0),
        Just(f64::MAX),
    ]
}

#[derive(Debug, Clone)]
struct Config {
    breaker: (f64, u32, Duration, Duration, u32),
    rate: (u32, Duration, u32, usize, Duration),
    in_flight: (usize, u32, usize),
    retry: (Duration, u32, f32, u32, usize, Duration, Duration, Duration),
    outlier: (u32, u32, Duration, u32, Duration, Duration, u32),
    check: (Duration, Duration, u32, u32, f64),
    slow: (Duration, f64, u32),
    ewma: (Duration, Duration, Duration, Duration),
    timeout: Duration,
    panic_percent: u32,
}

fn config() -> impl Strategy<Value = Config> {
    (
        (share(), count(), duration(), duration(), count()),
        (
            count(),
            duration(),
            count(),
            prop_oneof![Just(0usize), Just(1), Just(usize::MAX)],
            duration(),
        ),
        (
            prop_oneof![Just(0usize), Just(1), Just(usize::MAX)],
            count(),
            prop_oneof![Just(0usize), Just(1), Just(usize::MAX)],
        ),
        (
            duration(),
            count(),
            prop_oneof![
                Just(0.0f32),
                Just(-1.0),
                Just(f32::NAN),
                Just(f32::MAX),
                Just(0.2)
            ],
            count(),
            prop_oneof![Just(0usize), Just(1), Just(usize::MAX)],
            duration(),
            duration(),
            duration(),
        ),
        (
            count(),
            count(),
            duration(),
            count(),
            duration(),
            duration(),
            count(),
        ),
        (duration(), duration(), count(), count(), share()),
        (duration(), share(), count()),
        (duration(), duration(), duration(), duration()),
        duration(),
        count(),
    )
        .prop_map(
            |(breaker, rate, in_flight, retry, outlier, check, slow, ewma, timeout, pp)| Config {
                breaker,
                rate,
                in_flight,
                retry,
                outlier,
                check,
                slow,
                ewma,
                timeout,
                panic_percent: pp,
            },
        )
}

/// Builds whatever builds from `c`, serves requests through it for hours of paused time, and
/// returns how many requests were answered (for the assertion that the stack did something).
fn exercise(c: &Config) -> u32 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let mut group = TargetGroup::builder("g")
            .target(Target::new("a", "127.0.0.1:1").unwrap())
            .target(Target::new("b", "127.0.0.1:2").unwrap())
            .target(Target::new("c", "127.0.0.1:3").unwrap());
        let ewma = P2cPeakEwma::new()
            .decay(c.ewma.0)
            .default_rtt(c.ewma.1)
            .failure_penalty(c.ewma.2)
            .retry_after_cap(c.ewma.3)
            .seed(1);
        group = group.algorithm(ewma);
        let (cf, pf, base, minr, window, max, pct) = c.outlier;
        if let Ok(o) = OutlierDetection::builder()
            .consecutive_failures(cf)
            .failure_rate(f64::from(pf) / 100.0, window, minr)
            .base_ejection_time(base)
            .max_ejection_time(max)
            .max_ejection_share(f64::from(pct) / 100.0)
            .build()
        {
            group = group.outlier_detection(o);
        }
        if let Ok(s) = SlowStart::builder(c.slow.0)
            .aggression(c.slow.1)
            .min_weight_share(f64::from(c.slow.2) / 100.0)
            .build()
        {
            group = group.slow_start(s);
        }
        if let Ok(p) = PanicThreshold::new(f64::from(c.panic_percent) / 100.0) {
            group = group.panic_threshold(p);
        }
        let group = group.build().unwrap();
        let flips = Arc::new(AtomicU32::new(0));
        let f = flips.clone();
        if let Ok(check) = ActiveCheck::builder(check_fn(move |_t: &Target| {
            let n = f.fetch_add(1, Ordering::Relaxed);
            async move {
                if n % 3 == 0 {
                    Err::<(), _>("down")
                } else {
                    Ok(())
                }
            }
        }))
        .interval(c.check.0)
        .timeout(c.check.1)
        .rise(c.check.2)
        .fall(c.check.3)
        .jitter(c.check.4)
        .seed(7)
        .build()
        {
            group.health_check(check).unwrap();
        }
        let calls = Arc::new(AtomicU32::new(0));
        let k = calls.clone();
        let balance = Balance::new(group.clone(), move |_t: &Target| {
            let k = k.clone();
            service_fn(move |_r: Request<ReplayBody<String>>| {
                let n = k.fetch_add(1, Ordering::Relaxed);
                async move {
                    let mut rsp = Response::new(String::new());
                    if n % 2 == 0 {
                        *rsp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                        rsp.headers_mut()
                            .insert("retry-after", http::HeaderValue::from_static("99999999999"));
                    }
                    Ok::<_, Infallible>(rsp)
                }
            })
        });
        let core: Svc<ReplayBody<String>> = BoxCloneService::new(
            TimeoutLayer::new(c.timeout).layer(balance.map_response(|r| r.map(|_| ()))),
        );
        let (ttl, minps, pct, attempts, limit, base, cap, ra) = c.retry;
        let built = RetryPolicy::builder()
            .budget(ttl, minps, f64::from(pct))
            .max_attempts(attempts)
            .body_limit(limit)
            .backoff(base, cap)
            .jitter(Jitter::None)
            .retry_after_cap(ra)
            .build()
            .ok();
        let mut svc: Svc<String> = match built {
            Some(policy) => BoxCloneService::new(RetryLayer::new(policy).layer(core)),
            None => BoxCloneService::new(
                core.map_request(|r: Request<String>| r.map(|b| ReplayBody::new(b, 0))),
            ),
        };
        let (fr, minb, window, open, probes) = c.breaker;
        if let Ok(b) = CircuitBreakerLayer::builder("b")
            .failure_rate(fr)
            .min_requests(minb)
            .window(window)
            .open_for(open)
            .half_open_probes(probes)
            .build()
        {
            svc = BoxCloneService::new(b.layer(svc));
        }
        let (n, period, burst, keys, sweep) = c.rate;
        if let Ok(r) = RateLimitLayer::builder(LimitKey::global())
            .rate(n, period)
            .burst(burst)
            .max_keys(keys)
            .sweep_every(sweep)
            .build()
        {
            svc = BoxCloneService::new(r.layer(svc).map_err(Into::into));
        }
        let (max, per_key, keys) = c.in_flight;
        if let Ok(l) = InFlightLimitLayer::builder()
            .max_in_flight(max)
            .per_key(LimitKey::global(), per_key)
            .max_keys(keys)
            .build()
        {
            svc = BoxCloneService::new(l.layer(svc).map_response(|r| r.map(|_| ())));
        }
        let mut answered = 0;
        for step in [0u64, 1, 1_000, 60_000, 3_600_000, 1, 86_400_000, 0] {
            tokio::time::advance(Duration::from_millis(step)).await;
            for _ in 0..4 {
                // Bounded: a request that hangs (a huge timeout, a long backoff) is abandoned
                // after a paused minute.
                let fut = svc.clone().oneshot(Request::new(String::from("x")));
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(60), fut).await {
                    answered += 1;
                }
            }
        }
        answered
    })
}

/// Runs one case on a thread of its own: a deep stack of layers in a debug build needs more
/// than a test thread's 2 MiB, and the panic hook tells that thread's panics (spawned tasks
/// included, on its current-thread runtime) apart from others'.
fn panics_of(c: &Config) -> (usize, u32) {
    panicked();
    let case = c.clone();
    let worker = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || exercise(&case))
        .unwrap();
    let id = worker.thread().id();
    let joined = worker.join();
    let answered = joined.as_ref().map_or(0, |&n| n);
    let hooked = panicked()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|&&t| t == id)
        .count();
    (hooked + usize::from(joined.is_err()), answered)
}

/// Bound: 0 panics over 96 seeded cases (ChaCha, fixed seed), each with up to 32 requests over
/// a paused day.
#[test]
fn no_configuration_value_panics() {
    // The runner too gets a large stack: the value tree of this many knobs is deep.
    let answered = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| {
            let answered = std::cell::Cell::new(0u32);
            let mut runner = proptest::test_runner::TestRunner::new_with_rng(
                ProptestConfig {
                    cases: 96,
                    failure_persistence: None,
                    ..ProptestConfig::default()
                },
                proptest::test_runner::TestRng::from_seed(
                    proptest::test_runner::RngAlgorithm::ChaCha,
                    &[10; 32],
                ),
            );
            runner
                .run(&config(), |c| {
                    let (n, ok) = panics_of(&c);
                    answered.set(answered.get() + ok);
                    prop_assert_eq!(n, 0, "{} panics with {:?}", n, c);
                    Ok(())
                })
                .unwrap();
            answered.get()
        })
        .unwrap()
        .join()
        .unwrap();
    // The stacks did serve: many of the 96 × 32 requests got an answer.
    assert!(answered > 300, "only {answered} requests answered");
}

/// The algorithms' knobs at their extremes (shares, counts): each is refused with a typed error
/// or builds a selector that picks. Bound: every one of the built groups answers 10 picks.
#[test]
fn algorithm_knobs_at_their_extremes_build_or_refuse() {
    use tower_lb::algorithm::{HashRing, Maglev, P2cInFlight};
    let shares = [
        0.0,
        -1.0,
        f64::NAN,
        f64::INFINITY,
        f64::MIN_POSITIVE,
        1.0,
        1.25,
        f64::MAX,
    ];
    let counts = [0u32, 1, 2, 160, u32::MAX];
    let mut groups = Vec::new();
    let base = || {
        TargetGroup::builder("g")
            .target(Target::new("a", "127.0.0.1:1").unwrap())
            .target(Target::new("b", "127.0.0.1:2").unwrap())
    };
    for &s in &shares {
        groups.push(
            base()
                .algorithm(
                    P2cInFlight::new()
                        .bias(s)
                        .unwrap_or_else(|_| P2cInFlight::new())
                        .seed(1),
                )
                .build()
                .unwrap(),
        );
        if let Ok(ring) = HashRing::new().bounded_load(s) {
            groups.push(base().algorithm(ring).build().unwrap());
        }
    }
    for &n in &counts {
        groups.push(base().algorithm(HashRing::new().vnodes(n)).build().unwrap());
        if let Ok(m) = Maglev::new().table_size(u64::from(n)) {
            groups.push(base().algorithm(m).build().unwrap());
        }
    }
    assert!(Maglev::new().table_size(u64::MAX).is_err());
    assert!(groups.len() >= 15);
    for g in &groups {
        let p = g.picker();
        for k in 0..10u64 {
            assert!(p.pick(Some(k)).is_some());
        }
    }
}
