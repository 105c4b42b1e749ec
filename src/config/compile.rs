//! Validation: a [`Config`] becomes one [`Plan`] per load balancer, made of the library's own
//! typed values (targets, rules, policies), each checked by the type that will use it, with
//! the path of the value at fault.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use http::Method;

use super::error::ConfigError;
use super::model::*;
use crate::algorithm::{
    Algorithm, HashRing, LeastConnections, Maglev, P2cInFlight, P2cPeakEwma, RoundRobin, Selector,
    SmoothWeightedRoundRobin, Targets, WeightedRandom,
};
use crate::client_ip::TrustedProxies;
use crate::health::{OutlierDetection, PanicThreshold, SlowStart};
use crate::key::Key;
use crate::lb::{CircuitBreaker, RateLimit};
use crate::limit::LimitKey;
use crate::retry::{Jitter, RetryPolicy};
use crate::route::{Access, Router, Rule, Split};
use crate::target::Target;

/// An algorithm chosen at run time.
#[derive(Debug, Clone)]
pub(crate) struct AnyAlgorithm(pub(crate) Arc<dyn Algorithm>);

impl Algorithm for AnyAlgorithm {
    fn build(&self, targets: &Targets<'_>) -> Box<dyn Selector> {
        self.0.build(targets)
    }
}

/// One load balancer, validated and turned into the library's values.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Where it sits in the document (`load_balancers[1]`, `load_balancer`).
    pub(crate) path: String,
    pub(crate) name: String,
    /// Its pools, its own first, each with its targets.
    pub(crate) pools: Vec<(String, Vec<Target>)>,
    pub(crate) algorithm: AnyAlgorithm,
    pub(crate) health_check: Option<HealthCheckConfig>,
    pub(crate) outlier: Option<OutlierDetection>,
    pub(crate) panic: Option<PanicThreshold>,
    pub(crate) slow_start: Option<SlowStart>,
    pub(crate) breaker: Option<CircuitBreaker>,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) key: Option<Key>,
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) trusted: Option<TrustedProxies>,
    /// The sticky settings in force (from the load balancer or its rules).
    pub(crate) sticky: Option<StickyConfig>,
    pub(crate) rules: Vec<Rule>,
    /// Each rule's path, by rule name, for errors found later.
    pub(crate) rule_paths: BTreeMap<String, String>,
    /// The configuration it came from (the seeds' top-level rules merged in).
    pub(crate) config: LoadBalancerConfig,
}

/// What forces a rebuild of the layers when it changes (everything but targets, rules,
/// algorithm and health checks, which are changed in place).
#[derive(Debug, PartialEq)]
pub(crate) struct StackShape<'a> {
    pools: Vec<&'a str>,
    key: Option<&'a String>,
    breaker: Option<&'a BreakerConfig>,
    retry: Option<&'a RetryConfig>,
    timeout: Option<std::time::Duration>,
    attempt_timeout: Option<std::time::Duration>,
    rate_limit: Option<&'a RateLimitConfig>,
    sticky: Option<&'a StickyConfig>,
    trusted: &'a [String],
}

/// What the groups are built with and cannot change in place.
#[derive(Debug, PartialEq)]
pub(crate) struct GroupShape<'a> {
    outlier: Option<&'a OutlierConfig>,
    panic: Option<&'a PanicConfig>,
    slow_start: Option<&'a SlowStartConfig>,
}

impl Plan {
    pub(crate) fn stack_shape(&self) -> StackShape<'_> {
        let c = &self.config;
        StackShape {
            pools: self.pools.iter().map(|(n, _)| n.as_str()).collect(),
            key: c.algorithm.key.as_ref(),
            breaker: c.circuit_breaker.as_ref().filter(|b| b.enabled),
            retry: c.retry.as_ref(),
            timeout: c.timeout,
            attempt_timeout: c.attempt_timeout,
            rate_limit: c.rate_limit.as_ref().filter(|r| r.enabled),
            sticky: self.sticky.as_ref(),
            trusted: &c.trusted_proxies,
        }
    }

    pub(crate) fn group_shape(&self) -> GroupShape<'_> {
        let c = &self.config;
        GroupShape {
            outlier: c.outlier_detection.as_ref(),
            panic: c.panic.as_ref(),
            slow_start: c.slow_start.as_ref(),
        }
    }

    /// The algorithm's settings, without the key (which is a layer's).
    pub(crate) fn algorithm_shape(&self) -> AlgorithmConfig {
        AlgorithmConfig {
            key: None,
            ..self.config.algorithm.clone()
        }
    }

    /// The path of the rule named `name`, or of the rules.
    pub(crate) fn rule_path(&self, name: Option<&str>) -> String {
        name.and_then(|n| self.rule_paths.get(n).cloned())
            .unwrap_or_else(|| format!("{}.rules", self.path))
    }
}

