use std::time::Duration;

use super::InvalidHealthConfig;

/// Passive health checking: eject a target that keeps failing real requests.
///
/// Every attempt [`Balance`](crate::balance::Balance) finishes is classified by the group's
/// [`Classify`](crate::classify::Classify) (connection failures, timeouts and `5xx` fail by
/// default). A target is ejected, i.e. skipped by picks, after
/// [`consecutive_failures`](OutlierDetectionBuilder::consecutive_failures) failures in a row or,
/// optionally, when its [failure rate](OutlierDetectionBuilder::failure_rate) over a window is
/// too high. [`Outcome::Rejected`](crate::classify::Outcome::Rejected) (rate limits, open
/// breakers, overload) never counts.
///
/// An ejection lasts `base_ejection_time × times ejected`, capped at `max_ejection_time`, or
/// until an active check passes. The multiplier decays by one for every `base_ejection_time`
/// the target then spends without being ejected.
///
/// At most [`max_ejection_share`](OutlierDetectionBuilder::max_ejection_share) of the group
/// is ejected at once: `max(1, ⌊members × share⌋)` targets, rounding down but always
/// allowing one, except that a group of one target never ejects it (ejecting the only target
/// could never help). With the default 10%: 1 of 2–19 targets, 2 of 20–29, and so on.
///
/// Defaults (after Envoy's outlier detection): 5 consecutive failures, no failure-rate rule,
/// base ejection time 30 s, maximum ejection time 300 s, maximum ejection 10%.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::health::OutlierDetection;
/// use tower_lb::TargetGroup;
///
/// let outliers = OutlierDetection::builder()
///     .consecutive_failures(3)
///     .failure_rate(0.5, Duration::from_secs(10), 20)
///     .base_ejection_time(Duration::from_secs(10))
///     .build()?;
/// let group = TargetGroup::builder("api").outlier_detection(outliers).build()?;
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierDetection {
    consecutive: u32,
    rate: Option<FailureRate>,
    base: Duration,
    max: Duration,
    /// In basis points (1/10 000); above 10 000 when set out of range (refused by `build`).
    max_bp: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive: 5,
            rate: None,
            base: Duration::from_secs(30),
            max: Duration::from_secs(300),
            max_bp: 1_000,
        }
    }
}

/// The failure-rate rule of [`OutlierDetection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRate {
    /// In basis points (1/10 000); out of range when set so (refused by `build`).
    bp: u32,
    window: Duration,
    min_requests: u32,
}

impl FailureRate {
    /// The failure share that ejects, a fraction in `(0.0, 1.0]`.
    pub fn share(&self) -> f64 {
        f64::from(self.bp) / 10_000.0
    }
    /// How long a window lasts. It opens with the first failure after the previous one closed
    /// (successes alone never read the clock).
    pub fn window(&self) -> Duration {
        self.window
    }
    /// The fewest requests in a window for the rule to apply.
    pub fn min_requests(&self) -> u32 {
        self.min_requests
    }

    pub(crate) fn exceeded(&self, failures: u32, requests: u32) -> bool {
        requests >= self.min_requests
            && u64::from(failures) * 10_000 >= u64::from(self.bp) * u64::from(requests)
    }
}

impl OutlierDetection {
    /// Starts from the defaults.
    pub fn builder() -> OutlierDetectionBuilder {
        OutlierDetectionBuilder {
            cfg: OutlierDetection::default(),
        }
    }

    /// Failures in a row that eject (0: the rule is off).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }
    /// The failure-rate rule, if any.
    pub fn failure_rate(&self) -> Option<&FailureRate> {
        self.rate.as_ref()
    }
    /// The first ejection's length.
    pub fn base_ejection_time(&self) -> Duration {
        self.base
    }
    /// The longest ejection.
    pub fn max_ejection_time(&self) -> Duration {
        self.max
    }
    /// The largest share of the group ejected at once, a fraction in `0.0..=1.0`.
    pub fn max_ejection_share(&self) -> f64 {
        f64::from(self.max_bp) / 10_000.0
    }

    /// How long the `times`-th ejection lasts.
    pub fn ejection_time(&self, times: u32) -> Duration {
        self.base.saturating_mul(times.max(1)).min(self.max)
    }

    /// How many of `members` targets may be ejected at once (see the type's docs).
    pub fn max_ejected(&self, members: usize) -> usize {
        if members < 2 {
            0
        } else {
            (members.saturating_mul(self.max_bp as usize) / 10_000).max(1)
        }
    }
}

/// Builds an [`OutlierDetection`]; see [`OutlierDetection::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct OutlierDetectionBuilder {
    cfg: OutlierDetection,
}

