//! Pick only: every algorithm against a hand-written floor, N = 10, 100, 10 000 targets, on 1
//! and 2 threads. Ratios are printed at the end.
//!
//! `cargo bench --bench pick`

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use tower_lb::algorithm::{
    Algorithm, HashRing, LeastConnections, Maglev, P2cInFlight, P2cPeakEwma, RoundRobin,
    SmoothWeightedRoundRobin, WeightedRandom,
};
use tower_lb::{Target, TargetGroup, group::Picker};

mod common;

/// The floor for round robin: one atomic counter over a slice.
struct FloorRoundRobin {
    next: AtomicUsize,
    n: usize,
}

impl FloorRoundRobin {
    #[inline]
    fn pick(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.n
    }
}

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The two floors below share everything but where the random state lives: splitmix's output
/// step on `z`, two indices from it, the one with fewer requests in flight.
#[inline]
fn two_choices(mut z: u64, load: &[AtomicU32]) -> usize {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let n = load.len() as u64;
    let a = ((u128::from(z) * u128::from(n)) >> 64) as usize;
    let b = ((u128::from(z.rotate_left(32)) * u128::from(n)) >> 64) as usize;
    if load[a].load(Ordering::Relaxed) <= load[b].load(Ordering::Relaxed) {
        a
    } else {
        b
    }
}

/// The floor for power of two choices: two random indices (splitmix over an atomic), the one
/// with fewer requests in flight.
struct FloorP2c {
    state: AtomicU64,
    load: Vec<AtomicU32>,
}

impl FloorP2c {
    #[inline]
    fn pick(&self) -> usize {
        let z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        two_choices(z, &self.load)
    }
}

thread_local! {
    static FLOOR_RNG: std::cell::Cell<u64> = const { std::cell::Cell::new(1) };
}

/// The same floor with a per-thread random state instead of one shared atomic: what the
/// unseeded random algorithms do, so the fair floor for them.
struct FloorP2cLocal {
    load: Vec<AtomicU32>,
}

impl FloorP2cLocal {
    #[inline]
    fn pick(&self) -> usize {
        let z = FLOOR_RNG.with(|c| {
            let z = c.get().wrapping_add(GAMMA);
            c.set(z);
            z
        });
        two_choices(z, &self.load)
    }
}

fn picker(n: usize, algorithm: impl Algorithm) -> Picker {
    TargetGroup::builder("bench")
        .algorithm(algorithm)
        .targets((0..n).map(|i| Target::new(format!("t{i:05}"), "127.0.0.1:1").unwrap()))
        .build()
        .unwrap()
        .picker()
}

const KEYS: usize = 4096;

fn keys() -> Vec<u64> {
    (0..KEYS as u64)
        .map(|i| tower_lb::key::hash_bytes(1, &i.to_le_bytes()))
        .collect()
}

fn main() {
    let mut c = common::criterion();
    let keys = keys();
    let mut rows = Vec::new();
    for threads in [1usize, 2] {
        for n in [10usize, 100, 10_000] {
            let mut g = c.benchmark_group(format!("pick/{threads}t/n{n}"));
            let base = |name: &str| format!("pick/{threads}t/n{n}/{name}");

            let rr = FloorRoundRobin {
                next: AtomicUsize::new(0),
                n,
            };
            let id = base("floor_rr");
            g.bench_function("floor_rr", |b| {
                b.iter_custom(|iters| {
                    common::timed(&id, iters, threads, |k| {
                        for _ in 0..k {
                            black_box(rr.pick());
                        }
                    })
                })
            });
            let p2c = FloorP2c {
                state: AtomicU64::new(1),
                load: (0..n).map(|_| AtomicU32::new(0)).collect(),
            };
            let id = base("floor_p2c");
            g.bench_function("floor_p2c", |b| {
                b.iter_custom(|iters| {
                    common::timed(&id, iters, threads, |k| {
                        for _ in 0..k {
                            black_box(p2c.pick());
                        }
                    })
                })
            });
            let local = FloorP2cLocal {
                load: (0..n).map(|_| AtomicU32::new(0)).collect(),
            };
            let id = base("floor_p2c_local");
            g.bench_function("floor_p2c_local", |b| {
                b.iter_custom(|iters| {
                    common::timed(&id, iters, threads, |k| {
                        for _ in 0..k {
                            black_box(local.pick());
                        }
                    })
                })
            });

            let algos: Vec<(&str, Picker, bool, &str)> = vec![
                (
                    "round_robin",
                    picker(n, RoundRobin::new()),
                    false,
                    "floor_rr",
                ),
                (
                    "smooth_wrr",
                    picker(n, SmoothWeightedRoundRobin::new()),
                    false,
                    "floor_rr",
                ),
                (
                    "weighted_random",
                    picker(n, WeightedRandom::new()),
                    false,
                    "floor_p2c",
                ),
                (
                    "least_conn",
                    picker(n, LeastConnections::new()),
                    false,
                    "floor_p2c",
                ),
                (
                    "p2c_in_flight",
                    picker(n, P2cInFlight::new()),
                    false,
                    "floor_p2c",
                ),
                (
                    "p2c_peak_ewma",
                    picker(n, P2cPeakEwma::new()),
                    false,
                    "floor_p2c",
                ),
                ("ring_160", picker(n, HashRing::new()), true, "floor_rr"),
                ("maglev", picker(n, maglev_for(n)), true, "floor_rr"),
            ];
            for (name, p, keyed, floor) in &algos {
                if *name == "least_conn" && n == 10_000 && threads == 2 {
                    continue; // O(n): one thread shows it.
                }
                let id = base(name);
                g.bench_function(*name, |b| {
                    b.iter_custom(|iters| {
                        common::timed(&id, iters, threads, |k| {
                            for i in 0..k as usize {
                                let key = keyed.then(|| keys[i % KEYS]);
                                black_box(p.pick(black_box(key)));
                            }
                        })
                    })
                });
                rows.push((id.clone(), base(floor)));
                if *floor == "floor_p2c" {
                    // Unseeded, these draw from a per-thread state: the per-thread floor too.
                    rows.push((id, base("floor_p2c_local")));
                }
            }
            g.finish();
        }
    }
    c.final_summary();
    common::print_ratios("Pick only, against the hand-written floor", &rows);
}

fn maglev_for(n: usize) -> Maglev {
    // The paper's rule of thumb: a table at least 100 × the targets.
    if n > 655 {
        Maglev::new().table_size(1_000_003).unwrap()
    } else {
        Maglev::new()
    }
}
