//! The metric families exported from statistics snapshots, shared by the Prometheus text of
//! [`Admin`](super::Admin) and the `metrics` facade exporter: one list of names, labels and
//! values, so the two cannot drift apart. Labels are configured names only (load balancer,
//! group, target id) and fixed words (status class, failure kind, state): never a path, a
//! client value or a backend address.

use std::fmt::Write as _;

use super::source::{Stack, View};
use crate::breaker::BreakerState;
use crate::stats::{LatencyHistogram, TargetReport};
use crate::target::AdminState;

/// What kind of metric a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric family: name, help text, kind.
#[derive(Debug)]
pub(crate) struct Family {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) kind: Kind,
}

/// One sample's value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Counter(u64),
    Gauge(f64),
    Histogram(&'a LatencyHistogram),
}

/// Labels of one sample: (name, value) pairs.
pub(crate) type Labels<'a> = [(&'static str, &'a str)];

/// Receives the families in order, each followed by its samples.
pub(crate) trait Sink {
    fn family(&mut self, family: &'static Family);
    fn sample(&mut self, family: &'static Family, labels: &Labels<'_>, value: Value<'_>);
}

macro_rules! family {
    ($id:ident, $name:literal, $kind:ident, $help:literal) => {
        pub(crate) static $id: Family = Family {
            name: $name,
            help: $help,
            kind: Kind::$kind,
        };
    };
}

family!(
    REQUESTS,
    "tower_lb_requests_total",
    Counter,
    "Requests dispatched to the target."
);
family!(
    RESPONSES,
    "tower_lb_responses_total",
    Counter,
    "Finished attempts by status class (none: no response)."
);
family!(
    FAILURES,
    "tower_lb_failures_total",
    Counter,
    "Failed attempts by kind, as the group's classifier judged them."
);
family!(
    IN_FLIGHT,
    "tower_lb_in_flight",
    Gauge,
    "Requests in flight to the target."
);
family!(
    UP,
    "tower_lb_target_up",
    Gauge,
    "1 if picks may choose the target now (enabled, healthy, not ejected), else 0."
);
family!(
    ADMIN,
    "tower_lb_target_admin_state",
    Gauge,
    "1 for the target's admin state (enabled, draining, disabled), 0 for the others."
);
family!(
    EJECTED,
    "tower_lb_target_ejected",
    Gauge,
    "1 if outlier detection has ejected the target."
);
family!(
    DURATION,
    "tower_lb_request_duration_seconds",
    Histogram,
    "Attempt latency, from dispatch to the end of the response body."
);
family!(
    GROUP_TARGETS,
    "tower_lb_group_targets",
    Gauge,
    "Targets in the group."
);
family!(
    GROUP_UP,
    "tower_lb_group_healthy_targets",
    Gauge,
    "Targets of the group that picks may choose now."
);
family!(RETRIES, "tower_lb_retries_total", Counter, "Retries sent.");
family!(
    BUDGET,
    "tower_lb_retry_budget_exhausted_total",
    Counter,
    "Retries refused because the retry budget was empty."
);
family!(
    RATE_LIMITED,
    "tower_lb_rate_limited_total",
    Counter,
    "Requests refused by the rate limit (429)."
);
family!(
    BREAKER,
    "tower_lb_circuit_breaker_state",
    Gauge,
    "1 for the circuit breaker's state (closed, open, half-open), 0 for the others."
);
family!(
    PANIC,
    "tower_lb_panic_mode",
    Gauge,
    "1 while the load balancer's own group is in panic mode."
);
family!(
    EJECTIONS,
    "tower_lb_ejections_total",
    Counter,
    "Ejections made by outlier detection in the load balancer's own group."
);

/// Every family, in the order [`visit`] emits them.
#[cfg(test)]
pub(crate) static ALL: [&Family; 16] = [
    &REQUESTS,
    &RESPONSES,
    &FAILURES,
    &IN_FLIGHT,
    &UP,
    &ADMIN,
    &EJECTED,
    &DURATION,
    &GROUP_TARGETS,
    &GROUP_UP,
    &RETRIES,
    &BUDGET,
    &RATE_LIMITED,
    &BREAKER,
    &PANIC,
    &EJECTIONS,
];

pub(crate) const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub(crate) fn admin_name(a: AdminState) -> &'static str {
    match a {
        AdminState::Enabled => "enabled",
        AdminState::Draining => "draining",
        AdminState::Disabled => "disabled",
    }
}

pub(crate) fn breaker_name(b: BreakerState) -> &'static str {
    match b {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half-open",
    }
}