/// Checks the whole configuration; one plan per load balancer, in order.
pub(crate) fn compile(config: &Config) -> Result<Vec<Plan>, ConfigError> {
    let mut plans = Vec::new();
    let mut names = BTreeMap::new();
    let mut add = |plan: Plan, names: &mut BTreeMap<String, String>| {
        if let Some(first) = names.get(&plan.name) {
            return Err(ConfigError::invalid(
                format!("{}.name", plan.path),
                format!(
                    "load balancer `{}` is already defined at {first}",
                    plan.name
                ),
            ));
        }
        names.insert(plan.name.clone(), plan.path.clone());
        plans.push(plan);
        Ok(())
    };
    for (i, lb) in config.load_balancers.iter().enumerate() {
        let path = format!("load_balancers[{i}]");
        add(
            compile_lb(lb.clone(), &path, &format!("{path}.rules"))?,
            &mut names,
        )?;
    }
    match &config.load_balancer {
        Some(lb) => {
            let mut lb = lb.clone();
            let rules_base = if config.rules.is_empty() {
                "load_balancer.rules".to_owned()
            } else if lb.rules.is_empty() {
                lb.rules = config.rules.clone();
                "rules".to_owned()
            } else {
                return Err(ConfigError::invalid(
                    "rules",
                    "`load_balancer` has rules of its own; give them in one place",
                ));
            };
            add(compile_lb(lb, "load_balancer", &rules_base)?, &mut names)?;
        }
        None if !config.rules.is_empty() => {
            return Err(ConfigError::invalid(
                "rules",
                "top-level `rules` belong to `load_balancer`, which is missing",
            ));
        }
        None => {}
    }
    if let Some(admin) = &config.admin {
        if !admin.path.starts_with('/') {
            return Err(ConfigError::invalid(
                "admin.path",
                format!("`{}` must start with `/`", admin.path),
            ));
        }
    }
    Ok(plans)
}

