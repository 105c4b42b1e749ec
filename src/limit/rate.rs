use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use super::LimitKey;
use super::error::{InvalidLimit, RateLimited};
use super::future::ResponseFuture;
use super::store::{BoundedStore, SharedStore, TokioClock, TokioInstant};
use crate::error::BoxError;

type KeyedLimiter = RateLimiter<u64, SharedStore, TokioClock, NoOpMiddleware<TokioInstant>>;
type DirectLimiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<TokioInstant>>;

/// A global limit has one key: governor's direct limiter keeps it in one atomic (a
/// compare-and-swap per request) where the keyed store would hash, lock a shard and look up a
/// map for the same answer.
enum Limiter {
    Keyed(KeyedLimiter),
    Direct(DirectLimiter),
}

struct Shared {
    key: LimitKey,
    limiter: Limiter,
    store: Arc<BoundedStore>,
    clock: TokioClock,
    rate: (u32, Duration),
    burst: u32,
    /// Requests refused so far.
    refused: std::sync::atomic::AtomicU64,
}

/// Keyed rate limiting (GCRA, on governor): requests over a key's rate are refused at once with
/// [`RateLimited`] (`429` with `Retry-After`).
///
/// The rate is `n` requests per `period`, with `burst` extra requests allowed back to back,
/// as in nginx: `rate=10r/s burst=20 nodelay` is `.rate(10, 1 s).burst(20)` (21 requests may
/// pass at once, then one per 100 ms). Nothing is queued or delayed (nginx's `nodelay`).
///
/// Key memory is bounded: at most `max_keys` keys (default 100 000) are stored. A key whose
/// state is back to "fresh" is dropped by periodic sweeps (every `sweep_every`, default 10 s,
/// run by the requests themselves). When the store is still full, **new keys share one
/// overflow bucket** (per shard) until room frees up: a flood of new keys limits itself and
/// cannot evict or reset the state of known keys.
///
/// Time comes from tokio's clock, so paused-time tests control the limiter.
///
/// A [`LimitKey::global`] limit has a single bucket and keeps it in one atomic (governor's
/// direct limiter): no hashing, no key store, no lock.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::limit::{LimitKey, RateLimitLayer};
///
/// // nginx: limit_req_zone $binary_remote_addr rate=10r/s; limit_req burst=20 nodelay;
/// let layer = RateLimitLayer::builder(LimitKey::client_ip())
///     .rate(10, Duration::from_secs(1))
///     .burst(20)
///     .max_keys(50_000)
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct RateLimitLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("key", &self.shared.key)
            .field("rate", &self.shared.rate)
            .field("burst", &self.shared.burst)
            .finish()
    }
}

impl RateLimitLayer {
    /// Starts configuring a limit keyed by `key` (default: 10 requests per second, no burst).
    pub fn builder(key: LimitKey) -> RateLimitLayerBuilder {
        RateLimitLayerBuilder {
            key,
            rate: (10, Duration::from_secs(1)),
            burst: 0,
            max_keys: 100_000,
            sweep_every: Duration::from_secs(10),
        }
    }

    /// Keys stored now (never more than `max_keys`; always 0 for [`LimitKey::global`], whose
    /// one bucket is not kept in the key store).
    pub fn stored_keys(&self) -> usize {
        self.shared.store.len()
    }

    /// Requests refused so far (by every service this layer built, and [`check`](Self::check)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_lb::limit::{LimitKey, RateLimitLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), tower_lb::BoxError> {
    /// let layer = RateLimitLayer::builder(LimitKey::global()).rate(1, Duration::from_secs(1)).build()?;
    /// let _ = layer.check(&http::Request::new(()));
    /// let _ = layer.check(&http::Request::new(()));
    /// assert_eq!(layer.refused(), 1);
    /// # Ok(()) }
    /// ```
    pub fn refused(&self) -> u64 {
        self.shared
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops every key whose state is back to fresh, now (sweeps also run by themselves).
    pub fn sweep(&self) {
        self.shared.store.sweep_all();
    }

    /// Counts `req` against its key and says whether it may pass, without a service: for
    /// callers that decide themselves what a refusal looks like (the router's per-rule
    /// limits). Shares the state of every service this layer built.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_lb::limit::{LimitKey, RateLimitLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), tower_lb::BoxError> {
    /// let layer = RateLimitLayer::builder(LimitKey::global()).rate(1, Duration::from_secs(1)).build()?;
    /// assert!(layer.check(&http::Request::new(())).is_ok());
    /// let refused = layer.check(&http::Request::new(())).unwrap_err();
    /// assert_eq!(refused.retry_after_secs(), 1);
    /// # Ok(()) }
    /// ```
    pub fn check<B>(&self, req: &Request<B>) -> Result<(), RateLimited> {
        self.shared.check(req)
    }
}

impl Shared {
    #[inline]
    fn check<B>(&self, req: &Request<B>) -> Result<(), RateLimited> {
        self.check_cached(req, &mut None)
    }

