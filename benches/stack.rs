//! Resilience stack benchmarks, peers side by side in one run:
//!
//! 1. per-request overhead of the full stack (rate limit + deadline + retry + breaker +
//!    balance) on an always-ready service, against tower's `ConcurrencyLimit` + `Timeout` and
//!    against tower's `Buffer`; with allocations per request (counting global allocator);
//! 2. retry amplification (attempts per request) at 0/10/50/100% failure, against naive
//!    3-attempt retries and tower's `Retry` with a `TpsBudget`.
//!
//! ```text
//! cargo bench --all-features --bench stack -- --warm-up-time 1 --measurement-time 2
//! ```
//!
//! One table alone: `STACK_TABLES=overhead` (the resilience layers over a stub), `realistic`,
//! `sticky`, `facade` (`http` for the
//! facade over loopback HTTP); with the filter `zzz-no-criterion-match`.
//!
//! For profiling the realistic-request table alone: `STACK_REALISTIC_ONLY=1` (skips the rest),
//! `STACK_ROWS=retry` (keeps the rows whose names contain `retry`), `STACK_SIZES=1` (prints
//! each layer's response future size).

mod common;

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio::runtime::Runtime;
use tokio::time::Instant;
use tower::retry::Policy;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_lb::BoxError;
use tower_lb::balance::{Balance, BalanceLayer};
use tower_lb::breaker::CircuitBreakerLayer;
use tower_lb::key::ClientAddr;
use tower_lb::lb::{CircuitBreaker as LbBreaker, LoadBalancer};
use tower_lb::limit::{LimitKey, RateLimitLayer};
use tower_lb::retry::{Jitter, ReplayBody, RetryLayer, RetryPolicy};
use tower_lb::sticky::StickyLayer;
use tower_lb::timeout::TimeoutLayer;
use tower_lb::upstream::ErrorResponseLayer;
use tower_lb::{Target, TargetGroup};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

type Rsp = Response<Empty<Bytes>>;

fn ok_rsp() -> Rsp {
    Response::new(Empty::new())
}

/// Sends `n` requests one after another through `svc`; returns the time taken.
async fn drive<S>(svc: &mut S, n: u64) -> Duration
where
    S: Service<Request<Empty<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for _ in 0..n {
        let svc = svc.ready().await.unwrap();
        let rsp = svc.call(Request::new(Empty::new())).await.unwrap();
        black_box(rsp);
    }
    start.elapsed()
}

fn balance<B: Send + 'static>() -> Balance<
    impl Service<Request<B>, Response = Rsp, Error = BoxError, Future = Ready<Result<Rsp, BoxError>>>
    + Clone
    + Send
    + Sync
    + 'static,
> {
    let group = TargetGroup::builder("bench")
        .target(Target::new("a", "127.0.0.1:1").unwrap())
        .build()
        .unwrap();
    Balance::new(group, |_t: &Target| {
        service_fn(|_r: Request<B>| ready(Ok::<_, BoxError>(ok_rsp())))
    })
}

fn rate_limit() -> RateLimitLayer {
    RateLimitLayer::builder(LimitKey::global())
        .rate(1_000_000_000, Duration::from_secs(1))
        .burst(1_000_000)
        .build()
        .unwrap()
}

/// The same limit with a per-request key (a closure key: hashed, then looked up in the bounded
/// key store), where the global key takes governor's one-atomic direct limiter.
fn keyed_rate_limit() -> RateLimitLayer {
    RateLimitLayer::builder(LimitKey::custom(|_| Some(1)))
        .rate(1_000_000_000, Duration::from_secs(1))
        .burst(1_000_000)
        .build()
        .unwrap()
}

fn full_stack()
-> impl Service<Request<Empty<Bytes>>, Response = Response<impl Sized>, Error = BoxError> + Clone {
    ServiceBuilder::new()
        .layer(rate_limit())
        .layer(TimeoutLayer::new(Duration::from_secs(10)))
        .layer(RetryLayer::new(RetryPolicy::new()))
        .layer(CircuitBreakerLayer::new("bench"))
        .service(balance::<ReplayBody<Empty<Bytes>>>())
}

/// The same stack with tower's `Timeout` (a clock read and a timer per request), for comparison.
fn full_stack_tower_timeout()
-> impl Service<Request<Empty<Bytes>>, Response = Response<impl Sized>, Error = BoxError> + Clone {
    ServiceBuilder::new()
        .layer(rate_limit())
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(10)))
        .layer(RetryLayer::new(RetryPolicy::new()))
        .layer(CircuitBreakerLayer::new("bench"))
        .service(balance::<ReplayBody<Empty<Bytes>>>())
}

