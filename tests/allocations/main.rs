//! Zero allocations per pick, counted by a counting global allocator. One test in its own
//! binary, so no other test allocates while it counts.

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower_lb::algorithm::{
    Algorithm, HashRing, LeastConnections, Maglev, P2cInFlight, P2cPeakEwma, RoundRobin,
    SmoothWeightedRoundRobin, WeightedRandom,
};
use tower_lb::target::{AdminState, Target, TargetGroup};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn group(n: usize, algorithm: impl Algorithm) -> TargetGroup {
    TargetGroup::builder("g")
        .algorithm(algorithm)
        .targets((0..n).map(|i| {
            Target::builder(format!("t{i}"), "127.0.0.1:1")
                .weight(1 + (i % 3) as u32)
                .build()
                .unwrap()
        }))
        .build()
        .unwrap()
}

#[test]
fn no_allocation_per_pick() {
    let groups = [
        ("round_robin", group(100, RoundRobin::new())),
        ("smooth", group(100, SmoothWeightedRoundRobin::new())),
        ("random", group(100, WeightedRandom::new())),
        ("least_conn", group(100, LeastConnections::new())),
        ("p2c", group(100, P2cInFlight::new())),
        ("peak_ewma", group(100, P2cPeakEwma::new())),
        ("ring", group(100, HashRing::new())),
        (
            "ring_bounded",
            group(100, HashRing::new().bounded_load(1.25).unwrap()),
        ),
        ("maglev", group(100, Maglev::new())),
    ];
    for (name, g) in &groups {
        // Some targets unavailable, so fallback paths run too.
        for i in (0..100).step_by(7) {
            g.set_admin(&format!("t{i}").into(), AdminState::Disabled)
                .unwrap();
        }
        let picker = g.picker();
        let region = Region::new(GLOBAL);
        let mut sum = 0usize;
        for k in 0..10_000u64 {
            sum += picker
                .pick(Some(k.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
                .unwrap();
            sum += picker.pick(None).unwrap();
        }
        let stats = region.change();
        assert!(sum > 0);
        assert_eq!(stats.allocations, 0, "{name} allocated");
        assert_eq!(stats.reallocations, 0, "{name} reallocated");
    }
}
