//! Health: active checks, outlier detection, admin drain, panic mode, slow start, health-aware
//! discovery. Paused-time tests for every threshold and transition, real loopback backends for
//! each failure mode, property tests for the invariants, and a fault test with a killed backend.

#[cfg(feature = "hyper")]
mod backend;
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use http::StatusCode;
use tower_lb::algorithm::{
    LeastConnections, P2cInFlight, RoundRobin, SmoothWeightedRoundRobin, WeightedRandom,
};
use tower_lb::balance::error::NoAvailableTarget;
use tower_lb::error::is_caused_by;
use tower_lb::health::{
    ActiveCheck, EjectReason, HealthCheck, HealthEventKind, OutlierDetection, PanicThreshold,
    RestoredBy, SlowStart, check_fn,
};
use tower_lb::{Target, TargetGroup, target::AdminState};

use support::{Mode, Switches, advance, balance, drain, send, settle, targets};

fn group(ids: &[&str]) -> tower_lb::group::TargetGroupBuilder {
    TargetGroup::builder("g")
        .algorithm(RoundRobin::new())
        .targets(targets(ids))
}

fn routable(g: &TargetGroup, id: &str) -> bool {
    g.health(&id.into()).unwrap().is_routable()
}

fn kinds_of(events: &[(String, HealthEventKind)], id: &str) -> Vec<HealthEventKind> {
    events
        .iter()
        .filter(|(t, _)| t == id)
        .map(|(_, k)| k.clone())
        .collect()
}

// ---------------------------------------------------------------- active checks (paused time)

#[tokio::test(start_paused = true)]
async fn fall_then_rise_flip_exactly_at_the_thresholds() {
    let sw = Switches::default();
    let g = group(&["a", "b", "c"])
        .panic_threshold(PanicThreshold::disabled())
        .build()
        .unwrap();
    let mut ev = g.events();
    sw.probe("a", false);
    g.health_check(sw.active(1000, 2, 3)).unwrap();
    settle().await; // check 1 (t = 0) fails
    assert!(routable(&g, "a"), "routable until proven otherwise");
    advance(1000).await; // check 2 fails
    assert!(routable(&g, "a"));
    assert!(drain(&mut ev).is_empty());
    advance(1000).await; // check 3 fails: fall = 3
    assert!(!routable(&g, "a"));
    assert_eq!(
        drain(&mut ev),
        vec![(
            "a".to_owned(),
            HealthEventKind::Unhealthy {
                reason: "switched off".into()
            }
        )]
    );
    advance(5000).await; // more failures: no more events (flips only)
    assert!(drain(&mut ev).is_empty());

    sw.probe("a", true);
    advance(1000).await; // pass 1
    assert!(!routable(&g, "a"));
    advance(1000).await; // pass 2: rise = 2
    assert!(routable(&g, "a"));
    assert_eq!(
        drain(&mut ev),
        vec![("a".to_owned(), HealthEventKind::Healthy)]
    );
    assert!(sw.probes_of("a") >= 10);
}

#[tokio::test(start_paused = true)]
async fn flapping_below_the_thresholds_never_flips() {
    let sw = Switches::default();
    let g = group(&["a", "b"]).build().unwrap();
    let mut ev = g.events();
    g.health_check(sw.active(1000, 2, 3)).unwrap();
    settle().await;
    // fail, fail, pass, repeated: never 3 failures in a row.
    for i in 0..12 {
        sw.probe("a", i % 3 == 2);
        advance(1000).await;
        assert!(routable(&g, "a"), "step {i}");
    }
    assert!(drain(&mut ev).is_empty());
    // Take it down, then pass, fail, repeated: never 2 passes in a row.
    sw.probe("a", false);
    advance(3000).await;
    assert!(!routable(&g, "a"));
    for i in 0..12 {
        sw.probe("a", i % 2 == 0);
        advance(1000).await;
        assert!(!routable(&g, "a"), "step {i}");
    }
    let events = drain(&mut ev);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(events[0].1, HealthEventKind::Unhealthy { .. }));
}

#[tokio::test(start_paused = true)]
async fn waiting_for_the_first_check() {
    let sw = Switches::default();
    let g = group(&["a", "b"]).build().unwrap();
    let b = balance(&g, &sw);
    let mut ev = g.events();
    let check = ActiveCheck::builder(sw.check())
        .interval(Duration::from_secs(1))
        .jitter(0.0)
        .wait_for_first_check(true)
        .build()
        .unwrap();
    g.health_check(check).unwrap();
    // Before any check has run nothing is routable, and that is not a panic.
    assert!(g.health(&"a".into()).unwrap().is_pending());
    let err = send(&b).await.unwrap_err();
    assert!(is_caused_by::<NoAvailableTarget>(&*err));
    settle().await;
    assert!(routable(&g, "a") && routable(&g, "b"));
    let mut events = drain(&mut ev);
    events.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        events,
        vec![
            ("a".to_owned(), HealthEventKind::Healthy),
            ("b".to_owned(), HealthEventKind::Healthy)
        ]
    );
    assert_eq!(g.health_summary().panics, 0);

    // A joiner waits too, and `fall` failures make it unhealthy (and no longer pending).
    sw.probe("c", false);
    g.insert(Target::new("c", "127.0.0.1:9").unwrap());
    assert!(g.health(&"c".into()).unwrap().is_pending());
    advance(2500).await; // three failed checks
    let c = g.health(&"c".into()).unwrap();
    assert!(!c.is_pending() && !c.is_healthy() && !c.is_routable());
    assert!(matches!(
        kinds_of(&drain(&mut ev), "c")[..],
        [HealthEventKind::Unhealthy { .. }]
    ));
}

