//! Unit tests of the group-wide health bookkeeping (`crate::health::GroupHealth`), through a
//! real group: they live above both.

use std::sync::Arc;

use crate::classify::Outcome;
use crate::group::TargetGroup;
use crate::health::OutlierDetection;
use crate::target::{AdminState, PanicState, Status, Target, TargetState};

fn group(n: usize) -> TargetGroup {
    TargetGroup::builder("g")
        .targets((0..n).map(|i| Target::new(format!("t{i}"), "127.0.0.1:1").unwrap()))
        .build()
        .unwrap()
}

fn state(g: &TargetGroup, id: &str) -> Arc<TargetState> {
    g.snapshot().get(&id.into()).unwrap().state.clone()
}

#[test]
fn counters_follow_flips_admin_and_membership() {
    let g = group(4);
    let s = g.health_summary();
    assert_eq!((s.members, s.in_service, s.down), (4, 4, 0));
    state(&g, "t0").transition(|s| s | Status::UNHEALTHY);
    state(&g, "t1").transition(|s| s | Status::EJECTED);
    let s = g.health_summary();
    assert_eq!((s.down, s.ejected), (2, 1));
    // A disabled target leaves the panic base, whatever its health.
    g.set_admin(&"t0".into(), AdminState::Disabled).unwrap();
    let s = g.health_summary();
    assert_eq!((s.in_service, s.down), (3, 1));
    // A leaver no longer counts; its later flips do not either.
    let t1 = state(&g, "t1");
    g.remove(&"t1".into()).unwrap();
    t1.transition(|s| s & !Status::EJECTED);
    let s = g.health_summary();
    assert_eq!((s.members, s.in_service, s.down, s.ejected), (3, 2, 0, 0));
    // Replacing a target keeps its state and its counts.
    g.insert(Target::new("t0", "127.0.0.1:2").unwrap());
    assert_eq!(g.health_summary().members, 3);
}

#[test]
fn panic_state_flips_with_the_share_available() {
    let g = group(4);
    let h = g.health_shared().clone();
    assert_eq!(h.panic_state(), PanicState::Normal);
    state(&g, "t0").transition(|s| s | Status::UNHEALTHY);
    state(&g, "t1").transition(|s| s | Status::UNHEALTHY);
    state(&g, "t2").transition(|s| s | Status::EJECTED);
    assert_eq!(
        h.panic_state(),
        PanicState::Normal,
        "by default, 1 of 4 available is no panic"
    );
    state(&g, "t3").transition(|s| s | Status::UNHEALTHY);
    assert_eq!(h.panic_state(), PanicState::FailOpen, "none available");
    state(&g, "t3").transition(|s| s & !Status::UNHEALTHY);
    assert_eq!(h.panic_state(), PanicState::Normal, "one is back");
    state(&g, "t3").transition(|s| s | Status::UNHEALTHY);
    assert_eq!(h.panic_state(), PanicState::FailOpen);
    // Removing the sick targets ends the panic: 1 of 1 available.
    g.replace([Target::new("t9", "127.0.0.1:1").unwrap()])
        .unwrap();
    assert_eq!(h.panic_state(), PanicState::Normal);
    assert_eq!(g.health_summary().panics, 2);
}

#[test]
fn a_lone_target_is_never_ejected_and_detection_is_opt_in() {
    let fail = Outcome::Failure(crate::classify::FailureKind::Connect);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let g = TargetGroup::builder("g")
        .target(Target::new("a", "127.0.0.1:1").unwrap())
        .outlier_detection(OutlierDetection::default())
        .build()
        .unwrap();
    let a = state(&g, "a");
    for _ in 0..20 {
        a.observe(fail);
    }
    assert!(a.is_routable(), "a lone target");
    let g = group(3);
    let b = state(&g, "t0");
    for _ in 0..20 {
        b.observe(fail);
    }
    assert!(b.is_routable(), "outlier detection is off by default");
    let g = TargetGroup::builder("g")
        .targets((0..3).map(|i| Target::new(format!("t{i}"), "127.0.0.1:1").unwrap()))
        .outlier_detection(OutlierDetection::default())
        .build()
        .unwrap();
    let c = state(&g, "t0");
    for _ in 0..5 {
        c.observe(fail);
    }
    assert!(!c.is_routable(), "five failures eject");
}

#[test]
fn without_a_runtime_nothing_is_ejected() {
    let g = TargetGroup::builder("g")
        .targets((0..3).map(|i| Target::new(format!("t{i}"), "127.0.0.1:1").unwrap()))
        .outlier_detection(OutlierDetection::default())
        .build()
        .unwrap();
    let a = state(&g, "t0");
    for _ in 0..20 {
        a.observe(Outcome::Failure(crate::classify::FailureKind::Connect));
    }
    assert!(a.is_routable(), "no timer could end the ejection");
}

#[test]
fn healthy_changes_cross_threads() {
    fn send<T: Send>() {}
    send::<crate::group::HealthyChanges>();
}
