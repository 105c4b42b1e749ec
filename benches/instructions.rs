//! A fixed number of requests through one stack, for counting instructions per request under
//! callgrind, where wall-clock figures on a shared machine move by more than a change does.
//! Run it twice with different counts and divide the difference (set-up cancels out):
//!
//! ```text
//! cargo bench --all-features --bench instructions --no-run    # prints the binary's path
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null <binary> sticky 10000
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null <binary> sticky 60000
//! # (second "I refs" − first) / 50 000 = instructions per request
//! ```
//!
//! Stacks: `balance` and `sticky` (a sticky hit over the same `Balance`, every request with the
//! same `Cookie` header, as in the `stack` bench), `affinity` (a prebuilt `Affinity` inserted
//! over the same `Balance`: the carrier alone), the same three with a `-addr` suffix (every
//! request also carrying a `ClientAddr`, as from a server); `hand`, `routed` and `facade` (the
//! `LoadBalancer` facade's defaults against `ErrorResponse → Retry → Balance` by hand, and the
//! same with a rule-less `Router` above `Balance`, over a stub client); `hand-full` and
//! `facade-full` (the same with a circuit breaker and both timeouts).
//! The sticky layer reads `SystemTime::now` (valgrind cannot run `rustix`'s vDSO set-up, which
//! the default coarse clock uses). Without arguments (as `cargo bench` runs it) it does nothing.

mod common;

use std::future::ready;
use std::time::Duration;
use tokio::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use tower::{Layer, Service, ServiceBuilder, service_fn};
use tower_lb::balance::{Balance, BalanceLayer};
use tower_lb::breaker::CircuitBreakerLayer;
use tower_lb::key::ClientAddr;
use tower_lb::lb::LoadBalancer;
use tower_lb::retry::{ReplayBody, RetryLayer, RetryPolicy};
use tower_lb::route::Router;
use tower_lb::sticky::StickyLayer;
use tower_lb::timeout::TimeoutLayer;
use tower_lb::upstream::ErrorResponseLayer;
use tower_lb::{BoxError, Target, TargetGroup};

type Rsp = Response<Empty<Bytes>>;

