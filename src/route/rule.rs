use std::sync::Arc;
use std::time::Duration;

use http::Method;

use super::Access;

/// How a rule matches the path; see [`Rule::path`], [`Rule::prefix`] and `Rule::path_regex`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathMatch {
    /// A glob: literal segments, `*` for one segment, a final `*` for the rest of the path,
    /// `*` inside a segment for any text within it. Without `*` it is an exact path.
    Glob(String),
    /// A segment-wise prefix: `/api` matches `/api`, `/api/` and `/api/x`, not `/apix`.
    Prefix(String),
    /// A regular expression anchored on the whole normalized path (feature `regex`).
    Regex(String),
}

/// A header condition; see [`Rule::header`] and its siblings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderMatch {
    /// Some value of the header equals this one.
    Exact(String),
    /// Some value of the header matches this regular expression, unanchored (feature `regex`).
    Regex(String),
    /// The header is present.
    Present,
    /// The header is absent.
    Absent,
}

/// Which part of a request keeps a user on one side of a [`Split`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SplitKey {
    /// A fresh random draw per request (the default).
    #[default]
    Random,
    /// The first value of this header.
    Header(String),
    /// The value of this cookie.
    Cookie(String),
    /// The client IP ([resolved](crate::client_ip) through trusted proxies, else the peer).
    ClientIp,
}

/// A weighted split across destinations: canaries (90/10) and A/B tests.
///
/// With a key, the split is consistent (nginx's `split_clients`): the key is hashed to a
/// point in `[0, total weight)` and the destination whose cumulative weight range holds the
/// point is chosen, in the order the destinations were listed. A user keeps its side while
/// the weights hold, and moving a weight moves only the users between the old and new
/// boundary: from 10 to 20 on the first destination moves about 10 % of users, all of them
/// towards it. A request without the key is split at random.
///
/// # Examples
///
/// ```
/// use tower_lb::route::{Rule, Split};
///
/// let canary = Rule::new("api").prefix("/api").split(Split::new().to("api-v1", 90).to("api-v2", 10).by_cookie("uid"));
/// # let _ = canary;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Split {
    pub(crate) buckets: Vec<(String, u32)>,
    pub(crate) key: SplitKey,
    pub(crate) seed: u64,
}

impl Split {
    /// An empty split (add destinations with [`to`](Self::to)).
    pub fn new() -> Self {
        Split::default()
    }

    /// Adds `destination` with `weight`; ranges are laid out in this order.
    pub fn to(mut self, destination: impl Into<String>, weight: u32) -> Self {
        self.buckets.push((destination.into(), weight));
        self
    }

    /// Consistent by the first value of header `name`.
    pub fn by_header(mut self, name: impl Into<String>) -> Self {
        self.key = SplitKey::Header(name.into());
        self
    }

    /// Consistent by the value of cookie `name`.
    pub fn by_cookie(mut self, name: impl Into<String>) -> Self {
        self.key = SplitKey::Cookie(name.into());
        self
    }

    /// Consistent by the client IP.
    pub fn by_client_ip(mut self) -> Self {
        self.key = SplitKey::ClientIp;
        self
    }

    /// Random per request (the default).
    pub fn random(mut self) -> Self {
        self.key = SplitKey::Random;
        self
    }

    /// The seed of the key hash (default 0): two splits with different seeds place users
    /// independently, so one user is not always in every canary.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The destinations and weights, in order.
    pub fn destinations(&self) -> &[(String, u32)] {
        &self.buckets
    }

    /// The key.
    pub fn key(&self) -> &SplitKey {
        &self.key
    }
}

/// Where a matching request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// One destination.
    Forward(String),
    /// A weighted split.
    Split(Split),
}

