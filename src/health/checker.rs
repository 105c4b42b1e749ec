//! The scheduler of active checks: one supervisor per group keeps one probe task per target.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{AbortHandle, JoinSet};

use super::ActiveCheck;
use super::error::CheckTimedOut;
use super::state::GroupHealth;
use crate::target::{Snapshot, Target, TargetId, TargetState};
use crate::util::FastRng;

/// Keeps one probe task per current target; ends (aborting every probe, since the `JoinSet`
/// is dropped) when aborted by the group or when `current` finds the group gone. `current`
/// returns the group's current snapshot (the group hands in a closure over a weak handle, so
/// health never names the group).
pub(crate) async fn supervise<F>(health: Arc<GroupHealth>, current: F, check: Arc<ActiveCheck>)
where
    F: Fn() -> Option<Arc<Snapshot>> + Send + 'static,
{
    let mut membership = health.membership.subscribe();
    let mut probes = JoinSet::new();
    let mut running: HashMap<TargetId, (Arc<Target>, AbortHandle)> = HashMap::new();
    loop {
        membership.borrow_and_update();
        {
            let Some(snap) = current() else { return };
            running.retain(|id, (target, task)| match snap.get(id) {
                // A target replaced by one with another address gets a fresh probe.
                Some(e) if *e.target == **target => true,
                _ => {
                    task.abort();
                    false
                }
            });
            for e in snap.entries.iter() {
                if running.contains_key(e.target.id()) {
                    continue;
                }
                let task = probes.spawn(probe(
                    check.clone(),
                    e.target.clone(),
                    e.state.clone(),
                    health.clone(),
                ));
                running.insert(e.target.id().clone(), (e.target.clone(), task));
            }
        }
        while probes.try_join_next().is_some() {}
        if membership.changed().await.is_err() {
            return;
        }
    }
}

/// Probes one target forever, applying the timeout and rise/fall counting.
async fn probe(
    check: Arc<ActiveCheck>,
    target: Arc<Target>,
    state: Arc<TargetState>,
    health: Arc<GroupHealth>,
) {
    let rng = FastRng::new(check.seed().map(|s| s ^ id_hash(target.id())));
    let jitter = check.jitter();
    let interval = check.interval();
    if jitter > 0.0 {
        tokio::time::sleep(interval.mul_f64(jitter * unit(&rng))).await;
    }
    let (mut passes, mut fails) = (0u32, 0u32);
    loop {
        let result = match tokio::time::timeout(check.timeout(), check.probe.check(&target)).await {
            Ok(r) => r,
            Err(_) => Err(Box::new(CheckTimedOut::new()) as crate::BoxError),
        };
        match result {
            Ok(()) => {
                fails = 0;
                passes = passes.saturating_add(1);
                health.check_passed(target.id(), &state, passes, check.rise());
            }
            Err(e) => {
                passes = 0;
                fails = fails.saturating_add(1);
                health.check_failed(target.id(), &state, fails, check.fall(), &error_chain(&*e));
            }
        }
        let wait = if jitter > 0.0 {
            interval.mul_f64((1.0 + jitter * (2.0 * unit(&rng) - 1.0)).max(0.0))
        } else {
            interval
        };
        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
    }
}

/// A uniform number in `[0, 1)`.
fn unit(rng: &FastRng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn id_hash(id: &TargetId) -> u64 {
    use std::hash::Hasher;
    let mut h = siphasher::sip::SipHasher13::new();
    h.write(id.as_str().as_bytes());
    h.finish()
}

/// `outer: inner: …`, the way operators read error chains.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
