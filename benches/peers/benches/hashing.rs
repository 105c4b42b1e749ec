//! Selection side by side with pingora-load-balancing (and the raw `hashring` crate): every
//! contender gets the same 8-byte request key and returns its choice.
//!
//! Prerequisites: `benches/peers/setup.sh` (cmake, a C toolchain). Run from the repository
//! root with `cargo bench -p tower-lb-peers`.

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use pingora_load_balancing::LoadBalancer;
use pingora_load_balancing::selection::{Consistent, RoundRobin as PingoraRoundRobin};
use tokio::time::Instant;
use tower_lb::algorithm::{Algorithm, HashRing, Maglev, RoundRobin};
use tower_lb::key::hash_bytes;
use tower_lb::{Target, TargetGroup, group::Picker};

type Select<'a> = Box<dyn Fn(&[u8; 8]) -> usize + 'a>;

fn picker(n: usize, algorithm: impl Algorithm) -> Picker {
    TargetGroup::builder("bench")
        .algorithm(algorithm)
        .targets((0..n).map(|i| {
            Target::new(
                format!("t{i:05}"),
                format!("127.0.{}.{}:80", i / 250, i % 250 + 1),
            )
            .unwrap()
        }))
        .build()
        .unwrap()
        .picker()
}

fn addrs(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("127.0.{}.{}:80", i / 250, i % 250 + 1))
        .collect()
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
        .configure_from_args();
    let keys: Vec<[u8; 8]> = (0..4096u64)
        .map(|i| (i * 0x9E37_79B9).to_le_bytes())
        .collect();
    let mut medians = Vec::new();
    for n in [100usize, 1000] {
        let ring = picker(n, HashRing::new());
        let maglev = picker(n, Maglev::new());
        let rr = picker(n, RoundRobin::new());
        let mut raw = hashring::HashRing::new();
        raw.batch_add(
            (0..n)
                .flat_map(|i| (0..160u32).map(move |r| (i as u32, r)))
                .collect(),
        );
        let p_rr: LoadBalancer<PingoraRoundRobin> = LoadBalancer::try_from_iter(addrs(n)).unwrap();
        let p_ketama: LoadBalancer<Consistent> = LoadBalancer::try_from_iter(addrs(n)).unwrap();

        let cases: Vec<(&str, Select<'_>)> = vec![
            ("ours_round_robin", Box::new(|_k| rr.pick(None).unwrap())),
            (
                "ours_ring_160",
                Box::new(|k| ring.pick(Some(hash_bytes(0, k))).unwrap()),
            ),
            (
                "ours_maglev",
                Box::new(|k| maglev.pick(Some(hash_bytes(0, k))).unwrap()),
            ),
            (
                "raw_hashring_160",
                Box::new(|k| raw.get(k).unwrap().0 as usize),
            ),
            (
                "pingora_round_robin",
                Box::new(|k| p_rr.select(k, 256).unwrap().weight),
            ),
            (
                "pingora_ketama",
                Box::new(|k| p_ketama.select(k, 256).unwrap().weight),
            ),
        ];
        let mut g = c.benchmark_group(format!("peers/n{n}"));
        for (name, f) in &cases {
            let mut samples = Vec::new();
            g.bench_function(*name, |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        black_box(f(black_box(&keys[i & 4095])));
                    }
                    let e = start.elapsed();
                    samples.push(e.as_nanos() as f64 / iters as f64);
                    e
                })
            });
            samples.sort_by(f64::total_cmp);
            medians.push((format!("peers/n{n}/{name}"), samples[samples.len() / 2]));
        }
        g.finish();
    }
    c.final_summary();
    let get = |id: &str| medians.iter().find(|(k, _)| k == id).map(|(_, v)| *v);
    println!("\nSelection against pingora (same 8-byte key; key hashing included)\n");
    println!("| benchmark | median ns/op | baseline | baseline ns/op | ratio |");
    println!("|---|---:|---|---:|---:|");
    for n in [100, 1000] {
        for (a, b) in [
            ("ours_maglev", "pingora_ketama"),
            ("ours_ring_160", "pingora_ketama"),
            ("ours_ring_160", "raw_hashring_160"),
            ("ours_maglev", "ours_ring_160"),
            ("ours_round_robin", "pingora_round_robin"),
        ] {
            let (ia, ib) = (format!("peers/n{n}/{a}"), format!("peers/n{n}/{b}"));
            if let (Some(x), Some(y)) = (get(&ia), get(&ib)) {
                println!("| {ia} | {x:.1} | {ib} | {y:.1} | {:.2}× |", x / y);
            }
        }
    }
}