fn bare() -> impl Service<
    Request<Empty<Bytes>>,
    Response = Rsp,
    Error = Infallible,
    Future = Ready<Result<Rsp, Infallible>>,
> + Clone
+ Send
+ 'static {
    service_fn(|_r: Request<Empty<Bytes>>| ready(Ok::<_, Infallible>(ok_rsp())))
}

fn tower_limit_timeout() -> impl Service<Request<Empty<Bytes>>, Response = Rsp, Error = BoxError> {
    ServiceBuilder::new()
        .concurrency_limit(1024)
        .timeout(Duration::from_secs(10))
        .service(bare())
}

macro_rules! variants {
    ($rt:expr, $f:ident) => {{
        let _g = $rt.enter();
        vec![
            ("bare service", $f!(bare())),
            ("balance alone", $f!(balance::<Empty<Bytes>>())),
            (
                "balance + breaker",
                $f!(CircuitBreakerLayer::new("b").layer(balance::<Empty<Bytes>>())),
            ),
            (
                "balance + retry",
                $f!(RetryLayer::new(RetryPolicy::new())
                    .layer(balance::<ReplayBody<Empty<Bytes>>>())),
            ),
            (
                "balance + rate limit",
                $f!(rate_limit().layer(balance::<Empty<Bytes>>())),
            ),
            (
                "balance + rate limit (keyed)",
                $f!(keyed_rate_limit().layer(balance::<Empty<Bytes>>())),
            ),
            (
                "balance + timeout (tower-lb)",
                $f!(TimeoutLayer::new(Duration::from_secs(10)).layer(balance::<Empty<Bytes>>())),
            ),
            (
                "balance + timeout (tower)",
                $f!(tower::timeout::TimeoutLayer::new(Duration::from_secs(10))
                    .layer(balance::<Empty<Bytes>>())),
            ),
            ("tower-lb full stack", $f!(full_stack())),
            (
                "full stack, tower's Timeout",
                $f!(full_stack_tower_timeout()),
            ),
            ("tower ConcurrencyLimit+Timeout", $f!(tower_limit_timeout())),
            (
                "tower Buffer",
                $f!(tower::buffer::Buffer::new(bare(), 1024)),
            ),
        ]
    }};
}

type Runner<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

fn runner<'a, S>(rt: &'a Runtime, mut svc: S) -> Runner<'a>
where
    S: Service<Request<Empty<Bytes>>> + 'a,
    S::Error: std::fmt::Debug,
{
    Box::new(move |n| rt.block_on(drive(&mut svc, n)))
}

/// Rounds interleave the variants, so drift on a shared machine hits them all alike.
fn overhead_table(rt: &Runtime) {
    macro_rules! m {
        ($s:expr) => {
            runner(rt, $s)
        };
    }
    let mut rows = variants!(rt, m);
    const N: u64 = 20_000;
    const ROUNDS: usize = 15;
    let mut times = vec![Vec::new(); rows.len()];
    for (_, run) in rows.iter_mut() {
        run(N); // warm up
    }
    for _ in 0..ROUNDS {
        for (i, (_, run)) in rows.iter_mut().enumerate() {
            times[i].push(run(N).as_nanos() as f64 / N as f64);
        }
    }
    let allocs: Vec<f64> = rows
        .iter_mut()
        .map(|(_, run)| {
            let region = Region::new(GLOBAL);
            run(N);
            region.change().allocations as f64 / N as f64
        })
        .collect();
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect();
    let base = medians[0];
    let balance = medians[1];
    println!(
        "\n== per-request overhead (median of {ROUNDS} interleaved rounds × {N} sequential requests)"
    );
    println!(
        "{:<34} {:>9} {:>10} {:>12} {:>12}",
        "variant", "ns/req", "vs bare", "vs balance", "allocs/req"
    );
    for (i, (name, _)) in rows.iter().enumerate() {
        let ns = medians[i];
        println!(
            "{name:<34} {ns:>9.1} {:>+10.1} {:>+12.1} {:>12.2}",
            ns - base,
            ns - balance,
            allocs[i]
        );
    }
}

