//! Allocation counting: a pick, and a whole `Balance` dispatch on an always-ready service, must not
//! allocate. Its own test binary, because the counting allocator is process-global.
#![allow(unsafe_code)] // the counting allocator; the library itself forbids unsafe code

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;

use futures_util::FutureExt;
use http::{Request, Response};
use tower::{Service, service_fn};
use tower_lb::algorithm::{
    Algorithm, LeastConnections, RoundRobin, SmoothWeightedRoundRobin, WeightedRandom,
};
use tower_lb::balance::Balance;
use tower_lb::target::{Target, TargetGroup};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts calls made on the current thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

fn check(algorithm: impl Algorithm, served_by: bool, expected: f64) {
    let name = format!("{algorithm:?}");
    let group = TargetGroup::builder("g")
        .algorithm(algorithm)
        .targets((0..16).map(|i| {
            Target::builder(format!("t{i}"), "127.0.0.1:1")
                .weight(1 + i % 4)
                .build()
                .unwrap()
        }))
        .build()
        .unwrap();
    let mut balance = Balance::new(group, |_t: &Target| {
        service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) })
    })
    .served_by(served_by);
    // Warm up: the first call may build the per-target service table.
    for _ in 0..10 {
        drop(balance.call(Request::new(())).now_or_never());
    }
    let before = allocs();
    for _ in 0..1000 {
        let rsp = balance
            .call(Request::new(()))
            .now_or_never()
            .unwrap()
            .unwrap();
        drop(rsp);
    }
    let per_call = (allocs() - before) as f64 / 1000.0;
    assert_eq!(
        per_call, expected,
        "{name} (served_by {served_by}): {per_call} allocations per dispatch"
    );
}

#[test]
fn dispatch_without_served_by_does_not_allocate() {
    check(RoundRobin::new(), false, 0.0);
    check(SmoothWeightedRoundRobin::new(), false, 0.0);
    check(WeightedRandom::new().seed(1), false, 0.0);
    check(LeastConnections::new().seed(1), false, 0.0);
}

/// The `ServedBy` response extension is the only allocating step: `http::Extensions` boxes its map,
/// allocates the table and boxes the value.
#[test]
fn served_by_costs_exactly_the_extension_insert() {
    check(RoundRobin::new(), true, 3.0);
    check(LeastConnections::new().seed(1), true, 3.0);
}
