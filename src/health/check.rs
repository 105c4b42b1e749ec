use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::InvalidHealthConfig;
use crate::error::BoxError;
use crate::target::Target;

/// The future a [`HealthCheck`] returns (boxed: checks run once per interval, not per request).
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'a>>;

/// One probe of one target: the public trait for custom active checks (gRPC health, a
/// database ping, a script…). The built-ins are [`TcpCheck`](super::TcpCheck) and, with the
/// `hyper` feature, `HttpCheck`.
///
/// `Ok(())` means the target passed. The scheduler applies the timeout, the interval and the
/// rise/fall hysteresis around it (see [`ActiveCheck`]), so a check is just one attempt.
///
/// # Examples
///
/// ```
/// use tower_lb::health::{CheckFuture, HealthCheck};
/// use tower_lb::target::Target;
///
/// /// Passes when the target's port is even (a stand-in for a real protocol).
/// #[derive(Debug)]
/// struct EvenPort;
///
/// impl HealthCheck for EvenPort {
///     fn check<'a>(&'a self, target: &'a Target) -> CheckFuture<'a> {
///         Box::pin(async move {
///             match target.address().port_u16() {
///                 Some(p) if p % 2 == 0 => Ok(()),
///                 _ => Err("odd port".into()),
///             }
///         })
///     }
/// }
/// ```
pub trait HealthCheck: fmt::Debug + Send + Sync + 'static {
    /// Probes `target` once.
    fn check<'a>(&'a self, target: &'a Target) -> CheckFuture<'a>;
}

impl<C: HealthCheck + ?Sized> HealthCheck for Arc<C> {
    fn check<'a>(&'a self, target: &'a Target) -> CheckFuture<'a> {
        (**self).check(target)
    }
}

/// A [`HealthCheck`] from a closure returning a future; see [`check_fn`].
pub struct CheckFn<F> {
    f: F,
}

impl<F> fmt::Debug for CheckFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckFn").finish_non_exhaustive()
    }
}

/// Wraps a closure `Fn(&Target) -> impl Future<Output = Result<(), E>>` as a [`HealthCheck`].
///
/// ```
/// use tower_lb::health::{check_fn, ActiveCheck};
/// use tower_lb::target::Target;
///
/// let check = check_fn(|t: &Target| {
///     let id = t.id().clone();
///     async move { if id.as_str() == "bad" { Err("down") } else { Ok(()) } }
/// });
/// let active = ActiveCheck::builder(check).build()?;
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
pub fn check_fn<F, Fut, E>(f: F) -> CheckFn<F>
where
    F: Fn(&Target) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    CheckFn { f }
}

impl<F, Fut, E> HealthCheck for CheckFn<F>
where
    F: Fn(&Target) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn check<'a>(&'a self, target: &'a Target) -> CheckFuture<'a> {
        let fut = (self.f)(target);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

/// Active health checking for a group: a probe plus its schedule and hysteresis.
///
/// Each target of the group gets a background task (owned by the group, aborted when its last
/// handle is dropped; targets that join or leave get or lose theirs) that runs the probe every
/// `interval` (± `jitter`), gives each run `timeout`, and flips the target:
///
/// - healthy → unhealthy after `fall` failures in a row;
/// - unhealthy → healthy after `rise` passes in a row;
/// - a target ejected by outlier detection is restored by the first pass.
///
/// New targets are routable until proven otherwise, unless
/// [`wait_for_first_check`](ActiveCheckBuilder::wait_for_first_check) is set: then they wait for
/// one passing check (and `fall` failures mark them unhealthy).
///
/// Defaults (HAProxy's `inter 2s`, `rise 2`, `fall 3`, with `timeout check` 1 s): interval 2 s,
/// timeout 1 s, rise 2, fall 3, jitter 10% (HAProxy's `spread-checks`, Envoy's interval jitter;
/// set it to 0 in tests), not waiting for the first check.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::health::{ActiveCheck, TcpCheck};
///
/// let check = ActiveCheck::builder(TcpCheck::new())
///     .interval(Duration::from_secs(5))
///     .timeout(Duration::from_millis(500))
///     .rise(3)
///     .fall(2)
///     .build()?;
/// assert_eq!(check.rise(), 3);
/// # Ok::<(), tower_lb::health::InvalidHealthConfig>(())
/// ```
#[derive(Clone)]
pub struct ActiveCheck {
    pub(crate) probe: Arc<dyn HealthCheck>,
    interval: Duration,
    timeout: Duration,
    rise: u32,
    fall: u32,
    jitter: f64,
    wait_first: bool,
    seed: Option<u64>,
}

impl fmt::Debug for ActiveCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveCheck")
            .field("probe", &self.probe)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("rise", &self.rise)
            .field("fall", &self.fall)
            .field("jitter", &self.jitter)
            .field("wait_for_first_check", &self.wait_first)
            .finish()
    }
}

