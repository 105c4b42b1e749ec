//! The configuration's data: plain serde structs, one per section of `docs/configuration.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::de;

/// A whole configuration: a registry of load balancers and the admin settings.
///
/// Two shapes are accepted: `load_balancers`, a list (the registry), and the seeds' single
/// `load_balancer` with its `rules` beside it at the top level. Both may be given; names must
/// be unique across them.
///
/// Read one with [`Config::from_toml_str`], [`Config::from_yaml_str`] or
/// [`Config::from_path`]; turn it into running load balancers with [`Config::build`].
///
/// # Examples
///
/// ```
/// use tower_lb::config::Config;
///
/// let config = Config::from_yaml_str(r#"
/// load_balancers:
///   - name: api-lb
///     algorithm: least_conn
///     targets:
///       - { id: api-1, address: "127.0.0.1:8080", weight: 100 }
///       - { id: api-2, address: "127.0.0.1:8081", weight: 100 }
///     health_check: { path: /health, interval: 10s, timeout: 2s }
/// "#)?;
/// assert_eq!(config.load_balancers[0].targets.len(), 2);
/// assert_eq!(Config::from_toml_str(&config.to_toml_string()?)?, config);
/// # Ok::<(), tower_lb::config::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The load balancers of the registry, each with a unique name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancers: Vec<LoadBalancerConfig>,
    /// One more load balancer, in the seeds' shape (`load_balancer:` at the top level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerConfig>,
    /// The rules of `load_balancer`, in the seeds' shape (`rules:` at the top level).
    #[serde(default, skip_serializing_if = "Rules::is_empty")]
    pub rules: Rules,
    /// The admin endpoint's settings (carried for the application that mounts it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminConfig>,
}

/// The admin endpoint's settings: plain data the application reads through
/// [`Runtime::admin`](super::Runtime::admin) to mount (or not) its admin service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AdminConfig {
    /// Whether the admin endpoint is served at all (default `false`).
    #[serde(default)]
    pub enabled: bool,
    /// Whether admin actions (drain, disable, enable a target) are allowed (default `false`).
    #[serde(default)]
    pub actions: bool,
    /// Where the endpoint is mounted (default `/admin`).
    #[serde(default = "default_admin_path")]
    pub path: String,
}

fn default_admin_path() -> String {
    "/admin".into()
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: false,
            actions: false,
            path: default_admin_path(),
        }
    }
}

