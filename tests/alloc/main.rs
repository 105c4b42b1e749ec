//! Allocation counting: a pick, and a whole `Balance` dispatch on an always-ready service, must not
//! allocate; the resilience stack over it adds nothing but the retry's copy of request headers.
//! Its own test binary, because the counting allocator is process-global.
#![allow(unsafe_code)] // the counting allocator; the library itself forbids unsafe code

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;

use futures_util::FutureExt;
use http::{Request, Response};
use tower::{Service, service_fn};
use tower_lb::algorithm::{
    Algorithm, HashRing, LeastConnections, Maglev, P2cInFlight, P2cPeakEwma, RoundRobin,
    SmoothWeightedRoundRobin, WeightedRandom,
};
use tower_lb::balance::Balance;
use tower_lb::key::Key;
use tower_lb::{Target, TargetGroup, target::AdminState};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts calls made on the current thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

fn check(algorithm: impl Algorithm, served_by: Option<bool>, expected: f64) {
    let name = format!("{algorithm:?}");
    let group = TargetGroup::builder("g")
        .algorithm(algorithm)
        .targets((0..16).map(|i| {
            Target::builder(format!("t{i}"), "127.0.0.1:1")
                .weight(1 + i % 4)
                .build()
                .unwrap()
        }))
        .build()
        .unwrap();
    let balance = Balance::new(group, |_t: &Target| {
        service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) })
    });
    let mut balance = match served_by {
        Some(record) => balance.served_by(record),
        None => balance,
    };
    // Warm up: the first call may build the per-target service table.
    for _ in 0..10 {
        drop(balance.call(Request::new(())).now_or_never());
    }
    let before = allocs();
    for _ in 0..1000 {
        let rsp = balance
            .call(Request::new(()))
            .now_or_never()
            .unwrap()
            .unwrap();
        drop(rsp);
    }
    let per_call = (allocs() - before) as f64 / 1000.0;
    assert_eq!(
        per_call, expected,
        "{name} (served_by {served_by:?}): {per_call} allocations per dispatch"
    );
}

/// By default a successful response is not tagged, so a dispatch allocates nothing.
#[test]
fn default_dispatch_does_not_allocate() {
    check(RoundRobin::new(), None, 0.0);
    check(P2cInFlight::new().seed(1), None, 0.0);
    check(P2cPeakEwma::new().seed(1), None, 0.0);
    check(Maglev::new(), None, 0.0);
}

#[test]
fn dispatch_without_served_by_does_not_allocate() {
    check(RoundRobin::new(), Some(false), 0.0);
    check(SmoothWeightedRoundRobin::new(), Some(false), 0.0);
    check(WeightedRandom::new().seed(1), Some(false), 0.0);
    check(LeastConnections::new().seed(1), Some(false), 0.0);
    check(P2cInFlight::new().seed(1), Some(false), 0.0);
    check(P2cPeakEwma::new().seed(1), Some(false), 0.0);
    check(HashRing::new(), Some(false), 0.0);
    check(
        HashRing::new().bounded_load(1.25).unwrap(),
        Some(false),
        0.0,
    );
    check(Maglev::new(), Some(false), 0.0);
}

