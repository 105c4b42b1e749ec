use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body::Body;
use pin_project_lite::pin_project;
use tower::util::Either;
use tower_layer::Layer;
use tower_service::Service;

use super::config::{CircuitBreaker as BreakerConfig, HealthCheck, StickySession};
use super::error::{InvalidLoadBalancer, TargetExists};
use crate::algorithm::{Algorithm, Selector, Targets};
use crate::balance::body::TrackedBody;
use crate::balance::{Balance, BalanceLayer, Reporter};
use crate::breaker::{BreakerState, CircuitBreaker, CircuitBreakerLayer};
use crate::client_ip::{ClientIpLayer, ClientIpResolver, ClientIpService, TrustedProxies};
use crate::error::BoxError;
use crate::group::TargetGroup;
use crate::health::{HealthEvent, HealthSummary, OutlierDetection};
use crate::retry::{ReplayBody, Retry, RetryLayer, RetryPolicy, RetryStats};
use crate::route::error::InvalidRule;
use crate::route::{Router, Rule, RulesHandle};
use crate::stats::GroupReport;
use crate::sticky::{Sticky, StickyLayer};
use crate::target::error::UnknownTarget;
use crate::target::{Target, TargetId, TargetStats};
use crate::timeout::{Timeout, TimeoutLayer};
use crate::upstream::{ErrorResponse, ErrorResponseLayer, HttpClient, SetTarget};
use futures_core::Stream;

/// The body of a [`LoadBalancer`]'s responses: the target's body, or a short error body.
pub type ResponseBody = crate::upstream::ResponseBody<
    crate::upstream::ResponseBody<TrackedBody<hyper::body::Incoming>>,
>;

// The stack, innermost first, in the order of docs/resilience.md, over the client `C`; the
// router picks a pool (one `Balance` each) inside the breaker, so retries and the breaker see
// every pool alike.
// Optional layers are `Either`s, so the type is one whatever is configured.
type Bal<C> = Balance<SetTarget<C>>;
type Attempt<C> = Either<Timeout<Bal<C>>, Bal<C>>;
type Routes<C> = Router<Attempt<C>>;
type Broken<C> = Either<CircuitBreaker<Routes<C>>, Routes<C>>;
type Retried<C> = Retry<Broken<C>>;
type Overall<C> = Either<Timeout<Retried<C>>, Retried<C>>;
#[cfg(feature = "governor")]
type Limited<C> = Either<crate::limit::RateLimit<Overall<C>>, Overall<C>>;
#[cfg(not(feature = "governor"))]
type Limited<C> = Overall<C>;
type Stuck<C> = Either<Sticky<Limited<C>>, Limited<C>>;
type Ip<C> = Either<ClientIpService<Stuck<C>>, Stuck<C>>;
type Full<C> = ErrorResponse<Ip<C>>;
// With every optional layer off (the defaults), the always-on layers alone, as they would be
// composed by hand: no `Either` level per layer that is off, and futures of their own size.
type Lean<C> = ErrorResponse<Retry<Router<Bal<C>>>>;
type Stack<C> = Either<Full<C>, Lean<C>>;

/// The pooled HTTP client a [`LoadBalancer`] sends requests with by default.
pub type DefaultClient<B> = HttpClient<ReplayBody<B>>;

/// The router over each pool's service (`wrap`ped), falling back to the load balancer's own
/// group.
fn route_to<B, S>(
    balances: Vec<(Arc<str>, B)>,
    fallback: &str,
    rules: Vec<Rule>,
    wrap: impl Fn(B) -> S,
) -> Result<Router<S>, InvalidLoadBalancer> {
    let mut routes = Router::builder();
    for (name, balance) in balances {
        routes = routes.destination(name, wrap(balance));
    }
    routes
        .fallback(fallback)
        .rules(rules)
        .build()
        .map_err(|e| InvalidLoadBalancer::new("rules", e))
}

fn either<L: Layer<S>, S>(layer: Option<L>, inner: S) -> Either<L::Service, S> {
    match layer {
        Some(l) => Either::Left(l.layer(inner)),
        None => Either::Right(inner),
    }
}

