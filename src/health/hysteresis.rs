//! Active checks' hysteresis: `rise` passes in a row admit a target, `fall` failures remove it.

use super::events::{HealthEventKind, RestoredBy};
use super::state::GroupHealth;
use crate::target::{Status, TargetId, TargetState};

impl GroupHealth {
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
}
