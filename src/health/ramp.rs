//! Slow start: a joining or recovering target's weight ramps up over a window.

use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::state::{GroupHealth, TargetHealth};
use crate::target::{Status, TargetState, WeightRamp};

impl GroupHealth {
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
}

impl WeightRamp for GroupHealth {
    fn ramped_weight_milli(&self, state: &TargetState, milli: u64, now: Instant) -> u64 {
        GroupHealth::ramped_weight_milli(self, state, milli, now)
    }
}
