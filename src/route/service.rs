use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::Access;
use super::error::InvalidRule;
use super::matcher::prefix_matches;
use super::path::{EscapedSlashes, normalize_path};
use super::rule::{Routed, Rule};
use super::table::Table;
use crate::balance::Affinity;
use crate::key::client_ip_of;
use crate::upstream::{ResponseBody, error_response};

/// Routes each request by the first matching [`Rule`] to a named destination service; see
/// the [module docs](super).
///
/// `Clone + Send + Sync` (for `Send + Sync` destinations), cheap to clone, no `Buffer`: the
/// chosen destination is driven ready-then-call (called at once when it is ready at once, as
/// a `Balance` always is), so `poll_ready` of the router is always ready. A router keeps its
/// own clone of the destination it called last and calls it again while requests go there
/// (a router kept per connection clones no destination per request). Responses are
/// `Response<`[`ResponseBody`]`<RB>>`: the destination's body, or a short body of the
/// router's own (`400`, `403`, `404`, `429`, `504`). The destination's errors pass through
/// unchanged.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::route::{Routed, Router, Rule};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let ok = service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
/// let router = Router::builder()
///     .destination("users", ok)
///     .destination("orders", ok)
///     .rule(Rule::new("orders").path("/users/*/orders").to("orders"))
///     .rule(Rule::new("users").prefix("/users").to("users"))
///     .record_routed(true)
///     .build()?;
///
/// // Which rule would take a request, without sending it:
/// let req = Request::get("/users/7/orders").body(())?;
/// assert_eq!(router.matching_rule(&req).as_deref(), Some("orders"));
///
/// // Sending it: the response says where it went.
/// let rsp = router.clone().oneshot(Request::get("/users/7").body(())?).await?;
/// let routed = rsp.extensions().get::<Routed>().unwrap();
/// assert_eq!((routed.rule(), routed.destination()), (Some("users"), "users"));
/// assert_eq!(router.clone().oneshot(Request::get("/nope").body(())?).await?.status(), 404);
/// # Ok(()) }
/// ```
pub struct Router<S> {
    services: Arc<[S]>,
    /// This instance's own clone of the destination it called last: a router kept for many
    /// requests (as the server keeps one stack per connection) calls it again without
    /// cloning it per request. A clone of the router starts without one.
    last: Option<(usize, S)>,
    shared: Arc<Shared>,
}

struct Shared {
    names: Arc<[Arc<str>]>,
    table: ArcSwap<Table>,
    /// Whether `table` has rules: without, a request goes to the fallback without reading
    /// the table. Written with the table, under `sync`.
    has_rules: AtomicBool,
    sync: Mutex<()>,
    fallback: Option<usize>,
    access: Option<Access>,
    record: bool,
    slashes: EscapedSlashes,
    indexed: bool,
    rng: Rng,
}

impl Shared {
    fn set_rules(&self, rules: impl IntoIterator<Item = Rule>) -> Result<(), InvalidRule> {
        let table = Table::build(
            rules.into_iter().collect(),
            &self.names,
            self.slashes,
            self.indexed,
        )?;
        tracing::debug!(rules = table.specs.len(), "rule set replaced");
        let has_rules = !table.rules.is_empty();
        let _lock = crate::util::lock(&self.sync);
        self.table.store(Arc::new(table));
        self.has_rules.store(has_rules, Ordering::Release);
        Ok(())
    }

    fn rules(&self) -> Arc<[Rule]> {
        self.table.load().specs.clone()
    }
}

/// A router's rules, apart from its destinations: [`Router::set_rules`] and [`Router::rules`]
/// for a holder that does not name the destinations' type (the load balancer facade).
#[cfg(feature = "hyper")]
#[derive(Clone)]
pub(crate) struct RulesHandle(Arc<Shared>);

#[cfg(feature = "hyper")]
impl RulesHandle {
    /// As [`Router::set_rules`].
    pub(crate) fn set_rules(
        &self,
        rules: impl IntoIterator<Item = Rule>,
    ) -> Result<(), InvalidRule> {
        self.0.set_rules(rules)
    }

    /// As [`Router::rules`].
    pub(crate) fn rules(&self) -> Arc<[Rule]> {
        self.0.rules()
    }
}

impl<S> Clone for Router<S> {
    fn clone(&self) -> Self {
        Router {
            services: self.services.clone(),
            last: None,
            shared: self.shared.clone(),
        }
    }
}

impl<S> fmt::Debug for Router<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("destinations", &self.shared.names)
            .field("rules", &self.shared.table.load().specs.len())
            .finish()
    }
}

