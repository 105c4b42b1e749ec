//! Property tests of the built-in algorithms, at the snapshot level (the pick path `Balance` uses).

use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use super::{
    Algorithm, LeastConnections, P2cInFlight, P2cPeakEwma, RoundRobin, SmoothWeightedRoundRobin,
    WeightedRandom,
};
use crate::target::{AdminState, Entry, SlotPool, Snapshot, Target, TargetState};

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x7075_6c62),
        failure_persistence: None,
        ..Config::default()
    }
}

fn entries(weights: &[u32], backups: &[bool], max_conns: &[Option<u32>]) -> Vec<Entry> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let mut b = Target::builder(format!("t{i:03}"), "127.0.0.1:1")
                .weight(w)
                .backup(backups.get(i).copied().unwrap_or(false));
            if let Some(Some(m)) = max_conns.get(i) {
                b = b.max_conns(*m);
            }
            Entry::new(
                Arc::new(b.build().unwrap()),
                Arc::new(TargetState::default()),
            )
        })
        .collect()
}

fn algorithms() -> Vec<Box<dyn Algorithm>> {
    vec![
        Box::new(RoundRobin::new()),
        Box::new(SmoothWeightedRoundRobin::new()),
        Box::new(WeightedRandom::new().seed(3)),
        Box::new(LeastConnections::new().seed(3)),
    ]
}

/// Why a target may be unavailable in a generated case.
#[derive(Debug, Clone, Copy)]
enum Avail {
    Up,
    Disabled,
    Draining,
    Full,
}

fn avail() -> impl Strategy<Value = Avail> {
    prop_oneof![4 => Just(Avail::Up), 1 => Just(Avail::Disabled), 1 => Just(Avail::Draining), 1 => Just(Avail::Full)]
}