/// A whole load balancer in one value: a target group, health checks, outlier detection,
/// retries, a circuit breaker, timeouts, a rate limit and sticky sessions, composed in the
/// documented order (`docs/resilience.md`) over the pooled HTTP client. Built with
/// [`LoadBalancer::builder`] in the seeds' words; see the [module docs](super).
///
/// It is a `Clone` tower `Service` over `http::Request<B>` whose errors are already responses
/// (`Error = Infallible`), so it goes straight into `axum::Router::route_service` or
/// `fallback_service`. Clones share everything.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::algorithm::RoundRobin;
/// use tower_lb::lb::{CircuitBreaker, LoadBalancer};
/// use tower_lb::target::Target;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let lb = LoadBalancer::builder()
///     .with_name("api-lb")
///     .with_algorithm(RoundRobin::new())
///     .with_targets(vec![
///         Target::builder("api-1", "127.0.0.1:8080").weight(100).build()?,
///         Target::builder("api-2", "127.0.0.1:8081").weight(100).build()?,
///     ])
///     .with_circuit_breaker(CircuitBreaker::new().threshold(0.5))
///     .build::<String>()?;
/// lb.add_target(Target::new("api-3", "127.0.0.1:8082")?)?;
/// lb.remove_target("api-1")?;
/// assert_eq!(lb.stats().targets().len(), 2);
/// # Ok(()) }
/// ```
pub struct LoadBalancer<B, C = DefaultClient<B>> {
    stack: Stack<C>,
    router: RulesHandle,
    shared: Arc<Shared>,
    _body: PhantomData<fn(B)>,
}

struct Shared {
    name: Arc<str>,
    group: TargetGroup,
    /// Every pool, the default one (`group`) first.
    pools: Vec<TargetGroup>,
    /// Each pool's statistics, in the order of `pools`.
    reporters: Vec<Reporter>,
    #[cfg(feature = "governor")]
    rate_limit: Option<crate::limit::RateLimitLayer>,
    breaker: Option<CircuitBreakerLayer>,
    retry: RetryLayer,
    sticky: Option<StickyLayer>,
}

impl<B, C: Clone> Clone for LoadBalancer<B, C> {
    fn clone(&self) -> Self {
        LoadBalancer {
            stack: self.stack.clone(),
            router: self.router.clone(),
            shared: self.shared.clone(),
            _body: PhantomData,
        }
    }
}

impl<B, C> fmt::Debug for LoadBalancer<B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadBalancer")
            .field("name", &self.shared.name)
            .field("group", &self.shared.group)
            .field("breaker", &self.shared.breaker.is_some())
            .field("sticky", &self.shared.sticky.is_some())
            .finish()
    }
}

impl LoadBalancer<()> {
    /// A builder with sane defaults: round robin, no health checks, no outlier detection, the
    /// default [`RetryPolicy`], no circuit breaker, no timeouts, no rate limit, no sticky
    /// sessions.
    pub fn builder() -> LoadBalancerBuilder {
        LoadBalancerBuilder::default()
    }
}

impl<B, C> LoadBalancer<B, C> {
    /// The load balancer's name (also its group's).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The target group, for everything the facade does not say (admin state, drain, the
    /// group's own health API).
    pub fn group(&self) -> &TargetGroup {
        &self.shared.group
    }

    /// The pool named `name`: the load balancer's own targets (named after the load balancer)
    /// or one added with [`with_pool`](LoadBalancerBuilder::with_pool).
    pub fn pool(&self, name: &str) -> Option<&TargetGroup> {
        self.shared.pools.iter().find(|g| g.name() == name)
    }

    /// Every pool, the load balancer's own first.
    pub fn pools(&self) -> &[TargetGroup] {
        &self.shared.pools
    }

    /// Replaces the traffic rules at once; an invalid set is refused whole, with an error
    /// naming the rule and the field, and the rules in force stay.
    pub fn set_rules(&self, rules: impl IntoIterator<Item = Rule>) -> Result<(), InvalidRule> {
        self.router.set_rules(rules)
    }

    /// The rules in force.
    pub fn rules(&self) -> Arc<[Rule]> {
        self.router.rules()
    }

    /// Adds a target; fails if one with its id exists (see
    /// [`upsert_target`](Self::upsert_target)).
    pub fn add_target(&self, target: Target) -> Result<(), TargetExists> {
        if self.shared.group.health(target.id()).is_ok() {
            return Err(TargetExists::new(target.id().clone()));
        }
        self.shared.group.insert(target);
        Ok(())
    }

    /// Adds a target, or replaces the one with its id (its in-flight requests finish).
    pub fn upsert_target(&self, target: Target) {
        self.shared.group.insert(target);
    }

    /// Removes a target; requests in flight to it finish.
    pub fn remove_target(&self, id: &str) -> Result<(), UnknownTarget> {
        self.shared.group.remove(&TargetId::from(id))
    }