/// Builds a [`Router`]: destinations (fixed for the router's life), the first rule set, and
/// router-wide settings.
#[must_use]
pub struct RouterBuilder<S> {
    destinations: Vec<(Arc<str>, S)>,
    rules: Vec<Rule>,
    fallback: Option<String>,
    access: Option<Access>,
    record: bool,
    slashes: EscapedSlashes,
    indexed: bool,
    seed: Option<u64>,
}

impl<S> fmt::Debug for RouterBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.destinations.iter().map(|(n, _)| n).collect();
        f.debug_struct("RouterBuilder")
            .field("destinations", &names)
            .field("rules", &self.rules.len())
            .field("fallback", &self.fallback)
            .finish()
    }
}

impl<S> Router<S> {
    /// Starts building a router.
    pub fn builder() -> RouterBuilder<S> {
        RouterBuilder {
            destinations: Vec::new(),
            rules: Vec::new(),
            fallback: None,
            access: None,
            record: false,
            slashes: EscapedSlashes::default(),
            indexed: true,
            seed: None,
        }
    }

    /// Replaces the whole rule set at once. An invalid set is refused with the rule and field
    /// of its first problem, and the rules in force stay; requests already routed finish on
    /// the set they started with.
    pub fn set_rules(&self, rules: impl IntoIterator<Item = Rule>) -> Result<(), InvalidRule> {
        self.shared.set_rules(rules)
    }

    /// The rules in force, as given.
    pub fn rules(&self) -> Arc<[Rule]> {
        self.shared.rules()
    }

    /// Sets and reads this router's rules (and those of every clone) without holding its
    /// destinations.
    #[cfg(feature = "hyper")]
    pub(crate) fn rules_handle(&self) -> RulesHandle {
        RulesHandle(self.shared.clone())
    }

    /// The destination names, in the order they were added.
    pub fn destinations(&self) -> &[Arc<str>] {
        &self.shared.names
    }

    /// The name of the rule that would take `req` (its path normalized first), without
    /// dispatching; `None` if no rule matches or the path is malformed. No allocation.
    pub fn matching_rule<B>(&self, req: &Request<B>) -> Option<RuleName> {
        let table = self.shared.table.load();
        let path = normalize_path(req.uri().path(), table.slashes).ok()?;
        let index = table.find(req, &path)?;
        Some(RuleName { table, index })
    }
}

/// The name of a matched rule, from [`Router::matching_rule`]; dereferences to `str`. It
/// borrows the rule set it was matched in (no copy, no reference count), so keep it briefly.
pub struct RuleName {
    table: arc_swap::Guard<Arc<Table>>,
    index: usize,
}

impl std::ops::Deref for RuleName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.table.rules[self.index].name
    }
}

impl fmt::Debug for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl fmt::Display for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl PartialEq for RuleName {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for RuleName {}

impl PartialEq<str> for RuleName {
    fn eq(&self, other: &str) -> bool {
        &**self == other
    }
}

impl PartialEq<&str> for RuleName {
    fn eq(&self, other: &&str) -> bool {
        &**self == *other
    }
}

impl<S> RouterBuilder<S> {
    /// Adds a destination service under `name` (usually a `Balance` over one target group,
    /// possibly wrapped in its own layers).
    pub fn destination(mut self, name: impl Into<Arc<str>>, service: S) -> Self {
        self.destinations.push((name.into(), service));
        self
    }

    /// Adds a rule to the first rule set.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Adds rules to the first rule set.
    pub fn rules(mut self, rules: impl IntoIterator<Item = Rule>) -> Self {
        self.rules.extend(rules);
        self
    }

    /// Where requests no rule matches go (default: a `404` response).
    pub fn fallback(mut self, destination: impl Into<String>) -> Self {
        self.fallback = Some(destination.into());
        self
    }

    /// An access list checked for every request, before any rule.
    pub fn access(mut self, access: Access) -> Self {
        self.access = Some(access);
        self
    }

    /// What to do with `%2F`, `%5C` and `\` in paths (default: refuse with `400`).
    pub fn escaped_slashes(mut self, slashes: EscapedSlashes) -> Self {
        self.slashes = slashes;
        self
    }

    /// Tag every routed response with a [`Routed`] extension (default off: it costs an
    /// allocation per response).
    pub fn record_routed(mut self, on: bool) -> Self {
        self.record = on;
        self
    }

    /// Seed the random draws of random splits, for reproducible tests (default: per-thread
    /// random state).
    pub fn random_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Use the path index (default `true`). `false` tries the rules one by one, for
    /// comparison; both give the same answers.
    pub fn index(mut self, on: bool) -> Self {
        self.indexed = on;
        self
    }