/// Allocations per request when requests carry three headers (the table's requests carry none):
/// the retry layer keeps a copy of each request for a possible retry, and copying a non-empty
/// `HeaderMap` allocates.
fn header_allocs(rt: &Runtime) {
    async fn count<S>(mut svc: S, n: u64) -> f64
    where
        S: Service<Request<Empty<Bytes>>>,
        S::Error: std::fmt::Debug,
    {
        let mut template = http::HeaderMap::new();
        template.insert("host", "example.com".parse().unwrap());
        template.insert("accept", "*/*".parse().unwrap());
        template.insert("user-agent", "bench/1.0".parse().unwrap());
        let region = Region::new(GLOBAL);
        for _ in 0..n {
            let mut req = Request::new(Empty::new());
            *req.headers_mut() = template.clone();
            let rsp = svc.ready().await.unwrap().call(req).await.unwrap();
            black_box(rsp);
        }
        region.change().allocations as f64 / n as f64
    }
    let _g = rt.enter();
    let n = 20_000;
    let bare = rt.block_on(count(bare(), n));
    let balance = rt.block_on(count(balance::<Empty<Bytes>>(), n));
    let full = rt.block_on(count(full_stack(), n));
    println!(
        "\n== allocations per request with 3 request headers (copying them for the request costs {bare:.2})"
    );
    println!(
        "balance alone {balance:.2}, tower-lb full stack {full:.2}: the stack adds {:+.2}",
        full - balance
    );
}

// ---- Sticky sessions and the facade ----------------------------------------------------------

type Run<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

fn run<'a, S>(rt: &'a Runtime, mut svc: S, headers: &'a http::HeaderMap) -> Run<'a>
where
    S: Service<Request<Empty<Bytes>>> + 'a,
    S::Error: std::fmt::Debug,
{
    Box::new(move |n| rt.block_on(common::drive_requests(&mut svc, headers, None, n)))
}

/// As [`run`], each request carrying a [`ClientAddr`] extension as a server's requests do (so
/// their extension map exists before the layers under test add to it).
fn run_addr<'a, S>(rt: &'a Runtime, mut svc: S, headers: &'a http::HeaderMap) -> Run<'a>
where
    S: Service<Request<Empty<Bytes>>> + 'a,
    S::Error: std::fmt::Debug,
{
    let addr = ClientAddr("192.0.2.7:51000".parse().unwrap());
    Box::new(move |n| rt.block_on(common::drive_requests(&mut svc, headers, Some(addr), n)))
}

/// Runs the rows in interleaved rounds and prints medians against the first row.
fn interleaved_table(title: &str, mut rows: Vec<(&str, Run<'_>)>) {
    const N: u64 = 20_000;
    const ROUNDS: usize = 15;
    let mut times = vec![Vec::new(); rows.len()];
    for (_, r) in rows.iter_mut() {
        r(N);
    }
    for _ in 0..ROUNDS {
        for (i, (_, r)) in rows.iter_mut().enumerate() {
            times[i].push(r(N).as_nanos() as f64 / N as f64);
        }
    }
    let allocs: Vec<f64> = rows
        .iter_mut()
        .map(|(_, r)| {
            let region = Region::new(GLOBAL);
            r(N);
            region.change().allocations as f64 / N as f64
        })
        .collect();
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect();
    println!("\n== {title} (median of {ROUNDS} interleaved rounds × {N} requests)");
    println!(
        "{:<36} {:>9} {:>12} {:>8} {:>12}",
        "variant", "ns/req", "vs first", "ratio", "allocs/req"
    );
    for (i, (name, _)) in rows.iter().enumerate() {
        println!(
            "{name:<36} {:>9.1} {:>+12.1} {:>8.3} {:>12.2}",
            medians[i],
            medians[i] - medians[0],
            medians[i] / medians[0],
            allocs[i]
        );
    }
}

/// What the sticky layer adds per request over `Balance`, every request carrying the same
/// `Cookie` header (so copying it costs both sides alike): a valid cookie (the hit path: verify
/// the token, set the affinity, no `Set-Cookie`), no sticky cookie (a fresh one is signed and
/// set), a forged one (rejected, then as without).
fn sticky_overhead(rt: &Runtime) {
    let _g = rt.enter();
    let group = TargetGroup::builder("bench")
        .target(Target::new("a", "127.0.0.1:1").unwrap())
        .target(Target::new("b", "127.0.0.1:2").unwrap())
        .build()
        .unwrap();
    let balance = || {
        Balance::new(group.clone(), |_t: &Target| {
            service_fn(|_r: Request<Empty<Bytes>>| ready(Ok::<_, BoxError>(ok_rsp())))
        })
    };
    let layer = StickyLayer::cookie("SERVERID")
        .group(&group)
        .key([7u8; 32])
        .build()
        .unwrap();
    let token = layer.issue("bench", &"b".into()).unwrap();
    // The affinity the layer sets for that token (with the target's position in its group).
    let affinity = layer.resolve(&token).unwrap();
    let headers = |cookie: String| {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::COOKIE, cookie.parse().unwrap());
        h
    };
    let valid = headers(format!("theme=dark; SERVERID={token}"));
    let forged = headers(format!("theme=dark; SERVERID={}", "A".repeat(50)));
    let none = headers("theme=dark; lang=en".into());
    interleaved_table(
        "sticky sessions over Balance, every request with a Cookie header",
        vec![
            ("balance, cookie header", run(rt, balance(), &valid)),
            (
                "balance served_by(true)",
                run(rt, balance().served_by(true), &valid),
            ),
            (
                "sticky + balance: hit",
                run(rt, layer.layer(balance()), &valid),
            ),
            (
                "sticky + balance: no cookie",
                run(rt, layer.layer(balance()), &none),
            ),
            (
                "sticky + balance: forged",
                run(rt, layer.layer(balance()), &forged),
            ),
            // The floor of any layer that hands its choice to `Balance` in the request: a
            // prebuilt `Affinity` inserted (boxed) and honoured, no cookie work at all.
            (
                "balance + Affinity inserted",
                run(rt, affinity_inserted(balance(), affinity.clone()), &valid),
            ),
        ],
    );
    interleaved_table(
        "the same, every request also carrying a ClientAddr extension (as from a server)",
        vec![
            (
                "balance, cookie + ClientAddr",
                run_addr(rt, balance(), &valid),
            ),
            (
                "sticky + balance: hit",
                run_addr(rt, layer.layer(balance()), &valid),
            ),
            (
                "balance + Affinity inserted",
                run_addr(rt, affinity_inserted(balance(), affinity), &valid),
            ),
        ],
    );
}