#[tokio::test(start_paused = true)]
async fn probe_timeouts_count_as_failures() {
    let slow = check_fn(|_t: &Target| async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok::<(), &str>(())
    });
    let g = group(&["a", "b"]).build().unwrap();
    let mut ev = g.events();
    let check = ActiveCheck::builder(slow)
        .interval(Duration::from_secs(2))
        .timeout(Duration::from_millis(500))
        .fall(1)
        .jitter(0.0)
        .build()
        .unwrap();
    g.health_check(check).unwrap();
    advance(600).await;
    let events: Vec<_> = drain(&mut ev)
        .into_iter()
        .filter(|(t, _)| !t.is_empty())
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|(_, k)| matches!(k,
        HealthEventKind::Unhealthy { reason } if reason.contains("timed out"))));
}

#[tokio::test(start_paused = true)]
async fn checks_follow_membership_and_stop_with_the_group() {
    #[derive(Debug, Default)]
    struct Counting(Mutex<HashMap<String, usize>>);
    use std::sync::Mutex;
    impl HealthCheck for Counting {
        fn check<'a>(&'a self, t: &'a Target) -> tower_lb::health::CheckFuture<'a> {
            *self
                .0
                .lock()
                .unwrap()
                .entry(t.id().to_string())
                .or_default() += 1;
            Box::pin(async { Ok(()) })
        }
    }
    let probe = Arc::new(Counting::default());
    let calls = |id: &str| probe.0.lock().unwrap().get(id).copied().unwrap_or(0);
    let g = TargetGroup::new("g");
    let (tx, rx) = tower_lb::discover::channel(8);
    g.attach(rx).unwrap();
    let check = ActiveCheck::builder(probe.clone())
        .interval(Duration::from_secs(1))
        .jitter(0.0)
        .build()
        .unwrap();
    g.health_check(check).unwrap();
    tx.insert(Target::new("a", "127.0.0.1:1").unwrap())
        .await
        .unwrap();
    tx.insert(Target::new("b", "127.0.0.1:2").unwrap())
        .await
        .unwrap();
    settle().await;
    advance(2000).await;
    assert_eq!((calls("a"), calls("b")), (3, 3));
    tx.remove("b".into()).await.unwrap();
    settle().await;
    advance(3000).await;
    assert_eq!((calls("a"), calls("b")), (6, 3), "a leaver loses its check");
    assert_eq!(Arc::strong_count(&probe), 2);
    drop(g);
    settle().await;
    advance(5000).await;
    assert_eq!(calls("a"), 6, "no check runs after the group is dropped");
    assert_eq!(Arc::strong_count(&probe), 1, "every check task is gone");
}

#[tokio::test(start_paused = true)]
async fn no_task_outlives_the_group() {
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let sw = Switches::default();
    let g = group(&["a", "b", "c"])
        .outlier_detection(OutlierDetection::default())
        .build()
        .unwrap();
    let mut events = g.events();
    g.health_check(sw.active(1000, 2, 3)).unwrap();
    let b = balance(&g, &sw);
    sw.serve("a", Mode::Status500);
    for _ in 0..15 {
        send(&b).await.unwrap();
    }
    assert!(g.health(&"a".into()).unwrap().is_ejected());
    settle().await;
    // The supervisor, three probes and one ejection timer.
    assert_eq!(tasks(), 5);
    drop(b);
    drop(g);
    settle().await;
    assert_eq!(tasks(), 0);
    // With the group gone, its event stream ends.
    while events.next().await.is_some() {}
}

// ---------------------------------------------------------------- outlier detection

#[tokio::test(start_paused = true)]
async fn ejection_backoff_grows_and_caps() {
    let sw = Switches::default();
    let g = group(&["a", "b", "c"])
        .outlier_detection(OutlierDetection::default())
        .build()
        .unwrap();
    let b = balance(&g, &sw);
    let mut ev = g.events();
    sw.serve("a", Mode::Status500);
    for round in 1..=12u32 {
        let mut failures = 0;
        for _ in 0..60 {
            let (t, s) = send(&b).await.unwrap();
            if t == "a" {
                assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
                failures += 1;
            }
            if !routable(&g, "a") {
                break;
            }
        }
        assert_eq!(failures, 5, "round {round}: five failures in a row eject");
        let expected = Duration::from_secs(u64::from(30 * round).min(300));
        let events = drain(&mut ev);
        assert_eq!(
            events,
            vec![(
                "a".to_owned(),
                HealthEventKind::Ejected {
                    duration: expected,
                    times: round,
                    reason: EjectReason::ConsecutiveFailures(5)
                }
            )]
        );
        // Ejected: never picked.
        for _ in 0..20 {
            assert_ne!(send(&b).await.unwrap().0, "a");
        }
        advance(expected.as_millis() as u64 - 100).await;
        assert!(g.health(&"a".into()).unwrap().is_ejected());
        advance(100).await;
        assert!(routable(&g, "a"));
        assert_eq!(
            drain(&mut ev),
            vec![(
                "a".to_owned(),
                HealthEventKind::Restored {
                    by: RestoredBy::Timer
                }
            )]
        );
    }
    assert_eq!(g.health_summary().ejections, 12);
}

