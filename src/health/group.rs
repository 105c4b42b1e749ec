//! The health side of `TargetGroup` and its builder.

use std::sync::Arc;

use super::state::HealthSummary;
use super::{
    ActiveCheck, HealthEvents, OutlierDetection, PanicThreshold, SlowStart, checker, state::lock,
};
use crate::target::error::{NoRuntime, UnknownTarget};
use crate::target::{
    AdminState, EJECTED, MEMBER, PENDING, RAMP, TargetGroup, TargetGroupBuilder, TargetId,
    UNHEALTHY,
};

impl TargetGroupBuilder {
    /// Enables passive outlier detection (off by default); see [`OutlierDetection`].
    pub fn outlier_detection(mut self, outliers: OutlierDetection) -> Self {
        self.health.outlier = Some(outliers);
        self
    }

    /// Sets the panic threshold (default: panic only when no target is available, fail open);
    /// see [`PanicThreshold`].
    pub fn panic_threshold(mut self, panic: PanicThreshold) -> Self {
        self.health.panic = panic;
        self
    }

    /// Ramps the weight of joining and recovering targets (off by default); see [`SlowStart`].
    pub fn slow_start(mut self, slow_start: SlowStart) -> Self {
        self.health.slow_start = Some(slow_start);
        self
    }
}

impl TargetGroup {
    /// Starts active health checks for every target of the group, now and as targets join;
    /// replaces the checks started by an earlier call. The checks run in background tasks that
    /// end when the last handle to the group is dropped.
    ///
    /// With [`wait_for_first_check`](super::ActiveCheckBuilder::wait_for_first_check), every
    /// current target waits for a passing check too, so call this right after building the
    /// group, before it takes traffic.
    ///
    /// Must be called within a Tokio runtime.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_lb::health::{ActiveCheck, TcpCheck};
    /// use tower_lb::target::{Target, TargetGroup};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
    /// let group = TargetGroup::builder("api").target(Target::new("a", "127.0.0.1:8080")?).build()?;
    /// group.health_check(ActiveCheck::builder(TcpCheck::new()).interval(Duration::from_secs(5)).build()?)?;
    /// # Ok(()) }
    /// ```
    pub fn health_check(&self, check: ActiveCheck) -> Result<(), NoRuntime> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NoRuntime::new())?;
        let health = self.health_shared();
        let wait = check.waits_for_first_check();
        health
            .wait_first
            .store(wait, std::sync::atomic::Ordering::Release);
        if wait {
            for e in self.snapshot().entries.iter() {
                e.state
                    .transition(|s| if s & MEMBER != 0 { s | PENDING } else { s });
            }
        }
        let task = runtime.spawn(checker::supervise(self.downgrade(), Arc::new(check)));
        if let Some(old) = lock(&health.checker).replace(task.abort_handle()) {
            old.abort();
        }
        self.own_task(task.abort_handle());
        Ok(())
    }

    /// Stops the active health checks started by [`health_check`](Self::health_check), if
    /// any; returns whether they were running. Targets keep the health they last had.
    ///
    /// ```
    /// use tower_lb::health::{ActiveCheck, TcpCheck};
    /// use tower_lb::target::TargetGroup;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
    /// let group = TargetGroup::new("api");
    /// group.health_check(ActiveCheck::builder(TcpCheck::new()).build()?)?;
    /// assert!(group.stop_health_check());
    /// assert!(!group.stop_health_check());
    /// # Ok(()) }
    /// ```
    pub fn stop_health_check(&self) -> bool {
        match lock(&self.health_shared().checker).take() {
            Some(task) => {
                task.abort();
                true
            }
            None => false,
        }
    }

    /// Subscribes to the group's [health events](super::HealthEvent): flips only, from now on.
    pub fn events(&self) -> HealthEvents {
        let health = self.health_shared();
        HealthEvents::new(health.name().clone(), health.subscribe())
    }

    /// One target's health as the balancer sees it now.
    ///
    /// ```
    /// use tower_lb::target::{Target, TargetGroup};
    ///
    /// let group = TargetGroup::builder("api").target(Target::new("a", "127.0.0.1:1")?).build()?;
    /// let status = group.health(&"a".into())?;
    /// assert!(status.is_healthy() && !status.is_ejected() && status.is_routable());
    /// # Ok::<(), tower_lb::BoxError>(())
    /// ```
    pub fn health(&self, id: &TargetId) -> Result<TargetHealthStatus, UnknownTarget> {
        let snap = self.snapshot();
        let e = snap.get(id).ok_or_else(|| UnknownTarget::new(id.clone()))?;
        if e.state.status() & RAMP != 0 {
            // Ends a ramp whose window is over even if no pick has looked at it since.
            self.health_shared()
                .ramped_weight_milli(&e.state, 1000, tokio::time::Instant::now());
        }
        let s = e.state.status();
        Ok(TargetHealthStatus {
            healthy: s & UNHEALTHY == 0,
            pending: s & PENDING != 0,
            ejected: s & EJECTED != 0,
            ramping: s & RAMP != 0,
            admin: e.state.admin(),
            routable: e.state.is_routable(),
            times_ejected: e.state.health.times_ejected(),
        })
    }

    /// Counts of the group's health: targets in service, down, ejected, panic mode.
    ///
    /// ```
    /// use tower_lb::target::{Target, TargetGroup};
    ///
    /// let group = TargetGroup::builder("api").target(Target::new("a", "127.0.0.1:1")?).build()?;
    /// let summary = group.health_summary();
    /// assert_eq!((summary.in_service, summary.down, summary.in_panic), (1, 0, false));
    /// # Ok::<(), tower_lb::BoxError>(())
    /// ```
    pub fn health_summary(&self) -> HealthSummary {
        self.health_shared().summary()
    }
}

/// One target's health; see [`TargetGroup::health`].
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
