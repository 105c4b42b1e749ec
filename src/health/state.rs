//! The group-wide and per-target health bookkeeping behind the status flags that picks skip.
//!
//! Every change of a target's status word goes through `TargetState::transition`, which hands
//! the `(before, after)` pair to [`GroupHealth::on_transition`]. The group's counters (members,
//! targets in service, targets down, ejected, ramping) are derived from those pairs alone, so
//! they stay exact under concurrent flips and membership changes without any lock on the
//! request path, and the panic state is recomputed only when a count it depends on moves.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::events::{EjectReason, HealthEvent, HealthEventKind, RestoredBy};
use super::{OutlierDetection, PanicMode, PanicThreshold, SlowStart};
use crate::classify::Outcome;
use crate::target::{
    AdminState, DISABLED, DRAINING, EJECTED, Entry, MEMBER, PENDING, RAMP, TargetId, TargetState,
    UNHEALTHY,
};

/// Events kept for slow subscribers before they start missing some.
const EVENT_CAPACITY: usize = 1024;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The health policies a group is built with.
#[derive(Debug, Clone, Default)]
pub(crate) struct HealthSettings {
    pub(crate) outlier: Option<OutlierDetection>,
    pub(crate) panic: PanicThreshold,
    pub(crate) slow_start: Option<SlowStart>,
}

/// What a pick does about panic mode, read with one relaxed load per pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PanicState {
    Normal,
    FailOpen,
    FailFast,
}

const NORMAL: u8 = 0;
const FAIL_OPEN: u8 = 1;
const FAIL_FAST: u8 = 2;

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
    ramping: AtomicI64,
    panic: AtomicU8,
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
/// [`TargetGroup::health_summary`](crate::target::TargetGroup::health_summary).
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