    /// Validates the destinations, fallback, access list and rules.
    pub fn build(self) -> Result<Router<S>, InvalidRule> {
        let names: Arc<[Arc<str>]> = self.destinations.iter().map(|(n, _)| n.clone()).collect();
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() {
                return Err(InvalidRule::new(
                    None,
                    "destination",
                    "empty destination name",
                ));
            }
            if names[..i].contains(n) {
                return Err(InvalidRule::new(
                    None,
                    "destination",
                    format!("duplicate destination `{n}`"),
                ));
            }
        }
        let fallback = match &self.fallback {
            None => None,
            Some(f) => Some(names.iter().position(|n| **n == **f).ok_or_else(|| {
                InvalidRule::new(None, "fallback", format!("unknown destination `{f}`"))
            })?),
        };
        if let Some(a) = &self.access {
            a.check()
                .map_err(|e| InvalidRule::new(None, "access", e.to_string()))?;
        }
        let table = Table::build(self.rules, &names, self.slashes, self.indexed)?;
        Ok(Router {
            services: self.destinations.into_iter().map(|(_, s)| s).collect(),
            last: None,
            shared: Arc::new(Shared {
                names,
                has_rules: AtomicBool::new(!table.rules.is_empty()),
                table: ArcSwap::from_pointee(table),
                sync: Mutex::new(()),
                fallback,
                access: self.access,
                record: self.record,
                slashes: self.slashes,
                indexed: self.indexed,
                rng: Rng::new(self.seed),
            }),
        })
    }
}

/// A seedable splitmix64 source for random splits: one shared counter when seeded
/// (reproducible), a per-thread one otherwise.
#[derive(Debug)]
struct Rng {
    state: AtomicU64,
    seeded: bool,
}

thread_local! {
    static LOCAL: Cell<u64> = const { Cell::new(0) };
}

impl Rng {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

    fn new(seed: Option<u64>) -> Self {
        Rng {
            state: AtomicU64::new(seed.unwrap_or(0)),
            seeded: seed.is_some(),
        }
    }

    fn next(&self) -> u64 {
        let x = if self.seeded {
            self.state
                .fetch_add(Self::GAMMA, Ordering::Relaxed)
                .wrapping_add(Self::GAMMA)
        } else {
            LOCAL.with(|c| {
                let mut x = c.get();
                if x == 0 {
                    x = std::collections::hash_map::RandomState::new().hash_one(0u64);
                }
                x = x.wrapping_add(Self::GAMMA);
                c.set(x);
                x
            })
        };
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `prefix` (segment-wise, no trailing slash) replaced by `to` in `path`, if it applies.
fn rewrite(path: &str, from: &str, to: &str) -> Option<String> {
    if !prefix_matches(from, path) {
        return None;
    }
    let rest = if from == "/" {
        path
    } else {
        &path[from.len()..]
    };
    let mut out = String::with_capacity(to.len() + rest.len());
    out.push_str(to.trim_end_matches('/'));
    out.push_str(rest);
    if out.is_empty() || (rest.is_empty() && to.ends_with('/') && !out.ends_with('/')) {
        out.push('/');
    }
    Some(out)
}

fn with_path<B>(req: &mut Request<B>, path: &str) -> Result<(), ()> {
    let pq = match req.uri().query() {
        Some(q) => PathAndQuery::try_from(format!("{path}?{q}")),
        None => PathAndQuery::try_from(path),
    }
    .map_err(|_| ())?;
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(pq);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| ())?;
    Ok(())
}

impl<S, B, RB> Service<Request<B>> for Router<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // Where the request goes (it is edited in place: normalized path, rewrite, headers),
        // or the router's own answer; then one place builds the future, so the request is
        // moved once, into the destination's call.
        let (dest, sleep, post) = match self.route(&mut req) {
            Ok(routed) => routed,
            Err((status, limited)) => return ResponseFuture::respond(status, limited),
        };
        // The destination is called now if it is ready now (as a load balancer's always
        // are), so the request is not kept in the future only to be moved out at its first
        // poll; otherwise the future drives it ready, then calls it. The waker given here
        // does nothing: a service that is not ready is polled again, with the task's own,
        // when the future is.
        let svc = match &mut self.last {
            Some((last, svc)) if *last == dest => svc,
            last => &mut last.insert((dest, self.services[dest].clone())).1,
        };
        match svc.poll_ready(&mut Context::from_waker(std::task::Waker::noop())) {
            Poll::Ready(Ok(())) => ResponseFuture {
                state: State::Call { fut: svc.call(req) },
                sleep,
                post,
            },
            Poll::Ready(Err(error)) => ResponseFuture {
                state: State::Failed { error: Some(error) },
                sleep,
                post,
            },
            Poll::Pending => ResponseFuture {
                state: State::Ready {
                    svc: svc.clone(),
                    req: Some(req),
                },
                sleep,
                post,
            },
        }
    }
}

