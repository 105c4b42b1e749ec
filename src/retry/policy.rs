use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use tower::retry::Policy;
use tower::retry::backoff::Backoff as _;
use tower::retry::budget::{Budget, TpsBudget};

use super::ReplayBody;
pub use super::backoff::Jitter;
use super::backoff::{BackoffConfig, FullJitter};
use super::error::InvalidRetryConfig;
use crate::balance::{AvoidTargets, ServedBy};
use crate::classify::{Classify, DefaultClassifier, FailureKind, Outcome};
use crate::error::{BoxError, ConnectFailed, StaleConnection, find_cause, is_caused_by};
use crate::util::{FastRng, retry_after};

/// Response extension: how many attempts it took to get this response.
///
/// Set only on responses that needed more than one attempt, so the common case costs no
/// allocation; read it with [`Attempts::of`], which answers 1 when it is absent.
///
/// # Examples
///
/// ```
/// use tower_lb::retry::Attempts;
///
/// let rsp = http::Response::new(());
/// assert_eq!(Attempts::of(rsp.extensions()), 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Attempts(u32);

impl Attempts {
    pub(crate) fn new(n: u32) -> Self {
        Attempts(n)
    }

    /// The number of attempts.
    pub fn get(&self) -> u32 {
        self.0
    }

    /// The attempts recorded in a response's extensions (1 when none is recorded).
    pub fn of(extensions: &http::Extensions) -> u32 {
        extensions.get::<Attempts>().map_or(1, |a| a.0)
    }
}

/// Counters of a [`RetryPolicy`] (shared by all its clones).
///
/// Attempts sent = `requests + retries`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryStats {
    /// Requests seen (first attempts).
    pub requests: u64,
    /// Retries sent.
    pub retries: u64,
    /// Retries that were wanted but refused because the budget was empty.
    pub budget_exhausted: u64,
}

/// The retry decision for `http` requests: when to retry, how long to wait, and how much.
///
/// Implements [`tower::retry::Policy`], so it also works with tower's own `Retry`; the
/// [`RetryLayer`](super::RetryLayer) adds replayable bodies.
///
/// - A connection failure ([`ConnectFailed`](crate::error::ConnectFailed): nothing was sent) is
///   retried for any method.
/// - A configured status (default `502`, `503`, `504`), a timeout or another error from the
///   backend is retried only for idempotent methods (default `GET`, `HEAD`, `OPTIONS`, `PUT`,
///   `DELETE`, `TRACE`).
/// - Only a body that is still replayable is sent again (see [`ReplayBody`]), or a body too
///   large to replay that a connect failure handed back untouched
///   ([`ConnectFailed::with_body`](crate::error::ConnectFailed::with_body)).
/// - A [`StaleConnection`](crate::error::StaleConnection) (a reused connection the target had
///   closed) is retried for idempotent methods, without backoff and outside the budget.
/// - Local rejections (no available target, open breaker, rate limit) are never retried.
/// - At most `max_attempts` attempts (default 3), and only while the budget allows (default:
///   tower's [`TpsBudget`] with 20% of requests + 10 retries/s over 10 s, after Finagle).
///   Requests pay into the budget in batches of 10 (one deposit, a mutex and a clock read, per
///   10 requests; exact for the default, see `docs/resilience.md`), so up to 9 requests' worth
///   of budget may not be there yet.
/// - Backoff is exponential with full jitter (base 25 ms, cap 250 ms); a `Retry-After` of up to
///   `retry_after_cap` (default 1 s) lengthens the wait, a longer one stops retrying.
/// - Each retry adds the target that failed (from [`ServedBy`]) to the request's
///   [`AvoidTargets`], so the balancer sends it elsewhere when it can.
///
/// Nothing in the client's request headers is consulted.
///
/// Used through tower's `Policy` (with tower's own `Retry`), the copy `clone_request` keeps for
/// a retry holds the request's headers in its extensions (under a private type), copied as
/// bytes into one buffer (one allocation and a `memcpy`, where a `HeaderMap` copy takes two
/// allocations and two reference-count updates per value), and gets them back in its header
/// map when `retry` wants a retry. That is the order tower's `Retry` follows (a copy is sent only after `retry`
/// returned `Some`); a driver of its own must follow it too. The
/// [`RetryLayer`](super::RetryLayer) drives it that way, with the header bytes kept beside the
/// copy rather than in it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::retry::{Jitter, RetryPolicy};
///
/// let policy = RetryPolicy::builder()
///     .max_attempts(2)
///     .statuses([503])
///     .backoff(Duration::from_millis(10), Duration::from_millis(100))
///     .jitter(Jitter::None)
///     .build()
///     .unwrap();
/// assert_eq!(policy.stats().retries, 0);
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    config: Arc<Config>,
    /// Attempts finished in this request session (0 in the template the service holds).
    attempts: u32,
}

