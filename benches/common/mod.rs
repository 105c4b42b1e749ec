//! Shared helpers for the benchmarks: short criterion settings, and a record of every
//! sample so each bench can print a ratio table from the same run.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use criterion::Criterion;
use tokio::time::Instant;

static SAMPLES: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

/// Short runs: the machine is small and shared.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
        .configure_from_args()
}

/// Times `iters` runs of `f` on `threads` threads at once; returns the wall time divided by
/// the number of threads (time per operation per thread, as one thread sees it), and records
/// the per-operation time under `id`.
pub fn timed<F>(id: &str, iters: u64, threads: usize, f: F) -> Duration
where
    F: Fn(u64) + Sync,
{
    let start = Instant::now();
    if threads <= 1 {
        f(iters);
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| f(iters));
            }
        });
    }
    let elapsed = start.elapsed();
    record(id, elapsed.as_nanos() as f64 / iters.max(1) as f64);
    elapsed
}

pub fn record(id: &str, ns_per_op: f64) {
    SAMPLES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(id.to_string())
        .or_default()
        .push(ns_per_op);
}

/// The median recorded time per operation, in nanoseconds.
pub fn median(id: &str) -> Option<f64> {
    let samples = SAMPLES.lock().unwrap_or_else(|e| e.into_inner());
    let mut v = samples.get(id)?.clone();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Prints `| id | median ns | ratio to baseline |` rows.
pub fn print_ratios(title: &str, rows: &[(String, String)]) {
    println!("\n{title}\n");
    println!("| benchmark | median ns/op | baseline | baseline ns/op | ratio |");
    println!("|---|---:|---|---:|---:|");
    for (id, base) in rows {
        if let (Some(a), Some(b)) = (median(id), median(base)) {
            println!("| {id} | {a:.1} | {base} | {b:.1} | {:.2}× |", a / b);
        }
    }
}

/// Sends `n` requests one after another through `svc`, each with a copy of `headers` and, if
/// given, the client's address as an extension (as a server would insert it); returns the time
/// taken. What the `stack` tables and the `instructions` harness drive.
pub async fn drive_requests<S>(
    svc: &mut S,
    headers: &http::HeaderMap,
    addr: Option<tower_lb::key::ClientAddr>,
    n: u64,
) -> Duration
where
    S: tower::Service<http::Request<http_body_util::Empty<bytes::Bytes>>>,
    S::Error: std::fmt::Debug,
{
    use tower::ServiceExt;
    let start = Instant::now();
    for _ in 0..n {
        let mut req = http::Request::new(http_body_util::Empty::new());
        *req.headers_mut() = headers.clone();
        if let Some(a) = addr {
            req.extensions_mut().insert(a);
        }
        let rsp = svc.ready().await.unwrap().call(req).await.unwrap();
        std::hint::black_box(rsp);
    }
    start.elapsed()
}