    /// [`check`](Self::check), the key's hash through `last` (see
    /// `LimitKey::key_of_cached`).
    #[inline]
    fn check_cached<B>(
        &self,
        req: &Request<B>,
        last: &mut Option<(IpAddr, u64)>,
    ) -> Result<(), RateLimited> {
        let checked = match &self.limiter {
            Limiter::Direct(limiter) => limiter.check(),
            Limiter::Keyed(limiter) => limiter.check_key(&self.key.key_of_cached(req, last)),
        };
        checked.map_err(|not_until| {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let wait = self.clock.wait_from_now(not_until.earliest_possible());
            tracing::trace!(?wait, "rate limited");
            RateLimited::new(wait)
        })
    }
}

/// Configures a [`RateLimitLayer`].
#[derive(Debug)]
#[must_use]
pub struct RateLimitLayerBuilder {
    key: LimitKey,
    rate: (u32, Duration),
    burst: u32,
    max_keys: usize,
    sweep_every: Duration,
}

impl RateLimitLayerBuilder {
    /// `n` requests per `period` per key, evenly spaced.
    pub fn rate(mut self, n: u32, period: Duration) -> Self {
        let period = crate::util::cap(period);
        self.rate = (n, period);
        self
    }

    /// Extra requests a key may send back to back beyond the steady rate (nginx `burst`).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// The most keys stored at once (default 100 000).
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }

    /// How often stale keys are swept (default 10 s).
    pub fn sweep_every(mut self, every: Duration) -> Self {
        let every = crate::util::cap(every);
        self.sweep_every = every;
        self
    }

    /// Validates and builds the layer.
    pub fn build(self) -> Result<RateLimitLayer, InvalidLimit> {
        let (n, period) = self.rate;
        if n == 0 || period.is_zero() {
            return Err(InvalidLimit::new(
                "rate must be at least 1 per non-zero period",
            ));
        }
        let interval = period / n;
        if interval.is_zero() {
            return Err(InvalidLimit::new("rate is too high for its period"));
        }
        let Some(burst) = self.burst.checked_add(1).and_then(NonZeroU32::new) else {
            return Err(InvalidLimit::new("burst is too large"));
        };
        if self.max_keys == 0 {
            return Err(InvalidLimit::new("max keys must be at least 1"));
        }
        // The limiter keeps `interval × burst` in nanoseconds; keep it far from overflowing.
        if interval.as_nanos().saturating_mul(u128::from(burst.get()))
            > crate::util::FOREVER.as_nanos()
        {
            return Err(InvalidLimit::new(
                "the period per request times the burst is longer than 100 years",
            ));
        }
        let Some(quota) = Quota::with_period(interval).map(|q| q.allow_burst(burst)) else {
            return Err(InvalidLimit::new(
                "rate must be at least 1 per non-zero period",
            ));
        };
        // As governor's own `retain_recent`: stale once the arrival time is an interval behind.
        let store = Arc::new(BoundedStore::new(
            self.max_keys,
            16,
            interval,
            self.sweep_every,
        ));
        let clock = TokioClock;
        let global = self.key.is_global();
        Ok(RateLimitLayer {
            shared: Arc::new(Shared {
                key: self.key,
                limiter: if global {
                    Limiter::Direct(RateLimiter::direct_with_clock(quota, clock))
                } else {
                    Limiter::Keyed(RateLimiter::new(quota, SharedStore(store.clone()), clock))
                },
                store,
                clock,
                rate: self.rate,
                burst: self.burst,
                refused: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            shared: self.shared.clone(),
            last: None,
        }
    }
}

/// Refuses requests over their key's rate; built by [`RateLimitLayer`].
///
/// Decides in `call`; `Clone + Send + Sync`, clones share the key store.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use http::{Request, Response};
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
/// use tower_lb::upstream::error_response;
/// use tower_lb::limit::{LimitKey, RateLimitLayer};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), tower_lb::BoxError> {
/// let layer = RateLimitLayer::builder(LimitKey::global()).rate(1, Duration::from_secs(2)).build()?;
/// let mut svc = ServiceBuilder::new().layer(layer).service(service_fn(
///     |_r: Request<()>| async { Ok::<_, Infallible>(Response::new(())) },
/// ));
/// svc.ready().await?.call(Request::new(())).await?;
/// let err = svc.ready().await?.call(Request::new(())).await.unwrap_err();
/// let rsp = error_response::<()>(&*err);
/// assert_eq!(rsp.status(), 429);
/// assert_eq!(rsp.headers()["retry-after"], "2");
/// tokio::time::advance(Duration::from_secs(2)).await;
/// svc.ready().await?.call(Request::new(())).await?;
/// # Ok(()) }
/// ```
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
    /// The client address this instance saw last and its key's hash (see
    /// `LimitKey::key_of_cached`).
    last: Option<(IpAddr, u64)>,
}

impl<S: Clone> Clone for RateLimit<S> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            last: self.last,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("key", &self.shared.key)
            .finish()
    }
}

impl<S> RateLimit<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.shared.check_cached(&req, &mut self.last) {
            Ok(()) => ResponseFuture::admitted(self.inner.call(req)),
            Err(limited) => ResponseFuture::refused(Box::new(limited)),
        }
    }
}