/// Picks may choose the target now.
pub(crate) fn is_up(t: &TargetReport) -> bool {
    t.admin() == AdminState::Enabled && t.health().is_none_or(|h| h.is_routable())
}

fn each_target<'a>(
    stats: &'a [View],
    mut f: impl FnMut([(&'static str, &'a str); 3], &'a TargetReport),
) {
    for lb in stats {
        for g in &lb.groups {
            for t in g.targets() {
                f(
                    [
                        ("load_balancer", &lb.name),
                        ("group", g.name()),
                        ("target", t.id().as_str()),
                    ],
                    t,
                );
            }
        }
    }
}

/// Emits every family and its samples from `stats`.
pub(crate) fn visit(stats: &[View], sink: &mut impl Sink) {
    sink.family(&REQUESTS);
    each_target(stats, |l, t| {
        sink.sample(&REQUESTS, &l, Value::Counter(t.requests()))
    });
    sink.family(&RESPONSES);
    each_target(stats, |[a, b, c], t| {
        for (i, class) in CLASSES.iter().enumerate() {
            let v = t.responses().class(i as u8 + 1);
            sink.sample(&RESPONSES, &[a, b, c, ("class", class)], Value::Counter(v));
        }
        let v = t.responses().no_response();
        sink.sample(&RESPONSES, &[a, b, c, ("class", "none")], Value::Counter(v));
    });
    sink.family(&FAILURES);
    each_target(stats, |[a, b, c], t| {
        let f = t.failures();
        for (kind, v) in [
            ("connect", f.connect()),
            ("timeout", f.timeout()),
            ("status", f.status()),
            ("other", f.other()),
        ] {
            sink.sample(&FAILURES, &[a, b, c, ("kind", kind)], Value::Counter(v));
        }
    });
    sink.family(&IN_FLIGHT);
    each_target(stats, |l, t| {
        sink.sample(&IN_FLIGHT, &l, Value::Gauge(f64::from(t.in_flight())))
    });
    sink.family(&UP);
    each_target(stats, |l, t| {
        sink.sample(&UP, &l, Value::Gauge(f64::from(u8::from(is_up(t)))))
    });
    sink.family(&ADMIN);
    each_target(stats, |[a, b, c], t| {
        let now = admin_name(t.admin());
        for s in ["enabled", "draining", "disabled"] {
            let v = f64::from(u8::from(s == now));
            sink.sample(&ADMIN, &[a, b, c, ("state", s)], Value::Gauge(v));
        }
    });
    sink.family(&EJECTED);
    each_target(stats, |l, t| {
        let v = t.health().is_some_and(|h| h.is_ejected());
        sink.sample(&EJECTED, &l, Value::Gauge(f64::from(u8::from(v))))
    });
    sink.family(&DURATION);
    each_target(stats, |l, t| {
        sink.sample(&DURATION, &l, Value::Histogram(t.latency_histogram()))
    });
    sink.family(&GROUP_TARGETS);
    for lb in stats {
        for g in &lb.groups {
            let l = [("load_balancer", &*lb.name), ("group", g.name())];
            sink.sample(&GROUP_TARGETS, &l, Value::Gauge(g.targets().len() as f64));
        }
    }
    sink.family(&GROUP_UP);
    for lb in stats {
        for g in &lb.groups {
            let l = [("load_balancer", &*lb.name), ("group", g.name())];
            let up = g.targets().iter().filter(|t| is_up(t)).count();
            sink.sample(&GROUP_UP, &l, Value::Gauge(up as f64));
        }
    }
    // What a `LoadBalancer` adds (standalone balancers have none of it).
    let stacks = || {
        stats
            .iter()
            .filter_map(|v| Some((&*v.name, v.stack.as_ref()?)))
    };
    for (family, value) in [
        (
            &RETRIES,
            (|s: &Stack| s.retries.retries) as fn(&Stack) -> u64,
        ),
        (&BUDGET, |s| s.retries.budget_exhausted),
        (&RATE_LIMITED, |s| s.rate_limited),
        (&EJECTIONS, |s| s.health.ejections),
    ] {
        sink.family(family);
        for (name, s) in stacks() {
            sink.sample(family, &[("load_balancer", name)], Value::Counter(value(s)));
        }
    }
    sink.family(&BREAKER);
    for (name, s) in stacks() {
        if let Some(state) = s.breaker {
            let now = breaker_name(state);
            for st in ["closed", "open", "half-open"] {
                let l = [("load_balancer", name), ("state", st)];
                sink.sample(&BREAKER, &l, Value::Gauge(f64::from(u8::from(st == now))));
            }
        }
    }
    sink.family(&PANIC);
    for (name, s) in stacks() {
        let v = f64::from(u8::from(s.health.in_panic));
        sink.sample(&PANIC, &[("load_balancer", name)], Value::Gauge(v));
    }
}