fn compile_lb(c: LoadBalancerConfig, path: &str, rules_base: &str) -> Result<Plan, ConfigError> {
    let rules_base = rules_base.to_owned();
    let p = |field: &str| format!("{path}.{field}");
    if c.name.is_empty() || c.name.len() > 128 || c.name.chars().any(|ch| ch.is_control()) {
        return Err(ConfigError::invalid(
            p("name"),
            "a name of 1 to 128 printable characters is needed",
        ));
    }

    // Targets, everywhere unique by id.
    let mut seen: BTreeMap<&str, String> = BTreeMap::new();
    let mut own = Vec::new();
    for (i, t) in c.targets.iter().enumerate() {
        let tp = format!("{path}.targets[{i}]");
        unique(&mut seen, &t.id, &tp)?;
        own.push(target(t, &tp)?);
    }
    let mut pools: Vec<(String, Vec<Target>)> = Vec::new();
    for (i, pool) in c.pools.iter().enumerate() {
        let pp = format!("{path}.pools[{i}]");
        if pool.name.is_empty() || pool.name == c.name || pools.iter().any(|(n, _)| *n == pool.name)
        {
            return Err(ConfigError::invalid(
                format!("{pp}.name"),
                format!(
                    "pool name `{}` is empty or used twice (the load balancer's own pool is named after it)",
                    pool.name
                ),
            ));
        }
        let mut ts = Vec::new();
        for (j, t) in pool.targets.iter().enumerate() {
            let tp = format!("{pp}.targets[{j}]");
            unique(&mut seen, &t.id, &tp)?;
            ts.push(target(t, &tp)?);
        }
        pools.push((pool.name.clone(), ts));
    }

    // Rules that name targets take them out of the own pool into a pool of their own.
    let mut claimed: BTreeMap<String, String> = BTreeMap::new(); // target id -> pool
    let mut rule_pool: Vec<Option<String>> = Vec::new();
    let mut by_set: BTreeMap<BTreeSet<String>, String> = BTreeMap::new();
    for (j, r) in c.rules.rules.iter().enumerate() {
        if r.targets.is_empty() {
            rule_pool.push(None);
            continue;
        }
        let rp = c.rules.path_of(&rules_base, j);
        let mut set = BTreeSet::new();
        for (k, id) in r.targets.iter().enumerate() {
            if !c.targets.iter().any(|t| t.id == *id) {
                return Err(ConfigError::invalid(
                    format!("{rp}.targets[{k}]"),
                    format!("unknown target `{id}` (not in `{path}.targets`)"),
                ));
            }
            set.insert(id.clone());
        }
        let name = match by_set.get(&set) {
            Some(name) => name.clone(),
            None => {
                let name = if r.name.is_empty() {
                    format!("rule-{j}")
                } else {
                    r.name.clone()
                };
                if name == c.name || pools.iter().any(|(n, _)| *n == name) {
                    return Err(ConfigError::invalid(
                        format!("{rp}.targets"),
                        format!(
                            "the pool of this rule's targets would be named `{name}`, which is taken"
                        ),
                    ));
                }
                for id in &set {
                    if let Some(other) = claimed.get(id) {
                        return Err(ConfigError::invalid(
                            format!("{rp}.targets"),
                            format!(
                                "target `{id}` is already in the pool of rule `{other}` with other targets; rules that share a target must name the same targets"
                            ),
                        ));
                    }
                    claimed.insert(id.clone(), name.clone());
                }
                let ts = own
                    .iter()
                    .filter(|t: &&Target| set.contains(t.id().as_str()))
                    .cloned()
                    .collect();
                pools.push((name.clone(), ts));
                by_set.insert(set, name.clone());
                name
            }
        };
        rule_pool.push(Some(name));
    }
    own.retain(|t| !claimed.contains_key(t.id().as_str()));
    pools.insert(0, (c.name.clone(), own));

    let algorithm = algorithm(&c.algorithm, &p("algorithm"))?;
    let key = match &c.algorithm.key {
        None => None,
        Some(k) => Some(request_key(k).map_err(|e| ConfigError::invalid(p("algorithm.key"), e))?),
    };

    let health_check = match &c.health_check {
        Some(h) if h.enabled => {
            super::build::active_check(h).map_err(|(field, e)| {
                let at = if field.is_empty() {
                    p("health_check")
                } else {
                    format!("{path}.health_check.{field}")
                };
                ConfigError::invalid(at, e)
            })?;
            Some(h.clone())
        }
        _ => None,
    };

    let outlier = match &c.outlier_detection {
        None => None,
        Some(o) => {
            let mut b = OutlierDetection::builder();
            if let Some(n) = o.consecutive_failures {
                b = b.consecutive_failures(n);
            }
            if let Some(r) = &o.failure_rate {
                b = b.failure_rate(r.share, r.window, r.min_requests);
            }
            if let Some(d) = o.base_ejection_time {
                b = b.base_ejection_time(d);
            }
            if let Some(d) = o.max_ejection_time {
                b = b.max_ejection_time(d);
            }
            if let Some(s) = o.max_ejection_share {
                b = b.max_ejection_share(s);
            }
            Some(
                b.build()
                    .map_err(|e| ConfigError::invalid(p("outlier_detection"), e))?,
            )
        }
    };

    let panic = match &c.panic {
        None => None,
        Some(pc) => {
            let mut t = if pc.disabled {
                PanicThreshold::disabled()
            } else {
                match pc.threshold {
                    Some(s) => PanicThreshold::new(s)
                        .map_err(|e| ConfigError::invalid(p("panic.threshold"), e))?,
                    None => PanicThreshold::none_available(),
                }
            };
            if pc.fail_fast {
                t = t.fail_fast();
            }
            Some(t)
        }
    };

    let slow_start = match &c.slow_start {
        None => None,
        Some(s) => {
            let mut b = SlowStart::builder(s.window);
            if let Some(a) = s.aggression {
                b = b.aggression(a);
            }
            if let Some(m) = s.min_weight_share {
                b = b.min_weight_share(m);
            }
            Some(
                b.build()
                    .map_err(|e| ConfigError::invalid(p("slow_start"), e))?,
            )
        }
    };

    let breaker = match &c.circuit_breaker {
        Some(b) if b.enabled => {
            let mut cb = CircuitBreaker::new();
            if let Some(t) = b.threshold {
                cb = cb.threshold(t);
            }
            if let Some(n) = b.min_requests {
                cb = cb.min_requests(n);
            }
            if let Some(d) = b.interval {
                cb = cb.interval(d);
            }
            if let Some(d) = b.half_open_timeout {
                cb = cb.half_open_timeout(d);
            }
            cb.build(&c.name)
                .map_err(|e| ConfigError::invalid(p("circuit_breaker"), e))?;
            Some(cb)
        }
        _ => None,
    };

    let retry = match &c.retry {
        None => None,
        Some(r) => Some(retry(r, &p("retry"))?),
    };

    for (field, d) in [
        ("timeout", c.timeout),
        ("attempt_timeout", c.attempt_timeout),
    ] {
        if d.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::invalid(p(field), "must be longer than zero"));
        }
    }

    let rate_limit = match &c.rate_limit {
        Some(r) if r.enabled => {
            let key = match r.key.as_deref() {
                None | Some("client_ip") => LimitKey::client_ip(),
                Some("global") => LimitKey::global(),
                Some(k) => match k.strip_prefix("header:") {
                    Some(h) => LimitKey::header(
                        http::HeaderName::from_bytes(h.trim().as_bytes()).map_err(|_| {
                            ConfigError::invalid(
                                p("rate_limit.key"),
                                format!("`{h}` is not a header name"),
                            )
                        })?,
                    ),
                    None => {
                        return Err(ConfigError::invalid(
                            p("rate_limit.key"),
                            format!(
                                "unknown key `{k}`: use `client_ip`, `global` or `header:NAME`"
                            ),
                        ));
                    }
                },
            };
            let limit = RateLimit::new()
                .with_limit(r.limit)
                .with_interval(r.interval)
                .with_key(key);
            limit
                .build()
                .map_err(|e| ConfigError::invalid(p("rate_limit"), e))?;
            Some(limit)
        }
        _ => None,
    };

    let trusted = if c.trusted_proxies.is_empty() {
        None
    } else {
        for (i, e) in c.trusted_proxies.iter().enumerate() {
            TrustedProxies::new([e])
                .map_err(|err| ConfigError::invalid(format!("{path}.trusted_proxies[{i}]"), err))?;
        }
        Some(
            TrustedProxies::new(&c.trusted_proxies)
                .map_err(|e| ConfigError::invalid(p("trusted_proxies"), e))?,
        )
    };

    // Sticky sessions: the load balancer's, or the one its rules agree on.
    let mut sticky: Option<(StickyConfig, String)> = None;
    for (j, r) in c.rules.rules.iter().enumerate() {
        if let Some(s) = r.sticky_session.as_ref().filter(|s| s.enabled) {
            let sp = format!("{}.sticky_session", c.rules.path_of(&rules_base, j));
            match &sticky {
                Some((first, at)) if first != s => {
                    return Err(ConfigError::invalid(
                        sp,
                        format!(
                            "sticky sessions cover the whole load balancer; this differs from the one at {at}"
                        ),
                    ));
                }
                Some(_) => {}
                None => sticky = Some((s.clone(), sp)),
            }
        }
    }
    let sticky = match (&c.sticky_sessions, sticky) {
        (Some(lb), Some((rule, at)))
            if lb.enabled && *lb != StickyConfig::default() && *lb != rule =>
        {
            return Err(ConfigError::invalid(
                p("sticky_sessions"),
                format!("differs from the sticky session at {at}; give it in one place"),
            ));
        }
        (_, Some((rule, _))) => Some(rule),
        (Some(lb), None) if lb.enabled => Some(lb.clone()),
        _ => None,
    };
    if let Some(s) = &sticky {
        check_sticky(s, &p("sticky_sessions"))?;
    }

    // Rules.
    let pool_names: Vec<&str> = pools.iter().map(|(n, _)| n.as_str()).collect();
    let mut rules = Vec::new();
    let mut rule_paths = BTreeMap::new();
    for (j, r) in c.rules.rules.iter().enumerate() {
        let rp = c.rules.path_of(&rules_base, j);
        if r.name.is_empty() {
            return Err(ConfigError::invalid(
                format!("{rp}.name"),
                "a rule needs a name",
            ));
        }
        if rule_paths.insert(r.name.clone(), rp.clone()).is_some() {
            return Err(ConfigError::invalid(
                format!("{rp}.name"),
                format!("rule name `{}` is used twice", r.name),
            ));
        }
        rules.push(rule(r, &rp, &c.name, &pool_names, rule_pool[j].as_deref())?);
    }
    // The router's own checks (globs, regexes, header names, rewrites), against stand-in
    // destinations.
    let mut router = Router::<()>::builder();
    for name in &pool_names {
        router = router.destination(name.to_string(), ());
    }
    if let Err(e) = router.fallback(&c.name).rules(rules.clone()).build() {
        let base = e
            .rule()
            .and_then(|n| rule_paths.get(n).cloned())
            .unwrap_or_else(|| rules_base.clone());
        let field = match e.field() {
            "destination" => "pool",
            "rewrite" => "strip_prefix",
            "path" => c
                .rules
                .rules
                .iter()
                .find(|r| Some(r.name.as_str()) == e.rule())
                .map_or("path", |r| {
                    if r.prefix.is_some() {
                        "prefix"
                    } else if r.path_regex.is_some() {
                        "path_regex"
                    } else {
                        "path"
                    }
                }),
            f => f,
        };
        return Err(ConfigError::invalid(format!("{base}.{field}"), e.reason()));
    }

    Ok(Plan {
        path: path.to_owned(),
        name: c.name.clone(),
        pools,
        algorithm,
        health_check,
        outlier,
        panic,
        slow_start,
        breaker,
        retry,
        key,
        rate_limit,
        trusted,
        sticky,
        rules,
        rule_paths,
        config: c,
    })
}