/// `inner` with a prebuilt `affinity` added to every request.
fn affinity_inserted<S, B>(
    inner: S,
    affinity: tower_lb::balance::Affinity,
) -> impl Service<Request<B>, Response = S::Response, Error = S::Error>
where
    S: Service<Request<B>>,
{
    ServiceBuilder::new()
        .map_request(move |mut r: Request<B>| {
            r.extensions_mut().insert(affinity.clone());
            r
        })
        .service(inner)
}

/// The `LoadBalancer` facade against the same layers composed by hand, over the same stub
/// client: what the facade itself adds.
fn facade_overhead(rt: &Runtime) {
    let _g = rt.enter();
    fn client() -> impl Service<
        Request<ReplayBody<Empty<Bytes>>>,
        Response = Rsp,
        Error = BoxError,
        Future = Ready<Result<Rsp, BoxError>>,
    > + Clone
    + Send
    + Sync
    + 'static {
        service_fn(|_r: Request<ReplayBody<Empty<Bytes>>>| ready(Ok::<_, BoxError>(ok_rsp())))
    }
    let group = |name: &str| {
        TargetGroup::builder(name)
            .target(Target::new("a", "127.0.0.1:1").unwrap())
            .build()
            .unwrap()
    };
    let minimal_facade = LoadBalancer::builder()
        .with_name("m")
        .with_target(Target::new("a", "127.0.0.1:1").unwrap())
        .build_with_client::<Empty<Bytes>, _>(client())
        .unwrap();
    let minimal_hand = ServiceBuilder::new()
        .layer(ErrorResponseLayer::new())
        .layer(RetryLayer::new(RetryPolicy::new()))
        .layer(BalanceLayer::new(group("m")))
        .service(client());
    let full_facade = LoadBalancer::builder()
        .with_name("f")
        .with_target(Target::new("a", "127.0.0.1:1").unwrap())
        .with_circuit_breaker(LbBreaker::new())
        .with_timeout(Duration::from_secs(10))
        .with_attempt_timeout(Duration::from_secs(5))
        .build_with_client::<Empty<Bytes>, _>(client())
        .unwrap();
    let full_hand = ServiceBuilder::new()
        .layer(ErrorResponseLayer::new())
        .layer(TimeoutLayer::new(Duration::from_secs(10)))
        .layer(RetryLayer::new(RetryPolicy::new()))
        .layer(CircuitBreakerLayer::new("f"))
        .layer(TimeoutLayer::new(Duration::from_secs(5)))
        .layer(BalanceLayer::new(group("f")))
        .service(client());
    // What the facade always has that the minimal stack by hand does not: a router (so rules
    // can be set at run time), with one destination and no rules.
    let routed_hand = ServiceBuilder::new()
        .layer(ErrorResponseLayer::new())
        .layer(RetryLayer::new(RetryPolicy::new()))
        .service(
            tower_lb::route::Router::builder()
                .destination("m", BalanceLayer::new(group("m")).layer(client()))
                .fallback("m")
                .build()
                .unwrap(),
        );
    let no_headers = http::HeaderMap::new();
    interleaved_table(
        "LoadBalancer facade vs the same layers by hand",
        vec![
            (
                "by hand: error+retry+balance",
                run(rt, minimal_hand, &no_headers),
            ),
            (
                "by hand: error+retry+router+balance",
                run(rt, routed_hand, &no_headers),
            ),
            ("facade: defaults", run(rt, minimal_facade, &no_headers)),
            (
                "by hand: +breaker+2 timeouts",
                run(rt, full_hand, &no_headers),
            ),
            (
                "facade: +breaker+2 timeouts",
                run(rt, full_facade, &no_headers),
            ),
        ],
    );
}

