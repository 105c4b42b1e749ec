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
//! same `Cookie` header, as in the `stack` bench), `hand` and `facade` (the `LoadBalancer`
//! facade's defaults against `ErrorResponse → Retry → Balance` by hand, over a stub client).
//! The sticky layer reads `SystemTime::now` (valgrind cannot run `rustix`'s vDSO set-up, which
//! the default coarse clock uses). Without arguments (as `cargo bench` runs it) it does nothing.

use std::future::ready;
use std::hint::black_box;
use tokio::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_lb::balance::{Balance, BalanceLayer};
use tower_lb::lb::LoadBalancer;
use tower_lb::retry::{ReplayBody, RetryLayer, RetryPolicy};
use tower_lb::sticky::StickyLayer;
use tower_lb::upstream::ErrorResponseLayer;
use tower_lb::{BoxError, Target, TargetGroup};

type Rsp = Response<Empty<Bytes>>;

async fn drive<S>(mut svc: S, headers: &http::HeaderMap, n: u64)
where
    S: Service<Request<Empty<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..n {
        let mut req = Request::new(Empty::new());
        *req.headers_mut() = headers.clone();
        let rsp = svc.ready().await.unwrap().call(req).await.unwrap();
        black_box(rsp);
    }
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
    let start = Instant::now();
    match stack.as_str() {
        "balance" => rt.block_on(drive(balance(), &cookie, n)),
        "sticky" => rt.block_on(drive(sticky.layer(balance()), &cookie, n)),
        "hand" => {
            let g = TargetGroup::builder("m")
                .target(Target::new("a", "127.0.0.1:1").unwrap())
                .build()
                .unwrap();
            let hand = ServiceBuilder::new()
                .layer(ErrorResponseLayer::new())
                .layer(RetryLayer::new(RetryPolicy::new()))
                .layer(BalanceLayer::new(g))
                .service(client());
            rt.block_on(drive(hand, &none, n))
        }
        "facade" => {
            let facade = LoadBalancer::builder()
                .with_name("m")
                .with_target(Target::new("a", "127.0.0.1:1").unwrap())
                .build_with_client::<Empty<Bytes>, _>(client())
                .unwrap();
            rt.block_on(drive(facade, &none, n))
        }
        other => {
            eprintln!("unknown stack {other:?}: balance, sticky, hand or facade");
            return;
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / n.max(1) as f64;
    println!("{stack}: {n} requests, {ns:.1} ns/request");
}