/// One routing rule: conditions (all must hold), an action, and per-rule extras.
///
/// Rules are plain values, validated when given to [`Router::set_rules`](super::Router::set_rules)
/// or the builder, which name the rule and field of the first problem.
///
/// # Examples
///
/// The seeds' two rules:
///
/// ```
/// use tower_lb::route::{Rule, Split};
///
/// let rules = vec![
///     Rule::new("api-v2").path("/api/v2/*").any_method().to("api-v2"),
///     Rule::new("api-canary").header("X-Canary", "true").split(Split::new().to("api-canary", 10).to("api", 90)),
/// ];
/// # let _ = rules;
/// ```
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) name: String,
    pub(crate) priority: i32,
    pub(crate) enabled: bool,
    pub(crate) path: Option<PathMatch>,
    pub(crate) methods: Vec<Method>,
    pub(crate) headers: Vec<(String, HeaderMatch)>,
    pub(crate) query: Vec<(String, Option<String>)>,
    pub(crate) hosts: Vec<String>,
    pub(crate) action: Option<Action>,
    pub(crate) request_headers: Vec<(String, String)>,
    pub(crate) response_headers: Vec<(String, String)>,
    pub(crate) rewrite: Option<(String, String)>,
    pub(crate) timeout: Option<Duration>,
    #[cfg(feature = "governor")]
    pub(crate) rate_limit: Option<crate::limit::RateLimitLayer>,
    pub(crate) access: Option<Access>,
}

impl Rule {
    /// A rule named `name` (unique in its set) that matches every request until conditions
    /// are added.
    pub fn new(name: impl Into<String>) -> Self {
        Rule {
            name: name.into(),
            priority: 0,
            enabled: true,
            path: None,
            methods: Vec::new(),
            headers: Vec::new(),
            query: Vec::new(),
            hosts: Vec::new(),
            action: None,
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            rewrite: None,
            timeout: None,
            #[cfg(feature = "governor")]
            rate_limit: None,
            access: None,
        }
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Higher priorities are tried first (default 0); equal priorities in declaration order.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// The rule's priority.
    pub fn get_priority(&self) -> i32 {
        self.priority
    }

    /// Whether the rule takes part in matching (default `true`).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Whether the rule is enabled.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Path glob (or exact path without `*`): `/health`, `/api/v2/*`, `/users/*/orders`,
    /// `/img/*.png`. Matched against the normalized path.
    pub fn path(mut self, glob: impl Into<String>) -> Self {
        self.path = Some(PathMatch::Glob(glob.into()));
        self
    }

    /// Segment-wise path prefix: `/api` matches `/api`, `/api/` and `/api/x`, not `/apix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path = Some(PathMatch::Prefix(prefix.into()));
        self
    }

    /// Regular expression on the whole normalized path (anchored at both ends; at most 1 024
    /// bytes; compiled once with size limits). Feature `regex`; without it the rule set is
    /// refused.
    pub fn path_regex(mut self, regex: impl Into<String>) -> Self {
        self.path = Some(PathMatch::Regex(regex.into()));
        self
    }

    /// The path condition.
    pub fn get_path(&self) -> Option<&PathMatch> {
        self.path.as_ref()
    }

    /// Also match `method` (the rule matches any method until one is given).
    pub fn method(mut self, method: Method) -> Self {
        if !self.methods.contains(&method) {
            self.methods.push(method);
        }
        self
    }

    /// Match any of `methods`.
    pub fn methods(self, methods: impl IntoIterator<Item = Method>) -> Self {
        methods.into_iter().fold(self, Rule::method)
    }

    /// Match any method (the default; clears earlier [`method`](Self::method) calls).
    pub fn any_method(mut self) -> Self {
        self.methods.clear();
        self
    }