/// The facade against the same layers by hand over loopback HTTP (the pooled client, one hyper
/// backend): what the facade's cost is next to a network hop. Each response body is read, so
/// connections are reused.
fn facade_over_http(rt: &Runtime) {
    use http_body_util::{BodyExt, Full};
    let _g = rt.enter();
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_r: Request<hyper::body::Incoming>| {
                        ready(Ok::<_, Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        addr
    });
    let target = || Target::new("a", addr).unwrap();
    let facade = LoadBalancer::builder()
        .with_name("h")
        .with_target(target())
        .build::<Empty<Bytes>>()
        .unwrap();
    let group = TargetGroup::builder("h").target(target()).build().unwrap();
    let hand = ServiceBuilder::new()
        .layer(ErrorResponseLayer::new())
        .layer(RetryLayer::new(RetryPolicy::new()))
        .layer(BalanceLayer::new(group))
        .service(tower_lb::upstream::HttpClient::<ReplayBody<Empty<Bytes>>>::new());

    async fn drive_http<S, RB>(svc: &mut S, n: u64) -> Duration
    where
        S: Service<Request<Empty<Bytes>>, Response = Response<RB>>,
        S::Error: std::fmt::Debug,
        RB: http_body::Body,
        RB::Error: std::fmt::Debug,
    {
        let start = Instant::now();
        for _ in 0..n {
            let req = Request::get("/").body(Empty::new()).unwrap();
            let rsp = svc.ready().await.unwrap().call(req).await.unwrap();
            black_box(rsp.into_body().collect().await.unwrap());
        }
        start.elapsed()
    }
    const N: u64 = 2_000;
    const ROUNDS: usize = 9;
    let (mut hand, mut facade) = (hand, facade);
    let mut times = [Vec::new(), Vec::new()];
    rt.block_on(drive_http(&mut hand, N));
    rt.block_on(drive_http(&mut facade, N));
    for _ in 0..ROUNDS {
        times[0].push(rt.block_on(drive_http(&mut hand, N)).as_nanos() as f64 / N as f64);
        times[1].push(rt.block_on(drive_http(&mut facade, N)).as_nanos() as f64 / N as f64);
    }
    let median = |t: &mut Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let (h, f) = (median(&mut times[0]), median(&mut times[1]));
    println!(
        "\n== LoadBalancer facade over loopback HTTP (median of {ROUNDS} interleaved rounds × {N} requests)"
    );
    println!("by hand: error+retry+balance+HttpClient {h:>10.0} ns/req");
    println!(
        "facade, defaults                         {f:>10.0} ns/req  ({:+.0} ns, ratio {:.3})",
        f - h,
        f / h
    );
}

// ---- Retry amplification ---------------------------------------------------------------------

/// Fails request `i` (and all its attempts) when `i % 100 < pct`: a backend that is down for
/// that share of requests, whatever the retry does.
fn failing(
    pct: u64,
    attempts: Arc<AtomicU64>,
) -> impl Service<Request<ReplayBody<Empty<Bytes>>>, Response = Rsp, Error = BoxError> + Clone {
    service_fn(move |r: Request<ReplayBody<Empty<Bytes>>>| {
        attempts.fetch_add(1, Ordering::Relaxed);
        let i = r
            .headers()
            .get("x-i")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let mut rsp = ok_rsp();
        if i.unwrap_or(0) % 100 < pct {
            *rsp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        ready(Ok(rsp))
    })
}

/// Naive: up to 3 attempts on any 503, no budget.
#[derive(Clone)]
struct Naive(u32);

/// tower's `Retry` with a `TpsBudget` (defaults: 10 s, 10/s, 20%), up to 3 attempts on 503.
#[derive(Clone)]
struct Budgeted(Arc<TpsBudget>, u32);

impl Policy<Request<ReplayBody<Empty<Bytes>>>, Rsp, BoxError> for Naive {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _: &mut Request<ReplayBody<Empty<Bytes>>>,
        r: &mut Result<Rsp, BoxError>,
    ) -> Option<Ready<()>> {
        self.0 += 1;
        (matches!(r, Ok(rsp) if rsp.status() == 503) && self.0 < 3).then(|| ready(()))
    }

    fn clone_request(
        &mut self,
        req: &Request<ReplayBody<Empty<Bytes>>>,
    ) -> Option<Request<ReplayBody<Empty<Bytes>>>> {
        clone(req)
    }
}