/// One load balancer: its targets and pools, algorithm, health policies, resilience layers,
/// sticky sessions and rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LoadBalancerConfig {
    /// The name (default `default`): the registry key and the name of its own pool.
    #[serde(default = "default_name")]
    pub name: String,
    /// Listeners, carried as data for the application or proxy that serves the load balancer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerConfig>,
    /// The selection algorithm, a name (`round_robin`) or a table with options.
    #[serde(
        default,
        deserialize_with = "de::string_or_table",
        skip_serializing_if = "AlgorithmConfig::is_default"
    )]
    pub algorithm: AlgorithmConfig,
    /// The load balancer's targets. Those that a rule names in its `targets` form that rule's
    /// pool; the others are the load balancer's own pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetConfig>,
    /// Named pools of targets that rules send requests to with `pool` or `split`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolConfig>,
    /// Active health checks (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckConfig>,
    /// Passive health checks (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierConfig>,
    /// The panic threshold (when absent: spread over all targets only when none is available).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic: Option<PanicConfig>,
    /// Slow start for joining and recovering targets (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<SlowStartConfig>,
    /// A circuit breaker over the load balancer (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<BreakerConfig>,
    /// The retry policy (the library's default when absent: 3 attempts within a budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// A deadline for the whole request, retries included.
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// A deadline for each attempt.
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub attempt_timeout: Option<Duration>,
    /// A rate limit per client (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
    /// Sticky sessions: `true`, or a table (off when absent or `false`).
    #[serde(
        default,
        deserialize_with = "de::opt_bool_or_table",
        skip_serializing_if = "Option::is_none"
    )]
    pub sticky_sessions: Option<StickyConfig>,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` / `Forwarded` are believed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    /// Traffic rules: a list of rules with a `name`, or a table of rules by name.
    #[serde(default, skip_serializing_if = "Rules::is_empty")]
    pub rules: Rules,
}

fn default_name() -> String {
    "default".into()
}

impl Default for LoadBalancerConfig {
    fn default() -> Self {
        LoadBalancerConfig {
            name: default_name(),
            listeners: Vec::new(),
            algorithm: AlgorithmConfig::default(),
            targets: Vec::new(),
            pools: Vec::new(),
            health_check: None,
            outlier_detection: None,
            panic: None,
            slow_start: None,
            circuit_breaker: None,
            retry: None,
            timeout: None,
            attempt_timeout: None,
            rate_limit: None,
            sticky_sessions: None,
            trusted_proxies: Vec::new(),
            rules: Rules::default(),
        }
    }
}

/// A listener, carried as data (the library serves nothing by itself).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ListenerConfig {
    /// `http` (default) or `https`.
    #[serde(default)]
    pub protocol: Protocol,
    /// The address to bind (default all interfaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The port.
    pub port: u16,
    /// TLS: `false`, or a table with `certificate` and `private_key` (PEM files).
    #[serde(
        default,
        deserialize_with = "de::opt_tls",
        skip_serializing_if = "Option::is_none"
    )]
    pub ssl: Option<TlsConfig>,
}

/// A listener's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Protocol {
    /// Plain HTTP.
    #[default]
    Http,
    /// HTTP over TLS.
    Https,
}

/// A listener's certificate and key (PEM file paths).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The certificate chain.
    pub certificate: String,
    /// The private key.
    pub private_key: String,
}

/// One target.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TargetConfig {
    /// The stable id: live state (in flight, health, latency, sticky cookies) follows it
    /// across reloads.
    pub id: String,
    /// `host:port`.
    pub address: String,
    /// The weight, `1..=10000` (default 1).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub weight: u32,
    /// At most this many requests in flight to the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_conns: Option<u32>,
    /// Used only when no primary target is available.
    #[serde(default, skip_serializing_if = "is_false")]
    pub backup: bool,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}
fn is_one(n: &u32) -> bool {
    *n == 1
}
fn is_false(b: &bool) -> bool {
    !*b
}
fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}

/// A named pool of targets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PoolConfig {
    /// The pool's name, unique in its load balancer.
    pub name: String,
    /// Its targets.
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
}

/// A built-in algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlgorithmKind {
    /// Round robin (weights ignored).
    #[default]
    RoundRobin,
    /// Smooth weighted round robin (nginx's).
    WeightedRoundRobin,
    /// Weighted random.
    Random,
    /// Least connections, weighted.
    #[serde(alias = "least_connections")]
    LeastConn,
    /// Power of two choices on requests in flight.
    P2c,
    /// Power of two choices on peak EWMA latency.
    #[serde(alias = "peak_ewma")]
    LeastTime,
    /// Consistent hash ring on a request key.
    #[serde(alias = "consistent_hash")]
    Ring,
    /// Maglev hashing on a request key.
    Maglev,
}

impl AlgorithmKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            AlgorithmKind::RoundRobin => "round_robin",
            AlgorithmKind::WeightedRoundRobin => "weighted_round_robin",
            AlgorithmKind::Random => "random",
            AlgorithmKind::LeastConn => "least_conn",
            AlgorithmKind::P2c => "p2c",
            AlgorithmKind::LeastTime => "least_time",
            AlgorithmKind::Ring => "ring",
            AlgorithmKind::Maglev => "maglev",
        }
    }
}

/// The algorithm and its options. A bare name (`algorithm: least_conn`) is the algorithm
/// with its defaults.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AlgorithmConfig {
    /// Which algorithm.
    pub kind: AlgorithmKind,
    /// The seed of its randomness or hash placement (placement is the same in every process
    /// with the same seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    /// `p2c`: the load bias (`weight / (in_flight + 1)^bias`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<f64>,
    /// `ring`: virtual nodes per unit of weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vnodes: Option<u32>,
    /// `ring`: bounded load factor (e.g. `1.25`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounded_load: Option<f64>,
    /// `maglev`: the lookup table size (a prime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_size: Option<u32>,
    /// `least_time`: how fast old latency is forgotten.
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub decay: Option<Duration>,
    /// `least_time`: the latency assumed for a target not measured yet.
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_rtt: Option<Duration>,
    /// `least_time`: the latency a failure counts as.
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub failure_penalty: Option<Duration>,
    /// `ring` and `maglev`: what requests are placed by: `client_ip`, `path`,
    /// `header:NAME`, `cookie:NAME` or `query:NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl AlgorithmConfig {
    fn is_default(&self) -> bool {
        *self == AlgorithmConfig::default()
    }

    /// The algorithm with its defaults.
    pub fn new(kind: AlgorithmKind) -> Self {
        AlgorithmConfig {
            kind,
            ..AlgorithmConfig::default()
        }
    }
}

