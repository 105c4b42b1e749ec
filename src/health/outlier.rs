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
/// At most [`max_ejection_percent`](OutlierDetectionBuilder::max_ejection_percent) of the group
/// is ejected at once: `max(1, ⌊members × percent / 100⌋)` targets, rounding down but always
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
/// use tower_lb::target::TargetGroup;
///
/// let outliers = OutlierDetection::builder()
///     .consecutive_failures(3)
///     .failure_rate(50, Duration::from_secs(10), 20)
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
    max_percent: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive: 5,
            rate: None,
            base: Duration::from_secs(30),
            max: Duration::from_secs(300),
            max_percent: 10,
        }
    }
}

/// The failure-rate rule of [`OutlierDetection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRate {
    percent: u32,
    window: Duration,
    min_requests: u32,
}

impl FailureRate {
    /// The failure share that ejects, in percent.
    pub fn percent(&self) -> u32 {
        self.percent
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
            && u64::from(failures) * 100 >= u64::from(self.percent) * u64::from(requests)
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
    /// The largest share of the group ejected at once, in percent.
    pub fn max_ejection_percent(&self) -> u32 {
        self.max_percent
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
            (members * self.max_percent as usize / 100).max(1)
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

    /// Also eject when at least `percent`% of the requests in a `window` failed, once the
    /// window saw at least `min_requests` requests.
    pub fn failure_rate(mut self, percent: u32, window: Duration, min_requests: u32) -> Self {
        let window = crate::util::cap(window);
        self.cfg.rate = Some(FailureRate {
            percent,
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

    /// The largest share of the group ejected at once (default 10%).
    pub fn max_ejection_percent(mut self, percent: u32) -> Self {
        self.cfg.max_percent = percent;
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
        if c.max_percent > 100 {
            return Err(InvalidHealthConfig::new(
                "max_ejection_percent",
                "must be at most 100",
            ));
        }
        if let Some(r) = &c.rate {
            if !(1..=100).contains(&r.percent) {
                return Err(InvalidHealthConfig::new(
                    "failure_rate.percent",
                    "must be in 1..=100",
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
            .max_ejection_percent(0)
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
        assert!(b().max_ejection_percent(101).build().is_err());
        assert!(
            b().failure_rate(0, Duration::from_secs(1), 1)
                .build()
                .is_err()
        );
        assert!(b().failure_rate(50, Duration::ZERO, 1).build().is_err());
        assert!(
            b().failure_rate(50, Duration::from_secs(1), 0)
                .build()
                .is_err()
        );
        assert!(b().consecutive_failures(0).build().is_err());
        let e = b().max_ejection_percent(200).build().unwrap_err();
        assert_eq!(e.setting(), "max_ejection_percent");
    }

    #[test]
    fn failure_rate_needs_volume() {
        let r = FailureRate {
            percent: 50,
            window: Duration::from_secs(1),
            min_requests: 10,
        };
        assert!(!r.exceeded(9, 9));
        assert!(r.exceeded(5, 10));
        assert!(!r.exceeded(4, 10));
    }
}