impl OutlierDetectionBuilder {
    /// Eject after this many failures in a row (default 5; 0 turns the rule off).
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.cfg.consecutive = n;
        self
    }

    /// Also eject when at least `share` of the requests in a `window` failed (a fraction in
    /// `(0.0, 1.0]`, 0.5 = half), once the window saw at least `min_requests` requests.
    pub fn failure_rate(mut self, share: f64, window: Duration, min_requests: u32) -> Self {
        let window = crate::util::cap(window);
        self.cfg.rate = Some(FailureRate {
            bp: crate::util::share_bp(share).unwrap_or(u32::MAX),
            window,
            min_requests,
        });
        self
    }

    /// The first ejection's length (default 30 s); the n-th lasts n times as long.
    pub fn base_ejection_time(mut self, d: Duration) -> Self {
        let d = crate::util::cap(d);
        self.cfg.base = d;
        self
    }

    /// The cap on an ejection's length (default 300 s).
    pub fn max_ejection_time(mut self, d: Duration) -> Self {
        let d = crate::util::cap(d);
        self.cfg.max = d;
        self
    }

    /// The largest share of the group ejected at once, a fraction in `0.0..=1.0` (default 0.1).
    pub fn max_ejection_share(mut self, share: f64) -> Self {
        self.cfg.max_bp = crate::util::share_bp(share).unwrap_or(u32::MAX);
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<OutlierDetection, InvalidHealthConfig> {
        let c = self.cfg;
        if c.base.is_zero() {
            return Err(InvalidHealthConfig::new(
                "base_ejection_time",
                "must be positive",
            ));
        }
        if c.max < c.base {
            return Err(InvalidHealthConfig::new(
                "max_ejection_time",
                "must be at least base_ejection_time",
            ));
        }
        if c.max_bp > 10_000 {
            return Err(InvalidHealthConfig::new(
                "max_ejection_share",
                "must be a fraction in 0.0..=1.0",
            ));
        }
        if let Some(r) = &c.rate {
            if !(1..=10_000).contains(&r.bp) {
                return Err(InvalidHealthConfig::new(
                    "failure_rate.share",
                    "must be a fraction in (0.0, 1.0]",
                ));
            }
            if r.window.is_zero() {
                return Err(InvalidHealthConfig::new(
                    "failure_rate.window",
                    "must be positive",
                ));
            }
            if r.min_requests == 0 {
                return Err(InvalidHealthConfig::new(
                    "failure_rate.min_requests",
                    "must be at least 1",
                ));
            }
        }
        if c.consecutive == 0 && c.rate.is_none() {
            return Err(InvalidHealthConfig::new(
                "consecutive_failures",
                "is 0 and no failure rate is set, so nothing could eject",
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_time_grows_and_caps() {
        let o = OutlierDetection::default();
        assert_eq!(o.ejection_time(1), Duration::from_secs(30));
        assert_eq!(o.ejection_time(3), Duration::from_secs(90));
        assert_eq!(o.ejection_time(10), Duration::from_secs(300));
        assert_eq!(o.ejection_time(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn max_share_rounds_down_but_allows_one() {
        let o = OutlierDetection::default();
        assert_eq!(o.max_ejected(0), 0);
        assert_eq!(o.max_ejected(1), 0);
        assert_eq!(o.max_ejected(2), 1);
        assert_eq!(o.max_ejected(19), 1);
        assert_eq!(o.max_ejected(20), 2);
        assert_eq!(o.max_ejected(29), 2);
        let none = OutlierDetection::builder()
            .max_ejection_share(0.0)
            .build()
            .unwrap();
        assert_eq!(none.max_ejected(10), 1);
    }

    #[test]
    fn rejects_bad_settings() {
        let b = OutlierDetection::builder;
        assert!(b().base_ejection_time(Duration::ZERO).build().is_err());
        assert!(
            b().max_ejection_time(Duration::from_secs(1))
                .build()
                .is_err()
        );
        assert!(b().max_ejection_share(1.01).build().is_err());
        assert!(
            b().failure_rate(0.0, Duration::from_secs(1), 1)
                .build()
                .is_err()
        );
        assert!(b().failure_rate(0.5, Duration::ZERO, 1).build().is_err());
        assert!(
            b().failure_rate(0.5, Duration::from_secs(1), 0)
                .build()
                .is_err()
        );
        assert!(b().consecutive_failures(0).build().is_err());
        let e = b().max_ejection_share(2.0).build().unwrap_err();
        assert_eq!(e.setting(), "max_ejection_share");
    }

    #[test]
    fn failure_rate_needs_volume() {
        let r = FailureRate {
            bp: 5_000,
            window: Duration::from_secs(1),
            min_requests: 10,
        };
        assert!(!r.exceeded(9, 9));
        assert!(r.exceeded(5, 10));
        assert!(!r.exceeded(4, 10));
    }
}