    /// The health events of every pool (healthy, unhealthy with a reason, ejected, restored),
    /// from now on, as they happen.
    pub fn health_events(&self) -> impl Stream<Item = HealthEvent> + Send + Unpin + 'static {
        futures_util::stream::select_all(self.shared.pools.iter().map(TargetGroup::events))
    }

    /// What the load balancer is doing: per-target counters and health, the breaker's state,
    /// the retries.
    pub fn stats(&self) -> LoadBalancerStats {
        LoadBalancerStats {
            name: self.shared.name.clone(),
            targets: self
                .shared
                .pools
                .iter()
                .flat_map(TargetGroup::stats)
                .collect(),
            groups: self.shared.reporters.iter().map(|r| r()).collect(),
            #[cfg(feature = "governor")]
            rate_limited: self.shared.rate_limit.as_ref().map_or(0, |l| l.refused()),
            #[cfg(not(feature = "governor"))]
            rate_limited: 0,
            health: self.shared.group.health_summary(),
            breaker: self.shared.breaker.as_ref().map(CircuitBreakerLayer::state),
            retries: self.shared.retry.stats(),
        }
    }

    /// The sticky-session layer, if sticky sessions are on (to issue or check tokens).
    pub fn sticky(&self) -> Option<&StickyLayer> {
        self.shared.sticky.as_ref()
    }
}

impl<B, C> LoadBalancer<B, C>
where
    C: Clone,
    Stack<C>: Service<Request<B>, Error = Infallible>,
{
    /// Sends one request through the whole stack; errors come back as responses (`502`,
    /// `503`, `504`, `429`).
    pub fn route(&self, request: Request<B>) -> ResponseFuture<B, C> {
        // Every layer of the stack is always ready.
        let mut stack = self.stack.clone();
        ResponseFuture {
            inner: stack.call(request),
        }
    }
}

impl<B, C> Service<Request<B>> for LoadBalancer<B, C>
where
    Stack<C>: Service<Request<B>, Error = Infallible>,
{
    type Response = <Stack<C> as Service<Request<B>>>::Response;
    type Error = Infallible;
    type Future = ResponseFuture<B, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.stack.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> ResponseFuture<B, C> {
        ResponseFuture {
            inner: self.stack.call(request),
        }
    }
}

pin_project! {
    /// The response future of a [`LoadBalancer`].
    pub struct ResponseFuture<B, C>
    where
        Stack<C>: Service<Request<B>>,
    {
        #[pin]
        inner: <Stack<C> as Service<Request<B>>>::Future,
    }
}

impl<B, C> fmt::Debug for ResponseFuture<B, C>
where
    Stack<C>: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<B, C> Future for ResponseFuture<B, C>
where
    Stack<C>: Service<Request<B>, Error = Infallible>,
{
    type Output = Result<<Stack<C> as Service<Request<B>>>::Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

/// A snapshot of what a [`LoadBalancer`] is doing; from [`LoadBalancer::stats`].
#[derive(Debug, Clone)]
pub struct LoadBalancerStats {
    name: Arc<str>,
    targets: Vec<TargetStats>,
    groups: Vec<GroupReport>,
    rate_limited: u64,
    health: HealthSummary,
    breaker: Option<BreakerState>,
    retries: RetryStats,
}

impl LoadBalancerStats {
    /// The load balancer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Per-target counters: requests, failures, in flight, admin state.
    pub fn targets(&self) -> &[TargetStats] {
        &self.targets
    }

    /// Each pool's report (the default pool first): per target and in total, responses by
    /// class, failures by kind, in flight, latency percentiles, health and admin state.
    pub fn groups(&self) -> &[GroupReport] {
        &self.groups
    }

    /// Requests refused by the rate limit (`429`).
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited
    }

    /// Targets in service, down, ejected; panic mode.
    pub fn health(&self) -> &HealthSummary {
        &self.health
    }

    /// The circuit breaker's state, if there is one.
    pub fn breaker(&self) -> Option<BreakerState> {
        self.breaker
    }

    /// Requests, retries and retries refused by the budget.
    pub fn retries(&self) -> &RetryStats {
        &self.retries
    }
}

/// An [`Algorithm`] behind an `Arc`, so the builder can keep any algorithm until `build`.
#[derive(Debug, Clone)]
struct AnyAlgorithm(Arc<dyn Algorithm>);

impl Algorithm for AnyAlgorithm {
    fn build(&self, targets: &Targets<'_>) -> Box<dyn Selector> {
        self.0.build(targets)
    }
}