/// The router's own answer instead of a destination's: a status, and the rate limit that
/// refused the request, if one did.
type Refusal = (StatusCode, Option<crate::limit::error::RateLimited>);

/// Where a request goes: the destination, the rule's timeout, what to do to the response.
type Route = (usize, Option<Pin<Box<tokio::time::Sleep>>>, Option<Post>);

impl<S> Router<S> {
    /// Decides where `req` goes, editing it on the way (normalized or rewritten path, added
    /// headers).
    #[inline(always)]
    fn route<B>(&self, req: &mut Request<B>) -> Result<Route, Refusal> {
        let shared = &*self.shared;
        if let Some(acl) = &shared.access {
            if !acl.allows(client_ip_of(req.extensions())) {
                tracing::trace!("refused by the router's access list");
                return Err((acl.refusal_status(), None));
            }
        }
        if !shared.has_rules.load(Ordering::Acquire) {
            return self.fallback_only(req);
        }
        self.by_rules(req)
    }

    /// [`route`](Self::route) while the rule set is empty: the path normalized, then the
    /// fallback destination, without reading the rule table.
    #[inline(always)]
    fn fallback_only<B>(&self, req: &mut Request<B>) -> Result<Route, Refusal> {
        let shared = &*self.shared;
        let normalized = match normalize_path(req.uri().path(), shared.slashes) {
            Ok(std::borrow::Cow::Borrowed(_)) => None,
            Ok(std::borrow::Cow::Owned(p)) => Some(p),
            Err(_) => return Err((StatusCode::BAD_REQUEST, None)),
        };
        let Some(dest) = shared.fallback else {
            return Err((StatusCode::NOT_FOUND, None));
        };
        if let Some(p) = normalized {
            if with_path(req, &p).is_err() {
                return Err((StatusCode::BAD_REQUEST, None));
            }
        }
        tracing::trace!(destination = %shared.names[dest], "routed (no rules)");
        let post = shared.record.then(|| Post {
            table: None,
            rule: None,
            destination: Some(shared.names[dest].clone()),
        });
        Ok((dest, None, post))
    }

    /// [`route`](Self::route) by the rules in force.
    fn by_rules<B>(&self, req: &mut Request<B>) -> Result<Route, Refusal> {
        let shared = &*self.shared;
        // A guard, not a reference count: the table is kept past this call only for a rule
        // with response headers to add (see `Post`).
        let table = shared.table.load();
        let normalized = match normalize_path(req.uri().path(), table.slashes) {
            Ok(std::borrow::Cow::Borrowed(_)) => None,
            Ok(std::borrow::Cow::Owned(p)) => Some(p),
            Err(_) => return Err((StatusCode::BAD_REQUEST, None)),
        };
        let path = normalized.as_deref().unwrap_or(req.uri().path());
        // No rules (a load balancer's router before any are set): no lookup.
        let found = match table.rules.is_empty() {
            true => None,
            false => table.find(req, path),
        };
        let (rule, dest) = match found {
            Some(i) => {
                let r = &table.rules[i];
                if let Some(acl) = &r.access {
                    if !acl.allows(client_ip_of(req.extensions())) {
                        tracing::trace!(rule = %r.name, "refused by the rule's access list");
                        return Err((acl.refusal_status(), None));
                    }
                }
                #[cfg(feature = "governor")]
                if let Some(limit) = &r.rate_limit {
                    if let Err(limited) = limit.check(req) {
                        return Err((StatusCode::TOO_MANY_REQUESTS, Some(limited)));
                    }
                }
                let affine = || {
                    let group = req.extensions().get::<Affinity>()?.group()?;
                    shared.names.iter().position(|n| &**n == group)
                };
                (Some(i), r.destination(req, || shared.rng.next(), affine))
            }
            None => match shared.fallback {
                Some(d) => (None, d),
                None => return Err((StatusCode::NOT_FOUND, None)),
            },
        };
        let compiled = rule.map(|i| &table.rules[i]);
        let new_path = match compiled.and_then(|r| r.rewrite.as_ref()) {
            Some((from, to)) => rewrite(path, from, to).or(normalized),
            None => normalized,
        };
        if let Some(p) = new_path {
            if with_path(req, &p).is_err() {
                return Err((StatusCode::BAD_REQUEST, None));
            }
        }
        let mut timeout = None;
        if let Some(r) = compiled {
            for (n, v) in r.request_headers.iter() {
                req.headers_mut().insert(n.clone(), v.clone());
            }
            timeout = r
                .timeout
                .filter(|_| tokio::runtime::Handle::try_current().is_ok());
        }
        tracing::trace!(rule = compiled.map(|r| &*r.name), destination = %shared.names[dest], "routed");
        let post = match compiled {
            Some(r) if !r.response_headers.is_empty() || shared.record => Some(Post {
                table: Some(arc_swap::Guard::into_inner(table)),
                rule,
                destination: shared.record.then(|| shared.names[dest].clone()),
            }),
            Some(_) => None,
            None => shared.record.then(|| Post {
                table: None,
                rule: None,
                destination: Some(shared.names[dest].clone()),
            }),
        };
        let sleep = timeout.map(|t| Box::pin(tokio::time::sleep(t)));
        Ok((dest, sleep, post))
    }
}

