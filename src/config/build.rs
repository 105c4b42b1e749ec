//! From a [`Plan`] to groups and a [`LoadBalancer`].

use bytes::Bytes;
use http_body::Body;

use super::compile::Plan;
use super::error::ConfigError;
use std::time::Duration;

use http::Method;

use super::model::{HealthCheckConfig, SameSiteConfig, StickyConfig};
use crate::error::BoxError;
use crate::group::TargetGroup;
use crate::health::{ActiveCheck, HttpCheck, TcpCheck};
use crate::lb::{LoadBalancer, StickySession};
use crate::sticky::SameSite;
use crate::target::Target;

/// The facade's sticky settings for `s`, signed with `key` unless `s` names its own.
pub(crate) fn sticky_session(s: &StickyConfig, key: &[u8]) -> StickySession {
    let mut session = StickySession::cookie(s.cookie.clone()).secure(s.secure);
    session = match &s.key {
        Some(k) => session.key(k.as_bytes()),
        None => session.key(key),
    };
    for k in &s.old_keys {
        session = session.old_key(k.as_bytes());
    }
    if let Some(ttl) = s.ttl {
        session = session.ttl(ttl);
    }
    if let Some(same_site) = s.same_site {
        session = session.same_site(match same_site {
            SameSiteConfig::Strict => SameSite::Strict,
            SameSiteConfig::Lax => SameSite::Lax,
            SameSiteConfig::None => SameSite::None,
        });
    }
    if let Some(p) = &s.path {
        session = session.path(p.clone());
    }
    if let Some(d) = &s.domain {
        session = session.domain(d.clone());
    }
    session
}

/// A new group for pool `name` of `plan`, with `targets`, its algorithm and health policies,
/// and its active checks started.
pub(crate) fn new_group(
    plan: &Plan,
    name: &str,
    targets: Vec<Target>,
) -> Result<TargetGroup, ConfigError> {
    let mut b = TargetGroup::builder(name)
        .algorithm(plan.algorithm.clone())
        .targets(targets);
    if let Some(o) = &plan.outlier {
        b = b.outlier_detection(o.clone());
    }
    if let Some(p) = &plan.panic {
        b = b.panic_threshold(*p);
    }
    if let Some(s) = &plan.slow_start {
        b = b.slow_start(*s);
    }
    let group = b
        .build()
        .map_err(|e| ConfigError::invalid(format!("{}.targets", plan.path), e))?;
    start_health_check(plan, &group)?;
    Ok(group)
}

/// The active check `h` describes; on error, the field at fault (empty: the whole table).
pub(crate) fn active_check(h: &HealthCheckConfig) -> Result<ActiveCheck, (&'static str, String)> {
    let builder = match &h.path {
        Some(path) => {
            let mut http = HttpCheck::builder(path);
            if let Some(m) = &h.method {
                let m = Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| ("method", format!("`{m}` is not a method")))?;
                http = http.method(m);
            }
            if let Some(host) = &h.host {
                http = http.host(host.clone());
            }
            for (k, v) in &h.headers {
                http = http.header(k.clone(), v.clone());
            }
            for (i, s) in h.expected_status.iter().enumerate() {
                let range = status_range(s).ok_or_else(|| {
                    (
                        "expected_status",
                        format!("entry {i}: `{s}` is not a status (`200`), a class (`2xx`) or a range (`200-204`)"),
                    )
                })?;
                http = http.expect_status(range);
            }
            if let Some(b) = &h.expected_body {
                http = http.expect_body(Bytes::from(b.clone()));
            }
            ActiveCheck::builder(http.build().map_err(|e| ("", e.to_string()))?)
        }
        None => {
            let http_only = [
                ("method", h.method.is_some()),
                ("host", h.host.is_some()),
                ("headers", !h.headers.is_empty()),
                ("expected_status", !h.expected_status.is_empty()),
                ("expected_body", h.expected_body.is_some()),
            ];
            if let Some((field, _)) = http_only.iter().find(|(_, set)| *set) {
                return Err((field, "applies to HTTP checks only (set `path`)".to_owned()));
            }
            ActiveCheck::builder(TcpCheck::new())
        }
    };
    let mut builder = builder
        .interval(h.interval.unwrap_or(Duration::from_secs(2)))
        .timeout(h.timeout.unwrap_or(Duration::from_secs(1)))
        .rise(h.healthy_threshold.unwrap_or(2))
        .fall(h.unhealthy_threshold.unwrap_or(3));
    if let Some(j) = h.jitter {
        builder = builder.jitter(j);
    }
    builder.build().map_err(|e| ("", e.to_string()))
}

/// `200`, `2xx` or `200-204`.
fn status_range(s: &str) -> Option<std::ops::RangeInclusive<u16>> {
    let s = s.trim();
    let code = |x: &str| x.parse::<u16>().ok().filter(|c| (100..=599).contains(c));
    if let Some(class) = s.strip_suffix("xx").or_else(|| s.strip_suffix("XX")) {
        let d = class.parse::<u16>().ok().filter(|d| (1..=5).contains(d))?;
        return Some(d * 100..=d * 100 + 99);
    }
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (code(a.trim())?, code(b.trim())?);
            (a <= b).then_some(a..=b)
        }
        None => code(s).map(|c| c..=c),
    }
}

/// Starts (or replaces) the plan's active checks on `group`, or stops them when it has none.
pub(crate) fn start_health_check(plan: &Plan, group: &TargetGroup) -> Result<(), ConfigError> {
    match &plan.health_check {
        Some(h) => {
            let check = active_check(h)
                .map_err(|(_, e)| ConfigError::invalid(format!("{}.health_check", plan.path), e))?;
            group
                .health_check(check)
                .map_err(|e| ConfigError::invalid(format!("{}.health_check", plan.path), e))?;
        }
        None => {
            group.stop_health_check();
        }
    }
    Ok(())
}

/// Composes the plan's load balancer over `groups` (its own pool first).
pub(crate) fn load_balancer<B>(
    plan: &Plan,
    groups: Vec<TargetGroup>,
    sticky_key: &[u8],
) -> Result<LoadBalancer<B>, ConfigError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let mut b = LoadBalancer::builder()
        .with_name(plan.name.clone())
        .with_groups(groups)
        .with_rules(plan.rules.clone());
    if let Some(key) = &plan.key {
        b = b.with_key(key.clone());
    }
    if let Some(cb) = &plan.breaker {
        b = b.with_circuit_breaker(cb.clone());
    }
    if let Some(r) = &plan.retry {
        b = b.with_retry(r.clone());
    }
    if let Some(d) = plan.config.timeout {
        b = b.with_timeout(d);
    }
    if let Some(d) = plan.config.attempt_timeout {
        b = b.with_attempt_timeout(d);
    }
    if let Some(l) = &plan.rate_limit {
        b = b.with_rate_limit(l.clone());
    }
    if let Some(t) = &plan.trusted {
        b = b.with_trusted_proxies(t.clone());
    }
    if let Some(s) = &plan.sticky {
        b = b.with_sticky_session(sticky_session(s, sticky_key));
    }
    b.build::<B>().map_err(|e| {
        let field = match e.setting() {
            "sticky_session" => "sticky_sessions",
            "groups" | "pools" => "pools",
            other => other,
        };
        let path = if field == "rules" {
            plan.rule_path(None)
        } else {
            format!("{}.{field}", plan.path)
        };
        let reason = std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
        ConfigError::invalid(path, reason)
    })
}
