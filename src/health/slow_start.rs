use std::time::Duration;

use super::InvalidHealthConfig;

/// Slow start: a target that joins the group, recovers (turns healthy, is restored from an
/// ejection) or is re-enabled gets its weight ramped up over a window instead of a full share
/// of traffic at once, so cold caches, JIT warm-up and connection pools can catch up.
///
/// The effective weight `t` after the start of the ramp is Envoy's
/// `weight × max(min_weight_share, (t / window)^(1 / aggression))`, at least 1. An
/// aggression of 1 ramps linearly; above 1 the weight climbs faster early on.
///
/// Every weight-aware algorithm honours it through
/// [`Context::weight`](crate::algorithm::Context::weight). Only targets that ramp read the
/// clock, at most once per pick; when no ramp is active a pick never reads it. The targets a
/// group is built with do not ramp (they all start together).
///
/// Defaults (Envoy): aggression 1.0, minimum weight 10%. The window has no default.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::health::SlowStart;
///
/// let ss = SlowStart::builder(Duration::from_secs(60)).aggression(2.0).build()?;
/// assert_eq!(ss.weight(100, Duration::from_secs(15)), Some(50)); // (15/60)^(1/2) = 0.5
/// assert_eq!(ss.weight(100, Duration::from_secs(0)), Some(10)); // the 10% floor
/// assert_eq!(ss.weight(100, Duration::from_secs(60)), None); // the ramp is over
/// # Ok::<(), tower_lb::health::InvalidHealthConfig>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowStart {
    window: Duration,
    aggression: f64,
    min_share: f64,
}

impl SlowStart {
    /// A ramp over `window` with the default aggression and floor.
    pub fn builder(window: Duration) -> SlowStartBuilder {
        let window = crate::util::cap(window);
        SlowStartBuilder {
            cfg: SlowStart {
                window,
                aggression: 1.0,
                min_share: 0.1,
            },
        }
    }

    /// The length of the ramp.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The effective weight `elapsed` into a ramp for a target of weight `weight`, or `None`
    /// once the ramp is over.
    pub fn weight(&self, weight: u32, elapsed: Duration) -> Option<u32> {
        let w = (f64::from(weight) * self.factor(elapsed)?).round() as u32;
        Some(w.clamp(1, weight.max(1)))
    }

    /// The share of its weight a target has `elapsed` into a ramp, or `None` once it is over.
    pub(crate) fn factor(&self, elapsed: Duration) -> Option<f64> {
        if elapsed >= self.window {
            return None;
        }
        let t = elapsed.as_secs_f64() / self.window.as_secs_f64();
        Some(t.powf(1.0 / self.aggression).max(self.min_share).min(1.0))
    }
}

/// Builds a [`SlowStart`]; see [`SlowStart::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SlowStartBuilder {
    cfg: SlowStart,
}

impl SlowStartBuilder {
    /// How fast the weight climbs: 1.0 is linear (default), larger is faster at first.
    pub fn aggression(mut self, aggression: f64) -> Self {
        self.cfg.aggression = aggression;
        self
    }

    /// The weight a target starts at, as a share of its full weight (a fraction in
    /// `0.0..=1.0`, default 0.1).
    pub fn min_weight_share(mut self, share: f64) -> Self {
        self.cfg.min_share = share;
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<SlowStart, InvalidHealthConfig> {
        let c = self.cfg;
        if c.window.is_zero() {
            return Err(InvalidHealthConfig::new(
                "slow_start.window",
                "must be positive",
            ));
        }
        if !(c.aggression.is_finite() && c.aggression > 0.0) {
            return Err(InvalidHealthConfig::new(
                "slow_start.aggression",
                "must be a positive number",
            ));
        }
        if !(0.0..=1.0).contains(&c.min_share) {
            return Err(InvalidHealthConfig::new(
                "slow_start.min_weight_share",
                "must be a fraction in 0.0..=1.0",
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ramp_with_floor() {
        let ss = SlowStart::builder(Duration::from_secs(10)).build().unwrap();
        assert_eq!(ss.weight(10, Duration::ZERO), Some(1));
        assert_eq!(ss.weight(10, Duration::from_secs(5)), Some(5));
        assert_eq!(ss.weight(10, Duration::from_secs(9)), Some(9));
        assert_eq!(ss.weight(10, Duration::from_secs(10)), None);
        // Never below 1, never above the weight.
        assert_eq!(ss.weight(1, Duration::ZERO), Some(1));
    }

    #[test]
    fn rejects_bad_settings() {
        let b = || SlowStart::builder(Duration::from_secs(1));
        assert!(SlowStart::builder(Duration::ZERO).build().is_err());
        assert!(b().aggression(0.0).build().is_err());
        assert!(b().aggression(f64::NAN).build().is_err());
        assert!(b().min_weight_share(1.01).build().is_err());
    }
}
