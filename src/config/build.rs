//! From a [`Plan`] to groups and a [`LoadBalancer`].

use bytes::Bytes;
use http_body::Body;

use super::compile::Plan;
use super::error::ConfigError;
use super::model::{SameSiteConfig, StickyConfig};
use crate::error::BoxError;
use crate::group::TargetGroup;
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

/// Starts (or replaces) the plan's active checks on `group`, or stops them when it has none.
pub(crate) fn start_health_check(plan: &Plan, group: &TargetGroup) -> Result<(), ConfigError> {
    match &plan.health_check {
        Some(check) => {
            let check = check
                .build()
                .map_err(|e| ConfigError::invalid(format!("{}.health_check", plan.path), e))?;
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
