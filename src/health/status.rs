use tokio::time::Instant;

use super::state::{GroupHealth, TargetHealth};
use crate::target::{AdminState, Status, TargetState};

/// One target's health; see [`TargetGroup::health`](crate::group::TargetGroup::health).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetHealthStatus {
    healthy: bool,
    pending: bool,
    ejected: bool,
    ramping: bool,
    admin: AdminState,
    routable: bool,
    times_ejected: u32,
}

impl TargetHealthStatus {
    /// Active checks have not found it unhealthy.
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }
    /// It waits for its first passing active check.
    pub fn is_pending(&self) -> bool {
        self.pending
    }
    /// Outlier detection ejected it.
    pub fn is_ejected(&self) -> bool {
        self.ejected
    }
    /// Its weight is ramping up (slow start).
    pub fn is_ramping(&self) -> bool {
        self.ramping
    }
    /// Its admin state.
    pub fn admin(&self) -> AdminState {
        self.admin
    }
    /// Picks may choose it now (outside panic mode): enabled, healthy, not ejected, not pending.
    pub fn is_routable(&self) -> bool {
        self.routable
    }
    /// How many times it has been ejected (after decay).
    pub fn times_ejected(&self) -> u32 {
        self.times_ejected
    }
}

impl GroupHealth {
    /// One target's health as the balancer sees it now.
    pub(crate) fn status_of(&self, state: &TargetState) -> TargetHealthStatus {
        if state.status().intersects(Status::RAMP) {
            // Ends a ramp whose window is over even if no pick has looked at it since.
            self.ramped_weight_milli(state, 1000, Instant::now());
        }
        let s = state.status();
        TargetHealthStatus {
            healthy: !s.intersects(Status::UNHEALTHY),
            pending: s.intersects(Status::PENDING),
            ejected: s.intersects(Status::EJECTED),
            ramping: s.intersects(Status::RAMP),
            admin: state.admin(),
            routable: state.is_routable(),
            times_ejected: TargetHealth::of(state).map_or(0, TargetHealth::times_ejected),
        }
    }
}
