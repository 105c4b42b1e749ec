//! The group-wide and per-target health bookkeeping behind the status flags that picks skip.
//!
//! Every change of a target's status word goes through `TargetState::transition`, which hands
//! the `(before, after)` pair to [`GroupHealth::on_transition`]. The group's counters (members,
//! targets in service, targets down, ejected, ramping) are derived from those pairs alone, so
//! they stay exact under concurrent flips and membership changes without any lock on the
//! request path, and the panic state is recomputed only when a count it depends on moves.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::events::{HealthEvent, HealthEventKind};
use super::{OutlierDetection, PanicMode, PanicThreshold, SlowStart};
use crate::classify::Outcome;
use crate::target::{
    AdminState, Entry, HealthView, PanicState, PickSignals, Status, TargetId, TargetObserver,
    TargetState,
};
use crate::util::lock;

/// Events kept for slow subscribers before they start missing some.
const EVENT_CAPACITY: usize = 1024;

/// The health policies a group is built with.
#[derive(Debug, Clone, Default)]
pub(crate) struct HealthSettings {
    pub(crate) outlier: Option<OutlierDetection>,
    pub(crate) panic: PanicThreshold,
    pub(crate) slow_start: Option<SlowStart>,
}

/// Health state shared by a group, its snapshots and its targets' states.
pub(crate) struct GroupHealth {
    pub(super) name: Arc<str>,
    pub(super) settings: HealthSettings,
    /// Time origin for the per-target timestamps kept in atomics (nanoseconds since).
    pub(super) epoch: Instant,
    pub(super) members: AtomicI64,
    pub(super) in_service: AtomicI64,
    pub(super) down: AtomicI64,
    pub(super) ejected: AtomicI64,
    /// Panic mode and the ramping count, read by every pick (see `crate::target::PickSignals`).
    pub(super) signals: Arc<PickSignals>,
    pub(super) panic_lock: Mutex<()>,
    pub(super) panics: AtomicU64,
    pub(super) ejections: AtomicU64,
    pub(super) eject_lock: Mutex<()>,
    /// New members wait for their first passing active check.
    pub(crate) wait_first: AtomicBool,
    pub(super) events: broadcast::Sender<HealthEvent>,
    /// Bumped on every membership change.
    pub(crate) membership: watch::Sender<u64>,
    /// Bumped on every membership change and every event.
    pub(crate) changes: watch::Sender<u64>,
    pub(super) timers: Mutex<Vec<AbortHandle>>,
    pub(crate) checker: Mutex<Option<AbortHandle>>,
}

impl fmt::Debug for GroupHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupHealth")
            .field("name", &self.name)
            .field("in_service", &self.in_service.load(Ordering::Relaxed))
            .field("down", &self.down.load(Ordering::Relaxed))
            .field("ejected", &self.ejected.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A point-in-time count of a group's health; see
/// [`TargetGroup::health_summary`](crate::group::TargetGroup::health_summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthSummary {
    /// Targets in the group.
    pub members: usize,
    /// Targets in service: members that are neither disabled, draining nor waiting for their
    /// first check. The panic threshold is a share of these.
    pub in_service: usize,
    /// Targets in service that are unhealthy or ejected.
    pub down: usize,
    /// Targets currently ejected by outlier detection.
    pub ejected: usize,
    /// Whether the group is in panic mode now.
    pub in_panic: bool,
    /// How many times the group entered panic mode.
    pub panics: u64,
    /// How many ejections outlier detection made.
    pub ejections: u64,
    /// Targets whose weight is ramping up (slow start).
    pub ramping: usize,
}

fn contributions(s: Status) -> [i64; 5] {
    let member = s.intersects(Status::MEMBER);
    let in_service = member && !s.intersects(Status::DISABLED | Status::DRAINING | Status::PENDING);
    let down = in_service && s.intersects(Status::UNHEALTHY | Status::EJECTED);
    let ejected = member && s.intersects(Status::EJECTED);
    let ramping = member && s.intersects(Status::RAMP);
    [member, in_service, down, ejected, ramping].map(i64::from)
}

pub(super) fn count(a: &AtomicI64) -> usize {
    usize::try_from(a.load(Ordering::Acquire)).unwrap_or(0)
}