impl Policy<Request<ReplayBody<Empty<Bytes>>>, Rsp, BoxError> for Budgeted {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _: &mut Request<ReplayBody<Empty<Bytes>>>,
        r: &mut Result<Rsp, BoxError>,
    ) -> Option<Ready<()>> {
        self.1 += 1;
        let want = matches!(r, Ok(rsp) if rsp.status() == 503) && self.1 < 3;
        (want && self.0.withdraw()).then(|| ready(()))
    }

    fn clone_request(
        &mut self,
        req: &Request<ReplayBody<Empty<Bytes>>>,
    ) -> Option<Request<ReplayBody<Empty<Bytes>>>> {
        if self.1 == 0 {
            self.0.deposit();
        }
        clone(req)
    }
}

fn clone(req: &Request<ReplayBody<Empty<Bytes>>>) -> Option<Request<ReplayBody<Empty<Bytes>>>> {
    let mut r = Request::new(req.body().try_clone()?);
    *r.headers_mut() = req.headers().clone();
    Some(r)
}

const AMP_REQUESTS: u64 = 10_000;

/// Attempts per request for 10 000 requests spread over 10 s of paused time.
fn amplification<S>(mut svc: S, attempts: &AtomicU64) -> f64
where
    S: Service<Request<Empty<Bytes>>> + Clone,
    S::Error: std::fmt::Debug,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        for i in 0..AMP_REQUESTS {
            if i % 10 == 9 {
                tokio::time::advance(Duration::from_millis(10)).await;
            }
            let mut req = Request::new(Empty::new());
            req.headers_mut().insert("x-i", i.into());
            let _ = svc.ready().await.unwrap().call(req).await;
        }
    });
    attempts.load(Ordering::Relaxed) as f64 / AMP_REQUESTS as f64
}

fn amplification_table() {
    println!("\n== retry amplification: attempts per request (10 000 requests over 10 s)");
    println!(
        "{:>8} {:>12} {:>14} {:>12}",
        "failing", "naive 3x", "tower+budget", "tower-lb"
    );
    for pct in [0u64, 10, 50, 100] {
        let a = Arc::new(AtomicU64::new(0));
        let naive = amplification(
            tower::retry::Retry::new(Naive(0), failing(pct, a.clone()))
                .map_request(|r: Request<Empty<Bytes>>| r.map(|b| ReplayBody::new(b, 0))),
            &a,
        );
        let a = Arc::new(AtomicU64::new(0));
        let budget = Arc::new(TpsBudget::default());
        let tower_b = amplification(
            tower::retry::Retry::new(Budgeted(budget, 0), failing(pct, a.clone()))
                .map_request(|r: Request<Empty<Bytes>>| r.map(|b| ReplayBody::new(b, 0))),
            &a,
        );
        let a = Arc::new(AtomicU64::new(0));
        let ours = amplification(
            ServiceBuilder::new()
                .layer(RetryLayer::new(
                    RetryPolicy::builder()
                        .jitter(Jitter::None)
                        .backoff(Duration::ZERO, Duration::from_nanos(1))
                        .build()
                        .unwrap(),
                ))
                .service(failing(pct, a.clone())),
            &a,
        );
        println!("{:>7}% {naive:>12.3} {tower_b:>14.3} {ours:>12.3}", pct);
    }
}

fn criterion_overhead(c: &mut Criterion, rt: &Runtime) {
    let mut g = c.benchmark_group("stack_overhead");
    macro_rules! bench {
        ($name:expr, $svc:expr) => {{
            let _g = rt.enter();
            let mut svc = $svc;
            g.bench_function($name, |b| {
                b.iter_custom(|n| rt.block_on(drive(&mut svc, n)))
            });
        }};
    }
    bench!("bare", bare());
    bench!("tower_lb_full_stack", full_stack());
    bench!("tower_concurrency_limit_timeout", tower_limit_timeout());
    bench!("tower_buffer", tower::buffer::Buffer::new(bare(), 1024));
    g.finish();
}