struct Post {
    table: Option<Arc<Table>>,
    rule: Option<usize>,
    destination: Option<Arc<str>>,
}

impl Post {
    fn apply<RB>(self, rsp: &mut Response<RB>) {
        let rule = match (&self.table, self.rule) {
            (Some(t), Some(i)) => Some(&t.rules[i]),
            _ => None,
        };
        if let Some(r) = rule {
            for (n, v) in r.response_headers.iter() {
                rsp.headers_mut().insert(n.clone(), v.clone());
            }
        }
        if let Some(destination) = self.destination {
            rsp.extensions_mut().insert(Routed {
                rule: rule.map(|r| r.name.clone()),
                destination,
            });
        }
    }
}

pin_project! {
    /// The future of [`Router`]: the destination's response, or one of the router's own.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B, S::Future, S::Error>,
        // Boxed: only a rule with a timeout arms one, and inline it would add its size to
        // every routed request's future (and to every move of the futures around it).
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
        post: Option<Post>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, F, E> {
        Respond { status: StatusCode, limited: Option<crate::limit::error::RateLimited> },
        Failed { error: Option<E> },
        Ready { svc: S, req: Option<Request<B>> },
        Call { #[pin] fut: F },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn respond(status: StatusCode, limited: Option<crate::limit::error::RateLimited>) -> Self {
        ResponseFuture {
            state: State::Respond { status, limited },
            sleep: None,
            post: None,
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Respond { status, .. } => status.as_str(),
            State::Failed { .. } => "failed",
            State::Ready { .. } => "ready",
            State::Call { .. } => "call",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

fn short_response<RB>(status: StatusCode) -> Response<ResponseBody<RB>> {
    let text = match status.canonical_reason() {
        Some(r) => format!("{}\n", r.to_ascii_lowercase()),
        None => String::new(),
    };
    let mut rsp = Response::new(ResponseBody::full(Bytes::from(text)));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    rsp
}

impl<S, B, RB> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Output = Result<Response<ResponseBody<RB>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Respond { status, limited } => {
                    return Poll::Ready(Ok(match limited.take() {
                        Some(l) => error_response(&l),
                        None => short_response(*status),
                    }));
                }
                StateProj::Failed { error } => match error.take() {
                    Some(e) => return Poll::Ready(Err(e)),
                    None => {
                        return Poll::Ready(Ok(short_response(StatusCode::INTERNAL_SERVER_ERROR)));
                    }
                },
                StateProj::Ready { svc, req } => match svc.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        let Some(r) = req.take() else {
                            return Poll::Ready(Ok(short_response(
                                StatusCode::INTERNAL_SERVER_ERROR,
                            )));
                        };
                        let fut = svc.call(r);
                        this.state.set(State::Call { fut });
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                },
                StateProj::Call { fut } => match fut.poll(cx) {
                    Poll::Ready(Ok(rsp)) => {
                        let mut rsp = rsp.map(ResponseBody::new);
                        if let Some(post) = this.post.take() {
                            post.apply(&mut rsp);
                        }
                        return Poll::Ready(Ok(rsp));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                },
            }
        }
        if let Some(sleep) = this.sleep.as_mut() {
            ready!(sleep.as_mut().poll(cx));
            tracing::debug!("route timeout elapsed");
            return Poll::Ready(Ok(error_response(&tower::timeout::error::Elapsed::new())));
        }
        Poll::Pending
    }
}
