use super::InvalidHealthConfig;

/// What a group does when too few of its targets are healthy: the panic threshold.
///
/// When fewer than `percent`% of the targets in service (members that are neither disabled,
/// draining nor waiting for their first check) are healthy and not ejected, the group is in
/// panic. Health checks can be wrong too (a broken health endpoint, a network partition between
/// the balancer and the checks), and sending everything to the few survivors can take them down
/// as well; so by default a group in panic [fails open](PanicMode::FailOpen): picks ignore
/// observed health and spread over all targets in service, as Envoy does. With
/// [`PanicMode::FailFast`] a group in panic refuses every request at once with
/// [`NoAvailableTarget`](crate::balance::error::NoAvailableTarget) instead.
///
/// Admin state is honoured in panic mode too: disabled and draining targets never get traffic.
/// Entering and leaving panic is logged (`warn!`/`info!`), sent as a
/// [`HealthEvent`](super::HealthEvent) and counted in
/// [`HealthSummary::panics`](super::HealthSummary::panics). The state is recomputed when a
/// target's health changes, never per pick: a pick pays one atomic load.
///
/// Default: 50%, fail open (Envoy's `healthy_panic_threshold`).
///
/// # Examples
///
/// ```
/// use tower_lb::health::PanicThreshold;
/// use tower_lb::target::TargetGroup;
///
/// let group = TargetGroup::builder("payments")
///     .panic_threshold(PanicThreshold::new(30)?.fail_fast())
///     .build()?;
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PanicThreshold {
    percent: u32,
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
        PanicThreshold {
            percent: 50,
            mode: PanicMode::FailOpen,
        }
    }
}

impl PanicThreshold {
    /// Panic when fewer than `percent`% of the targets in service are available (0..=100; 0
    /// never panics).
    pub fn new(percent: u32) -> Result<Self, InvalidHealthConfig> {
        if percent > 100 {
            return Err(InvalidHealthConfig::new(
                "panic_threshold",
                "must be at most 100",
            ));
        }
        Ok(PanicThreshold {
            percent,
            mode: PanicMode::FailOpen,
        })
    }

    /// Never panic: unhealthy targets are always skipped, even if that leaves none.
    pub fn disabled() -> Self {
        PanicThreshold {
            percent: 0,
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

    /// The threshold in percent.
    pub fn percent(&self) -> u32 {
        self.percent
    }

    /// What a group in panic does.
    pub fn mode(&self) -> PanicMode {
        self.mode
    }
}