impl ActiveCheck {
    /// Starts configuring checks that run `probe`.
    pub fn builder(probe: impl HealthCheck) -> ActiveCheckBuilder {
        ActiveCheckBuilder {
            cfg: ActiveCheck {
                probe: Arc::new(probe),
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
                rise: 2,
                fall: 3,
                jitter: 0.1,
                wait_first: false,
                seed: None,
            },
        }
    }

    /// Time between two checks of one target.
    pub fn interval(&self) -> Duration {
        self.interval
    }
    /// How long one check may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    /// Passes in a row that make an unhealthy target healthy.
    pub fn rise(&self) -> u32 {
        self.rise
    }
    /// Failures in a row that make a healthy target unhealthy.
    pub fn fall(&self) -> u32 {
        self.fall
    }
    /// The jitter, as a fraction of the interval.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }
    /// Whether new targets wait for a passing check before they get traffic.
    pub fn waits_for_first_check(&self) -> bool {
        self.wait_first
    }
    pub(crate) fn seed(&self) -> Option<u64> {
        self.seed
    }
}

/// Builds an [`ActiveCheck`]; see [`ActiveCheck::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ActiveCheckBuilder {
    cfg: ActiveCheck,
}

impl ActiveCheckBuilder {
    /// Time between two checks of one target (default 2 s).
    pub fn interval(mut self, d: Duration) -> Self {
        let d = crate::util::cap(d);
        self.cfg.interval = d;
        self
    }
    /// How long one check may take before it counts as failed (default 1 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        let d = crate::util::cap(d);
        self.cfg.timeout = d;
        self
    }
    /// Passes in a row that make an unhealthy target healthy (default 2).
    pub fn rise(mut self, n: u32) -> Self {
        self.cfg.rise = n;
        self
    }
    /// Failures in a row that make a healthy target unhealthy (default 3).
    pub fn fall(mut self, n: u32) -> Self {
        self.cfg.fall = n;
        self
    }
    /// Randomizes each wait by up to ± this fraction of the interval, and delays each target's
    /// first check by up to this fraction, so checks of many targets do not line up (default
    /// 0.1; 0 makes the schedule exact, for tests).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.cfg.jitter = fraction;
        self
    }
    /// New targets get no traffic until one check passes (default: routable at once).
    pub fn wait_for_first_check(mut self, wait: bool) -> Self {
        self.cfg.wait_first = wait;
        self
    }
    /// Seeds the jitter's random source.
    pub fn seed(mut self, seed: u64) -> Self {
        self.cfg.seed = Some(seed);
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<ActiveCheck, InvalidHealthConfig> {
        let c = self.cfg;
        if c.interval.is_zero() {
            return Err(InvalidHealthConfig::new("interval", "must be positive"));
        }
        if c.timeout.is_zero() {
            return Err(InvalidHealthConfig::new("timeout", "must be positive"));
        }
        if c.rise == 0 {
            return Err(InvalidHealthConfig::new("rise", "must be at least 1"));
        }
        if c.fall == 0 {
            return Err(InvalidHealthConfig::new("fall", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&c.jitter) {
            return Err(InvalidHealthConfig::new("jitter", "must be in 0.0..=1.0"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn _object_safe(_: &dyn HealthCheck) {}
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}

    #[test]
    fn public_types_cross_threads() {
        send_sync::<ActiveCheck>();
        send_sync::<crate::health::HealthEvent>();
        send_sync::<crate::health::OutlierDetection>();
        send_sync::<crate::health::TcpCheck>();
        send::<crate::health::HealthEvents>();
        send::<crate::health::HealthyChanges>();
        send::<CheckFuture<'static>>();
    }

    #[tokio::test]
    async fn check_fn_maps_errors() {
        let c = check_fn(|t: &Target| {
            let bad = t.id().as_str() == "bad";
            async move { if bad { Err("nope") } else { Ok(()) } }
        });
        let good = Target::new("good", "127.0.0.1:1").unwrap();
        let bad = Target::new("bad", "127.0.0.1:1").unwrap();
        assert!(c.check(&good).await.is_ok());
        assert_eq!(c.check(&bad).await.unwrap_err().to_string(), "nope");
        // Arc<C> is a check too.
        assert!(Arc::new(c).check(&good).await.is_ok());
    }

    #[test]
    fn rejects_bad_settings() {
        let b = || ActiveCheck::builder(crate::health::TcpCheck::new());
        assert_eq!(
            b().interval(Duration::ZERO).build().unwrap_err().setting(),
            "interval"
        );
        assert_eq!(
            b().timeout(Duration::ZERO).build().unwrap_err().setting(),
            "timeout"
        );
        assert_eq!(b().fall(0).build().unwrap_err().setting(), "fall");
        assert_eq!(b().jitter(1.5).build().unwrap_err().setting(), "jitter");
        assert_eq!(
            b().jitter(f64::NAN).build().unwrap_err().setting(),
            "jitter"
        );
        let ok = b().build().unwrap();
        assert_eq!(
            (ok.interval(), ok.timeout(), ok.rise(), ok.fall()),
            (Duration::from_secs(2), Duration::from_secs(1), 2, 3)
        );
    }
}