/// The Prometheus text exposition format (version 0.0.4) of `stats`.
pub(crate) fn prometheus_text(stats: &[View]) -> String {
    let mut text = Text(String::with_capacity(4096));
    visit(stats, &mut text);
    text.0
}

struct Text(String);

impl Text {
    fn labels(&mut self, labels: &Labels<'_>, le: Option<&str>) {
        let out = &mut self.0;
        if labels.is_empty() && le.is_none() {
            return;
        }
        out.push('{');
        let le = le.map(|v| ("le", v));
        for (i, (k, v)) in labels.iter().copied().chain(le).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
}

impl Sink for Text {
    fn family(&mut self, f: &'static Family) {
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = write!(
            self.0,
            "# HELP {} {}\n# TYPE {} {kind}\n",
            f.name, f.help, f.name
        );
    }

    fn sample(&mut self, f: &'static Family, labels: &Labels<'_>, value: Value<'_>) {
        match value {
            Value::Counter(v) => {
                self.0.push_str(f.name);
                self.labels(labels, None);
                let _ = writeln!(self.0, " {v}");
            }
            Value::Gauge(v) => {
                self.0.push_str(f.name);
                self.labels(labels, None);
                let _ = writeln!(self.0, " {v}");
            }
            Value::Histogram(h) => {
                let mut cumulative = 0;
                let bounds = LatencyHistogram::bounds();
                for (i, c) in h.counts().iter().enumerate() {
                    cumulative += c;
                    let le = match bounds.get(i) {
                        Some(b) => b.as_secs_f64().to_string(),
                        None => "+Inf".to_string(),
                    };
                    let _ = write!(self.0, "{}_bucket", f.name);
                    self.labels(labels, Some(&le));
                    let _ = writeln!(self.0, " {cumulative}");
                }
                let _ = write!(self.0, "{}_sum", f.name);
                self.labels(labels, None);
                let _ = writeln!(self.0, " {}", h.sum().as_secs_f64());
                let _ = write!(self.0, "{}_count", f.name);
                self.labels(labels, None);
                let _ = writeln!(self.0, " {cumulative}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_emitted_once_with_its_type() {
        let text = prometheus_text(&[]);
        let mut names: Vec<_> = ALL.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "duplicate metric names");
        for f in ALL {
            assert!(f.name.starts_with("tower_lb_"));
            assert_eq!(
                text.matches(&format!("# TYPE {} ", f.name)).count(),
                1,
                "{}",
                f.name
            );
            assert_eq!(
                f.name.ends_with("_total"),
                f.kind == Kind::Counter,
                "{}",
                f.name
            );
        }
        assert_eq!(text.matches("# TYPE ").count(), ALL.len());
    }

    #[test]
    fn label_values_are_escaped() {
        let mut t = Text(String::new());
        t.labels(&[("target", "a\"b\\c\nd")], Some("+Inf"));
        assert_eq!(t.0, r#"{target="a\"b\\c\nd",le="+Inf"}"#);
    }
}