#[tokio::test(start_paused = true)]
async fn the_multiplier_decays_while_the_target_behaves() {
    let sw = Switches::default();
    let g = group(&["a", "b", "c"])
        .outlier_detection(OutlierDetection::default())
        .build()
        .unwrap();
    let b = balance(&g, &sw);
    sw.serve("a", Mode::Status500);
    let eject = || async {
        for _ in 0..60 {
            send(&b).await.unwrap();
            if !routable(&g, "a") {
                return;
            }
        }
        panic!("not ejected");
    };
    eject().await;
    advance(30_000).await;
    eject().await;
    assert_eq!(g.health(&"a".into()).unwrap().times_ejected(), 2);
    advance(60_000).await; // restored
    advance(60_000).await; // two quiet base periods
    eject().await;
    assert_eq!(g.health(&"a".into()).unwrap().times_ejected(), 1);
}

#[tokio::test(start_paused = true)]
async fn failure_rate_ejects_with_enough_volume() {
    let sw = Switches::default();
    let outliers = OutlierDetection::builder()
        .consecutive_failures(0)
        .failure_rate(0.5, Duration::from_secs(10), 10)
        .build()
        .unwrap();
    let g = TargetGroup::builder("g")
        .algorithm(RoundRobin::new())
        .targets(targets(&["a", "b"]))
        .outlier_detection(outliers)
        .build()
        .unwrap();
    let b = balance(&g, &sw);
    let mut ev = g.events();
    // Alternate failure and success on `a`: 50% once the window has 10 requests.
    let mut sent_to_a = 0;
    while routable(&g, "a") && sent_to_a < 40 {
        sw.serve(
            "a",
            if sent_to_a % 2 == 0 {
                Mode::Status500
            } else {
                Mode::Ok
            },
        );
        if send(&b).await.unwrap().0 == "a" {
            sent_to_a += 1;
        }
    }
    assert!(!routable(&g, "a"));
    let events = drain(&mut ev);
    assert!(
        matches!(
            events[..],
            [(
                _,
                HealthEventKind::Ejected {
                    reason: EjectReason::FailureRate {
                        failures: 5,
                        requests: 9
                    },
                    ..
                }
            )]
        ) || matches!(
            events[..],
            [(
                _,
                HealthEventKind::Ejected {
                    reason: EjectReason::FailureRate {
                        failures: 6,
                        requests: 11
                    },
                    ..
                }
            )]
        ),
        "{events:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn local_rejections_never_eject() {
    let sw = Switches::default();
    let g = group(&["a", "b"])
        .outlier_detection(OutlierDetection::default())
        .build()
        .unwrap();
    let b = balance(&g, &sw);
    sw.serve("a", Mode::Rejected);
    for _ in 0..100 {
        let _ = send(&b).await;
    }
    assert!(routable(&g, "a"));
    assert_eq!(g.health_summary().ejections, 0);
    // Rejections between failures do not reset the run either: 5 failures still eject.
    for i in 0..20 {
        sw.serve(
            "a",
            if i % 2 == 0 {
                Mode::Status500
            } else {
                Mode::Rejected
            },
        );
        let _ = send(&b).await;
        let _ = send(&b).await;
    }
    assert!(g.health(&"a".into()).unwrap().is_ejected());
}

#[tokio::test(start_paused = true)]
async fn never_more_than_the_max_share_is_ejected() {
    for (n, max) in [(1usize, 0usize), (2, 1), (10, 1), (19, 1), (20, 2), (35, 3)] {
        let sw = Switches::default();
        let ids: Vec<String> = (0..n).map(|i| format!("t{i:02}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let g = group(&refs)
            .outlier_detection(OutlierDetection::default())
            .panic_threshold(PanicThreshold::disabled())
            .build()
            .unwrap();
        for id in &ids {
            sw.serve(id, Mode::Status500);
        }
        let b = balance(&g, &sw);
        for _ in 0..(n * 12) {
            let _ = send(&b).await;
            assert!(g.health_summary().ejected <= max);
        }
        assert_eq!(g.health_summary().ejected, max, "n = {n}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_passing_active_check_restores_an_ejected_target() {
    let sw = Switches::default();
    let g = group(&["a", "b", "c"])
        .outlier_detection(OutlierDetection::default())
        .build()
        .unwrap();
    let b = balance(&g, &sw);
    g.health_check(sw.active(1000, 2, 3)).unwrap();
    settle().await;
    let mut ev = g.events();
    sw.serve("a", Mode::Status500);
    for _ in 0..15 {
        send(&b).await.unwrap();
    }
    assert!(g.health(&"a".into()).unwrap().is_ejected());
    advance(1000).await; // the next check passes, long before the 30 s are over
    assert!(routable(&g, "a"));
    let kinds = kinds_of(&drain(&mut ev), "a");
    assert!(
        matches!(
            kinds[..],
            [
                HealthEventKind::Ejected { .. },
                HealthEventKind::Restored {
                    by: RestoredBy::ActiveCheck
                }
            ]
        ),
        "{kinds:?}"
    );
}

// ---------------------------------------------------------------- admin state

#[tokio::test(start_paused = true)]
async fn drain_lets_in_flight_finish_and_takes_no_new_requests() {
    let sw = Switches::default();
    let g = group(&["a", "b"]).build().unwrap();
    let b = balance(&g, &sw);
    let mut ev = g.events();
    // Round robin starts at `a`; keep its response (and so the request) in flight.
    let held = tower::ServiceExt::oneshot(b.clone(), http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(g.stats()[0].in_flight(), 1);
    let drained = g.drain(&"a".into()).unwrap();
    let mut drained = tokio_test::task::spawn(drained);
    assert!(drained.poll().is_pending());
    for _ in 0..10 {
        assert_eq!(send(&b).await.unwrap().0, "b");
    }
    assert!(drained.poll().is_pending());
    drop(held);
    assert!(drained.poll().is_ready());
    g.set_admin(&"a".into(), AdminState::Enabled).unwrap();
    g.set_admin(&"a".into(), AdminState::Enabled).unwrap(); // no flip, no event
    let served: HashSet<String> = futures_util::future::join_all((0..4).map(|_| send(&b)))
        .await
        .into_iter()
        .map(|r| r.unwrap().0)
        .collect();
    assert!(served.contains("a"));
    assert_eq!(
        kinds_of(&drain(&mut ev), "a"),
        vec![HealthEventKind::Draining, HealthEventKind::Enabled]
    );
}

#[tokio::test(start_paused = true)]
async fn admin_state_and_health_are_independent() {
    let sw = Switches::default();
    let g = group(&["a", "b", "c"]).build().unwrap();
    g.health_check(sw.active(1000, 2, 1)).unwrap();
    settle().await;
    let mut ev = g.events();
    g.set_admin(&"a".into(), AdminState::Disabled).unwrap();
    // Still checked while disabled.
    sw.probe("a", false);
    advance(1000).await;
    let a = g.health(&"a".into()).unwrap();
    assert!(!a.is_healthy() && a.admin() == AdminState::Disabled);
    // Enabling an unhealthy target does not make it routable...
    g.set_admin(&"a".into(), AdminState::Enabled).unwrap();
    assert!(!routable(&g, "a"));
    // ...passing `rise` checks does.
    sw.probe("a", true);
    advance(2000).await;
    assert!(routable(&g, "a"));
    // A healthy but disabled target is not routable.
    g.set_admin(&"b".into(), AdminState::Disabled).unwrap();
    assert!(!routable(&g, "b") && g.health(&"b".into()).unwrap().is_healthy());
    let kinds = kinds_of(&drain(&mut ev), "a");
    assert!(
        matches!(
            kinds[..],
            [
                HealthEventKind::Disabled,
                HealthEventKind::Unhealthy { .. },
                HealthEventKind::Enabled,
                HealthEventKind::Healthy
            ]
        ),
        "{kinds:?}"
    );
}

// ---------------------------------------------------------------- panic threshold

#[tokio::test(start_paused = true)]
async fn by_default_only_healthy_targets_serve_until_none_is_left() {
    // nginx/HAProxy semantics (issue 10 item 9): with active checks on, three of four down
    // still sends everything to the one healthy target; only when none is healthy does the
    // group spread over all of them. Bound: every one of 40 requests goes to `d` while it is
    // the only healthy target; all four serve once none is.
    let sw = Switches::default();
    let g = group(&["a", "b", "c", "d"]).build().unwrap();
    let b = balance(&g, &sw);
    g.health_check(sw.active(1000, 1, 1)).unwrap();
    settle().await;
    for id in ["a", "b", "c"] {
        sw.probe(id, false);
    }
    advance(1000).await;
    let s = g.health_summary();
    assert!(!s.in_panic && s.down == 3, "{s:?}");
    for _ in 0..40 {
        assert_eq!(send(&b).await.unwrap().0, "d");
    }
    sw.probe("d", false);
    advance(1000).await;
    let s = g.health_summary();
    assert!(s.in_panic && s.panics == 1 && s.down == 4, "{s:?}");
    let mut seen = HashSet::new();
    for _ in 0..20 {
        seen.insert(send(&b).await.unwrap().0);
    }
    assert_eq!(seen.len(), 4, "no healthy target: spread over all");
    sw.probe("d", true);
    advance(1000).await;
    assert!(!g.health_summary().in_panic);
    for _ in 0..10 {
        assert_eq!(send(&b).await.unwrap().0, "d");
    }
}

#[tokio::test(start_paused = true)]
async fn panic_fails_open_and_is_counted() {
    let sw = Switches::default();
    // Envoy's 50% threshold, one call away.
    let g = group(&["a", "b", "c", "d"])
        .panic_threshold(PanicThreshold::new(0.5).unwrap())
        .build()
        .unwrap();
    let b = balance(&g, &sw);
    g.health_check(sw.active(1000, 1, 1)).unwrap();
    settle().await;
    let mut ev = g.events();
    // Two of four down: 50% available is not below 50%, so no panic: they are skipped.
    sw.probe("a", false);
    sw.probe("b", false);
    advance(1000).await;
    assert!(!g.health_summary().in_panic);
    for _ in 0..20 {
        let t = send(&b).await.unwrap().0;
        assert!(t == "c" || t == "d");
    }
    // Three of four down: panic, spread over all four.
    sw.probe("c", false);
    advance(1000).await;
    let s = g.health_summary();
    assert!(s.in_panic && s.panics == 1 && s.down == 3);
    let mut seen = HashSet::new();
    for _ in 0..20 {
        seen.insert(send(&b).await.unwrap().0);
    }
    assert_eq!(seen.len(), 4);
    // Disabled targets stay out even in panic.
    g.set_admin(&"a".into(), AdminState::Disabled).unwrap();
    for _ in 0..20 {
        assert_ne!(send(&b).await.unwrap().0, "a");
    }
    g.set_admin(&"a".into(), AdminState::Enabled).unwrap();
    sw.probe("b", true);
    sw.probe("c", true);
    advance(1000).await;
    assert!(!g.health_summary().in_panic);
    let group_events: Vec<HealthEventKind> = kinds_of(&drain(&mut ev), "");
    assert_eq!(
        group_events,
        vec![
            HealthEventKind::PanicEntered {
                available: 1,
                total: 4
            },
            // b and c recover in the same round; b's flip alone ends the panic (2 of 4 = 50%).
            HealthEventKind::PanicLeft {
                available: 2,
                total: 4
            },
        ]
    );
    assert_eq!(g.health_summary().panics, 1);
}

#[tokio::test(start_paused = true)]
async fn panic_can_fail_fast() {
    let sw = Switches::default();
    let g = group(&["a", "b", "c"])
        .panic_threshold(PanicThreshold::new(0.5).unwrap().fail_fast())
        .build()
        .unwrap();
    let b = balance(&g, &sw);
    g.health_check(sw.active(1000, 1, 1)).unwrap();
    sw.probe("a", false);
    sw.probe("b", false);
    settle().await;
    assert!(g.health_summary().in_panic);
    for _ in 0..5 {
        let err = send(&b).await.unwrap_err();
        assert!(is_caused_by::<NoAvailableTarget>(&*err));
    }
    sw.probe("a", true);
    advance(1000).await;
    assert!(!g.health_summary().in_panic);
    assert!(send(&b).await.is_ok());
}

// ---------------------------------------------------------------- slow start

/// The share of `n` picks that go to `id`.
async fn share(b: &tower_lb::balance::Balance<support::Stub>, id: &str, n: usize) -> f64 {
    let mut hits = 0;
    for _ in 0..n {
        hits += (send(b).await.unwrap().0 == id) as usize;
    }
    hits as f64 / n as f64
}

#[tokio::test(start_paused = true)]
async fn slow_start_ramps_a_joiner_in_every_weight_aware_algorithm() {
    type SetAlgorithm = Box<dyn Fn(TargetGroup)>;
    let algorithms: Vec<(&str, SetAlgorithm)> = vec![
        (
            "smooth",
            Box::new(|g: TargetGroup| g.set_algorithm(SmoothWeightedRoundRobin::new())),
        ),
        (
            "random",
            Box::new(|g: TargetGroup| g.set_algorithm(WeightedRandom::new().seed(7))),
        ),
        (
            "least",
            Box::new(|g: TargetGroup| g.set_algorithm(LeastConnections::new().seed(7))),
        ),
        // Idle P2C: the joiner is in 2 of 3 pairs and wins 0.1 / 1.1 of them at its floor
        // (≈ 6%), 0.5 / 1.5 at half-ramp (≈ 22%).
        (
            "p2c",
            Box::new(|g: TargetGroup| g.set_algorithm(P2cInFlight::new().seed(7))),
        ),
    ];
    for ((name, set), weight) in algorithms.iter().flat_map(|a| [(a, 10), (a, 1)]) {
        let sw = Switches::default();
        let ss = SlowStart::builder(Duration::from_secs(100))
            .build()
            .unwrap();
        let g = TargetGroup::builder("g")
            .targets(targets(&["a", "b"]))
            .slow_start(ss)
            .build()
            .unwrap();
        set(g.clone());
        let b = balance(&g, &sw);
        assert!(
            !g.health(&"a".into()).unwrap().is_ramping(),
            "initial targets do not ramp"
        );
        g.insert(
            Target::builder("c", "127.0.0.1:3")
                .weight(weight)
                .build()
                .unwrap(),
        );
        g.insert(
            Target::builder("a", "127.0.0.1:1")
                .weight(weight)
                .build()
                .unwrap(),
        );
        g.insert(
            Target::builder("b", "127.0.0.1:2")
                .weight(weight)
                .build()
                .unwrap(),
        );
        assert!(g.health(&"c".into()).unwrap().is_ramping());
        // t = 0: c at its 10% floor (1 of 21 tenths); t = 50 s: 5 of 25; after: 1/3. Weight 1
        // ramps as finely as weight 10 (through `Context::weight_milli`).
        let s0 = share(&b, "c", 2100).await;
        assert!((0.02..0.08).contains(&s0), "{name}: {s0}");
        advance(50_000).await;
        let s50 = share(&b, "c", 2500).await;
        assert!((0.15..0.25).contains(&s50), "{name}: {s50}");
        advance(50_000).await;
        let s100 = share(&b, "c", 3000).await;
        assert!((0.30..0.37).contains(&s100), "{name}: {s100}");
        assert!(
            !g.health(&"c".into()).unwrap().is_ramping(),
            "{name}: the ramp ended"
        );
        assert_eq!(g.health_summary().ramping, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_recovering_target_ramps_too() {
    let sw = Switches::default();
    let g = group(&["a", "b"])
        .slow_start(SlowStart::builder(Duration::from_secs(10)).build().unwrap())
        .build()
        .unwrap();
    g.health_check(sw.active(1000, 1, 1)).unwrap();
    settle().await;
    sw.probe("a", false);
    advance(1000).await;
    assert!(!g.health(&"a".into()).unwrap().is_ramping());
    sw.probe("a", true);
    advance(1000).await;
    let a = g.health(&"a".into()).unwrap();
    assert!(a.is_routable() && a.is_ramping());
}

// ---------------------------------------------------------------- health-aware discovery

#[tokio::test(start_paused = true)]
async fn healthy_changes_feed_towers_p2c_balancer() {
    use tower::{Service, ServiceExt};
    let sw = Switches::default();
    let (tx, rx) = tower_lb::discover::channel(8);
    let check = ActiveCheck::builder(sw.check())
        .interval(Duration::from_secs(1))
        .rise(1)
        .fall(1)
        .jitter(0.0)
        .wait_for_first_check(true)
        .build()
        .unwrap();
    let changes = tower_lb::group::healthy_changes("p2c", rx, check).unwrap();
    let served: Arc<std::sync::Mutex<HashMap<String, usize>>> = Arc::default();
    let served2 = served.clone();
    let discover = changes.into_discover(move |t: &Target| {
        let id = t.id().to_string();
        let served = served2.clone();
        let svc = tower::service_fn(move |_req: ()| {
            *served.lock().unwrap().entry(id.clone()).or_default() += 1;
            std::future::ready(Ok::<_, std::convert::Infallible>(()))
        });
        tower::load::Constant::new(svc, 0u32)
    });
    let mut p2c = tower::balance::p2c::Balance::new(discover);
    sw.probe("b", false);
    tx.insert(Target::new("a", "127.0.0.1:1").unwrap())
        .await
        .unwrap();
    tx.insert(Target::new("b", "127.0.0.1:2").unwrap())
        .await
        .unwrap();
    settle().await;
    let mut call = async |n: usize| {
        for _ in 0..n {
            p2c.ready().await.unwrap().call(()).await.unwrap();
        }
        std::mem::take(&mut *served.lock().unwrap())
    };
    let r = call(50).await;
    assert_eq!((r.get("a").copied(), r.get("b").copied()), (Some(50), None));
    sw.probe("b", true);
    advance(1000).await;
    let r = call(100).await;
    assert!(r["a"] > 10 && r["b"] > 10, "{r:?}");
    sw.probe("a", false);
    advance(1000).await;
    let r = call(50).await;
    assert_eq!((r.get("a").copied(), r.get("b").copied()), (None, Some(50)));
}

#[tokio::test(start_paused = true)]
async fn healthy_changes_remove_targets_that_leave_discovery() {
    let sw = Switches::default();
    let (tx, rx) = tower_lb::discover::channel(8);
    let mut changes = tower_lb::group::healthy_changes("d", rx, sw.active(1000, 1, 1)).unwrap();
    tx.insert(Target::new("a", "127.0.0.1:1").unwrap())
        .await
        .unwrap();
    settle().await;
    let first = changes.next().await.unwrap().unwrap();
    assert_eq!(
        first,
        tower_lb::discover::Change::Insert(Target::new("a", "127.0.0.1:1").unwrap())
    );
    tx.remove("a".into()).await.unwrap();
    settle().await;
    let second = changes.next().await.unwrap().unwrap();
    assert_eq!(second, tower_lb::discover::Change::Remove("a".into()));
}

// ---------------------------------------------------------------- real loopback backends

#[cfg(feature = "hyper")]
mod real {
    use super::backend::{Backend, Behavior, refusing_addr};
    use super::*;
    use tower_lb::health::{HealthEvent, HealthEvents, HttpCheck, TcpCheck};

    /// Waits (real time, at most 5 s) for an event matching `pred`.
    async fn wait_for(ev: &mut HealthEvents, pred: impl Fn(&HealthEvent) -> bool) -> HealthEvent {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let e = ev.next().await.expect("events ended");
                if pred(&e) {
                    return e;
                }
            }
        })
        .await
        .expect("no such event within 5 s")
    }

    fn fast(probe: impl HealthCheck, rise: u32, fall: u32) -> ActiveCheck {
        ActiveCheck::builder(probe)
            .interval(Duration::from_millis(30))
            .timeout(Duration::from_millis(150))
            .rise(rise)
            .fall(fall)
            .jitter(0.0)
            .build()
            .unwrap()
    }

    fn unhealthy_reason(e: &HealthEvent) -> Option<String> {
        match e.kind() {
            HealthEventKind::Unhealthy { reason } => Some(reason.to_string()),
            _ => None,
        }
    }

    /// Waits for `probe` to pass once against `addr` (the target waits for its first check).
    async fn passes(addr: std::net::SocketAddr, probe: impl HealthCheck) {
        let g = TargetGroup::builder("real")
            .target(Target::new("x", addr).unwrap())
            .build()
            .unwrap();
        let mut ev = g.events();
        let check = ActiveCheck::builder(probe)
            .interval(Duration::from_millis(30))
            .timeout(Duration::from_millis(500))
            .jitter(0.0)
            .wait_for_first_check(true)
            .build()
            .unwrap();
        g.health_check(check).unwrap();
        let e = wait_for(&mut ev, |e| {
            matches!(
                e.kind(),
                HealthEventKind::Healthy | HealthEventKind::Unhealthy { .. }
            )
        })
        .await;
        assert_eq!(*e.kind(), HealthEventKind::Healthy);
    }

    async fn reason_for(addr: std::net::SocketAddr, probe: impl HealthCheck) -> String {
        let g = TargetGroup::builder("real")
            .target(Target::new("x", addr).unwrap())
            .build()
            .unwrap();
        let mut ev = g.events();
        g.health_check(fast(probe, 1, 2)).unwrap();
        let e = wait_for(&mut ev, |e| unhealthy_reason(e).is_some()).await;
        unhealthy_reason(&e).unwrap()
    }

    #[tokio::test]
    async fn refused_connections_fail_tcp_and_http_checks() {
        let addr = refusing_addr().await;
        let r = reason_for(addr, TcpCheck::new()).await;
        assert!(r.starts_with("connection to target failed"), "{r}");
        let r = reason_for(addr, HttpCheck::get("/health").unwrap()).await;
        assert!(r.starts_with("connection to target failed"), "{r}");
    }

    #[tokio::test]
    async fn a_silent_backend_times_out() {
        let b = Backend::start(Behavior::Silent).await;
        let r = reason_for(b.addr, HttpCheck::get("/health").unwrap()).await;
        assert_eq!(r, "health check timed out");
        // The port is open, so a TCP check passes.
        passes(b.addr, TcpCheck::new()).await;
    }

    #[tokio::test]
    async fn a_500_fails_the_http_check() {
        let b = Backend::start(Behavior::Status500).await;
        let r = reason_for(b.addr, HttpCheck::get("/health").unwrap()).await;
        assert_eq!(r, "unexpected status 500");
        // Unless 500 is expected.
        let probe = HttpCheck::builder("/health")
            .expect_status(500..=500)
            .build()
            .unwrap();
        passes(b.addr, probe).await;
    }

    #[tokio::test]
    async fn closing_after_the_headers_fails_a_body_match_and_ejects_passively() {
        let b = Backend::start(Behavior::CloseAfterHeaders).await;
        let probe = HttpCheck::builder("/health")
            .expect_body("ok")
            .build()
            .unwrap();
        let r = reason_for(b.addr, probe).await;
        assert!(!r.is_empty());
        // Without a body match the head alone passes.
        passes(b.addr, HttpCheck::get("/health").unwrap()).await;

        // Real traffic reads the body, which breaks off: a failure for outlier detection.
        use http_body_util::BodyExt;
        let ok = Backend::start(Behavior::Ok).await;
        let g = TargetGroup::builder("real")
            .algorithm(RoundRobin::new())
            .target(Target::new("broken", b.addr).unwrap())
            .target(Target::new("fine", ok.addr).unwrap())
            .outlier_detection(OutlierDetection::default())
            .build()
            .unwrap();
        let bal = tower_lb::balance::Balance::with_maker(
            g.clone(),
            tower_lb::upstream::HttpClient::<String>::new(),
        );
        for _ in 0..20 {
            let rsp = tower::ServiceExt::oneshot(
                bal.clone(),
                http::Request::get("/x").body(String::new()).unwrap(),
            )
            .await
            .unwrap();
            let _ = rsp.into_body().collect().await;
        }
        assert!(g.health(&"broken".into()).unwrap().is_ejected());
        assert_eq!(
            ok.served(),
            15,
            "5 to the broken one, then all to the fine one"
        );
    }

    #[tokio::test]
    async fn a_flapping_backend_flips_both_ways() {
        let b = Backend::start(Behavior::Ok).await;
        let g = TargetGroup::builder("real")
            .target(Target::new("x", b.addr).unwrap())
            .build()
            .unwrap();
        let mut ev = g.events();
        g.health_check(fast(HttpCheck::get("/health").unwrap(), 2, 2))
            .unwrap();
        for _ in 0..2 {
            b.set(Behavior::Status500);
            wait_for(&mut ev, |e| unhealthy_reason(e).is_some()).await;
            b.set(Behavior::Ok);
            wait_for(&mut ev, |e| *e.kind() == HealthEventKind::Healthy).await;
        }
    }

    /// The fault test: 360 requests over three real backends; one is killed after 120 and
    /// restarted after 240.
    ///
    /// Requests are sent one at a time, so when the dead backend is ejected (after
    /// `consecutive_failures` = 5 failures in a row) no other request to it is in flight: at
    /// most 5 requests fail (in general, at most `consecutive_failures + concurrency − 1`).
    /// Active checks (rise 2) bring it back after exactly two passing checks.
    #[tokio::test]
    async fn a_killed_backend_costs_at_most_the_ejection_threshold() {
        let mut backends = Vec::new();
        for _ in 0..3 {
            backends.push(Backend::start(Behavior::Ok).await);
        }
        let g = TargetGroup::builder("fault")
            .algorithm(RoundRobin::new())
            .targets(
                ["a", "b", "c"]
                    .iter()
                    .zip(&backends)
                    .map(|(id, b)| Target::new(*id, b.addr).unwrap()),
            )
            .outlier_detection(OutlierDetection::default())
            .build()
            .unwrap();
        let check = ActiveCheck::builder(HttpCheck::get("/health").unwrap())
            .interval(Duration::from_millis(40))
            .timeout(Duration::from_millis(200))
            .rise(2)
            .fall(3)
            .jitter(0.0)
            .build()
            .unwrap();
        g.health_check(check).unwrap();
        let mut ev = g.events();
        let bal = tower_lb::balance::Balance::with_maker(
            g.clone(),
            tower_lb::upstream::HttpClient::<String>::new(),
        );
        let (mut ok, mut failed, mut outcomes) = (0usize, 0usize, 0usize);
        let c = backends.pop().unwrap();
        let send_batch = async |n: usize, ok: &mut usize, failed: &mut usize| {
            for _ in 0..n {
                let req = http::Request::get("/work").body(String::new()).unwrap();
                // A hang would be a request without an outcome: fail the test on it.
                let res = tokio::time::timeout(
                    Duration::from_secs(5),
                    tower::ServiceExt::oneshot(bal.clone(), req),
                )
                .await
                .expect("a request got no outcome");
                match res {
                    Ok(r) if r.status().is_success() => *ok += 1,
                    _ => *failed += 1,
                }
            }
        };
        send_batch(120, &mut ok, &mut failed).await;
        outcomes += 120;
        assert_eq!((ok, failed), (120, 0));
        let c_addr = c.kill().await;
        send_batch(120, &mut ok, &mut failed).await;
        outcomes += 120;
        assert!((1..=5).contains(&failed), "failed {failed}");
        assert!(!g.health(&"c".into()).unwrap().is_routable());
        // Let the active checks find it down too (fall = 3), so that its return is theirs.
        wait_for(&mut ev, |e| {
            e.target().is_some_and(|t| t.as_str() == "c")
                && matches!(e.kind(), HealthEventKind::Unhealthy { .. })
        })
        .await;
        // Restart on the same port; it returns after exactly `rise` passing checks.
        let c = Backend::start_on(c_addr, Behavior::Ok).await;
        let healthy = wait_for(&mut ev, |e| {
            e.target().is_some_and(|t| t.as_str() == "c") && *e.kind() == HealthEventKind::Healthy
        })
        .await;
        assert!(g.health(&"c".into()).unwrap().is_routable());
        assert_eq!(
            c.hits_before(healthy.at()),
            2,
            "back after rise = 2 passing checks"
        );
        let before = c.served();
        let failed_before = failed;
        send_batch(120, &mut ok, &mut failed).await;
        outcomes += 120;
        assert_eq!(failed, failed_before);
        assert_eq!(
            c.served() - before,
            40,
            "back in rotation: its third of the traffic"
        );
        assert_eq!(
            ok + failed,
            outcomes,
            "every request got exactly one outcome"
        );
        assert!(outcomes >= 300);
        drop(backends);
    }
}

// ---------------------------------------------------------------- properties

mod props {
    use super::*;
    use proptest::prelude::*;

    fn paused() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    proptest! {
        // Seeded: the same cases on every run.
        #![proptest_config(ProptestConfig {
            cases: 48,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x656a_6563),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Whatever fails, never more than max(1, ⌊N × p / 100⌋) targets are ejected (none of one).
        #[test]
        fn ejected_never_exceeds_the_max_share(
            n in 1usize..30,
            percent in 0u32..=100,
            failing in proptest::collection::vec(any::<bool>(), 30),
            requests in 1usize..300,
        ) {
            paused().block_on(async {
                let sw = Switches::default();
                let ids: Vec<String> = (0..n).map(|i| format!("t{i:02}")).collect();
                let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                let outliers = OutlierDetection::builder()
                    .consecutive_failures(2)
                    .max_ejection_share(f64::from(percent) / 100.0)
                    .build()
                    .unwrap();
                let g = group(&refs).outlier_detection(outliers).build().unwrap();
                for (id, f) in ids.iter().zip(&failing) {
                    if *f { sw.serve(id, Mode::Status500); }
                }
                let b = balance(&g, &sw);
                let max = if n < 2 { 0 } else { (n * percent as usize / 100).max(1) };
                for _ in 0..requests {
                    let _ = send(&b).await;
                    prop_assert!(g.health_summary().ejected <= max);
                }
                Ok(())
            })?;
        }

        /// A pick never lands on an unhealthy or ejected target while a healthy one exists,
        /// unless the group is in panic mode.
        #[test]
        fn never_picks_an_unhealthy_target_outside_panic(
            down in proptest::collection::vec(any::<bool>(), 1..12),
            threshold in 0u32..=100,
            algorithm in 0usize..4,
        ) {
            paused().block_on(async {
                let sw = Switches::default();
                let ids: Vec<String> = (0..down.len()).map(|i| format!("t{i:02}")).collect();
                let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                let g = group(&refs)
                    .panic_threshold(PanicThreshold::new(f64::from(threshold) / 100.0).unwrap())
                    .build()
                    .unwrap();
                match algorithm {
                    0 => g.set_algorithm(RoundRobin::new()),
                    1 => g.set_algorithm(SmoothWeightedRoundRobin::new()),
                    2 => g.set_algorithm(WeightedRandom::new().seed(1)),
                    _ => g.set_algorithm(LeastConnections::new().seed(1)),
                }
                for (id, d) in ids.iter().zip(&down) {
                    sw.probe(id, !d);
                }
                g.health_check(sw.active(1000, 1, 1)).unwrap();
                settle().await;
                let b = balance(&g, &sw);
                let healthy: HashSet<&String> =
                    ids.iter().zip(&down).filter(|(_, d)| !**d).map(|(i, _)| i).collect();
                let panic = g.health_summary().in_panic;
                let available = healthy.len() as u32 * 100;
                prop_assert_eq!(panic, available < threshold * ids.len() as u32);
                for _ in 0..50 {
                    match send(&b).await {
                        Ok((t, _)) => prop_assert!(panic || healthy.contains(&t)),
                        Err(_) => prop_assert!(healthy.is_empty() && !panic),
                    }
                }
                Ok(())
            })?;
        }
    }
}