    /// Header `name` has a value equal to `value`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .push((name.into(), HeaderMatch::Exact(value.into())));
        self
    }

    /// Header `name` has a value matching `regex` (feature `regex`).
    pub fn header_regex(mut self, name: impl Into<String>, regex: impl Into<String>) -> Self {
        self.headers
            .push((name.into(), HeaderMatch::Regex(regex.into())));
        self
    }

    /// Header `name` is present.
    pub fn header_present(mut self, name: impl Into<String>) -> Self {
        self.headers.push((name.into(), HeaderMatch::Present));
        self
    }

    /// Header `name` is absent.
    pub fn header_absent(mut self, name: impl Into<String>) -> Self {
        self.headers.push((name.into(), HeaderMatch::Absent));
        self
    }

    /// Query parameter `name` equals `value` (both compared percent-decoded).
    ///
    /// ```
    /// use http::Method;
    /// use tower_lb::route::Rule;
    ///
    /// let beta = Rule::new("beta").method(Method::GET).query("beta", "1").header_absent("x-internal").to("beta");
    /// # let _ = beta;
    /// ```
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((name.into(), Some(value.into())));
        self
    }

    /// Query parameter `name` is present (with or without a value).
    pub fn query_present(mut self, name: impl Into<String>) -> Self {
        self.query.push((name.into(), None));
        self
    }

    /// The host (from `Host` or the URI, port ignored, case-insensitive) is `host`, or for
    /// `*.example.com` any subdomain of `example.com`. Several calls: any of them.
    ///
    /// ```
    /// use tower_lb::route::Rule;
    ///
    /// // HSTS on one host only.
    /// let secure = Rule::new("secure")
    ///     .host("*.example.com")
    ///     .host("example.com")
    ///     .response_header("strict-transport-security", "max-age=63072000")
    ///     .to("web");
    /// # let _ = secure;
    /// ```
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.hosts.push(host.into());
        self
    }

    /// Forward to `destination`.
    pub fn to(mut self, destination: impl Into<String>) -> Self {
        self.action = Some(Action::Forward(destination.into()));
        self
    }

    /// Split across destinations.
    pub fn split(mut self, split: Split) -> Self {
        self.action = Some(Action::Split(split));
        self
    }

    /// The action.
    pub fn action(&self) -> Option<&Action> {
        self.action.as_ref()
    }

    /// Sets request header `name` to `value` before forwarding (replacing the client's).
    pub fn request_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.request_headers.push((name.into(), value.into()));
        self
    }

    /// Sets response header `name` to `value` (e.g. `Strict-Transport-Security` on one
    /// host), replacing the backend's.
    pub fn response_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.response_headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the segment-wise path prefix `from` with `to` before forwarding:
    /// `.rewrite_prefix("/api/v2", "/")` sends `/api/v2/users` as `/users`.
    ///
    /// ```
    /// use tower_lb::route::Rule;
    ///
    /// let legacy = Rule::new("legacy").prefix("/old").rewrite_prefix("/old", "/v1").to("api");
    /// let v2 = Rule::new("v2").prefix("/api/v2").strip_prefix("/api/v2").to("api-v2");
    /// # let _ = (legacy, v2);
    /// ```
    pub fn rewrite_prefix(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.rewrite = Some((from.into(), to.into()));
        self
    }

    /// Removes the segment-wise path prefix before forwarding (`rewrite_prefix(prefix, "/")`).
    pub fn strip_prefix(self, prefix: impl Into<String>) -> Self {
        self.rewrite_prefix(prefix, "/")
    }

    /// A deadline for the whole exchange with the destination, up to the response head: on
    /// expiry the client gets `504` (longer for AI endpoints, shorter for health).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_lb::route::Rule;
    ///
    /// let ai = Rule::new("ai").prefix("/ai").timeout(Duration::from_secs(120)).to("ai");
    /// # let _ = ai;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A rate limit for this rule only (e.g. 5 r/s per client IP on `/auth`); refusals are
    /// `429` with `Retry-After`. Clones of one layer share their counters, also across
    /// rule-set changes. Feature `governor`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_lb::limit::{LimitKey, RateLimitLayer};
    /// use tower_lb::route::Rule;
    ///
    /// // The seeds: 10 r/s per client IP on the API, 5 r/s on auth.
    /// let per_ip = |n| RateLimitLayer::builder(LimitKey::client_ip()).rate(n, Duration::from_secs(1)).build();
    /// let rules = [
    ///     Rule::new("auth").prefix("/auth").rate_limit(per_ip(5)?).to("api"),
    ///     Rule::new("api").prefix("/api").rate_limit(per_ip(10)?).to("api"),
    /// ];
    /// # let _ = rules;
    /// # Ok::<(), tower_lb::BoxError>(())
    /// ```
    #[cfg(feature = "governor")]
    #[cfg_attr(docsrs, doc(cfg(feature = "governor")))]
    pub fn rate_limit(mut self, limit: crate::limit::RateLimitLayer) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// An access list for this rule, checked after it matched.
    pub fn access(mut self, access: Access) -> Self {
        self.access = Some(access);
        self
    }
}

/// The rule and destination that served a response: a response extension set by the
/// [`Router`](super::Router) when [`record_routed`](super::RouterBuilder::record_routed) is on,
/// next to [`ServedBy`](crate::balance::ServedBy). See the [`Router`](super::Router) example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub(crate) rule: Option<Arc<str>>,
    pub(crate) destination: Arc<str>,
}

impl Routed {
    /// The rule that matched; `None` when the fallback destination served it.
    pub fn rule(&self) -> Option<&str> {
        self.rule.as_deref()
    }

    /// The destination.
    pub fn destination(&self) -> &str {
        &self.destination
    }
}
