//! A deterministic simulator comparing selection algorithms on a paused clock.
//!
//! Ten simulated targets answer after a random delay below their maximum latency; a fixed
//! number of workers send requests back to back through each balancer, under a timeout. Time
//! is tokio's paused clock and every random draw is seeded, so a run takes a few seconds of
//! real time and prints the same table every time.
//!
//! Scenarios:
//! 1. tower's demo profile: maximum latencies 1, 10, 10, 10, 10, 100, 100, 100, 100, 1000 ms;
//! 2. ten equal targets (max 20 ms) where one turns slow (max 1000 ms) for two seconds.
//!
//! Run with `cargo run --release --example simulate`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Request, Response};
use tokio::time::Instant;
use tower::balance::p2c;
use tower::buffer::Buffer;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PeakEwma};
use tower::{Service, ServiceExt, service_fn};
use tower_lb::BoxError;
use tower_lb::algorithm::{Algorithm, LeastConnections, P2cInFlight, P2cPeakEwma, RoundRobin};
use tower_lb::balance::Balance;
use tower_lb::{Target, TargetGroup};

const TARGETS: usize = 10;
const REQUESTS: usize = 50_000;
const WORKERS: usize = 100;
const TIMEOUT: Duration = Duration::from_millis(250);

/// A scenario: the maximum latency of target `i` at `elapsed` into the run.
struct Scenario {
    name: &'static str,
    max_latency: fn(usize, Duration) -> Duration,
}

fn demo_profile(i: usize, _elapsed: Duration) -> Duration {
    const MAX_MS: [u64; TARGETS] = [1, 10, 10, 10, 10, 100, 100, 100, 100, 1000];
    Duration::from_millis(MAX_MS[i])
}

fn one_turns_slow(i: usize, elapsed: Duration) -> Duration {
    let slow = i == 3 && elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(3);
    Duration::from_millis(if slow { 1000 } else { 20 })
}

/// The simulated backends: each draws its delay from its own seeded generator and counts the
/// requests it gets.
#[derive(Clone)]
struct Backends {
    start: Instant,
    max_latency: fn(usize, Duration) -> Duration,
    rng: Arc<[AtomicU64]>,
    served: Arc<[AtomicU64]>,
}