fn unique<'a>(
    seen: &mut BTreeMap<&'a str, String>,
    id: &'a str,
    path: &str,
) -> Result<(), ConfigError> {
    if let Some(first) = seen.get(id) {
        return Err(ConfigError::invalid(
            format!("{path}.id"),
            format!("target id `{id}` is already used at {first}"),
        ));
    }
    seen.insert(id, path.to_owned());
    Ok(())
}

fn target(t: &TargetConfig, path: &str) -> Result<Target, ConfigError> {
    let mut b = Target::builder(t.id.as_str(), &t.address)
        .weight(t.weight)
        .backup(t.backup);
    if let Some(m) = t.max_conns {
        b = b.max_conns(m);
    }
    for (k, v) in &t.labels {
        b = b.label(k.clone(), v.clone());
    }
    b.build().map_err(|e| {
        let field = if t.id.is_empty() {
            "id"
        } else if t.weight == 0 || t.weight > crate::target::MAX_WEIGHT {
            "weight"
        } else if t.max_conns == Some(0) {
            "max_conns"
        } else {
            "address"
        };
        ConfigError::invalid(format!("{path}.{field}"), e)
    })
}

fn algorithm(a: &AlgorithmConfig, path: &str) -> Result<AnyAlgorithm, ConfigError> {
    use AlgorithmKind as K;
    let kind = a.kind;
    let only = |field: &str, set: bool, kinds: &[K]| -> Result<(), ConfigError> {
        if set && !kinds.contains(&kind) {
            let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
            return Err(ConfigError::invalid(
                format!("{path}.{field}"),
                format!("applies to {} only, not `{kind}`", names.join(" and ")),
            ));
        }
        Ok(())
    };
    only("bias", a.bias.is_some(), &[K::P2c])?;
    only("vnodes", a.vnodes.is_some(), &[K::Ring])?;
    only("bounded_load", a.bounded_load.is_some(), &[K::Ring])?;
    only("table_size", a.table_size.is_some(), &[K::Maglev])?;
    for (f, v) in [
        ("decay", a.decay),
        ("default_rtt", a.default_rtt),
        ("failure_penalty", a.failure_penalty),
    ] {
        only(f, v.is_some(), &[K::LeastTime])?;
    }
    only("key", a.key.is_some(), &[K::Ring, K::Maglev])?;
    only(
        "seed",
        a.seed.is_some(),
        &[
            K::Random,
            K::LeastConn,
            K::P2c,
            K::LeastTime,
            K::Ring,
            K::Maglev,
        ],
    )?;
    let seed = a.seed.map(u64::from);
    let bad = |field: &str, e: &dyn std::fmt::Display| {
        ConfigError::invalid(format!("{path}.{field}"), e.to_string())
    };
    let algo: Arc<dyn Algorithm> = match kind {
        K::RoundRobin => Arc::new(RoundRobin::new()),
        K::WeightedRoundRobin => Arc::new(SmoothWeightedRoundRobin::new()),
        K::Random => {
            let mut x = WeightedRandom::new();
            if let Some(s) = seed {
                x = x.seed(s);
            }
            Arc::new(x)
        }
        K::LeastConn => {
            let mut x = LeastConnections::new();
            if let Some(s) = seed {
                x = x.seed(s);
            }
            Arc::new(x)
        }
        K::P2c => {
            let mut x = P2cInFlight::new();
            if let Some(b) = a.bias {
                x = x.bias(b).map_err(|e| bad("bias", &e))?;
            }
            if let Some(s) = seed {
                x = x.seed(s);
            }
            Arc::new(x)
        }
        K::LeastTime => {
            let mut x = P2cPeakEwma::new();
            if let Some(d) = a.decay {
                if d.is_zero() {
                    return Err(bad("decay", &"must be longer than zero"));
                }
                x = x.decay(d);
            }
            if let Some(d) = a.default_rtt {
                x = x.default_rtt(d);
            }
            if let Some(d) = a.failure_penalty {
                x = x.failure_penalty(d);
            }
            if let Some(s) = seed {
                x = x.seed(s);
            }
            Arc::new(x)
        }
        K::Ring => {
            let mut x = HashRing::new();
            if let Some(v) = a.vnodes {
                if v == 0 {
                    return Err(bad("vnodes", &"must be at least 1"));
                }
                x = x.vnodes(v);
            }
            if let Some(f) = a.bounded_load {
                x = x.bounded_load(f).map_err(|e| bad("bounded_load", &e))?;
            }
            if let Some(s) = seed {
                x = x.seed(s);
            }
            Arc::new(x)
        }
        K::Maglev => {
            let mut x = Maglev::new();
            if let Some(n) = a.table_size {
                x = x
                    .table_size(u64::from(n))
                    .map_err(|e| bad("table_size", &e))?;
            }
            if let Some(s) = seed {
                x = x.seed(s);
            }
            Arc::new(x)
        }
    };
    Ok(AnyAlgorithm(algo))
}