/// Builds a [`LoadBalancer`]; from [`LoadBalancer::builder`]. Every setting is optional.
#[derive(Default)]
pub struct LoadBalancerBuilder {
    name: Option<String>,
    algorithm: Option<AnyAlgorithm>,
    targets: Vec<Target>,
    health_check: Option<HealthCheck>,
    outlier_detection: Option<OutlierDetection>,
    circuit_breaker: Option<BreakerConfig>,
    retry: Option<RetryPolicy>,
    timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
    #[cfg(feature = "governor")]
    rate_limit: Option<super::RateLimit>,
    sticky: Option<StickySession>,
    trusted_proxies: Option<TrustedProxies>,
    pools: Vec<(String, Vec<Target>)>,
    groups: Option<Vec<TargetGroup>>,
    key: Option<crate::key::Key>,
    rules: Vec<Rule>,
}

impl fmt::Debug for LoadBalancerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadBalancerBuilder")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("targets", &self.targets.len())
            .field("health_check", &self.health_check)
            .field("circuit_breaker", &self.circuit_breaker)
            .field("timeout", &self.timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish_non_exhaustive()
    }
}

impl LoadBalancerBuilder {
    /// The name (default `default`); also the group's, the breaker's and the registry key.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The selection algorithm (default [`RoundRobin`](crate::algorithm::RoundRobin)).
    pub fn with_algorithm(mut self, algorithm: impl Algorithm) -> Self {
        self.algorithm = Some(AnyAlgorithm(Arc::new(algorithm)));
        self
    }

    /// The targets (replacing any given before).
    pub fn with_targets(mut self, targets: impl IntoIterator<Item = Target>) -> Self {
        self.targets = targets.into_iter().collect();
        self
    }

    /// One more target.
    pub fn with_target(mut self, target: Target) -> Self {
        self.targets.push(target);
        self
    }

    /// Active health checks (off by default). `build` then needs a Tokio runtime.
    pub fn with_health_check(mut self, check: HealthCheck) -> Self {
        self.health_check = Some(check);
        self
    }

    /// Passive health checks: eject targets whose real traffic fails (off by default).
    pub fn with_outlier_detection(mut self, outliers: OutlierDetection) -> Self {
        self.outlier_detection = Some(outliers);
        self
    }

    /// A circuit breaker over the group (off by default).
    pub fn with_circuit_breaker(mut self, breaker: BreakerConfig) -> Self {
        self.circuit_breaker = Some(breaker);
        self
    }

    /// The retry policy (default [`RetryPolicy::new`]: at most 3 attempts, within a budget;
    /// `RetryPolicy::builder().max_attempts(1)` turns retries off).
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// A deadline for the whole request, every attempt and backoff included (none by default).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A deadline for each attempt; a slow attempt counts as a failure and may be retried
    /// (none by default).
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// A rate limit per client (none by default); see [`RateLimit`](super::RateLimit).
    #[cfg(feature = "governor")]
    #[cfg_attr(docsrs, doc(cfg(feature = "governor")))]
    pub fn with_rate_limit(mut self, limit: super::RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// The proxies whose `X-Forwarded-For` / `Forwarded` name the client (default none: the
    /// client is the socket peer); see [`crate::client_ip`].
    ///
    /// The client address is set on each request (from axum's `ConnectInfo` with feature
    /// `axum`, or a [`ClientAddr`](crate::key::ClientAddr) extension) when a rate limit is
    /// configured or this is called; otherwise no request pays for it.
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = Some(proxies);
        self
    }

    /// Another pool of targets, named `name`, that [rules](Self::with_rules) can send
    /// requests to (`Rule::new(..).to(name)`, or a weighted split); it gets the same algorithm,
    /// health checks and outlier detection. Requests no rule takes go to the load balancer's own
    /// targets, the pool named after the load balancer.
    pub fn with_pool(
        mut self,
        name: impl Into<String>,
        targets: impl IntoIterator<Item = Target>,
    ) -> Self {
        self.pools
            .push((name.into(), targets.into_iter().collect()));
        self
    }

    /// The first traffic rules (none by default; replace them at run time with
    /// [`LoadBalancer::set_rules`]); see [`crate::route`].
    pub fn with_rules(mut self, rules: impl IntoIterator<Item = Rule>) -> Self {
        self.rules.extend(rules);
        self
    }

