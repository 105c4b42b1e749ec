//! The facade's settings, in the seeds' words; each turns into one of the crate's layers.

use std::time::Duration;

use crate::breaker::CircuitBreakerLayer;
use crate::breaker::error::InvalidBreakerConfig;
use crate::group::TargetGroup;
use crate::health::{ActiveCheck, HttpCheck, InvalidHealthConfig, TcpCheck};
use crate::sticky::{InvalidSticky, SameSite, StickyLayer, StickyLayerBuilder};

/// Active health checks, as the seeds write them: path, interval, timeout, healthy and
/// unhealthy thresholds. Becomes an [`ActiveCheck`] with an [`HttpCheck`] (or a
/// [`TcpCheck`]).
///
/// Defaults (HAProxy's): every 2 s, timeout 1 s, 2 passing checks to turn healthy, 3 failing
/// to turn unhealthy; a `2xx` or `3xx` passes.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::lb::HealthCheck;
///
/// let check = HealthCheck::http("/health")
///     .interval(Duration::from_secs(10))
///     .timeout(Duration::from_secs(2))
///     .healthy_threshold(2)
///     .unhealthy_threshold(3);
/// # let _ = check;
/// ```
#[derive(Debug, Clone)]
pub struct HealthCheck {
    path: Option<String>,
    interval: Duration,
    timeout: Duration,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

impl HealthCheck {
    /// `GET path` on each target; passes on `2xx` and `3xx`.
    pub fn http(path: impl Into<String>) -> Self {
        HealthCheck {
            path: Some(path.into()),
            ..HealthCheck::tcp()
        }
    }

    /// A TCP connect to each target's address.
    pub fn tcp() -> Self {
        HealthCheck {
            path: None,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }

    /// Time between two checks of one target.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How long one check may take before it counts as failed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Passing checks in a row that turn an unhealthy target healthy (HAProxy `rise`).
    pub fn healthy_threshold(mut self, n: u32) -> Self {
        self.healthy_threshold = n;
        self
    }

    /// Failing checks in a row that turn a healthy target unhealthy (HAProxy `fall`).
    pub fn unhealthy_threshold(mut self, n: u32) -> Self {
        self.unhealthy_threshold = n;
        self
    }

    pub(crate) fn build(&self) -> Result<ActiveCheck, InvalidHealthConfig> {
        let builder = match &self.path {
            Some(path) => ActiveCheck::builder(HttpCheck::builder(path).build()?),
            None => ActiveCheck::builder(TcpCheck::new()),
        };
        builder
            .interval(self.interval)
            .timeout(self.timeout)
            .rise(self.healthy_threshold)
            .fall(self.unhealthy_threshold)
            .build()
    }
}

/// A circuit breaker over the whole group, as the seeds write it. Becomes a
/// [`CircuitBreakerLayer`].
///
/// - `threshold`: the failure rate (0..=1) that opens the circuit (default 0.5);
/// - `min_requests`: requests in the window before the rate counts (default 100);
/// - `interval`: the sliding window the rate is measured over (default 60 s);
/// - `half_open_timeout`: how long the circuit stays open before it lets probes through,
///   half-open (default 30 s).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::lb::CircuitBreaker;
///
/// let breaker = CircuitBreaker::new()
///     .threshold(0.5)
///     .min_requests(100)
///     .interval(Duration::from_secs(60))
///     .half_open_timeout(Duration::from_secs(30));
/// # let _ = breaker;
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    threshold: f64,
    min_requests: u32,
    interval: Duration,
    half_open_timeout: Duration,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker::new()
    }
}

impl CircuitBreaker {
    /// The seeds' defaults: 50% over at least 100 requests in 60 s, open for 30 s.
    pub fn new() -> Self {
        CircuitBreaker {
            threshold: 0.5,
            min_requests: 100,
            interval: Duration::from_secs(60),
            half_open_timeout: Duration::from_secs(30),
        }
    }

    /// The failure rate that opens the circuit, in `0.0..=1.0`.
    pub fn threshold(mut self, rate: f64) -> Self {
        self.threshold = rate;
        self
    }

    /// Requests in the window before the failure rate counts.
    pub fn min_requests(mut self, n: u32) -> Self {
        self.min_requests = n;
        self
    }

    /// The sliding window the failure rate is measured over.
    pub fn interval(mut self, window: Duration) -> Self {
        self.interval = window;
        self
    }

    /// How long the circuit stays open before half-open probes.
    pub fn half_open_timeout(mut self, d: Duration) -> Self {
        self.half_open_timeout = d;
        self
    }