/// The cost of one `tokio::time::Instant::now()` here (the stack reads the clock a few times
/// per request; with tokio's `test-util` feature, on in this crate's dev builds, it is slower).
fn clock_cost(rt: &Runtime) {
    let _g = rt.enter();
    let n = 1_000_000u32;
    let start = Instant::now();
    for _ in 0..n {
        black_box(Instant::now());
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(n);
    println!("\n== one tokio Instant::now(): {ns:.1} ns");
}

/// What recording statistics (status class, outcome, latency window: two clock reads and a
/// few atomic adds at the attempt's end) adds to a dispatch: the same balancer with
/// recording on and off, interleaved.
fn stats_overhead(rt: &Runtime) {
    let _g = rt.enter();
    let mut rows: Vec<(&str, Runner<'_>)> = vec![
        (
            "balance, statistics off",
            runner(rt, balance().statistics(false)),
        ),
        ("balance, statistics on", runner(rt, balance())),
    ];
    const N: u64 = 20_000;
    const ROUNDS: usize = 15;
    let mut times = vec![Vec::new(); rows.len()];
    for (_, run) in rows.iter_mut() {
        run(N);
    }
    for _ in 0..ROUNDS {
        for (i, (_, run)) in rows.iter_mut().enumerate() {
            times[i].push(run(N).as_nanos() as f64 / N as f64);
        }
    }
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect();
    println!("\n== statistics recording (median of {ROUNDS} interleaved rounds × {N} requests)");
    for (i, (name, _)) in rows.iter().enumerate() {
        println!("{name:<34} {:>9.1} ns/req", medians[i]);
    }
    println!(
        "recording adds {:+.1} ns/req (ratio {:.3})",
        medians[1] - medians[0],
        medians[1] / medians[0]
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    if std::env::var_os("STACK_REALISTIC_ONLY").is_some() {
        realistic_overhead(&rt);
        return;
    }
    // `STACK_TABLES=sticky,facade` runs only those interleaved tables.
    if let Ok(tables) = std::env::var("STACK_TABLES") {
        for t in tables.split(',') {
            match t {
                "sticky" => sticky_overhead(&rt),
                "facade" => facade_overhead(&rt),
                "http" => facade_over_http(&rt),
                "overhead" => overhead_table(&rt),
                "realistic" => realistic_overhead(&rt),
                other => eprintln!(
                    "unknown table {other:?}: sticky, facade, http, overhead or realistic"
                ),
            }
        }
        return;
    }
    criterion_overhead(&mut c, &rt);
    clock_cost(&rt);
    stats_overhead(&rt);
    realistic_overhead(&rt);
    overhead_table(&rt);
    header_allocs(&rt);
    sticky_overhead(&rt);
    facade_overhead(&rt);
    facade_over_http(&rt);
    amplification_table();
    c.final_summary();
}

// ---- The resilience stack on realistic requests ----------------------------------------------

/// A response future that is pending once before it answers, as a real backend's is: a layer
/// that arms a timer on `Pending` (the timeouts) pays for it here, where the always-ready stub
/// of the table above never does.
struct PendingOnce(bool);

impl std::future::Future for PendingOnce {
    type Output = Result<Rsp, BoxError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        if std::mem::replace(&mut self.0, true) {
            std::task::Poll::Ready(Ok(ok_rsp()))
        } else {
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

fn pending_balance<B: Send + 'static>() -> Balance<
    impl Service<Request<B>, Response = Rsp, Error = BoxError, Future = PendingOnce>
    + Clone
    + Send
    + Sync
    + 'static,
> {
    let group = TargetGroup::builder("bench")
        .target(Target::new("a", "127.0.0.1:1").unwrap())
        .build()
        .unwrap();
    Balance::new(group, |_t: &Target| {
        service_fn(|_r: Request<B>| PendingOnce(false))
    })
}

/// A request as a server and axum hand it over: a dozen headers whose values share one
/// buffer (as hyper's parser leaves them), the peer address, axum's `ConnectInfo` and
/// `OriginalUri`, and a route-parameters-like extension.
fn realistic_request() -> impl FnMut() -> Request<Empty<Bytes>> {
    let fields = [
        ("host", "api.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) bench/1.0"),
        ("accept", "text/html,application/json;q=0.9"),
        ("accept-encoding", "gzip, deflate, br"),
        ("accept-language", "en-US,en;q=0.5"),
        ("connection", "keep-alive"),
        (
            "cookie",
            "session=8f14e45fceea167a5a36dedd4bea2543; theme=dark",
        ),
        ("cache-control", "no-cache"),
        ("upgrade-insecure-requests", "1"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
    ];
    let raw = Bytes::from(fields.iter().map(|(_, v)| *v).collect::<String>());
    let mut headers = http::HeaderMap::new();
    let mut at = 0;
    for (name, value) in fields {
        let len = value.len();
        let value = http::HeaderValue::from_maybe_shared(raw.slice(at..at + len)).unwrap();
        headers.insert(http::HeaderName::from_static(name), value);
        at += len;
    }
    let uri: http::Uri = "/api/v1/items/42?page=2".parse().unwrap();
    let peer: std::net::SocketAddr = "192.0.2.7:51000".parse().unwrap();
    /// As axum's `OriginalUri` (behind a feature this crate does not enable).
    #[derive(Clone)]
    struct OriginalUri(#[allow(dead_code)] http::Uri);
    #[derive(Clone)]
    #[allow(dead_code)]
    struct Params(Arc<[(Arc<str>, Arc<str>)]>);
    let params = Params(Arc::from(vec![(Arc::from("id"), Arc::from("42"))]));
    move || {
        let mut req = Request::new(Empty::new());
        *req.uri_mut() = uri.clone();
        *req.headers_mut() = headers.clone();
        let ext = req.extensions_mut();
        ext.insert(ClientAddr(peer));
        ext.insert(axum::extract::ConnectInfo(peer));
        ext.insert(OriginalUri(uri.clone()));
        ext.insert(params.clone());
        req
    }
}

type Real<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

fn real<'a, S>(rt: &'a Runtime, mut svc: S) -> Real<'a>
where
    S: Service<Request<Empty<Bytes>>> + 'a,
    S::Error: std::fmt::Debug,
{
    let mut make = realistic_request();
    Box::new(move |n| {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                let req = make();
                let rsp = svc.ready().await.unwrap().call(req).await.unwrap();
                black_box(rsp);
            }
            start.elapsed()
        })
    })
}

/// Each resilience layer alone over `Balance`, then the whole stack of `examples/proxy.rs` plus
/// a rate limit, on realistic requests (see [`realistic_request`]) to targets whose response
/// futures are pending once (see [`PendingOnce`]): what users pay per request.
fn realistic_overhead(rt: &Runtime) {
    let _g = rt.enter();
    let full = || {
        ServiceBuilder::new()
            .layer(rate_limit())
            .layer(TimeoutLayer::new(Duration::from_secs(10)))
            .layer(RetryLayer::new(RetryPolicy::new()))
            .layer(CircuitBreakerLayer::new("bench"))
            .layer(TimeoutLayer::new(Duration::from_secs(5)))
            .service(pending_balance::<ReplayBody<Empty<Bytes>>>())
    };
    if std::env::var_os("STACK_SIZES").is_some() {
        fn size<S: Service<Request<Empty<Bytes>>>>(mut s: S) -> usize {
            let mut make = realistic_request();
            std::mem::size_of_val(&s.call(make()))
        }
        println!(
            "future sizes: balance {}, timeout {}, retry {}, breaker {}, limit {}, full {}",
            size(pending_balance::<Empty<Bytes>>()),
            size(
                TimeoutLayer::new(Duration::from_secs(1)).layer(pending_balance::<Empty<Bytes>>())
            ),
            size(
                RetryLayer::new(RetryPolicy::new())
                    .layer(pending_balance::<ReplayBody<Empty<Bytes>>>())
            ),
            size(CircuitBreakerLayer::new("b").layer(pending_balance::<Empty<Bytes>>())),
            size(rate_limit().layer(pending_balance::<Empty<Bytes>>())),
            size(full()),
        );
    }
    let rows: Vec<(&str, Real<'_>)> = vec![
        ("balance alone", real(rt, pending_balance::<Empty<Bytes>>())),
        (
            "+ rate limit (global)",
            real(rt, rate_limit().layer(pending_balance::<Empty<Bytes>>())),
        ),
        (
            "+ timeout",
            real(
                rt,
                TimeoutLayer::new(Duration::from_secs(10)).layer(pending_balance::<Empty<Bytes>>()),
            ),
        ),
        (
            "+ retry",
            real(
                rt,
                RetryLayer::new(RetryPolicy::new())
                    .layer(pending_balance::<ReplayBody<Empty<Bytes>>>()),
            ),
        ),
        (
            "+ breaker",
            real(
                rt,
                CircuitBreakerLayer::new("b").layer(pending_balance::<Empty<Bytes>>()),
            ),
        ),
        (
            "full stack (limit, deadline, retry, breaker, try timeout)",
            real(rt, full()),
        ),
    ];
    // `STACK_ROWS=retry` keeps the rows whose names contain `retry` (and the first), for
    // profiling one layer.
    let only = std::env::var("STACK_ROWS").ok();
    let rows = rows
        .into_iter()
        .enumerate()
        .filter(|(i, (name, _))| *i == 0 || only.as_deref().is_none_or(|o| name.contains(o)))
        .map(|(_, row)| row)
        .collect();
    interleaved_table(
        "resilience layers on realistic requests (12 headers, 4 extensions, pending once)",
        rows,
    );
}