    /// The request key that hash-based algorithms ([`HashRing`](crate::algorithm::HashRing),
    /// [`Maglev`](crate::algorithm::Maglev)) place requests by, in every pool (none by
    /// default: such an algorithm then spreads requests as if each had a fresh key).
    ///
    /// ```
    /// use tower_lb::algorithm::HashRing;
    /// use tower_lb::key::Key;
    /// use tower_lb::lb::LoadBalancer;
    ///
    /// let lb = LoadBalancer::builder()
    ///     .with_name("ws")
    ///     .with_algorithm(HashRing::new()) // nginx `ip_hash`, HAProxy `balance source`
    ///     .with_key(Key::client_ip())
    ///     .build::<String>()?;
    /// # let _ = lb;
    /// # Ok::<(), tower_lb::BoxError>(())
    /// ```
    pub fn with_key(mut self, key: crate::key::Key) -> Self {
        self.key = Some(key);
        self
    }

    /// Uses these groups as the pools, as they are, instead of building them: the first is
    /// the load balancer's own (it must be named after the load balancer), the others are
    /// pools that rules name. Their targets, algorithm, health policies and active checks are
    /// left as they are, so [`with_targets`](Self::with_targets), [`with_pool`](Self::with_pool),
    /// [`with_algorithm`](Self::with_algorithm), [`with_outlier_detection`](Self::with_outlier_detection)
    /// and [`with_health_check`](Self::with_health_check) are ignored.
    ///
    /// This is how a configuration reload rebuilds a load balancer's layers (a new breaker,
    /// new timeouts) over the same groups, so every target keeps its live state.
    ///
    /// ```
    /// use tower_lb::lb::LoadBalancer;
    /// use tower_lb::{Target, TargetGroup};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
    /// let own = TargetGroup::builder("api-lb").target(Target::new("a", "127.0.0.1:8080")?).build()?;
    /// let first = LoadBalancer::builder().with_name("api-lb").with_groups([own.clone()]).build::<String>()?;
    /// let second = LoadBalancer::builder().with_name("api-lb").with_groups([own]).build::<String>()?;
    /// first.remove_target("a")?;
    /// assert!(second.group().is_empty()); // one group, shared
    /// # Ok(()) }
    /// ```
    pub fn with_groups(mut self, groups: impl IntoIterator<Item = TargetGroup>) -> Self {
        self.groups = Some(groups.into_iter().collect());
        self
    }

    /// Sticky sessions (off by default); see [`StickySession`].
    pub fn with_sticky_session(mut self, sticky: StickySession) -> Self {
        self.sticky = Some(sticky);
        self
    }