/// Pick only, keyed and unkeyed, with some targets unavailable so the fallback paths run too.
#[test]
fn picks_do_not_allocate() {
    type SetAlgorithm = Box<dyn Fn(&TargetGroup)>;
    let algorithms: Vec<SetAlgorithm> = vec![
        Box::new(|g| g.set_algorithm(RoundRobin::new())),
        Box::new(|g| g.set_algorithm(SmoothWeightedRoundRobin::new())),
        Box::new(|g| g.set_algorithm(WeightedRandom::new())),
        Box::new(|g| g.set_algorithm(LeastConnections::new())),
        Box::new(|g| g.set_algorithm(P2cInFlight::new())),
        Box::new(|g| g.set_algorithm(P2cInFlight::new().bias(2.0).unwrap())),
        Box::new(|g| g.set_algorithm(P2cPeakEwma::new())),
        Box::new(|g| g.set_algorithm(HashRing::new())),
        Box::new(|g| g.set_algorithm(HashRing::new().bounded_load(1.25).unwrap())),
        Box::new(|g| g.set_algorithm(Maglev::new())),
    ];
    let group = TargetGroup::builder("g")
        .targets((0..100).map(|i| {
            Target::builder(format!("t{i:03}"), "127.0.0.1:1")
                .weight(1 + i % 3)
                .build()
                .unwrap()
        }))
        .build()
        .unwrap();
    for i in (0..100).step_by(7) {
        group
            .set_admin(&format!("t{i:03}").into(), AdminState::Disabled)
            .unwrap();
    }
    for set in &algorithms {
        set(&group);
        let picker = group.picker();
        let before = allocs();
        let mut sum = 0;
        for k in 0..10_000u64 {
            sum += picker
                .pick(Some(k.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
                .unwrap();
            sum += picker.pick(None).unwrap();
        }
        assert!(sum > 0);
        assert_eq!(allocs() - before, 0, "{:?} allocated", group.picker());
    }
}

/// Hashing a request key allocates nothing either.
#[test]
fn request_keys_do_not_allocate() {
    let req = Request::get("/users/7?id=42")
        .header("x-user", "alice")
        .header("cookie", "a=1; session=abc")
        .body(())
        .unwrap();
    let keys = [
        Key::header("x-user").unwrap(),
        Key::cookie("session"),
        Key::path(),
        Key::query("id"),
        Key::custom(|r| Some(r.uri().path().len() as u64)),
    ];
    let before = allocs();
    for key in &keys {
        assert!(key.hash(&req).is_some());
    }
    assert_eq!(allocs() - before, 0);
}

/// The `ServedBy` response extension is the only allocating step: `http::Extensions` boxes its map,
/// allocates the table and boxes the value.
#[test]
fn served_by_costs_exactly_the_extension_insert() {
    check(RoundRobin::new(), Some(true), 3.0);
    check(LeastConnections::new().seed(1), Some(true), 3.0);
}

/// The in-flight limit moves its permit into the response body: no allocation per request,
/// group-wide or per key (the key map keeps its capacity once a key has been seen).
#[test]
fn in_flight_limit_does_not_allocate() {
    use tower::Layer;
    use tower_lb::limit::{InFlightLimitLayer, LimitKey};
    let layers = [
        InFlightLimitLayer::new(100),
        InFlightLimitLayer::builder()
            .max_in_flight(100)
            .per_key(LimitKey::custom(|r| Some(r.uri().path().len() as u64)), 10)
            .build()
            .unwrap(),
    ];
    for layer in layers {
        let mut svc = layer.layer(service_fn(|_r: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
        for _ in 0..10 {
            drop(svc.call(Request::new(())).now_or_never());
        }
        let before = allocs();
        for _ in 0..1000 {
            let rsp = svc.call(Request::new(())).now_or_never().unwrap().unwrap();
            assert_eq!(layer.in_flight(), 1);
            drop(rsp);
        }
        assert_eq!(allocs() - before, 0, "{layer:?}");
        assert_eq!(layer.in_flight(), 0);
    }
}

/// The resilience stack over `Balance` (rate limit, overall timeout, retry, breaker) allocates
/// nothing per request once the thread has served one: the retry's copy keeps the request's head
/// (the header fields as bytes, up to 512 in place) in a buffer the request before it left, and
/// the rest in its response future (a `HeaderMap` copy alone would take two allocations, its
/// entries and its index table). Header fields beyond those 512 bytes take one allocation.
#[test]
fn resilience_stack_allocates_only_an_oversized_header_copy() {
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::Empty;
    use tower::{ServiceBuilder, ServiceExt};
    use tower_lb::breaker::CircuitBreakerLayer;
    use tower_lb::retry::{ReplayBody, RetryLayer, RetryPolicy};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let group = TargetGroup::builder("g")
        .target(Target::new("a", "127.0.0.1:1").unwrap())
        .build()
        .unwrap();
    let balance = Balance::new(group, |_t: &Target| {
        service_fn(|_r: Request<ReplayBody<Empty<Bytes>>>| async {
            Ok::<_, tower_lb::BoxError>(Response::new(String::new()))
        })
    })
    .served_by(false);
    let builder = ServiceBuilder::new();
    #[cfg(feature = "governor")]
    let builder = builder.layer(
        tower_lb::limit::RateLimitLayer::builder(tower_lb::limit::LimitKey::custom(|_| Some(1)))
            .rate(1_000_000_000, Duration::from_secs(1))
            .burst(1_000_000)
            .build()
            .unwrap(),
    );
    let mut svc = builder
        .layer(tower_lb::timeout::TimeoutLayer::new(Duration::from_secs(
            10,
        )))
        .layer(RetryLayer::new(RetryPolicy::new()))
        .layer(CircuitBreakerLayer::new("g"))
        .service(balance);
    let none = http::HeaderMap::new();
    let mut typical = http::HeaderMap::new();
    typical.insert("host", "example.com".parse().unwrap());
    typical.insert("accept", "*/*".parse().unwrap());
    typical.insert("user-agent", "test/1.0".parse().unwrap());
    let mut large = typical.clone();
    large.insert("cookie", "c".repeat(600).parse().unwrap());

    for (name, headers, expected) in [
        ("none", &none, 0.0),
        ("typical", &typical, 0.0),
        ("large", &large, 1.0),
    ] {
        let requests = || {
            (0..1000)
                .map(|_| {
                    let mut req = Request::new(Empty::<Bytes>::new());
                    *req.headers_mut() = headers.clone();
                    req
                })
                .collect::<Vec<_>>()
        };
        // Warm up (the key store, the budget's first deposits), then count.
        for req in requests() {
            let ready = svc.ready().now_or_never().unwrap().unwrap();
            drop(ready.call(req).now_or_never());
        }
        let requests = requests();
        let before = allocs();
        for req in requests {
            let ready = svc.ready().now_or_never().unwrap().unwrap();
            let rsp = ready.call(req).now_or_never().unwrap().unwrap();
            drop(rsp);
        }
        let per_request = (allocs() - before) as f64 / 1000.0;
        assert_eq!(
            per_request, expected,
            "{name} headers: {per_request} allocations per request"
        );
    }
}

/// Routing: matching a request against 100 mixed rules (prefix, glob, header, method, host,
/// query, and regex with the feature) and dispatching it through the `Router` allocate nothing
/// when the path is already normal and `Routed` recording is off.
#[test]
fn route_matching_and_dispatch_do_not_allocate() {
    use tower_lb::route::{Router, Rule, Split};
    let mut rules = Vec::new();
    for i in 0..100 {
        let rule = Rule::new(format!("r{i}"));
        rules.push(match i % 5 {
            0 => rule.prefix(format!("/svc{i}")).to("a"),
            1 => rule
                .path(format!("/api/v{i}/*"))
                .method(http::Method::GET)
                .to("b"),
            2 => rule
                .path(format!("/users/*/orders{i}"))
                .header("x-tenant", format!("t{i}"))
                .to("a"),
            3 => rule
                .prefix(format!("/split{i}"))
                .split(Split::new().to("a", 90).to("b", 10).by_header("x-user")),
            _ => rule
                .prefix(format!("/q{i}"))
                .query("v", "2")
                .host("*.example.com")
                .to("b"),
        });
    }
    #[cfg(feature = "regex")]
    rules.push(Rule::new("regex").path_regex("/re/[0-9]+").to("a"));
    let svc =
        service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let mut router = Router::builder()
        .destination("a", svc)
        .destination("b", svc)
        .rules(rules)
        .fallback("a")
        .random_seed(1)
        .build()
        .unwrap();
    let reqs: Vec<Request<()>> = [
        "/svc50/x",
        "/api/v51/items",
        "/users/7/orders52",
        "/split53/a",
        "/q54?v=2",
        "/re/123",
        "/nothing/here",
    ]
    .iter()
    .map(|p| {
        Request::get(*p)
            .header("x-tenant", "t52")
            .header("x-user", "u1")
            .header("host", "api.example.com")
            .body(())
            .unwrap()
    })
    .collect();
    // Warm up: arc-swap's per-thread debt slots and the regex's per-thread cache are
    // allocated on first use.
    for r in &reqs {
        router.matching_rule(r);
    }
    let before = allocs();
    let mut hits = 0;
    for _ in 0..1000 {
        for r in &reqs {
            hits += router.matching_rule(r).is_some() as u32;
        }
    }
    assert_eq!(allocs() - before, 0, "matching allocated");
    assert!(hits >= 5000);
    // Dispatch (the request is moved in, so build them first).
    let mut batch: Vec<Request<()>> = (0..1000)
        .map(|i| {
            Request::get(if i % 2 == 0 { "/svc50/x" } else { "/split53/a" })
                .header("x-user", "u1")
                .body(())
                .unwrap()
        })
        .collect();
    let before = allocs();
    for req in batch.drain(..) {
        let rsp = router.call(req).now_or_never().unwrap().unwrap();
        drop(rsp);
    }
    assert_eq!(allocs() - before, 0, "dispatch allocated");
}

/// Statistics are recorded on every dispatch (status class, outcome, latency window) without
/// allocating, and they count every request.
#[test]
fn recording_statistics_does_not_allocate() {
    let group = TargetGroup::builder("g")
        .targets((0..4).map(|i| Target::new(format!("t{i}"), "127.0.0.1:1").unwrap()))
        .build()
        .unwrap();
    let mut balance = Balance::new(group, |_t: &Target| {
        service_fn(|_r: Request<()>| async {
            let mut rsp = Response::new(String::new());
            *rsp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            Ok::<_, Infallible>(rsp)
        })
    })
    .served_by(false);
    for _ in 0..10 {
        drop(balance.call(Request::new(())).now_or_never());
    }
    let before = allocs();
    for _ in 0..1000 {
        drop(
            balance
                .call(Request::new(()))
                .now_or_never()
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(allocs() - before, 0, "recording allocated");
    let report = balance.report();
    assert_eq!(report.responses().class(5), 1010);
    assert_eq!(report.failures().status(), 1010);
    assert_eq!(report.latency().count(), 1010);
}