impl GroupHealth {
    pub(crate) fn new(name: Arc<str>, settings: HealthSettings) -> Self {
        GroupHealth {
            name,
            settings,
            epoch: Instant::now(),
            members: AtomicI64::new(0),
            in_service: AtomicI64::new(0),
            down: AtomicI64::new(0),
            ejected: AtomicI64::new(0),
            signals: Arc::new(PickSignals::default()),
            panic_lock: Mutex::new(()),
            panics: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            eject_lock: Mutex::new(()),
            wait_first: AtomicBool::new(false),
            events: broadcast::channel(EVENT_CAPACITY).0,
            membership: watch::channel(0).0,
            changes: watch::channel(0).0,
            timers: Mutex::new(Vec::new()),
            checker: Mutex::new(None),
        }
    }

    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Whether a successful attempt tells the group's health anything (outlier detection
    /// counts successes; without it only failures are recorded).
    pub(crate) fn watches_successes(&self) -> bool {
        self.settings.outlier.is_some()
    }

    #[inline]
    pub(crate) fn panic_state(&self) -> PanicState {
        self.signals.panic_state()
    }

    /// What the group's snapshots and picks see of its health.
    pub(crate) fn view(self: &Arc<Self>) -> HealthView {
        HealthView {
            signals: self.signals.clone(),
            ramp: self.clone(),
            watches_successes: self.watches_successes(),
        }
    }

