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

use super::events::{EjectReason, HealthEvent, HealthEventKind, RestoredBy};
use super::{OutlierDetection, PanicMode, PanicThreshold, SlowStart};
use crate::classify::Outcome;
use crate::target::{
    AdminState, Entry, HealthView, PanicState, PickSignals, Status, TargetId, TargetObserver,
    TargetState, WeightRamp,
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
    name: Arc<str>,
    settings: HealthSettings,
    /// Time origin for the per-target timestamps kept in atomics (nanoseconds since).
    epoch: Instant,
    members: AtomicI64,
    in_service: AtomicI64,
    down: AtomicI64,
    ejected: AtomicI64,
    /// Panic mode and the ramping count, read by every pick (see `crate::target::PickSignals`).
    signals: Arc<PickSignals>,
    panic_lock: Mutex<()>,
    panics: AtomicU64,
    ejections: AtomicU64,
    eject_lock: Mutex<()>,
    /// New members wait for their first passing active check.
    pub(crate) wait_first: AtomicBool,
    events: broadcast::Sender<HealthEvent>,
    /// Bumped on every membership change.
    pub(crate) membership: watch::Sender<u64>,
    /// Bumped on every membership change and every event.
    pub(crate) changes: watch::Sender<u64>,
    timers: Mutex<Vec<AbortHandle>>,
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

fn count(a: &AtomicI64) -> usize {
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

    /// Starts a slow-start ramp for `state`, if the group has slow start.
    pub(crate) fn start_ramp(&self, state: &TargetState) {
        if self.settings.slow_start.is_some() {
            if let Some(h) = TargetHealth::of(state) {
                h.ramp_since
                    .store(self.stamp(Instant::now()), Ordering::Release);
            }
            state.transition(|s| s | Status::RAMP);
        }
    }

    /// The effective weight (in thousandths) of a ramping target of weight `milli / 1000`
    /// (see [`SlowStart`]); ends the ramp once the window has passed.
    pub(crate) fn ramped_weight_milli(&self, state: &TargetState, milli: u64, now: Instant) -> u64 {
        let Some(ss) = &self.settings.slow_start else {
            return milli;
        };
        let since = TargetHealth::of(state).map_or(0, |h| h.ramp_since.load(Ordering::Acquire));
        let since = self.instant(since);
        let elapsed = now.saturating_duration_since(since);
        match ss.factor(elapsed) {
            Some(f) => ((milli as f64 * f).round() as u64).clamp(1, milli.max(1)),
            None => {
                state.transition(|s| s & !Status::RAMP);
                milli
            }
        }
    }

    // ---- active checks (hysteresis) ----

    /// A passing active check; `passes` is the current run of passes.
    pub(crate) fn check_passed(&self, id: &TargetId, state: &TargetState, passes: u32, rise: u32) {
        if state.status().intersects(Status::EJECTED) {
            self.restore(id, state, RestoredBy::ActiveCheck, None);
        }
        let s = state.status();
        let recovered = if s.intersects(Status::PENDING) {
            // The first pass admits a target that was waiting for one.
            state
                .transition(|s| s & !(Status::PENDING | Status::UNHEALTHY))
                .0
                .intersects(Status::PENDING)
        } else if s.intersects(Status::UNHEALTHY) && passes >= rise {
            state
                .transition(|s| s & !Status::UNHEALTHY)
                .0
                .intersects(Status::UNHEALTHY)
        } else {
            false
        };
        if recovered {
            self.start_ramp(state);
            self.emit(Some(id), HealthEventKind::Healthy);
        }
    }

    /// A failing active check; `fails` is the current run of failures.
    pub(crate) fn check_failed(
        &self,
        id: &TargetId,
        state: &TargetState,
        fails: u32,
        fall: u32,
        reason: &str,
    ) {
        tracing::trace!(group = %self.name, target = %id, reason, "health check failed");
        if fails >= fall && !state.status().intersects(Status::UNHEALTHY) {
            let (prev, _) = state.transition(|s| (s | Status::UNHEALTHY) & !Status::PENDING);
            if !prev.intersects(Status::UNHEALTHY) {
                self.emit(
                    Some(id),
                    HealthEventKind::Unhealthy {
                        reason: reason.into(),
                    },
                );
            }
        }
    }

    // ---- passive outlier detection ----

    /// Ejects `state` unless that would exceed the group's maximum share (or it is alone).
    pub(crate) fn try_eject(&self, id: &TargetId, state: &Arc<TargetState>, reason: EjectReason) {
        let Some(cfg) = &self.settings.outlier else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(group = %self.name, target = %id, "no runtime to time an ejection; not ejecting");
            return;
        };
        let _guard = lock(&self.eject_lock);
        let s = state.status();
        if s & (Status::EJECTED | Status::MEMBER) != Status::MEMBER {
            return;
        }
        let allowed = cfg.max_ejected(count(&self.members));
        if count(&self.ejected) >= allowed {
            tracing::debug!(group = %self.name, target = %id, allowed, "ejection skipped: the maximum share is already ejected");
            return;
        }
        let Some(h) = TargetHealth::of(state) else {
            return;
        };
        let now = Instant::now();
        // The multiplier decays by one for every base period spent without an ejection
        // since the last restore (Envoy decrements it on each quiet interval).
        let last = h.last_restored.load(Ordering::Acquire);
        let mut times = h.times_ejected.load(Ordering::Acquire);
        if last != 0 {
            let quiet = now.saturating_duration_since(self.instant(last));
            let periods = quiet.as_nanos() / cfg.base_ejection_time().as_nanos().max(1);
            times = times.saturating_sub(u32::try_from(periods).unwrap_or(u32::MAX));
        }
        times = times.saturating_add(1);
        h.times_ejected.store(times, Ordering::Release);
        let duration = cfg.ejection_time(times);
        let generation = h.eject_generation.fetch_add(1, Ordering::AcqRel) + 1;
        state.transition(|s| s | Status::EJECTED);
        h.reset_counts();
        self.ejections.fetch_add(1, Ordering::Relaxed);
        self.emit(
            Some(id),
            HealthEventKind::Ejected {
                duration,
                times,
                reason,
            },
        );
        let weak = Arc::downgrade(state);
        let task = runtime.spawn(async move {
            tokio::time::sleep(duration).await;
            if let Some(state) = weak.upgrade() {
                if let Some(h) = TargetHealth::of(&state) {
                    h.group
                        .restore(&h.id, &state, RestoredBy::Timer, Some(generation));
                }
            }
        });
        let mut timers = lock(&self.timers);
        timers.retain(|t| !t.is_finished());
        timers.push(task.abort_handle());
    }

    /// Lifts an ejection (only the one numbered `generation`, when given).
    pub(crate) fn restore(
        &self,
        id: &TargetId,
        state: &TargetState,
        by: RestoredBy,
        generation: Option<u64>,
    ) {
        let _guard = lock(&self.eject_lock);
        let h = TargetHealth::of(state);
        let current = h.map_or(0, |h| h.eject_generation.load(Ordering::Acquire));
        if generation.is_some_and(|g| g != current) {
            return;
        }
        let (prev, _) = state.transition(|s| s & !Status::EJECTED);
        if !prev.intersects(Status::EJECTED) {
            return;
        }
        if let Some(h) = h {
            h.last_restored
                .store(self.stamp(Instant::now()), Ordering::Release);
            h.reset_counts();
        }
        self.emit(Some(id), HealthEventKind::Restored { by });
        if state.is_routable() {
            self.start_ramp(state);
        }
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

impl WeightRamp for GroupHealth {
    fn ramped_weight_milli(&self, state: &TargetState, milli: u64, now: Instant) -> u64 {
        GroupHealth::ramped_weight_milli(self, state, milli, now)
    }
}

/// The per-target half: counters for outlier detection, ejection history, ramp start. Attached
/// to the target's state as its observer (see [`GroupHealth::bind`]).
#[derive(Debug)]
pub(crate) struct TargetHealth {
    group: Arc<GroupHealth>,
    id: TargetId,
    consecutive: AtomicU32,
    /// Start of the failure-rate window (a stamp; 0: no window open).
    window_start: AtomicU64,
    window_requests: AtomicU32,
    window_failures: AtomicU32,
    times_ejected: AtomicU32,
    last_restored: AtomicU64,
    eject_generation: AtomicU64,
    ramp_since: AtomicU64,
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

    fn reset_counts(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
        self.window_start.store(0, Ordering::Relaxed);
        self.window_requests.store(0, Ordering::Relaxed);
        self.window_failures.store(0, Ordering::Relaxed);
    }

    /// Passive outlier detection: one finished attempt. A success costs a load or two; only a
    /// failure may read the clock (for the failure-rate window) or take the ejection lock.
    #[inline]
    pub(crate) fn observe(&self, state: &Arc<TargetState>, outcome: Outcome) {
        let Some(cfg) = &self.group.settings.outlier else {
            return;
        };
        match outcome {
            Outcome::Success => {
                if self.consecutive.load(Ordering::Relaxed) != 0 {
                    self.consecutive.store(0, Ordering::Relaxed);
                }
                if cfg.failure_rate().is_some() && self.window_start.load(Ordering::Relaxed) != 0 {
                    self.window_requests.fetch_add(1, Ordering::Relaxed);
                }
            }
            Outcome::Failure(_) => self.failed(cfg, state),
            // Local rejections say nothing about the backend.
            _ => {}
        }
    }

    #[cold]
    fn failed(&self, cfg: &OutlierDetection, state: &Arc<TargetState>) {
        if state.status().intersects(Status::EJECTED) {
            return;
        }
        let n = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        let mut reason = None;
        if cfg.consecutive_failures() != 0 && n >= cfg.consecutive_failures() {
            reason = Some(EjectReason::ConsecutiveFailures(n));
        }
        if let Some(rate) = cfg.failure_rate() {
            let now = self.group.stamp(Instant::now());
            let start = self.window_start.load(Ordering::Acquire);
            let expired =
                start == 0 || Duration::from_nanos(now.saturating_sub(start)) > rate.window();
            let (requests, failures) = if expired {
                // The window opens with the first failure after the previous one closed.
                self.window_start.store(now, Ordering::Release);
                self.window_requests.store(1, Ordering::Relaxed);
                self.window_failures.store(1, Ordering::Relaxed);
                (1, 1)
            } else {
                (
                    self.window_requests.fetch_add(1, Ordering::AcqRel) + 1,
                    self.window_failures.fetch_add(1, Ordering::AcqRel) + 1,
                )
            };
            if reason.is_none() && rate.exceeded(failures, requests) {
                reason = Some(EjectReason::FailureRate { failures, requests });
            }
        }
        if let Some(reason) = reason {
            self.group.try_eject(&self.id, state, reason);
        }
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