struct Config {
    budget: TpsBudget,
    /// Requests per budget deposit (see [`deposit_batch`]).
    batch: u64,
    max_attempts: u32,
    statuses: Vec<StatusCode>,
    methods: Vec<Method>,
    retry_errors: bool,
    body_limit: usize,
    backoff: BackoffConfig,
    retry_after_cap: Duration,
    classifier: Arc<dyn Classify>,
    requests: AtomicU64,
    retries: AtomicU64,
    exhausted: AtomicU64,
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &*self.config;
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &c.max_attempts)
            .field("statuses", &c.statuses)
            .field("methods", &c.methods)
            .field("body_limit", &c.body_limit)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::new()
    }
}

impl RetryPolicy {
    /// The default policy (see the type's docs).
    pub fn new() -> Self {
        match RetryPolicy::builder().build() {
            Ok(p) => p,
            Err(_) => unreachable!("the defaults are valid"),
        }
    }

    /// Starts configuring a policy from the defaults.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            budget_ttl: Duration::from_secs(10),
            budget_min_per_sec: 10,
            budget_share: 0.2,
            max_attempts: 3,
            statuses: vec![
                StatusCode::BAD_GATEWAY,
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::GATEWAY_TIMEOUT,
            ],
            methods: vec![
                Method::GET,
                Method::HEAD,
                Method::OPTIONS,
                Method::PUT,
                Method::DELETE,
                Method::TRACE,
            ],
            retry_errors: true,
            body_limit: 64 * 1024,
            base: Duration::from_millis(25),
            cap: Duration::from_millis(250),
            jitter: Jitter::Full,
            retry_after_cap: Duration::from_secs(1),
            classifier: None,
        }
    }

    /// The counters, shared by every clone of this policy.
    pub fn stats(&self) -> RetryStats {
        let c = &*self.config;
        RetryStats {
            requests: c.requests.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            budget_exhausted: c.exhausted.load(Ordering::Relaxed),
        }
    }

    /// Whether a status below `400` is retried (such a response is not tagged with
    /// `ServedBy` unless the request asks for it).
    pub(crate) fn retries_non_error_status(&self) -> bool {
        self.config.statuses.iter().any(|s| s.as_u16() < 400)
    }

    /// The most request-body bytes kept for replay.
    pub fn body_limit(&self) -> usize {
        self.config.body_limit
    }

    /// The backoff session positioned at retry number `n` (1-based).
    fn backoff(&self, n: u32) -> FullJitter {
        FullJitter {
            config: self.config.backoff.clone(),
            iterations: n.saturating_sub(1),
        }
    }

    /// The wait before retry number `n` (1-based), before any `Retry-After`.
    fn delay(&self, n: u32) -> Duration {
        self.backoff(n).next_delay()
    }

    /// Whether this outcome is worth another attempt, and the least wait if so.
    fn wants_retry<B, RB>(
        &self,
        req: &Request<ReplayBody<B>>,
        result: &Result<Response<RB>, BoxError>,
    ) -> Option<Duration> {
        let c = &*self.config;
        match result {
            Ok(rsp) => {
                if !c.statuses.contains(&rsp.status()) || !c.methods.contains(req.method()) {
                    return None;
                }
                match retry_after(rsp.headers()) {
                    Some(d) if d > c.retry_after_cap => None,
                    Some(d) => Some(d),
                    None => Some(Duration::ZERO),
                }
            }
            Err(e) if is_caused_by::<StaleConnection>(&**e) => {
                // Whether the target saw the request is unknown: idempotent methods only.
                c.methods.contains(req.method()).then_some(Duration::ZERO)
            }
            Err(e) => match c.classifier.classify_error(&**e) {
                Outcome::Failure(FailureKind::Connect) => Some(Duration::ZERO),
                Outcome::Failure(_) if c.retry_errors && c.methods.contains(req.method()) => {
                    Some(Duration::ZERO)
                }
                _ => None,
            },
        }
    }
}