impl FromStr for AlgorithmConfig {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        use serde::de::IntoDeserializer;
        let kind: Result<AlgorithmKind, serde::de::value::Error> =
            AlgorithmKind::deserialize(s.into_deserializer());
        kind.map(AlgorithmConfig::new).map_err(|e| e.to_string())
    }
}

/// Active health checks: HTTP `GET path` when `path` is set, a TCP connect otherwise.
/// Defaults after HAProxy: every 2 s, timeout 1 s, rise 2, fall 3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HealthCheckConfig {
    /// `false` turns the checks off (default `true`).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// The HTTP path to request; a `2xx` or `3xx` passes unless `expected_status` says
    /// otherwise. Without it the check is a TCP connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HTTP: the method (default `GET`; nginx's `check_http_send "HEAD …"` is `HEAD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// HTTP: the `Host` header (default: the target's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// HTTP: request headers (e.g. `User-Agent`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// HTTP: statuses that pass: `200`, `2xx`, `200-204` (default `2xx` and `3xx`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_status: Vec<String>,
    /// HTTP: text the first KiB of the body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_body: Option<String>,
    /// Spread of the interval, a fraction in `0..=1` (default 0.1), so checks of many
    /// targets do not fire at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<f64>,
    /// Time between two checks of one target.
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<Duration>,
    /// How long one check may take.
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Passing checks in a row that make a target healthy (`rise`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    /// Failing checks in a row that make a target unhealthy (`fall`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            enabled: true,
            path: None,
            method: None,
            host: None,
            headers: BTreeMap::new(),
            expected_status: Vec::new(),
            expected_body: None,
            jitter: None,
            interval: None,
            timeout: None,
            healthy_threshold: None,
            unhealthy_threshold: None,
        }
    }
}

/// Passive health checks (outlier detection); every field falls back to the library default.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OutlierConfig {
    /// Consecutive failures that eject a target (nginx `max_fails`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// Eject on a failure rate too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<FailureRateConfig>,
    /// The first ejection's length, multiplied by the number of ejections (nginx
    /// `fail_timeout`).
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub base_ejection_time: Option<Duration>,
    /// The longest ejection.
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_ejection_time: Option<Duration>,
    /// The largest share of the group ejected at once, `0..=1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_share: Option<f64>,
}

/// Ejection on a failure rate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FailureRateConfig {
    /// The failing share that ejects, `0..=1`.
    pub share: f64,
    /// The window the share is measured over.
    #[serde(with = "de::duration")]
    pub window: Duration,
    /// Requests in the window before the share counts.
    pub min_requests: u32,
}