    pub(crate) fn build(&self, name: &str) -> Result<CircuitBreakerLayer, InvalidBreakerConfig> {
        CircuitBreakerLayer::builder(name)
            .failure_rate(self.threshold)
            .min_requests(self.min_requests)
            .window(self.interval)
            .open_for(self.half_open_timeout)
            .build()
    }
}

/// A rate limit per client, as the seeds write it: `limit` requests per `interval`.
///
/// "1000 per 60 s" means what it says to a reader: a client may send its 1000 requests however
/// it likes within the minute, all at once included, and keeps 1000 per minute over time. It
/// is GCRA (governor) with a burst of the whole limit: 1000 requests may pass back to back, and
/// the allowance refills at 1000 per 60 s (one per 60 ms). Over a request is refused with
/// `429` and `Retry-After`. Keyed by client IP (IPv6 by /64) by default; a request whose
/// client address is unknown shares one bucket with all such requests.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::lb::RateLimit;
///
/// let limit = RateLimit::new().with_limit(1000).with_interval(Duration::from_secs(60));
/// # let _ = limit;
/// ```
#[cfg(feature = "governor")]
#[cfg_attr(docsrs, doc(cfg(feature = "governor")))]
#[derive(Debug, Clone)]
pub struct RateLimit {
    limit: u32,
    interval: Duration,
    key: crate::limit::LimitKey,
}

#[cfg(feature = "governor")]
impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::new()
    }
}

#[cfg(feature = "governor")]
impl RateLimit {
    /// 10 requests per second per client IP (nginx's `rate=10r/s`), until told otherwise.
    pub fn new() -> Self {
        RateLimit {
            limit: 10,
            interval: Duration::from_secs(1),
            key: crate::limit::LimitKey::client_ip(),
        }
    }

    /// Requests allowed per interval.
    pub fn with_limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// The interval the limit is per.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// What requests are counted by (default [`LimitKey::client_ip`](crate::limit::LimitKey::client_ip)).
    pub fn with_key(mut self, key: crate::limit::LimitKey) -> Self {
        self.key = key;
        self
    }

    pub(crate) fn build(
        &self,
    ) -> Result<crate::limit::RateLimitLayer, crate::limit::error::InvalidLimit> {
        crate::limit::RateLimitLayer::builder(self.key.clone())
            .rate(self.limit, self.interval)
            .burst(self.limit.saturating_sub(1))
            .build()
    }
}

/// Sticky sessions, as the seeds write them: a cookie name and a TTL (plus the key that signs
/// the cookies, which every instance must share). Becomes a [`StickyLayer`]; see
/// [`crate::sticky`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::lb::StickySession;
///
/// let sticky = StickySession::cookie("session_id")
///     .ttl(Duration::from_secs(3600))
///     .key(*b"from your secret store, 32 bytes");
/// # let _ = sticky;
/// ```
#[derive(Debug, Clone)]
pub struct StickySession {
    cookie: String,
    ttl: Duration,
    key: Option<Vec<u8>>,
    old_keys: Vec<Vec<u8>>,
    secure: bool,
    same_site: SameSite,
    path: Option<String>,
    domain: Option<String>,
}

impl StickySession {
    /// Sticky sessions in a cookie named `name` (TTL 1 hour until set).
    pub fn cookie(name: impl Into<String>) -> Self {
        StickySession {
            cookie: name.into(),
            ttl: Duration::from_secs(3600),
            key: None,
            old_keys: Vec::new(),
            secure: false,
            same_site: SameSite::Lax,
            path: None,
            domain: None,
        }
    }

    /// The cookie's lifetime.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The signing key (at least 32 bytes); see [`StickyLayerBuilder::key`].
    pub fn key(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.key = Some(secret.as_ref().to_vec());
        self
    }

    /// A previous key that still verifies; see [`StickyLayerBuilder::old_key`].
    pub fn old_key(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.old_keys.push(secret.as_ref().to_vec());
        self
    }

    /// The cookie's `Secure` attribute.
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// The cookie's `SameSite` attribute.
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// The cookie's `Path` (default `/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// The cookie's `Domain`.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    pub(crate) fn build(&self, groups: &[TargetGroup]) -> Result<StickyLayer, InvalidSticky> {
        let mut b: StickyLayerBuilder = StickyLayer::cookie(self.cookie.clone());
        for group in groups {
            b = b.group(group);
        }
        let mut b = b
            .ttl(self.ttl)
            .secure(self.secure)
            .same_site(self.same_site);
        if let Some(k) = &self.key {
            b = b.key(k);
        }
        for k in &self.old_keys {
            b = b.old_key(k);
        }
        if let Some(p) = &self.path {
            b = b.path(p.clone());
        }
        if let Some(d) = &self.domain {
            b = b.domain(d.clone());
        }
        b.build()
    }
}
