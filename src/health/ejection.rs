//! Passive outlier detection: counting a target's failures, ejecting it, restoring it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::OutlierDetection;
use super::events::{EjectReason, HealthEventKind, RestoredBy};
use super::state::{GroupHealth, TargetHealth, count};
use crate::classify::Outcome;
use crate::target::{Status, TargetId, TargetState};
use crate::util::lock;

impl GroupHealth {
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
}

impl TargetHealth {
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