impl RetryPolicy {
    /// After an attempt: whether to send `req` (the copy) again, and after which wait.
    ///
    /// `restore` puts the copy's header fields back into it, and is called only when a retry
    /// is wanted; `false` (the fields cannot be rebuilt exactly) means no retry.
    pub(super) fn decide<B: Send + 'static, RB>(
        &mut self,
        req: &mut Request<ReplayBody<B>>,
        result: &mut Result<Response<RB>, BoxError>,
        restore: impl FnOnce(&mut Request<ReplayBody<B>>) -> bool,
    ) -> Option<tokio::time::Sleep> {
        let mut attempts = self.attempts;
        let settled = self.settle(&mut attempts, result);
        self.attempts = attempts;
        if settled {
            return None;
        }
        self.decide_unsettled(attempts, req, result, restore)
    }

    /// After an attempt, what every outcome takes: counts the attempt, and settles the common
    /// case, a response with a status that is never retried (`true`: no retry, nothing of the
    /// copy needed). Otherwise [`decide_unsettled`](Self::decide_unsettled) decides.
    #[inline]
    ///
    /// `attempts` is the request's session: the attempts finished before this one, counted
    /// up here.
    pub(super) fn settle<RB>(
        &self,
        attempts: &mut u32,
        result: &mut Result<Response<RB>, BoxError>,
    ) -> bool {
        *attempts += 1;
        let attempts = *attempts;
        if let Ok(rsp) = result {
            if !self.config.statuses.contains(&rsp.status()) {
                if attempts > 1 {
                    rsp.extensions_mut().insert(Attempts::new(attempts));
                }
                return true;
            }
        }
        false
    }

    /// For an outcome [`settle`](Self::settle) left open when there is no copy to send again:
    /// a response that took more than one attempt says so.
    pub(super) fn no_copy<RB>(&self, attempts: u32, result: &mut Result<Response<RB>, BoxError>) {
        if let (Ok(rsp), true) = (result, attempts > 1) {
            rsp.extensions_mut().insert(Attempts::new(attempts));
        }
    }

    /// [`decide`](Self::decide) for an outcome [`settle`](Self::settle) left open.
    pub(super) fn decide_unsettled<B: Send + 'static, RB>(
        &self,
        attempts: u32,
        req: &mut Request<ReplayBody<B>>,
        result: &mut Result<Response<RB>, BoxError>,
        restore: impl FnOnce(&mut Request<ReplayBody<B>>) -> bool,
    ) -> Option<tokio::time::Sleep> {
        let c = &*self.config;
        // A body too large to replay goes again only if the client hands it back untouched
        // (nothing of it was sent: a connect failure).
        let handed_back = if req.body().is_replayable() {
            None
        } else {
            handed_back::<B, RB>(result)
        };
        let wanted = self.wants_retry(req, result).filter(|_| {
            attempts < c.max_attempts && (handed_back.is_some() || req.body().is_replayable())
        });
        // The copy is about to be sent if the budget allows: its headers go back where the
        // service looks for them. One that cannot be rebuilt exactly is not sent at all.
        let wanted = wanted.filter(|_| restore(req));
        // A reused connection the target had closed is nobody's failure: its retry is free.
        let stale = matches!(result, Err(e) if is_caused_by::<StaleConnection>(&**e));
        let granted = wanted.filter(|_| {
            if stale {
                return true;
            }
            let ok = c.budget.withdraw();
            if !ok {
                c.exhausted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(attempts, "retry budget exhausted");
            }
            ok
        });
        let Some(least) = granted else {
            if let (Ok(rsp), true) = (result, attempts > 1) {
                rsp.extensions_mut().insert(Attempts::new(attempts));
            }
            return None;
        };
        c.retries.fetch_add(1, Ordering::Relaxed);
        if let Some(body) = handed_back {
            req.body_mut().adopt(body);
        }

        // Send the next attempt elsewhere when possible.
        let failed = match result {
            Ok(rsp) => rsp.extensions().get::<ServedBy>(),
            Err(e) => {
                find_cause::<crate::balance::error::AttemptFailed>(&**e).map(|f| f.served_by())
            }
        };
        if let Some(served) = failed {
            let id = served.target().clone();
            match req.extensions_mut().get_mut::<AvoidTargets>() {
                Some(avoid) => avoid.insert(id),
                None => {
                    req.extensions_mut()
                        .insert(std::iter::once(id).collect::<AvoidTargets>());
                }
            }
        }
        if least.is_zero() {
            tracing::trace!(attempts, "retrying after backoff");
            return Some(self.backoff(attempts).next_backoff());
        }
        let delay = self.delay(attempts).max(least);
        tracing::trace!(attempts, ?delay, "retrying after Retry-After");
        Some(tokio::time::sleep(delay))
    }

    /// Before an attempt: a copy of `req` to send again if it fails, without its header
    /// fields and its extensions (the caller keeps those; see `decide`), or `None` when no
    /// retry is possible.
    /// The first attempt of a request pays into the budget.
    pub(super) fn copy_request<B>(
        &mut self,
        req: &Request<ReplayBody<B>>,
    ) -> Option<Request<ReplayBody<B>>> {
        let body = self.copy_body(self.attempts, req)?;
        let mut clone = Request::new(body);
        *clone.method_mut() = req.method().clone();
        *clone.uri_mut() = req.uri().clone();
        *clone.version_mut() = req.version();
        Some(clone)
    }

    /// [`copy_request`](Self::copy_request) but for the body only: the caller copies the
    /// head (see `retry::copy`).
    #[inline]
    ///
    /// `attempts`: the attempts the request's session finished so far.
    pub(super) fn copy_body<B>(
        &self,
        attempts: u32,
        req: &Request<ReplayBody<B>>,
    ) -> Option<ReplayBody<B>> {
        let c = &*self.config;
        if attempts == 0 {
            // The first attempt of a request: it pays into the budget, one deposit per batch.
            let seen = c.requests.fetch_add(1, Ordering::Relaxed) + 1;
            // A constant divisor: a multiplication, where `% c.batch` would be a division.
            if c.batch == 1 || seen % DEPOSIT_BATCH == 0 {
                c.budget.deposit();
            }
        }
        if c.max_attempts == 1 {
            return None;
        }
        // A body too large to replay, still untouched, gets an empty slot the client may
        // fill by handing the body back (see `decide`).
        match req.body().try_clone() {
            Some(body) => Some(body),
            None => req.body().handover_slot(),
        }
    }
}