fn request_key(k: &str) -> Result<Key, String> {
    let bad_header = |h: &str| format!("`{h}` is not a header name");
    match k {
        "client_ip" => Ok(Key::client_ip()),
        "path" => Ok(Key::path()),
        _ => match k.split_once(':') {
            Some(("header", h)) => Key::header(h.trim()).map_err(|_| bad_header(h)),
            Some(("cookie", c)) if !c.trim().is_empty() => Ok(Key::cookie(c.trim())),
            Some(("query", q)) if !q.trim().is_empty() => Ok(Key::query(q.trim())),
            _ => Err(format!(
                "unknown key `{k}`: use `client_ip`, `path`, `header:NAME`, `cookie:NAME` or `query:NAME`"
            )),
        },
    }
}

fn retry(r: &RetryConfig, path: &str) -> Result<RetryPolicy, ConfigError> {
    let mut b = RetryPolicy::builder();
    if let Some(n) = r.max_attempts {
        if n == 0 {
            return Err(ConfigError::invalid(
                format!("{path}.max_attempts"),
                "at least 1 (the first attempt)",
            ));
        }
        b = b.max_attempts(n);
    }
    if let Some(s) = &r.statuses {
        for (i, code) in s.iter().enumerate() {
            if !(100..=599).contains(code) {
                return Err(ConfigError::invalid(
                    format!("{path}.statuses[{i}]"),
                    format!("`{code}` is not an HTTP status"),
                ));
            }
        }
        b = b.statuses(s.iter().copied());
    }
    if let Some(ms) = &r.idempotent_methods {
        let mut methods = Vec::new();
        for (i, m) in ms.iter().enumerate() {
            methods.push(Method::from_bytes(m.as_bytes()).map_err(|_| {
                ConfigError::invalid(
                    format!("{path}.idempotent_methods[{i}]"),
                    format!("`{m}` is not a method"),
                )
            })?);
        }
        b = b.idempotent_methods(methods);
    }
    if let Some(e) = r.retry_errors {
        b = b.retry_errors(e);
    }
    if let Some(n) = r.body_limit {
        b = b.body_limit(n as usize);
    }
    if let Some(bo) = &r.backoff {
        b = b.backoff(bo.base, bo.cap);
    }
    if r.jitter == Some(false) {
        b = b.jitter(Jitter::None);
    }
    if let Some(d) = r.retry_after_cap {
        b = b.retry_after_cap(d);
    }
    if let Some(bu) = &r.budget {
        b = b.budget(bu.ttl, bu.min_per_sec, bu.share);
    }
    b.build().map_err(|e| ConfigError::invalid(path, e))
}