fn contributions(s: u32) -> [i64; 5] {
    let member = s & MEMBER != 0;
    let in_service = member && s & (DISABLED | DRAINING | PENDING) == 0;
    let down = in_service && s & (UNHEALTHY | EJECTED) != 0;
    let ejected = member && s & EJECTED != 0;
    let ramping = member && s & RAMP != 0;
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
            ramping: AtomicI64::new(0),
            panic: AtomicU8::new(NORMAL),
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
        match self.panic.load(Ordering::Relaxed) {
            NORMAL => PanicState::Normal,
            FAIL_OPEN => PanicState::FailOpen,
            _ => PanicState::FailFast,
        }
    }

    #[inline]
    pub(crate) fn is_ramping(&self) -> bool {
        self.ramping.load(Ordering::Relaxed) > 0
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
            ramping: count(&self.ramping),
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

    pub(crate) fn on_transition(&self, prev: u32, next: u32) {
        let (a, b) = (contributions(prev), contributions(next));
        let counters = [
            &self.members,
            &self.in_service,
            &self.down,
            &self.ejected,
            &self.ramping,
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
            (false, _) => NORMAL,
            (true, PanicMode::FailFast) => FAIL_FAST,
            (true, _) => FAIL_OPEN,
        };
        let prev = self.panic.swap(next, Ordering::AcqRel);
        if (prev == NORMAL) != (next == NORMAL) {
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
            let pending = if wait { PENDING } else { 0 };
            e.state.transition(|s| s | MEMBER | pending);
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
            e.state.transition(|s| s & !MEMBER);
            tracing::debug!(group = %self.name, target = %e.target.id(), "target left");
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
            state
                .health
                .ramp_since
                .store(self.stamp(Instant::now()), Ordering::Release);
            state.transition(|s| s | RAMP);
        }
    }

    /// The effective weight (in thousandths) of a ramping target of weight `milli / 1000`
    /// (see [`SlowStart`]); ends the ramp once the window has passed.
    pub(crate) fn ramped_weight_milli(&self, state: &TargetState, milli: u64, now: Instant) -> u64 {
        let Some(ss) = &self.settings.slow_start else {
            return milli;
        };
        let since = self.instant(state.health.ramp_since.load(Ordering::Acquire));
        let elapsed = now.saturating_duration_since(since);
        match ss.factor(elapsed) {
            Some(f) => ((milli as f64 * f).round() as u64).clamp(1, milli.max(1)),
            None => {
                state.transition(|s| s & !RAMP);
                milli
            }
        }
    }

    // ---- active checks (hysteresis) ----

    /// A passing active check; `passes` is the current run of passes.
    pub(crate) fn check_passed(&self, id: &TargetId, state: &TargetState, passes: u32, rise: u32) {
        if state.status() & EJECTED != 0 {
            self.restore(id, state, RestoredBy::ActiveCheck, None);
        }
        let s = state.status();
        let recovered = if s & PENDING != 0 {
            // The first pass admits a target that was waiting for one.
            state.transition(|s| s & !(PENDING | UNHEALTHY)).0 & PENDING != 0
        } else if s & UNHEALTHY != 0 && passes >= rise {
            state.transition(|s| s & !UNHEALTHY).0 & UNHEALTHY != 0
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
        if fails >= fall && state.status() & UNHEALTHY == 0 {
            let (prev, _) = state.transition(|s| (s | UNHEALTHY) & !PENDING);
            if prev & UNHEALTHY == 0 {
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
        if s & (EJECTED | MEMBER) != MEMBER {
            return;
        }
        let allowed = cfg.max_ejected(count(&self.members));
        if count(&self.ejected) >= allowed {
            tracing::debug!(group = %self.name, target = %id, allowed, "ejection skipped: the maximum share is already ejected");
            return;
        }
        let h = &state.health;
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
        state.transition(|s| s | EJECTED);
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
                if let Some(b) = state.health.binding.get() {
                    b.group
                        .restore(&b.id, &state, RestoredBy::Timer, Some(generation));
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
        if generation.is_some_and(|g| g != state.health.eject_generation.load(Ordering::Acquire)) {
            return;
        }
        let (prev, _) = state.transition(|s| s & !EJECTED);
        if prev & EJECTED == 0 {
            return;
        }
        state
            .health
            .last_restored
            .store(self.stamp(Instant::now()), Ordering::Release);
        state.health.reset_counts();
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

#[derive(Debug)]
struct Binding {
    group: Arc<GroupHealth>,
    id: TargetId,
}

/// The per-target half: counters for outlier detection, ejection history, ramp start.
#[derive(Debug, Default)]
pub(crate) struct TargetHealth {
    binding: OnceLock<Binding>,
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

impl TargetHealth {
    /// Ties the state to its group (once, when the state is created).
    pub(crate) fn bind(&self, group: Arc<GroupHealth>, id: TargetId) {
        let _ = self.binding.set(Binding { group, id });
    }

    #[inline]
    pub(crate) fn on_transition(&self, prev: u32, next: u32) {
        if let Some(b) = self.binding.get() {
            b.group.on_transition(prev, next);
        }
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
        let Some(b) = self.binding.get() else { return };
        let Some(cfg) = &b.group.settings.outlier else {
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
            Outcome::Failure(_) => self.failed(b, cfg, state),
            // Local rejections say nothing about the backend.
            _ => {}
        }
    }

    #[cold]
    fn failed(&self, b: &Binding, cfg: &OutlierDetection, state: &Arc<TargetState>) {
        if state.status() & EJECTED != 0 {
            return;
        }
        let n = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        let mut reason = None;
        if cfg.consecutive_failures() != 0 && n >= cfg.consecutive_failures() {
            reason = Some(EjectReason::ConsecutiveFailures(n));
        }
        if let Some(rate) = cfg.failure_rate() {
            let now = b.group.stamp(Instant::now());
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
            b.group.try_eject(&b.id, state, reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{Target, TargetGroup};

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
        state(&g, "t0").transition(|s| s | UNHEALTHY);
        state(&g, "t1").transition(|s| s | EJECTED);
        let s = g.health_summary();
        assert_eq!((s.down, s.ejected), (2, 1));
        // A disabled target leaves the panic base, whatever its health.
        g.set_admin(&"t0".into(), AdminState::Disabled).unwrap();
        let s = g.health_summary();
        assert_eq!((s.in_service, s.down), (3, 1));
        // A leaver no longer counts; its later flips do not either.
        let t1 = state(&g, "t1");
        g.remove(&"t1".into()).unwrap();
        t1.transition(|s| s & !EJECTED);
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
        state(&g, "t0").transition(|s| s | UNHEALTHY);
        state(&g, "t1").transition(|s| s | UNHEALTHY);
        state(&g, "t2").transition(|s| s | EJECTED);
        assert_eq!(
            h.panic_state(),
            PanicState::Normal,
            "by default, 1 of 4 available is no panic"
        );
        state(&g, "t3").transition(|s| s | UNHEALTHY);
        assert_eq!(h.panic_state(), PanicState::FailOpen, "none available");
        state(&g, "t3").transition(|s| s & !UNHEALTHY);
        assert_eq!(h.panic_state(), PanicState::Normal, "one is back");
        state(&g, "t3").transition(|s| s | UNHEALTHY);
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
    fn stamps_round_trip_exactly() {
        let h = GroupHealth::new("g".into(), HealthSettings::default());
        let at = h.epoch + Duration::from_millis(1500);
        assert_eq!(h.instant(h.stamp(at)), at);
        assert_eq!(h.instant(h.stamp(h.epoch)), h.epoch);
        assert_ne!(h.stamp(h.epoch), 0);
    }
}