/// The panic threshold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PanicConfig {
    /// Panic when fewer than this share of targets is available (Envoy: `0.5`); absent:
    /// only when none is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// In panic, fail requests fast instead of spreading them over every target.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fail_fast: bool,
    /// Never panic: only available targets take traffic.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
}

/// Slow start.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SlowStartConfig {
    /// How long a joining or recovering target's weight ramps up.
    #[serde(with = "de::duration")]
    pub window: Duration,
    /// The ramp's curve (1 is linear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggression: Option<f64>,
    /// The smallest share of its weight a ramping target gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_weight_share: Option<f64>,
}

/// A circuit breaker, in the seeds' words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// `false` turns it off (default `true`).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// The failure rate that opens it, `0..=1` (default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Requests in the window before the rate counts (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u32>,
    /// The window (default 60 s).
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<Duration>,
    /// How long it stays open before half-open probes (default 30 s).
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub half_open_timeout: Option<Duration>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            threshold: None,
            min_requests: None,
            interval: None,
            half_open_timeout: None,
        }
    }
}

/// The retry policy; every field falls back to the library default.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Attempts in all, the first included (1 turns retries off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Response statuses retried (idempotent methods only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statuses: Option<Vec<u16>>,
    /// The methods that count as idempotent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent_methods: Option<Vec<String>>,
    /// Whether connection errors and attempt timeouts are retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_errors: Option<bool>,
    /// The largest request body kept for a replay, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_limit: Option<u32>,
    /// Exponential backoff between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffConfig>,
    /// `false` waits the backoff exactly, without jitter (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<bool>,
    /// The longest `Retry-After` honoured.
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_after_cap: Option<Duration>,
    /// The retry budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetConfig>,
}

/// Exponential backoff.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BackoffConfig {
    /// The first delay.
    #[serde(with = "de::duration")]
    pub base: Duration,
    /// The longest delay.
    #[serde(with = "de::duration")]
    pub cap: Duration,
}

/// A retry budget (Finagle's): retries may add `share` of the requests plus `min_per_sec`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BudgetConfig {
    /// How long a request counts towards the budget.
    #[serde(with = "de::duration")]
    pub ttl: Duration,
    /// Retries always allowed per second.
    pub min_per_sec: u32,
    /// Retries allowed as a share of requests, `0..=1000`.
    pub share: f64,
}

/// A rate limit per client, in the seeds' words: `limit` requests per `interval`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// `false` turns it off (default `true`).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// Requests allowed per interval (default 10).
    #[serde(default = "ten")]
    pub limit: u32,
    /// The interval (default 1 s).
    #[serde(default = "second", with = "de::duration")]
    pub interval: Duration,
    /// What requests are counted by: `client_ip` (default), `global` or `header:NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

fn ten() -> u32 {
    10
}
fn second() -> Duration {
    Duration::from_secs(1)
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            limit: ten(),
            interval: second(),
            key: None,
        }
    }
}

/// Sticky sessions in a cookie. `sticky_sessions: true` is this with its defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StickyConfig {
    /// `false` turns them off (default `true`).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The cookie's name (default `lb_session`).
    #[serde(default = "default_cookie")]
    pub cookie: String,
    /// The cookie's lifetime (default 1 h).
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl: Option<Duration>,
    /// The signing key, at least 32 bytes, shared by every instance. When absent, a random
    /// key is made once per load balancer and process (cookies then hold across reloads but
    /// not across restarts or instances).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Previous keys that still verify (key rotation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub old_keys: Vec<String>,
    /// The cookie's `Secure` attribute.
    #[serde(default, skip_serializing_if = "is_false")]
    pub secure: bool,
    /// The cookie's `SameSite`: `strict`, `lax` (default) or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<SameSiteConfig>,
    /// The cookie's `Path` (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The cookie's `Domain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

fn default_cookie() -> String {
    "lb_session".into()
}

