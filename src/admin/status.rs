//! The JSON status document: every registered load balancer, its groups and targets.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::families::{CLASSES, admin_name, breaker_name, is_up};
use super::source::View;
use crate::stats::{FailureCounts, LatencySummary, ResponseCounts, TargetReport};
use crate::target::AdminState;

/// A target's state in one word, the page's colour: `up`, `down` (failing active checks),
/// `ejected` (outlier detection), `pending` (waiting for its first check), `draining`,
/// `disabled`.
pub(crate) fn state_of(t: &TargetReport) -> &'static str {
    match t.admin() {
        AdminState::Enabled => {}
        other => return admin_name(other),
    }
    match t.health() {
        Some(h) if h.is_ejected() => "ejected",
        Some(h) if h.is_pending() => "pending",
        Some(h) if !h.is_healthy() => "down",
        _ => "up",
    }
}

fn ms(d: Duration) -> f64 {
    // Microsecond resolution, as recorded.
    (d.as_micros() as f64) / 1000.0
}

fn latency(l: &LatencySummary) -> Value {
    json!({
        "count": l.count(),
        "p50": ms(l.p50()),
        "p95": ms(l.p95()),
        "p99": ms(l.p99()),
        "max": ms(l.max()),
    })
}

fn responses(r: &ResponseCounts) -> Value {
    let mut m = Map::new();
    for (i, c) in CLASSES.iter().enumerate() {
        m.insert((*c).to_string(), r.class(i as u8 + 1).into());
    }
    m.insert("none".to_string(), r.no_response().into());
    Value::Object(m)
}

fn failures(f: &FailureCounts) -> Value {
    json!({
        "connect": f.connect(),
        "timeout": f.timeout(),
        "status": f.status(),
        "other": f.other(),
        "total": f.total(),
    })
}

fn target(t: &TargetReport, addresses: bool) -> Value {
    let mut v = json!({
        "id": t.id().as_str(),
        "state": state_of(t),
        "admin": admin_name(t.admin()),
        "up": is_up(t),
        "healthy": t.health().is_none_or(|h| h.is_healthy()),
        "ejected": t.health().is_some_and(|h| h.is_ejected()),
        "times_ejected": t.health().map_or(0, |h| h.times_ejected()),
        "ramping": t.health().is_some_and(|h| h.is_ramping()),
        "requests": t.requests(),
        "in_flight": t.in_flight(),
        "responses": responses(t.responses()),
        "failures": failures(t.failures()),
        "latency_ms": latency(t.latency()),
    });
    if addresses {
        v["address"] = t.address().into();
    }
    v
}

/// The status document of `stats`; target addresses only if `addresses`.
pub(crate) fn status(stats: &[View], addresses: bool, actions: bool) -> Value {
    let lbs: Vec<Value> = stats
        .iter()
        .map(|lb| {
            let groups: Vec<Value> = lb
                .groups
                .iter()
                .map(|g| {
                    json!({
                        "name": g.name(),
                        "requests": g.requests(),
                        "in_flight": g.in_flight(),
                        "targets_up": g.targets().iter().filter(|t| is_up(t)).count(),
                        "responses": responses(g.responses()),
                        "failures": failures(g.failures()),
                        "latency_ms": latency(g.latency()),
                        "targets": g.targets().iter().map(|t| target(t, addresses)).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let mut v = json!({ "name": &*lb.name, "groups": groups });
            if let Some(s) = &lb.stack {
                let h = &s.health;
                v["breaker"] = s.breaker.map(breaker_name).into();
                v["rate_limited"] = s.rate_limited.into();
                v["retries"] = json!({
                    "requests": s.retries.requests,
                    "retries": s.retries.retries,
                    "budget_exhausted": s.retries.budget_exhausted,
                });
                v["health"] = json!({
                    "members": h.members,
                    "in_service": h.in_service,
                    "down": h.down,
                    "ejected": h.ejected,
                    "ramping": h.ramping,
                    "in_panic": h.in_panic,
                    "panics": h.panics,
                    "ejections": h.ejections,
                });
            }
            v
        })
        .collect();
    json!({
        "latency_window_s": crate::stats::LATENCY_WINDOW.as_secs(),
        "actions": actions,
        "load_balancers": lbs,
    })
}