proptest! {
    #![proptest_config(config(64))]

    /// nginx's smooth WRR: over every cycle of Σw picks, each target is picked exactly w times.
    #[test]
    fn smooth_wrr_is_exact_per_cycle(weights in prop::collection::vec(1u32..=1000, 1..=50)) {
        let snap = Snapshot::build(1, entries(&weights, &[], &[]), &SmoothWeightedRoundRobin::new());
        let total: u32 = weights.iter().sum();
        for _cycle in 0..2 {
            let mut counts = vec![0u32; weights.len()];
            for _ in 0..total {
                counts[snap.pick(None, None).unwrap()] += 1;
            }
            prop_assert_eq!(&counts, &weights);
        }
    }

    /// Weighted random: with 20 000 picks every share is within 5 binomial standard deviations
    /// (plus one pick) of its weight's share.
    #[test]
    fn weighted_random_follows_weights(weights in prop::collection::vec(1u32..=20, 1..=10), seed in any::<u64>()) {
        const N: u32 = 20_000;
        let snap = Snapshot::build(1, entries(&weights, &[], &[]), &WeightedRandom::new().seed(seed));
        let mut counts = vec![0u32; weights.len()];
        for _ in 0..N {
            counts[snap.pick(None, None).unwrap()] += 1;
        }
        let total: u32 = weights.iter().sum();
        for (i, &w) in weights.iter().enumerate() {
            let p = f64::from(w) / f64::from(total);
            let expected = f64::from(N) * p;
            let sd = (f64::from(N) * p * (1.0 - p)).sqrt();
            prop_assert!((f64::from(counts[i]) - expected).abs() <= 5.0 * sd + 1.0,
                "target {} weight {} got {} expected {:.0}", i, w, counts[i], expected);
        }
    }

    /// Every algorithm: never an unavailable pick while an available one exists; backups only
    /// when every primary is unavailable; `None` only when nothing at all is available.
    #[test]
    fn picks_only_available_and_backups_last(
        cases in prop::collection::vec((1u32..=50, any::<bool>(), avail()), 1..=20),
    ) {
        let weights: Vec<u32> = cases.iter().map(|c| c.0).collect();
        let backups: Vec<bool> = cases.iter().map(|c| c.1).collect();
        let max_conns: Vec<Option<u32>> = cases.iter().map(|c| matches!(c.2, Avail::Full).then_some(1)).collect();
        for algorithm in algorithms() {
            let es = entries(&weights, &backups, &max_conns);
            for (e, c) in es.iter().zip(&cases) {
                match c.2 {
                    Avail::Up => {}
                    Avail::Disabled => e.state.set_admin(AdminState::Disabled),
                    Avail::Draining => e.state.set_admin(AdminState::Draining),
                    Avail::Full => assert!(e.state.try_acquire(e.max_conns)),
                }
            }
            let snap = Snapshot::build(1, es, &*algorithm);
            let up = |i: usize| matches!(cases[i].2, Avail::Up);
            let any_primary = (0..cases.len()).any(|i| up(i) && !backups[i]);
            let any_backup = (0..cases.len()).any(|i| up(i) && backups[i]);
            for _ in 0..3 * cases.len() {
                match snap.pick(None, None) {
                    Some(i) => {
                        prop_assert!(up(i), "{:?} picked unavailable {}", algorithm, i);
                        prop_assert!(!backups[i] || !any_primary, "{:?} picked a backup while a primary was up", algorithm);
                    }
                    None => prop_assert!(!any_primary && !any_backup, "{:?} found nothing", algorithm),
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// P2C (in flight or peak EWMA) reads counters straight from the dense table when a group
    /// was built in one go, through a map when they share a chunk out of order, else through
    /// each entry: all three must pick exactly the same targets.
    #[test]
    fn p2c_picks_the_same_wherever_the_counters_sit(
        cases in prop::collection::vec((0u32..4, any::<bool>(), 0u32..4), 1..=24),
        bias in prop_oneof![Just(0.0), Just(1.0), Just(2.0)],
        ewma in any::<bool>(),
        seed in any::<u64>(),
    ) {
        #[derive(Clone, Copy, PartialEq)]
        enum Layout { Dense, Mapped, Scattered }
        let make = |layout: Layout| {
            let pool = Arc::new(SlotPool::with_capacity(cases.len()));
            let mut states: Vec<TargetState> = (0..cases.len())
                .map(|_| match layout {
                    Layout::Scattered => TargetState::default(),
                    _ => TargetState::in_pool(&pool),
                })
                .collect();
            if layout == Layout::Mapped {
                states.reverse();
            }
            let es: Vec<Entry> = states
                .into_iter()
                .enumerate()
                .map(|(i, state)| {
                    Entry::new(Arc::new(Target::new(format!("t{i:03}"), "127.0.0.1:1").unwrap()), Arc::new(state))
                })
                .collect();
            for (e, &(in_flight, disabled, latency_ms)) in es.iter().zip(&cases) {
                for _ in 0..in_flight {
                    e.state.try_acquire(0);
                }
                if disabled {
                    e.state.set_admin(AdminState::Disabled);
                }
                if latency_ms > 0 {
                    // Stamped in the far future: no decay, whenever the picks run.
                    e.state.latency.record(f64::from(latency_ms) * 1e6, u64::MAX / 2, 1e10);
                }
            }
            if ewma {
                Snapshot::build(1, es, &P2cPeakEwma::new().seed(seed))
            } else {
                Snapshot::build(1, es, &P2cInFlight::new().bias(bias).unwrap().seed(seed))
            }
        };
        let (dense, mapped, scattered) = (make(Layout::Dense), make(Layout::Mapped), make(Layout::Scattered));
        prop_assert!(dense.live.dense().is_some());
        // A lone target is trivially in order.
        let many = cases.len() > 1;
        prop_assert_eq!(mapped.live.mapped().is_some(), many);
        prop_assert_eq!(scattered.live.dense().is_none() && scattered.live.mapped().is_none(), many);
        for _ in 0..4 * cases.len() {
            let pick = dense.pick(None, None);
            prop_assert_eq!(pick, mapped.pick(None, None));
            prop_assert_eq!(pick, scattered.pick(None, None));
            if let Some(i) = pick {
                prop_assert!(!cases[i].1, "picked a disabled target");
            }
        }
    }
}

#[test]
fn least_connections_prefers_least_loaded_per_weight() {
    let es = entries(&[2, 1], &[], &[]);
    // 2 in flight on the weight-2 target (1 per unit), 2 on the weight-1 target (2 per unit).
    for _ in 0..2 {
        es[0].state.try_acquire(0);
        es[1].state.try_acquire(0);
    }
    let snap = Snapshot::build(1, es, &LeastConnections::new().seed(1));
    for _ in 0..10 {
        assert_eq!(snap.pick(None, None), Some(0));
    }
}

#[test]
fn least_connections_rotates_ties() {
    let snap = Snapshot::build(
        1,
        entries(&[1, 1, 1], &[], &[]),
        &LeastConnections::new().seed(9),
    );
    let mut seen = [0u32; 3];
    for _ in 0..300 {
        seen[snap.pick(None, None).unwrap()] += 1;
    }
    assert!(
        seen.iter().all(|&n| n > 50),
        "ties must not always go to the first: {seen:?}"
    );
}

#[test]
fn round_robin_cycles_in_order_and_skips_unavailable() {
    let es = entries(&[1, 1, 1], &[], &[]);
    es[1].state.set_admin(AdminState::Disabled);
    let snap = Snapshot::build(1, es, &RoundRobin::new());
    let picks: Vec<_> = (0..6).map(|_| snap.pick(None, None).unwrap()).collect();
    assert!(picks.iter().all(|&i| i != 1));
    assert!(picks.contains(&0) && picks.contains(&2));
}

#[test]
fn round_robin_rotates_per_thread_and_shares_evenly() {
    let snap = Snapshot::build(1, entries(&[1; 5], &[], &[]), &RoundRobin::new());
    // One thread: strictly in order from the first target.
    let picks: Vec<_> = (0..7).map(|_| snap.pick(None, None).unwrap()).collect();
    assert_eq!(picks, [0, 1, 2, 3, 4, 0, 1]);
    // Three more threads, 100 rounds each: whether or not they share a counter with each
    // other (threads are spread over 16), every target gets exactly its share.
    let snap = Snapshot::build(1, entries(&[1; 5], &[], &[]), &RoundRobin::new());
    assert_eq!(picks_on_three_threads(&snap, 5 * 100), [300; 5]);
}

/// Picks `per_thread` times on each of three threads at once; how often each target came up.
fn picks_on_three_threads(snap: &Snapshot, per_thread: usize) -> Vec<u32> {
    let mut total = vec![0u32; snap.entries.len()];
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    let mut seen = vec![0u32; snap.entries.len()];
                    for _ in 0..per_thread {
                        seen[snap.pick(None, None).unwrap()] += 1;
                    }
                    seen
                })
            })
            .collect();
        for w in workers {
            for (t, n) in total.iter_mut().zip(w.join().unwrap()) {
                *t += n;
            }
        }
    });
    total
}

#[test]
fn smooth_wrr_keeps_exact_shares_across_threads() {
    // Weights 3, 1, 1: a cycle of 5. Three threads of 100 whole cycles each: exact shares
    // whether the threads walk the cycle on counters of their own or share one.
    let snap = Snapshot::build(
        1,
        entries(&[3, 1, 1], &[], &[]),
        &SmoothWeightedRoundRobin::new(),
    );
    assert_eq!(picks_on_three_threads(&snap, 5 * 100), [900, 300, 300]);
}

#[test]
fn placement_ignores_insertion_order() {
    let a = entries(&[3, 1, 2], &[], &[]);
    let mut b = a.clone();
    b.reverse();
    let sa = Snapshot::build(1, a, &SmoothWeightedRoundRobin::new());
    let sb = Snapshot::build(1, b, &SmoothWeightedRoundRobin::new());
    let ids = |s: &Snapshot| -> Vec<String> {
        (0..12)
            .map(|_| {
                s.entries[s.pick(None, None).unwrap()]
                    .target
                    .id()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(ids(&sa), ids(&sb));
}