    /// Attaches the per-target half of health to a new member's state.
    pub(crate) fn bind(self: &Arc<Self>, state: &TargetState, id: TargetId) {
        state.set_observer(Box::new(TargetHealth::new(self.clone(), id)));
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<HealthEvent> {
        self.events.subscribe()
    }

    pub(crate) fn summary(&self) -> HealthSummary {
        HealthSummary {
            members: count(&self.members),
            in_service: count(&self.in_service),
            down: count(&self.down),
            ejected: count(&self.ejected),
            in_panic: self.panic_state() != PanicState::Normal,
            panics: self.panics.load(Ordering::Relaxed),
            ejections: self.ejections.load(Ordering::Relaxed),
            ramping: count(&self.signals.ramping),
        }
    }

    /// One plus the nanoseconds since the epoch, so that 0 can mean "unset".
    pub(crate) fn stamp(&self, at: Instant) -> u64 {
        let ns = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(ns).unwrap_or(u64::MAX - 1) + 1
    }

    /// The instant a [`stamp`](Self::stamp) stands for.
    pub(crate) fn instant(&self, stamp: u64) -> Instant {
        self.epoch + Duration::from_nanos(stamp.saturating_sub(1))
    }

    pub(crate) fn on_transition(&self, prev: Status, next: Status) {
        let (a, b) = (contributions(prev), contributions(next));
        let counters = [
            &self.members,
            &self.in_service,
            &self.down,
            &self.ejected,
            &self.signals.ramping,
        ];
        for ((c, x), y) in counters.iter().zip(a).zip(b) {
            if x != y {
                c.fetch_add(y - x, Ordering::AcqRel);
            }
        }
        if a[1] != b[1] || a[2] != b[2] {
            self.recompute_panic();
        }
    }

    /// Re-evaluates panic mode; called only when the in-service or down count moved.
    fn recompute_panic(&self) {
        let _guard = lock(&self.panic_lock);
        let total = count(&self.in_service);
        let down = count(&self.down).min(total);
        let available = total - down;
        let panic = self.settings.panic.is_panic(available, total);
        let next = match (panic, self.settings.panic.mode()) {
            (false, _) => PanicState::Normal,
            (true, PanicMode::FailFast) => PanicState::FailFast,
            (true, _) => PanicState::FailOpen,
        };
        let prev = self.signals.swap_panic(next);
        if (prev == PanicState::Normal) != (next == PanicState::Normal) {
            if panic {
                self.panics.fetch_add(1, Ordering::Relaxed);
                self.emit(None, HealthEventKind::PanicEntered { available, total });
            } else {
                self.emit(None, HealthEventKind::PanicLeft { available, total });
            }
        }
    }

    /// Sends an event and logs it (`warn!` for bad news, `info!` for good news).
    pub(crate) fn emit(&self, target: Option<&TargetId>, kind: HealthEventKind) {
        let event = HealthEvent::new(self.name.clone(), target.cloned(), kind, Instant::now());
        if event.kind().is_bad_news() {
            tracing::warn!(group = %self.name, target = ?target.map(TargetId::as_str), event = %event.kind(), "health");
        } else {
            tracing::info!(group = %self.name, target = ?target.map(TargetId::as_str), event = %event.kind(), "health");
        }
        let _ = self.events.send(event);
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Marks the states that joined (in `new`, not in `old`) as members. `later` is false for
    /// the targets a group is built with, which do not ramp.
    pub(crate) fn join(&self, new: &[Entry], old: &[Entry], later: bool) {
        let old: std::collections::HashSet<*const TargetState> =
            old.iter().map(|e| Arc::as_ptr(&e.state)).collect();
        let wait = self.wait_first.load(Ordering::Acquire);
        for e in new.iter().filter(|e| !old.contains(&Arc::as_ptr(&e.state))) {
            let pending = if wait { Status::PENDING } else { Status::NONE };
            e.state.transition(|s| s | Status::MEMBER | pending);
            if later {
                tracing::debug!(group = %self.name, target = %e.target.id(), "target joined");
                if !wait {
                    self.start_ramp(&e.state);
                }
            }
        }
    }

    /// Clears the membership of states that left (in `old`, not in `new`).
    pub(crate) fn leave(&self, old: &[Entry], new: &[Entry]) {
        let new: std::collections::HashSet<*const TargetState> =
            new.iter().map(|e| Arc::as_ptr(&e.state)).collect();
        for e in old.iter().filter(|e| !new.contains(&Arc::as_ptr(&e.state))) {
            e.state.transition(|s| s & !Status::MEMBER);
            tracing::debug!(group = %self.name, target = %e.target.id(), "target left");
        }
    }

    /// Whether new members wait for their first passing active check; when they do, every
    /// current member waits too.
    pub(crate) fn wait_for_first_check(&self, wait: bool, members: &[Entry]) {
        self.wait_first.store(wait, Ordering::Release);
        if wait {
            for e in members {
                e.state.transition(|s| {
                    if s.intersects(Status::MEMBER) {
                        s | Status::PENDING
                    } else {
                        s
                    }
                });
            }
        }
    }

    pub(crate) fn membership_changed(&self) {
        self.membership.send_modify(|v| *v = v.wrapping_add(1));
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub(crate) fn admin_changed(
        &self,
        id: &TargetId,
        state: &TargetState,
        prev: AdminState,
        next: AdminState,
    ) {
        if prev == next {
            return;
        }
        let kind = match next {
            AdminState::Enabled => {
                self.start_ramp(state);
                HealthEventKind::Enabled
            }
            AdminState::Draining => HealthEventKind::Draining,
            AdminState::Disabled => HealthEventKind::Disabled,
        };
        self.emit(Some(id), kind);
    }

    /// Stops the group's background health work (called when its last handle is dropped).
    pub(crate) fn shutdown(&self) {
        for t in lock(&self.timers).drain(..) {
            t.abort();
        }
        if let Some(t) = lock(&self.checker).take() {
            t.abort();
        }
    }
}

/// The per-target half: counters for outlier detection, ejection history, ramp start. Attached
/// to the target's state as its observer (see [`GroupHealth::bind`]).
#[derive(Debug)]
pub(crate) struct TargetHealth {
    pub(super) group: Arc<GroupHealth>,
    pub(super) id: TargetId,
    pub(super) consecutive: AtomicU32,
    /// Start of the failure-rate window (a stamp; 0: no window open).
    pub(super) window_start: AtomicU64,
    pub(super) window_requests: AtomicU32,
    pub(super) window_failures: AtomicU32,
    pub(super) times_ejected: AtomicU32,
    pub(super) last_restored: AtomicU64,
    pub(super) eject_generation: AtomicU64,
    pub(super) ramp_since: AtomicU64,
}

impl TargetObserver for TargetHealth {
    #[inline]
    fn on_transition(&self, prev: Status, next: Status) {
        self.group.on_transition(prev, next);
    }

    #[inline]
    fn observe(&self, state: &Arc<TargetState>, outcome: Outcome) {
        TargetHealth::observe(self, state, outcome);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl TargetHealth {
    fn new(group: Arc<GroupHealth>, id: TargetId) -> Self {
        TargetHealth {
            group,
            id,
            consecutive: AtomicU32::new(0),
            window_start: AtomicU64::new(0),
            window_requests: AtomicU32::new(0),
            window_failures: AtomicU32::new(0),
            times_ejected: AtomicU32::new(0),
            last_restored: AtomicU64::new(0),
            eject_generation: AtomicU64::new(0),
            ramp_since: AtomicU64::new(0),
        }
    }

    /// The health half of `state`, when its group attached one.
    #[inline]
    pub(crate) fn of(state: &TargetState) -> Option<&TargetHealth> {
        state.observer()?.as_any().downcast_ref()
    }

    pub(crate) fn times_ejected(&self) -> u32 {
        self.times_ejected.load(Ordering::Relaxed)
    }

    pub(super) fn reset_counts(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
        self.window_start.store(0, Ordering::Relaxed);
        self.window_requests.store(0, Ordering::Relaxed);
        self.window_failures.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_exactly() {
        let h = GroupHealth::new("g".into(), HealthSettings::default());
        let at = h.epoch + Duration::from_millis(1500);
        assert_eq!(h.instant(h.stamp(at)), at);
        assert_eq!(h.instant(h.stamp(h.epoch)), h.epoch);
        assert_ne!(h.stamp(h.epoch), 0);
    }
}