impl<B: Send + 'static, RB> Policy<Request<ReplayBody<B>>, Response<RB>, BoxError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request<ReplayBody<B>>,
        result: &mut Result<Response<RB>, BoxError>,
    ) -> Option<Self::Future> {
        self.decide(req, result, super::headers::restore_held)
    }

    fn clone_request(&mut self, req: &Request<ReplayBody<B>>) -> Option<Request<ReplayBody<B>>> {
        let mut clone = self.copy_request(req)?;
        *clone.extensions_mut() = crate::balance::extensions::copy_plain_or_clone(req.extensions());
        // The headers ride in the copy's extensions as bytes in one buffer (no reference
        // count touched per value) and go back into its map in `retry`, only if a retry is
        // wanted.
        super::headers::hold(&mut clone, req.headers());
        Some(clone)
    }
}

/// Requests per budget deposit for a budget of `share` (0.2 = 20%).
///
/// A deposit into tower's [`TpsBudget`] takes a mutex and reads the clock; paying for every
/// request costs more than the rest of the retry layer. So the policy counts requests with the
/// relaxed atomic its stats need anyway and deposits once per [`DEPOSIT_BATCH`] requests, into a
/// budget built with `share × DEPOSIT_BATCH`. That is exact in tower's arithmetic: above
/// 100% a deposit is 1000 units and a retry costs `⌊1000 / share⌋`, so at the default 20% ten
/// requests deposit 1000 units and a retry costs 500: two retries per ten requests, as one
/// deposit of 1 unit per request with a retry costing 5. For `share` in (0.1, 1.0] the
/// batched amounts round by under 1% (tower's own per-request amounts round by up to 50% there,
/// e.g. 30% becomes 33%); outside that range the policy deposits per request, as tower does.
///
/// The price is a lag: the last `DEPOSIT_BATCH - 1` requests may not have paid in yet, i.e. at
/// most `(DEPOSIT_BATCH - 1) × share` retries (1.8 at the default) are missing from the
/// budget at any moment. It only ever makes the budget stricter.
fn deposit_batch(share: f32) -> u64 {
    if share > 0.1 && share <= 1.0 {
        DEPOSIT_BATCH
    } else {
        1
    }
}

/// Requests per budget deposit when batching (see [`deposit_batch`]).
const DEPOSIT_BATCH: u64 = 10;