async fn drive<S>(mut svc: S, headers: &http::HeaderMap, addr: Option<ClientAddr>, n: u64)
where
    S: Service<Request<Empty<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    common::drive_requests(&mut svc, headers, addr, n).await;
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(stack), Some(n)) = (args.next(), args.next().and_then(|n| n.parse::<u64>().ok()))
    else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _g = rt.enter();
    let group = TargetGroup::builder("bench")
        .target(Target::new("a", "127.0.0.1:1").unwrap())
        .target(Target::new("b", "127.0.0.1:2").unwrap())
        .build()
        .unwrap();
    let balance = || {
        Balance::new(group.clone(), |_t: &Target| {
            service_fn(|_r: Request<Empty<Bytes>>| ready(Ok::<_, BoxError>(Rsp::new(Empty::new()))))
        })
    };
    let sticky = StickyLayer::cookie("SERVERID")
        .group(&group)
        .key([7u8; 32])
        .clock(std::time::SystemTime::now)
        .build()
        .unwrap();
    let token = sticky.issue("bench", &"b".into()).unwrap();
    let mut cookie = http::HeaderMap::new();
    cookie.insert(
        http::header::COOKIE,
        format!("theme=dark; SERVERID={token}").parse().unwrap(),
    );
    let none = http::HeaderMap::new();
    let client = || {
        service_fn(|_r: Request<ReplayBody<Empty<Bytes>>>| {
            ready(Ok::<_, BoxError>(Rsp::new(Empty::new())))
        })
    };
    let addr = Some(ClientAddr("192.0.2.7:51000".parse().unwrap()));
    // What the sticky layer sets for that token (with the target's position in its group).
    let affinity = sticky.resolve(&token).unwrap();
    let with_affinity = |inner| {
        ServiceBuilder::new()
            .map_request(move |mut r: Request<Empty<Bytes>>| {
                r.extensions_mut().insert(affinity.clone());
                r
            })
            .service(inner)
    };
    let group_m = || {
        TargetGroup::builder("m")
            .target(Target::new("a", "127.0.0.1:1").unwrap())
            .build()
            .unwrap()
    };
    let hand = || {
        ServiceBuilder::new()
            .layer(ErrorResponseLayer::new())
            .layer(RetryLayer::new(RetryPolicy::new()))
            .layer(BalanceLayer::new(group_m()))
            .service(client())
    };
    let routed = || {
        ServiceBuilder::new()
            .layer(ErrorResponseLayer::new())
            .layer(RetryLayer::new(RetryPolicy::new()))
            .service(
                Router::builder()
                    .destination("m", BalanceLayer::new(group_m()).layer(client()))
                    .fallback("m")
                    .build()
                    .unwrap(),
            )
    };
    let facade = || {
        LoadBalancer::builder()
            .with_name("m")
            .with_target(Target::new("a", "127.0.0.1:1").unwrap())
    };
    if stack == "sizes" {
        fn size<S: Service<Request<Empty<Bytes>>>>(mut s: S) -> usize {
            std::mem::size_of_val(&s.call(Request::new(Empty::new())))
        }
        println!(
            "response future sizes: request {}, balance {}, sticky {}, hand {}, routed {}, facade {}",
            std::mem::size_of::<Request<Empty<Bytes>>>(),
            size(balance()),
            size(sticky.layer(balance())),
            size(hand()),
            size(routed()),
            size(
                facade()
                    .build_with_client::<Empty<Bytes>, _>(client())
                    .unwrap()
            ),
        );
        return;
    }
    let start = Instant::now();
    match stack.as_str() {
        "balance" => rt.block_on(drive(balance(), &cookie, None, n)),
        "sticky" => rt.block_on(drive(sticky.layer(balance()), &cookie, None, n)),
        "affinity" => rt.block_on(drive(with_affinity(balance()), &cookie, None, n)),
        "balance-addr" => rt.block_on(drive(balance(), &cookie, addr, n)),
        "sticky-addr" => rt.block_on(drive(sticky.layer(balance()), &cookie, addr, n)),
        "affinity-addr" => rt.block_on(drive(with_affinity(balance()), &cookie, addr, n)),
        "hand" => rt.block_on(drive(hand(), &none, None, n)),
        "routed" => rt.block_on(drive(routed(), &none, None, n)),
        "hand-full" => {
            let hand = ServiceBuilder::new()
                .layer(ErrorResponseLayer::new())
                .layer(TimeoutLayer::new(Duration::from_secs(10)))
                .layer(RetryLayer::new(RetryPolicy::new()))
                .layer(CircuitBreakerLayer::new("m"))
                .layer(TimeoutLayer::new(Duration::from_secs(5)))
                .layer(BalanceLayer::new(group_m()))
                .service(client());
            rt.block_on(drive(hand, &none, None, n))
        }
        "facade-full" => {
            let facade = facade()
                .with_circuit_breaker(tower_lb::lb::CircuitBreaker::new())
                .with_timeout(Duration::from_secs(10))
                .with_attempt_timeout(Duration::from_secs(5))
                .build_with_client::<Empty<Bytes>, _>(client())
                .unwrap();
            rt.block_on(drive(facade, &none, None, n))
        }
        "facade" => {
            let facade = facade()
                .build_with_client::<Empty<Bytes>, _>(client())
                .unwrap();
            rt.block_on(drive(facade, &none, None, n))
        }
        other => {
            eprintln!(
                "unknown stack {other:?}: balance, sticky, affinity, balance-addr, sticky-addr, \
                 affinity-addr, hand, routed, facade, hand-full or facade-full"
            );
            return;
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / n.max(1) as f64;
    println!("{stack}: {n} requests, {ns:.1} ns/request");
}
