use super::InvalidHealthConfig;

/// What a group does when too few of its targets are healthy: the panic threshold.
///
/// By default a group is in panic only when **none** of its targets in service (members that
/// are neither disabled, draining nor waiting for their first check) is healthy and not
/// ejected: with active checks on, traffic goes only to healthy targets, which is what users
/// of nginx (`max_fails`) and HAProxy (`check`) expect. Health checks can be wrong too (a
/// broken health endpoint, a network partition between the balancer and the checks), so a
/// group with no healthy target at all [fails open](PanicMode::FailOpen): picks ignore observed
/// health and spread over all targets in service rather than refusing everything. With
/// [`PanicMode::FailFast`] a group in panic refuses every request at once with
/// [`NoAvailableTarget`](crate::balance::error::NoAvailableTarget) instead.
///
/// Envoy's behaviour, panic as soon as fewer than 50% of the targets are healthy (sending the
/// survivors' share to the unhealthy ones too, so a partial outage does not overload the
/// rest), is one call away: [`PanicThreshold::new(0.5)`](PanicThreshold::new).
///
/// Admin state is honoured in panic mode too: disabled and draining targets never get traffic.
/// Entering and leaving panic is logged (`warn!`/`info!`), sent as a
/// [`HealthEvent`](super::HealthEvent) and counted in
/// [`HealthSummary::panics`](super::HealthSummary::panics). The state is recomputed when a
/// target's health changes, never per pick: a pick pays one atomic load.
///
/// Default: panic only when no target is available, fail open. Earlier builds defaulted to
/// Envoy's 50%, which sent traffic to failing targets while half the group was still healthy.
///
/// # Examples
///
/// ```
/// use tower_lb::health::PanicThreshold;
/// use tower_lb::TargetGroup;
///
/// let group = TargetGroup::builder("payments")
///     .panic_threshold(PanicThreshold::new(0.3)?.fail_fast())
///     .build()?;
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PanicThreshold {
    /// In basis points (1/10 000); `None`: panic only when no target is available.
    bp: Option<u32>,
    mode: PanicMode,
}

/// What a group in panic does; see [`PanicThreshold`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PanicMode {
    /// Spread requests over every target in service, healthy or not (the default).
    #[default]
    FailOpen,
    /// Refuse every request at once.
    FailFast,
}

impl Default for PanicThreshold {
    fn default() -> Self {
        PanicThreshold::none_available()
    }
}

impl PanicThreshold {
    /// Panic when fewer than `share` of the targets in service are available (a fraction in
    /// `0.0..=1.0`, 0.5 = half; 0 never panics). The share is kept to 1/10 000.
    pub fn new(share: f64) -> Result<Self, InvalidHealthConfig> {
        let Some(bp) = crate::util::share_bp(share) else {
            return Err(InvalidHealthConfig::new(
                "panic_threshold",
                "must be a fraction in 0.0..=1.0",
            ));
        };
        Ok(PanicThreshold {
            bp: Some(bp),
            mode: PanicMode::FailOpen,
        })
    }

    /// Panic only when no target in service is available (the default): healthy targets take
    /// all the traffic while there is at least one.
    pub fn none_available() -> Self {
        PanicThreshold {
            bp: None,
            mode: PanicMode::FailOpen,
        }
    }

    /// Never panic: unhealthy targets are always skipped, even if that leaves none.
    pub fn disabled() -> Self {
        PanicThreshold {
            bp: Some(0),
            mode: PanicMode::FailOpen,
        }
    }

    /// Refuse requests while in panic instead of spreading them.
    pub fn fail_fast(mut self) -> Self {
        self.mode = PanicMode::FailFast;
        self
    }

    /// Spread requests over all targets while in panic (the default).
    pub fn fail_open(mut self) -> Self {
        self.mode = PanicMode::FailOpen;
        self
    }

    /// The threshold as a fraction of the targets in service (`None`: panic only when no
    /// target is available, the default).
    pub fn share(&self) -> Option<f64> {
        self.bp.map(|bp| f64::from(bp) / 10_000.0)
    }

    /// Whether a group with `available` of `total` targets in service available is in panic.
    pub(crate) fn is_panic(&self, available: usize, total: usize) -> bool {
        total > 0
            && match self.bp {
                None => available == 0,
                Some(bp) => available.saturating_mul(10_000) < (bp as usize).saturating_mul(total),
            }
    }

    /// What a group in panic does.
    pub fn mode(&self) -> PanicMode {
        self.mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_panics_only_when_none_is_available() {
        let d = PanicThreshold::default();
        assert_eq!(d.share(), None);
        assert!(!d.is_panic(1, 100) && d.is_panic(0, 100) && !d.is_panic(0, 0));
        let envoy = PanicThreshold::new(0.5).unwrap();
        assert!(!envoy.is_panic(2, 4) && envoy.is_panic(1, 4));
        let off = PanicThreshold::disabled();
        assert!(!off.is_panic(0, 4));
        assert!(
            !PanicThreshold::new(1.0)
                .unwrap()
                .is_panic(usize::MAX, usize::MAX)
        );
    }
}