/// Configures a [`RetryPolicy`]; every setter has a default (see the policy's docs).
#[must_use]
pub struct RetryPolicyBuilder {
    budget_ttl: Duration,
    budget_min_per_sec: u32,
    budget_share: f32,
    max_attempts: u32,
    statuses: Vec<StatusCode>,
    methods: Vec<Method>,
    retry_errors: bool,
    body_limit: usize,
    base: Duration,
    cap: Duration,
    jitter: Jitter,
    retry_after_cap: Duration,
    classifier: Option<Arc<dyn Classify>>,
}

impl fmt::Debug for RetryPolicyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicyBuilder")
            .field("max_attempts", &self.max_attempts)
            .field("statuses", &self.statuses)
            .finish_non_exhaustive()
    }
}

impl RetryPolicyBuilder {
    /// The retry budget: over a sliding `ttl` (1 to 60 s), retries may add `share` of the
    /// requests (a fraction, 0.0 to 1000.0; 0.2 = 20%), plus `min_per_sec` retries per second
    /// regardless.
    pub fn budget(mut self, ttl: Duration, min_per_sec: u32, share: f64) -> Self {
        let ttl = crate::util::cap(ttl);
        self.budget_ttl = ttl;
        self.budget_min_per_sec = min_per_sec;
        // tower's budget keeps the share as an f32; out-of-range values (NaN included) still
        // fail `build`'s range check after the conversion.
        self.budget_share = share as f32;
        self
    }

    /// The most attempts per request, the first included (1 = never retry).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// The response statuses retried for idempotent methods. Invalid codes are ignored.
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.statuses = statuses
            .into_iter()
            .filter_map(|s| StatusCode::from_u16(s).ok())
            .collect();
        self
    }

    /// The methods treated as idempotent (safe to send twice).
    pub fn idempotent_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// Whether timeouts and other backend errors are retried for idempotent methods (default
    /// yes). Connection failures are always retried.
    pub fn retry_errors(mut self, yes: bool) -> Self {
        self.retry_errors = yes;
        self
    }

    /// The most request-body bytes kept for replay (default 64 KiB). A larger body is sent
    /// once, unless a connect failure hands it back untouched (see `docs/resilience.md`).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The backoff's base and cap: retry `n` waits up to `min(cap, base × 2ⁿ⁻¹)`.
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        let base = crate::util::cap(base);
        let cap = crate::util::cap(cap);
        self.base = base;
        self.cap = cap;
        self
    }

    /// How the backoff is randomized (default [`Jitter::Full`]).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The longest `Retry-After` honoured; a response asking for longer is not retried.
    pub fn retry_after_cap(mut self, cap: Duration) -> Self {
        let cap = crate::util::cap(cap);
        self.retry_after_cap = cap;
        self
    }

    /// The classifier that tells connection failures, timeouts and local rejections apart
    /// (default [`DefaultClassifier`]).
    pub fn classifier(mut self, classifier: impl Classify) -> Self {
        self.classifier = Some(Arc::new(classifier));
        self
    }

    /// Validates and builds the policy.
    pub fn build(self) -> Result<RetryPolicy, InvalidRetryConfig> {
        if self.max_attempts == 0 {
            return Err(InvalidRetryConfig::new("max attempts must be at least 1"));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.budget_ttl) {
            return Err(InvalidRetryConfig::new(
                "budget window must be between 1 and 60 seconds",
            ));
        }
        if !(0.0..=1000.0).contains(&self.budget_share) {
            return Err(InvalidRetryConfig::new(
                "budget share must be between 0 and 1000",
            ));
        }
        if self.budget_min_per_sec >= i32::MAX as u32 {
            return Err(InvalidRetryConfig::new(
                "budget minimum per second is too large",
            ));
        }
        if self.cap.is_zero() || self.base > self.cap {
            return Err(InvalidRetryConfig::new(
                "backoff cap must be non-zero and not below the base",
            ));
        }
        let rng = match self.jitter {
            Jitter::Full => Some(Arc::new(FastRng::new(None))),
            Jitter::Seeded(seed) => Some(Arc::new(FastRng::new(Some(seed)))),
            Jitter::None => None,
        };
        let backoff = BackoffConfig {
            base: self.base,
            cap: self.cap,
            rng,
        };
        let batch = deposit_batch(self.budget_share);
        Ok(RetryPolicy {
            config: Arc::new(Config {
                budget: TpsBudget::new(
                    self.budget_ttl,
                    self.budget_min_per_sec,
                    self.budget_share * batch as f32,
                ),
                batch,
                max_attempts: self.max_attempts,
                statuses: self.statuses,
                methods: self.methods,
                retry_errors: self.retry_errors,
                body_limit: self.body_limit,
                backoff,
                retry_after_cap: self.retry_after_cap,
                classifier: self
                    .classifier
                    .unwrap_or_else(|| Arc::new(DefaultClassifier::new())),
                requests: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                exhausted: AtomicU64::new(0),
            }),
            attempts: 0,
        })
    }
}