    /// Checks every setting and composes the stack over the pooled HTTP client, for request
    /// bodies of type `B`.
    pub fn build<B>(self) -> Result<LoadBalancer<B>, InvalidLoadBalancer>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        self.build_with_client(HttpClient::new())
    }

    /// As [`build`](Self::build), over `client` instead of the pooled HTTP client: a service
    /// over `Request<ReplayBody<B>>` that sends each request to the URI it is given (each
    /// target's copy is wrapped in [`SetTarget`]), such as a client with other settings or a
    /// test double.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{Request, Response};
    /// use tower::{service_fn, ServiceExt};
    /// use tower_lb::lb::LoadBalancer;
    /// use tower_lb::retry::ReplayBody;
    /// use tower_lb::target::Target;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
    /// // Answers with the URI it was asked to fetch.
    /// let client = service_fn(|req: Request<ReplayBody<String>>| async move {
    ///     Ok::<_, Infallible>(Response::new(req.uri().to_string()))
    /// });
    /// let lb = LoadBalancer::builder()
    ///     .with_target(Target::new("a", "127.0.0.1:8080")?)
    ///     .build_with_client::<String, _>(client)?;
    /// let rsp = lb.oneshot(Request::get("/x").body(String::new())?).await?;
    /// assert_eq!(rsp.status(), 200);
    /// # Ok(()) }
    /// ```
    pub fn build_with_client<B, C>(
        self,
        client: C,
    ) -> Result<LoadBalancer<B, C>, InvalidLoadBalancer>
    where
        C: Clone + Send + Sync + 'static,
    {
        let name: Arc<str> = Arc::from(self.name.as_deref().unwrap_or("default"));
        let mut pools = Vec::with_capacity(1 + self.pools.len());
        let all = std::iter::once((name.to_string(), self.targets)).chain(self.pools);
        let all = match self.groups {
            Some(groups) => {
                match groups.first() {
                    Some(g) if g.name() == &*name => {}
                    _ => {
                        return Err(InvalidLoadBalancer::new(
                            "groups",
                            format!("the first group must be named `{name}`"),
                        ));
                    }
                }
                for g in groups {
                    if pools.iter().any(|p: &TargetGroup| p.name() == g.name()) {
                        return Err(InvalidLoadBalancer::new(
                            "pools",
                            format!("pool name `{}` is used twice", g.name()),
                        ));
                    }
                    pools.push(g);
                }
                Vec::new()
            }
            None => all.collect(),
        };
        for (pool, targets) in all {
            if pools.iter().any(|g: &TargetGroup| g.name() == pool) {
                return Err(InvalidLoadBalancer::new(
                    "pools",
                    format!("pool name `{pool}` is used twice"),
                ));
            }
            let mut group = TargetGroup::builder(pool).targets(targets);
            if let Some(a) = &self.algorithm {
                group = group.algorithm(a.clone());
            }
            if let Some(o) = &self.outlier_detection {
                group = group.outlier_detection(o.clone());
            }
            let group = group
                .build()
                .map_err(|e| InvalidLoadBalancer::new("targets", e))?;
            if let Some(check) = &self.health_check {
                let check = check
                    .build()
                    .map_err(|e| InvalidLoadBalancer::new("health_check", e))?;
                group
                    .health_check(check)
                    .map_err(|e| InvalidLoadBalancer::new("health_check", e))?;
            }
            pools.push(group);
        }
        let group = pools[0].clone();
        let breaker = match &self.circuit_breaker {
            Some(b) => Some(
                b.build(&name)
                    .map_err(|e| InvalidLoadBalancer::new("circuit_breaker", e))?,
            ),
            None => None,
        };
        let sticky = match &self.sticky {
            Some(s) => Some(
                s.build(&pools)
                    .map_err(|e| InvalidLoadBalancer::new("sticky_session", e))?,
            ),
            None => None,
        };
        let retry = RetryLayer::new(self.retry.unwrap_or_default());

        #[cfg(feature = "governor")]
        let limit = match &self.rate_limit {
            Some(l) => Some(
                l.build()
                    .map_err(|e| InvalidLoadBalancer::new("rate_limit", e))?,
            ),
            None => None,
        };
        #[cfg(feature = "governor")]
        let needs_ip = self.rate_limit.is_some() || self.trusted_proxies.is_some();
        #[cfg(not(feature = "governor"))]
        let needs_ip = self.trusted_proxies.is_some();
        #[cfg(feature = "governor")]
        let limited = limit.is_some();
        #[cfg(not(feature = "governor"))]
        let limited = false;
        let lean = !limited
            && !needs_ip
            && sticky.is_none()
            && breaker.is_none()
            && self.timeout.is_none()
            && self.attempt_timeout.is_none();

        let mut reporters = Vec::with_capacity(pools.len());
        let mut balances = Vec::with_capacity(pools.len());
        for pool in &pools {
            let mut balance = BalanceLayer::new(pool.clone());
            if let Some(key) = &self.key {
                balance = balance.key(key.clone());
            }
            let balance = balance.layer(client.clone());
            reporters.push(balance.reporter());
            balances.push((Arc::<str>::from(pool.name()), balance));
        }
        let error = ErrorResponseLayer::new();
        let (stack, router) = if lean {
            let router = route_to(balances, &name, self.rules, |b| b)?;
            let handle = router.rules_handle();
            (Either::Right(error.layer(retry.layer(router))), handle)
        } else {
            let attempt = self.attempt_timeout.map(TimeoutLayer::new);
            let router = route_to(balances, &name, self.rules, |b| either(attempt, b))?;
            let handle = router.rules_handle();
            let broken = either(breaker.clone(), router);
            let retried = retry.layer(broken);
            let overall = either(self.timeout.map(TimeoutLayer::new), retried);
            #[cfg(feature = "governor")]
            let limited = either(limit.clone(), overall);
            #[cfg(not(feature = "governor"))]
            let limited = overall;
            let stuck = either(sticky.clone(), limited);
            let ip = needs_ip.then(|| {
                ClientIpLayer::new(ClientIpResolver::new(
                    self.trusted_proxies.unwrap_or_else(TrustedProxies::none),
                ))
            });
            (Either::Left(error.layer(either(ip, stuck))), handle)
        };
        Ok(LoadBalancer {
            stack,
            router,
            shared: Arc::new(Shared {
                name,
                group,
                pools,
                reporters,
                #[cfg(feature = "governor")]
                rate_limit: limit,
                breaker,
                retry,
                sticky,
            }),
            _body: PhantomData,
        })
    }
}
