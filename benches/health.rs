//! What health costs a pick: `Balance::call` over 8 targets (smooth weighted round robin, a
//! stub service answering at once) with every target healthy, with 2 of 8 down, with one
//! target ramping up (slow start: a clock read per pick), and in panic mode (5 of 8 down).
//!
//! `cargo bench --bench health -- --warm-up-time 1 --measurement-time 2`; medians and their
//! ratio to the all-healthy case are printed at the end.

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, black_box};
use futures_util::FutureExt;
use http::{Request, Response};
use tower::Service;
use tower_lb::balance::Balance;
use tower_lb::health::{ActiveCheck, PanicThreshold, SlowStart, check_fn};
use tower_lb::{Target, TargetGroup};

const GROUP: &str = "health_pick";
const CASES: [&str; 4] = [
    "all_healthy",
    "two_of_eight_down",
    "one_ramping",
    "panic_fail_open",
];

fn targets() -> Vec<Target> {
    (0..8)
        .map(|i| Target::new(format!("t{i}"), format!("127.0.0.1:{}", 9000 + i)).unwrap())
        .collect()
}

/// A group whose first `down` targets fail their (one) active check.
fn group(rt: &tokio::runtime::Runtime, down: usize, ramp: bool) -> TargetGroup {
    let mut b = TargetGroup::builder("bench").targets(targets());
    if ramp {
        b = b.slow_start(
            SlowStart::builder(Duration::from_secs(3600))
                .build()
                .unwrap(),
        );
    }
    let g = b
        .panic_threshold(PanicThreshold::default())
        .build()
        .unwrap();
    if down > 0 {
        let check = ActiveCheck::builder(check_fn(move |t: &Target| {
            let n: usize = t.id().as_str()[1..].parse().unwrap();
            async move { if n < down { Err("down") } else { Ok(()) } }
        }))
        .interval(Duration::from_secs(3600))
        .fall(1)
        .jitter(0.0)
        .build()
        .unwrap();
        rt.block_on(async {
            g.health_check(check).unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
        assert_eq!(g.health_summary().down, down);
    }
    if ramp {
        // A joiner after the build ramps for an hour.
        g.insert(Target::new("t8", "127.0.0.1:9008").unwrap());
        assert!(g.health(&"t8".into()).unwrap().is_ramping());
    }
    g
}

/// The target service: answers at once with an empty body.
#[derive(Clone)]
struct Instant200;

impl Service<Request<()>> for Instant200 {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<()>) -> Self::Future {
        std::future::ready(Ok(Response::new(String::new())))
    }
}

fn balance(g: TargetGroup) -> Balance<Instant200> {
    Balance::new(g, |_t: &Target| Instant200).served_by(false)
}

fn out_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("criterion")
}

/// The median of one case, in nanoseconds, from criterion's `estimates.json`.
fn median(case: &str) -> Option<f64> {
    let path = out_dir().join(GROUP).join(case).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let rest = &text[text.find("\"median\"")?..];
    let rest = &rest[rest.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = rest.find([',', '}'])?;
    rest[..end].trim().parse().ok()
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut c = Criterion::default()
        .output_directory(&out_dir())
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let groups = [
        group(&rt, 0, false),
        group(&rt, 2, false),
        group(&rt, 0, true),
        group(&rt, 5, false),
    ];
    assert!(groups[3].health_summary().in_panic);
    let mut bench = c.benchmark_group(GROUP);
    for (case, g) in CASES.iter().zip(&groups) {
        let mut svc = balance(g.clone());
        bench.bench_function(*case, |b| {
            b.iter(|| black_box(svc.call(Request::new(())).now_or_never()))
        });
    }
    bench.finish();
    c.final_summary();
    if let Some(base) = median(CASES[0]) {
        println!("\nmedian per pick, and ratio to {}:", CASES[0]);
        for case in CASES {
            if let Some(m) = median(case) {
                println!("  {case:<20} {m:>8.1} ns  {:>5.2}x", m / base);
            }
        }
    }
}