impl Backends {
    fn new(scenario: &Scenario) -> Self {
        Backends {
            start: Instant::now(),
            max_latency: scenario.max_latency,
            rng: (0..TARGETS as u64).map(AtomicU64::new).collect(),
            served: (0..TARGETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn delay(&self, i: usize) -> Duration {
        self.served[i].fetch_add(1, Ordering::Relaxed);
        let mut z = self.rng[i]
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let u = (z ^ (z >> 31)) as f64 / u64::MAX as f64;
        (self.max_latency)(i, self.start.elapsed()).mul_f64(u)
    }

    fn service(
        self,
        i: usize,
    ) -> impl Service<
        Request<()>,
        Response = Response<String>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<String>, Infallible>> + Send,
    > + Clone
    + Send
    + Sync
    + 'static {
        let backends = self;
        service_fn(move |_req: Request<()>| {
            let delay = backends.delay(i);
            async move {
                tokio::time::sleep(delay).await;
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        })
    }
}

// Futures are not required to be `Send`: everything runs on one thread (tower's p2c future
// trips the compiler's `Send` inference).
type Call = Pin<Box<dyn Future<Output = Result<(), BoxError>>>>;

struct Outcome {
    latencies: Vec<Duration>,
    ok: usize,
    served: Vec<u64>,
}

/// Runs the workload: `WORKERS` workers sending requests back to back, `REQUESTS` in all.
async fn drive(backends: &Backends, call: Rc<dyn Fn() -> Call>) -> Outcome {
    let remaining = Arc::new(AtomicU64::new(REQUESTS as u64));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (call, remaining) = (call.clone(), remaining.clone());
        workers.push(tokio::task::spawn_local(async move {
            let mut out = Vec::new();
            while remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let t0 = Instant::now();
                let ok = matches!(tokio::time::timeout(TIMEOUT, call()).await, Ok(Ok(())));
                out.push((t0.elapsed(), ok));
            }
            out
        }));
    }
    let mut latencies = Vec::with_capacity(REQUESTS);
    let mut ok = 0;
    for w in workers {
        for (d, success) in w.await.expect("worker") {
            latencies.push(d);
            ok += usize::from(success);
        }
    }
    latencies.sort();
    let served = backends
        .served
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    Outcome {
        latencies,
        ok,
        served,
    }
}

async fn run_ours(scenario: &Scenario, algorithm: impl Algorithm) -> Outcome {
    let backends = Backends::new(scenario);
    let group = TargetGroup::builder("sim")
        .algorithm(algorithm)
        .targets((0..TARGETS).map(|i| Target::new(format!("t{i}"), "127.0.0.1:1").unwrap()))
        .build()
        .unwrap();
    let b = backends.clone();
    // Target ids sort as t0..t9, so index i is target i.
    let balance = Balance::new(group, move |t: &Target| {
        let i: usize = t.id().as_str()[1..].parse().unwrap();
        b.clone().service(i)
    });
    let call: Rc<dyn Fn() -> Call> = Rc::new(move || {
        let balance = balance.clone();
        Box::pin(async move { balance.oneshot(Request::new(())).await.map(drop) })
    });
    drive(&backends, call).await
}

async fn run_tower(scenario: &Scenario) -> Outcome {
    let backends = Backends::new(scenario);
    let endpoints: Vec<_> = (0..TARGETS)
        .map(|i| {
            PeakEwma::new(
                backends.clone().service(i),
                Duration::from_millis(30),
                10e9,
                CompleteOnResponse::default(),
            )
        })
        .collect();
    // Seeded, like ours, so every run prints the same table.
    let balance = p2c::Balance::from_rng(ServiceList::new(endpoints), SplitMix(1));
    let svc = Buffer::new(balance, 1024);
    let call: Rc<dyn Fn() -> Call> = Rc::new(move || {
        let svc = svc.clone();
        Box::pin(async move {
            let rsp: Result<Response<String>, BoxError> = svc.oneshot(Request::new(())).await;
            rsp.map(drop)
        })
    });
    drive(&backends, call).await
}

/// A seeded generator for tower's balancer.
struct SplitMix(u64);

impl tower::util::rng::Rng for SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if d >= TIMEOUT {
        format!("≥{:.0}", TIMEOUT.as_millis())
    } else if ms < 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

fn print_row(name: &str, o: &Outcome) {
    let l = &o.latencies;
    let total: u64 = o.served.iter().sum();
    let shares: Vec<String> = o
        .served
        .iter()
        .map(|&n| format!("{:>4.1}", 100.0 * n as f64 / total.max(1) as f64))
        .collect();
    println!(
        "| {name:<22} | {:>5} | {:>5} | {:>5} | {:>5} | {:>6.2}% | {} |",
        ms(percentile(l, 0.5)),
        ms(percentile(l, 0.9)),
        ms(percentile(l, 0.99)),
        ms(percentile(l, 0.999)),
        100.0 * o.ok as f64 / l.len() as f64,
        shares.join(" "),
    );
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    tokio::task::LocalSet::new().run_until(run()).await;
}

async fn run() {
    let scenarios = [
        Scenario {
            name: "tower demo profile: max latency 1, 10, 10, 10, 10, 100, 100, 100, 100, 1000 ms",
            max_latency: demo_profile,
        },
        Scenario {
            name: "ten targets at max 20 ms; t3 turns slow (max 1000 ms) from 1 s to 3 s (a run lasts about 5 s)",
            max_latency: one_turns_slow,
        },
    ];
    for scenario in &scenarios {
        println!("\n{}", scenario.name);
        println!(
            "{REQUESTS} requests, {WORKERS} concurrent, timeout {} ms; latency in ms; share of requests per target t0..t9 in %\n",
            TIMEOUT.as_millis()
        );
        println!(
            "| algorithm              |   p50 |   p90 |   p99 | p99.9 | success | share t0..t9 |"
        );
        println!(
            "|------------------------|------:|------:|------:|------:|--------:|--------------|"
        );
        print_row("round robin", &run_ours(scenario, RoundRobin::new()).await);
        print_row(
            "least connections",
            &run_ours(scenario, LeastConnections::new().seed(1)).await,
        );
        print_row(
            "P2C in-flight",
            &run_ours(scenario, P2cInFlight::new().seed(1)).await,
        );
        print_row(
            "P2C peak EWMA",
            &run_ours(scenario, P2cPeakEwma::new().seed(1)).await,
        );
        print_row(
            "P2C peak EWMA, penalty",
            &run_ours(
                scenario,
                P2cPeakEwma::new()
                    .seed(1)
                    .failure_penalty(Duration::from_secs(1)),
            )
            .await,
        );
        print_row("tower p2c + PeakEwma", &run_tower(scenario).await);
    }
}
