//! Full `Balance` dispatch (pick, in-flight accounting, call, classification, body guard) on
//! an always-ready service, against tower's `p2c::Balance` with `PendingRequests` and with
//! `PeakEwma`. One thread: tower's balancer is `&mut`-driven and not `Clone`. The `_tagged`
//! cases tag every response with `ServedBy` (`Balance::served_by(true)`, three allocations per
//! response); by default a successful response is not tagged.
//!
//! `cargo bench --bench dispatch`

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Response};
use tower::balance::p2c;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PeakEwma, PendingRequests};
use tower::{Service, service_fn};
use tower_lb::algorithm::{Algorithm, P2cInFlight, P2cPeakEwma, RoundRobin};
use tower_lb::balance::Balance;
use tower_lb::{Target, TargetGroup};

mod common;

type Case = Box<dyn FnMut()>;

fn backend(_req: Request<()>) -> Ready<Result<Response<String>, Infallible>> {
    ready(Ok(Response::new(String::new())))
}

type Backend =
    tower::util::ServiceFn<fn(Request<()>) -> Ready<Result<Response<String>, Infallible>>>;

fn stub() -> Backend {
    service_fn(backend as fn(Request<()>) -> Ready<Result<Response<String>, Infallible>>)
}

fn ours(n: usize, algorithm: impl Algorithm) -> Balance<Backend> {
    let group = TargetGroup::builder("bench")
        .algorithm(algorithm)
        .targets((0..n).map(|i| Target::new(format!("t{i:05}"), "127.0.0.1:1").unwrap()))
        .build()
        .unwrap();
    Balance::new(group, |_t: &Target| stub())
}

/// One request through a service that is expected to be ready and to answer at once.
#[inline]
fn once<S>(svc: &mut S)
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("not ready"),
    }
    let fut = pin!(svc.call(Request::new(())));
    match fut.poll(&mut cx) {
        Poll::Ready(Ok(rsp)) => drop(black_box(rsp)),
        _ => panic!("not answered"),
    }
}

fn main() {
    let mut c = common::criterion();
    let mut rows = Vec::new();
    for n in [10usize, 100, 10_000] {
        let mut g = c.benchmark_group(format!("dispatch/n{n}"));
        let id = |name: &str| format!("dispatch/n{n}/{name}");

        let mut tower_pending = p2c::Balance::new(ServiceList::new(
            (0..n).map(|_| PendingRequests::new(stub(), CompleteOnResponse::default())),
        ));
        let mut tower_ewma = p2c::Balance::new(ServiceList::new((0..n).map(|_| {
            PeakEwma::new(
                stub(),
                Duration::from_millis(30),
                10e9,
                CompleteOnResponse::default(),
            )
        })));
        // Let tower discover its endpoints before timing.
        once(&mut tower_pending);
        once(&mut tower_ewma);

        let mut cases: Vec<(&str, Case)> = vec![
            (
                "tower_p2c_pending",
                Box::new(move || once(&mut tower_pending)),
            ),
            (
                "tower_p2c_peak_ewma",
                Box::new(move || once(&mut tower_ewma)),
            ),
        ];
        let mut rr = ours(n, RoundRobin::new());
        cases.push(("ours_round_robin", Box::new(move || once(&mut rr))));
        let mut p2c = ours(n, P2cInFlight::new());
        cases.push(("ours_p2c_in_flight", Box::new(move || once(&mut p2c))));
        let mut ewma = ours(n, P2cPeakEwma::new());
        cases.push(("ours_p2c_peak_ewma", Box::new(move || once(&mut ewma))));
        // Every response tagged with `ServedBy` (its insert is three allocations).
        let mut p2c_tagged = ours(n, P2cInFlight::new()).served_by(true);
        cases.push((
            "ours_p2c_in_flight_tagged",
            Box::new(move || once(&mut p2c_tagged)),
        ));
        let mut ewma_tagged = ours(n, P2cPeakEwma::new()).served_by(true);
        cases.push((
            "ours_p2c_peak_ewma_tagged",
            Box::new(move || once(&mut ewma_tagged)),
        ));

        for (name, f) in cases.iter_mut() {
            let key = id(name);
            g.bench_function(*name, |b| {
                b.iter_custom(|iters| {
                    let start = tokio::time::Instant::now();
                    for _ in 0..iters {
                        f();
                    }
                    let e = start.elapsed();
                    common::record(&key, e.as_nanos() as f64 / iters as f64);
                    e
                })
            });
        }
        g.finish();
        rows.push((id("ours_p2c_in_flight"), id("tower_p2c_pending")));
        rows.push((id("ours_p2c_peak_ewma"), id("tower_p2c_peak_ewma")));
        rows.push((id("ours_round_robin"), id("tower_p2c_pending")));
        rows.push((id("ours_p2c_in_flight_tagged"), id("tower_p2c_pending")));
        rows.push((id("ours_p2c_peak_ewma_tagged"), id("tower_p2c_peak_ewma")));
    }
    c.final_summary();
    common::print_ratios(
        "Full dispatch, ours against tower's p2c::Balance (goal: ratio ≤ 0.33)",
        &rows,
    );
}