/// The request body a connect failure handed back untouched, if any.
fn handed_back<B: Send + 'static, RB>(
    result: &Result<Response<RB>, BoxError>,
) -> Option<ReplayBody<B>> {
    let Err(e) = result else {
        return None;
    };
    find_cause::<ConnectFailed>(&**e)?.take_body::<ReplayBody<B>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_without_jitter() {
        let p = RetryPolicy::builder().jitter(Jitter::None).build().unwrap();
        let d: Vec<_> = (1..=6).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(d, [25, 50, 100, 200, 250, 250]);
    }

    #[test]
    fn full_jitter_stays_within_bounds_and_is_seeded() {
        let a = RetryPolicy::builder()
            .jitter(Jitter::Seeded(1))
            .build()
            .unwrap();
        let b = RetryPolicy::builder()
            .jitter(Jitter::Seeded(1))
            .build()
            .unwrap();
        let mut distinct = std::collections::HashSet::new();
        for n in 1..200 {
            let x = a.delay(n % 5 + 1);
            assert_eq!(x, b.delay(n % 5 + 1));
            assert!(x <= Duration::from_millis(250));
            distinct.insert(x);
        }
        assert!(distinct.len() > 100);
    }

    #[test]
    fn retry_after_parsing() {
        use http::HeaderMap;
        use http::header::RETRY_AFTER;
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        // An HTTP-date in the past means no wait (see `crate::upstream::retry_after`).
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "later".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    /// Sends `n` first attempts through the policy (as tower's `Retry` does per request).
    fn first_attempts(p: &RetryPolicy, n: usize) {
        let req = Request::new(ReplayBody::new(
            http_body_util::Empty::<bytes::Bytes>::new(),
            0,
        ));
        for _ in 0..n {
            let mut fresh = p.clone();
            let _ = Policy::<_, Response<()>, BoxError>::clone_request(&mut fresh, &req);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn batched_deposits_grant_what_per_request_deposits_would() {
        // No reserve: only deposits pay for retries. 20% of 30 requests is 6 retries.
        let p = RetryPolicy::builder()
            .budget(Duration::from_secs(10), 0, 0.2)
            .build()
            .unwrap();
        assert_eq!(p.config.batch, DEPOSIT_BATCH);
        first_attempts(&p, 30);
        let granted = (0..10).filter(|_| p.config.budget.withdraw()).count();
        assert_eq!(granted, 6);
        assert_eq!(p.stats().requests, 30);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_pays_in_only_when_complete() {
        let p = RetryPolicy::builder()
            .budget(Duration::from_secs(10), 0, 0.5)
            .build()
            .unwrap();
        first_attempts(&p, 9);
        assert!(
            !p.config.budget.withdraw(),
            "nine requests have not paid in yet"
        );
        first_attempts(&p, 1);
        let granted = (0..10).filter(|_| p.config.budget.withdraw()).count();
        assert_eq!(granted, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn budgets_outside_the_batched_range_pay_per_request() {
        for percent in [0.0, 0.05, 0.1, 2.0] {
            let p = RetryPolicy::builder()
                .budget(Duration::from_secs(10), 0, percent)
                .build()
                .unwrap();
            assert_eq!(p.config.batch, 1, "{percent}");
        }
        let p = RetryPolicy::builder()
            .budget(Duration::from_secs(10), 0, 2.0)
            .build()
            .unwrap();
        first_attempts(&p, 3);
        let granted = (0..10).filter(|_| p.config.budget.withdraw()).count();
        assert_eq!(granted, 6);
    }

    #[test]
    fn invalid_configs_are_rejected() {
        assert!(
            RetryPolicy::builder()
                .budget(Duration::ZERO, 1, 0.1)
                .build()
                .is_err()
        );
        assert!(
            RetryPolicy::builder()
                .budget(Duration::from_secs(1), 1, -1.0)
                .build()
                .is_err()
        );
        assert!(
            RetryPolicy::builder()
                .budget(Duration::from_secs(1), 1, f64::NAN)
                .build()
                .is_err()
        );
        assert!(
            RetryPolicy::builder()
                .backoff(Duration::from_secs(1), Duration::from_millis(1))
                .build()
                .is_err()
        );
    }
}