fn check_sticky(s: &StickyConfig, path: &str) -> Result<(), ConfigError> {
    if let Some(k) = &s.key {
        if k.len() < 32 {
            return Err(ConfigError::invalid(
                format!("{path}.key"),
                "a signing key of at least 32 bytes is needed",
            ));
        }
    }
    for (i, k) in s.old_keys.iter().enumerate() {
        if k.len() < 32 {
            return Err(ConfigError::invalid(
                format!("{path}.old_keys[{i}]"),
                "a signing key of at least 32 bytes is needed",
            ));
        }
    }
    // The layer's own checks (cookie name, path, domain, TTL), with a stand-in key.
    super::build::sticky_session(s, &[7u8; 32])
        .build(&[crate::group::TargetGroup::new("check")])
        .map_err(|e| ConfigError::invalid(path, e))?;
    Ok(())
}

fn rule(
    r: &RuleConfig,
    path: &str,
    own: &str,
    pools: &[&str],
    targets_pool: Option<&str>,
) -> Result<Rule, ConfigError> {
    let p = |f: &str| format!("{path}.{f}");
    let mut rule = Rule::new(r.name.clone());
    if let Some(n) = r.priority {
        rule = rule.priority(n);
    }
    if let Some(e) = r.enabled {
        rule = rule.enabled(e);
    }
    let paths = [&r.path, &r.prefix, &r.path_regex]
        .iter()
        .filter(|x| x.is_some())
        .count();
    if paths > 1 {
        return Err(ConfigError::invalid(
            p("path"),
            "give one of `path`, `prefix` and `path_regex`",
        ));
    }
    if let Some(x) = &r.path {
        rule = rule.path(x.clone());
    }
    if let Some(x) = &r.prefix {
        rule = rule.prefix(x.clone());
    }
    if let Some(x) = &r.path_regex {
        rule = rule.path_regex(x.clone());
    }
    if let Some(ms) = &r.method {
        let mut methods = Vec::new();
        let mut any = false;
        for (i, m) in ms.iter().enumerate() {
            if m.eq_ignore_ascii_case("any") || m == "*" {
                any = true;
                continue;
            }
            let upper = m.to_ascii_uppercase();
            methods.push(Method::from_bytes(upper.as_bytes()).map_err(|_| {
                let at = if ms.len() == 1 {
                    p("method")
                } else {
                    format!("{path}.method[{i}]")
                };
                ConfigError::invalid(at, format!("`{m}` is not a method"))
            })?);
        }
        if any {
            rule = rule.any_method();
        } else {
            rule = rule.methods(methods);
        }
    }
    let headers = r.header.iter().map(|h| (p("header"), h)).chain(
        r.headers
            .iter()
            .enumerate()
            .map(|(i, h)| (format!("{path}.headers[{i}]"), h)),
    );
    for (hp, h) in headers {
        rule = match (&h.value, &h.regex, h.present) {
            (Some(v), None, None | Some(true)) => rule.header(h.name.clone(), v.clone()),
            (None, Some(x), None | Some(true)) => rule.header_regex(h.name.clone(), x.clone()),
            (None, None, None | Some(true)) => rule.header_present(h.name.clone()),
            (None, None, Some(false)) => rule.header_absent(h.name.clone()),
            _ => {
                return Err(ConfigError::invalid(
                    hp,
                    "give `value`, `regex`, or neither (with `present`)",
                ));
            }
        };
    }
    for (k, v) in &r.query {
        rule = rule.query(k.clone(), v.clone());
    }
    if let Some(h) = &r.host {
        rule = rule.host(h.clone());
    }
    let known = |name: &str, at: String| -> Result<(), ConfigError> {
        if pools.contains(&name) {
            Ok(())
        } else {
            Err(ConfigError::invalid(
                at,
                format!(
                    "unknown pool `{name}` (pools: {})",
                    pools
                        .iter()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        }
    };
    let actions = usize::from(r.pool.is_some())
        + usize::from(!r.targets.is_empty())
        + usize::from(!r.split.is_empty());
    if actions != 1 {
        return Err(ConfigError::invalid(
            path,
            "a rule needs exactly one of `pool`, `targets` and `split`",
        ));
    }
    if r.weight.is_some() && r.targets.is_empty() {
        return Err(ConfigError::invalid(
            p("weight"),
            "`weight` goes with `targets`",
        ));
    }
    if r.split_by.is_some() && r.split.is_empty() && r.weight.is_none() {
        return Err(ConfigError::invalid(
            p("split_by"),
            "`split_by` goes with a split",
        ));
    }
    let split_key = |mut s: Split| -> Result<Split, ConfigError> {
        s = match r.split_by.as_deref() {
            None | Some("random") => s.random(),
            Some("client_ip") => s.by_client_ip(),
            Some(k) => match k.split_once(':') {
                Some(("header", h)) if !h.trim().is_empty() => s.by_header(h.trim()),
                Some(("cookie", c)) if !c.trim().is_empty() => s.by_cookie(c.trim()),
                _ => {
                    return Err(ConfigError::invalid(
                        p("split_by"),
                        format!(
                            "unknown split key `{k}`: use `random`, `client_ip`, `header:NAME` or `cookie:NAME`"
                        ),
                    ));
                }
            },
        };
        Ok(s)
    };
    if let Some(pool) = &r.pool {
        known(pool, p("pool"))?;
        rule = rule.to(pool.clone());
    } else if let Some(tp) = targets_pool {
        match r.weight {
            None => rule = rule.to(tp),
            Some(w) if w <= 100 => {
                let split = Split::new().to(tp, w).to(own, 100 - w);
                rule = rule.split(split_key(split)?);
            }
            Some(w) => {
                return Err(ConfigError::invalid(
                    p("weight"),
                    format!("`{w}` is not a percentage (0..=100)"),
                ));
            }
        }
    } else {
        let mut split = Split::new();
        for (i, side) in r.split.iter().enumerate() {
            known(&side.pool, format!("{path}.split[{i}].pool"))?;
            split = split.to(side.pool.clone(), side.weight);
        }
        rule = rule.split(split_key(split)?);
    }
    if let Some(d) = r.timeout {
        if d.is_zero() {
            return Err(ConfigError::invalid(
                p("timeout"),
                "must be longer than zero",
            ));
        }
        rule = rule.timeout(d);
    }
    if let Some(prefix) = &r.strip_prefix {
        rule = rule.strip_prefix(prefix.clone());
    }
    if let Some(a) = &r.access {
        let access = Access::parse(a).map_err(|e| ConfigError::invalid(p("access"), e))?;
        rule = rule.access(access);
    }
    Ok(rule)
}