impl Default for StickyConfig {
    fn default() -> Self {
        StickyConfig {
            enabled: true,
            cookie: default_cookie(),
            ttl: None,
            key: None,
            old_keys: Vec::new(),
            secure: false,
            same_site: None,
            path: None,
            domain: None,
        }
    }
}

impl From<bool> for StickyConfig {
    fn from(enabled: bool) -> Self {
        StickyConfig {
            enabled,
            ..StickyConfig::default()
        }
    }
}

/// A cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SameSiteConfig {
    /// `Strict`.
    Strict,
    /// `Lax`.
    Lax,
    /// `None`.
    None,
}

/// A load balancer's rules, in order: a list of rules with a `name`, or (the seeds' shape) a
/// table of rules keyed by name. Serialized back in the shape it was read in.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Rules {
    /// The rules, in declaration order.
    pub rules: Vec<RuleConfig>,
    /// Whether they were (and will be written) a table keyed by name.
    pub by_name: bool,
}

impl PartialEq for Rules {
    /// The same rules in the same order (the shape does not matter when there are none).
    fn eq(&self, other: &Rules) -> bool {
        self.rules == other.rules && (self.by_name == other.by_name || self.rules.is_empty())
    }
}

impl Rules {
    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// A list of rules.
    pub fn list(rules: Vec<RuleConfig>) -> Self {
        Rules {
            rules,
            by_name: false,
        }
    }

    /// The path segment of rule `i` below `base`.
    pub(crate) fn path_of(&self, base: &str, i: usize) -> String {
        if self.by_name {
            format!("{base}.{}", self.rules[i].name)
        } else {
            format!("{base}[{i}]")
        }
    }
}

/// One traffic rule. All its conditions must hold; the first matching rule (by `priority`,
/// then order) takes the request to its pool, its `targets`, or a weighted split.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RuleConfig {
    /// The rule's name (the key, in a table of rules).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Higher first (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// `false` keeps the rule but skips it (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// A path glob: `/api/v2/*`, or an exact path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A segment-wise path prefix: `/api` takes `/api` and `/api/x`, not `/apix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// A path regex (feature `regex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// A method, `any`, or a list of methods.
    #[serde(
        default,
        deserialize_with = "de::opt_one_or_many",
        skip_serializing_if = "Option::is_none"
    )]
    pub method: Option<Vec<String>>,
    /// One header condition (the seeds' `header: {name, value}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderCondition>,
    /// More header conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderCondition>,
    /// Query parameters that must have these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// The host: exact or `*.example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Send to this pool (or the load balancer's own, by its name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Send to these targets (ids of the load balancer's `targets`), which become this rule's
    /// pool; with `weight`, only that percentage goes there and the rest to the load
    /// balancer's own pool (a canary).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// With `targets`: the percentage (`0..=100`) of matching requests sent to them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// A weighted split across pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<SplitConfig>,
    /// What a split is consistent by: `random` (default), `client_ip`, `header:NAME` or
    /// `cookie:NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_by: Option<String>,
    /// Sticky sessions for the load balancer (the seeds write them on a rule; they cover
    /// every pool, so every rule that sets them must agree).
    #[serde(
        default,
        deserialize_with = "de::opt_bool_or_table",
        skip_serializing_if = "Option::is_none"
    )]
    pub sticky_session: Option<StickyConfig>,
    /// A deadline for requests this rule takes.
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Remove this path prefix before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_prefix: Option<String>,
    /// An access list in nginx's words: `allow 10.0.0.0/8; deny all;`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
}

/// A header condition: `value` (exact), `regex`, or neither (present; `present: false`:
/// absent).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HeaderCondition {
    /// The header's name.
    pub name: String,
    /// The exact value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A regex the value must match (feature `regex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// With neither `value` nor `regex`: `true` (default) the header must be present,
    /// `false` absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

/// One side of a weighted split.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SplitConfig {
    /// The pool.
    pub pool: String,
    /// Its weight.
    pub weight: u32,
}

impl fmt::Display for AlgorithmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
