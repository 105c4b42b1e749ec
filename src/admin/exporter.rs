//! Feeds the statistics to the `metrics` facade (feature `metrics`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use super::families::{self, Family, Kind, Labels, Sink, Value};
use super::source::Sources;
use crate::balance::Balance;
use crate::lb::Registry;
use crate::stats::LatencyHistogram;

/// One series: its family's name and its labels.
type Series = (&'static str, Vec<(&'static str, String)>);

/// Exports the statistics of every load balancer of a [`Registry`] to the `metrics` facade
/// (whatever recorder the application installed: Prometheus, StatsD, OpenTelemetry…), under
/// the names of the admin endpoint's Prometheus text (`docs/operations.md`).
///
/// Why from snapshots and not per request: recording stays what [`stats`](crate::stats)
/// already does (atomics, no allocation, nothing extra per request; a recorder such as the
/// Prometheus exporter allocates as it stores samples), and an export costs the same whatever
/// the traffic in counters and gauges. Each [`export`](Self::export) (or each tick of
/// [`spawn`](Self::spawn)):
///
/// - **counters** get the increase since the previous export (a target that left and came
///   back starts a new count, seen as a counter reset);
/// - **gauges** are set;
/// - **histograms** (`tower_lb_request_duration_seconds`) get each latency recorded since the
///   previous export, as the upper bound of its bucket of [`LatencyHistogram::bounds`] (above
///   the last bound: the bucket's mean, from the sum). Give the exporter those bounds
///   (`PrometheusBuilder::set_buckets_for_metric`) and its bucket counts are ours exactly; its
///   `_sum` counts each latency at its bucket's bound. This records one sample per request, at
///   export time.
///
/// **Stale series**: the `metrics` facade cannot remove a series. When a target leaves, the
/// next export sets its gauges to 0 once and stops updating all its series; an exporter's idle
/// timeout then removes them (`metrics-exporter-prometheus`:
/// `PrometheusBuilder::idle_timeout(MetricKindMask::ALL, Some(timeout))`, with a timeout of a
/// few export periods). A histogram of a target that gets no request for longer than that
/// timeout is removed too, and comes back with its next request.
///
/// # Examples
///
/// ```
/// use tower_lb::admin::MetricsExporter;
/// use tower_lb::lb::{LoadBalancer, Registry};
/// use tower_lb::Target;
///
/// # fn main() -> Result<(), tower_lb::BoxError> {
/// let registry = Registry::new();
/// registry.register(
///     LoadBalancer::builder().with_name("api").with_target(Target::new("a", "127.0.0.1:1")?).build::<String>()?,
/// )?;
/// let exporter = MetricsExporter::new(&registry);
/// exporter.export(); // into the installed recorder (none here: a no-op)
/// // In an application: `exporter.spawn(Duration::from_secs(5));` inside a Tokio runtime.
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct MetricsExporter {
    sources: Sources,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    described: bool,
    counters: HashMap<Series, u64>,
    histograms: HashMap<Series, LatencyHistogram>,
    gauges: HashMap<Series, ()>,
}

impl fmt::Debug for MetricsExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = crate::util::lock(&self.state);
        f.debug_struct("MetricsExporter")
            .field("counters", &state.counters.len())
            .field("gauges", &state.gauges.len())
            .field("histograms", &state.histograms.len())
            .finish()
    }
}

impl MetricsExporter {
    /// An exporter of every load balancer of `registry` (those registered later too).
    pub fn new<B, C>(registry: &Registry<B, C>) -> Self
    where
        B: 'static,
        C: Clone + Send + Sync + 'static,
    {
        MetricsExporter::default().registry(registry)
    }

    /// Also exports every load balancer of `registry`.
    pub fn registry<B, C>(mut self, registry: &Registry<B, C>) -> Self
    where
        B: 'static,
        C: Clone + Send + Sync + 'static,
    {
        self.sources.registry(registry);
        self
    }

    /// Also exports a standalone [`Balance`] as a group of the load balancer named
    /// `load_balancer` (see [`AdminBuilder::balance`](super::AdminBuilder::balance)).
    pub fn balance<S: Clone + 'static>(
        mut self,
        load_balancer: &str,
        balance: &Balance<S>,
    ) -> Self {
        self.sources.balance(load_balancer, balance);
        self
    }

    /// Exports the current statistics once, into the recorder in effect (the global one, or a
    /// local one of `metrics::with_local_recorder`).
    pub fn export(&self) {
        let stats = self.sources.views();
        let mut state = crate::util::lock(&self.state);
        if !state.described {
            state.described = true;
            describe();
        }
        let mut pass = Pass {
            old: std::mem::take(&mut *state),
            new: State {
                described: true,
                ..State::default()
            },
        };
        families::visit(&stats, &mut pass);
        // Series of targets (or load balancers) that left: gauges to 0 once, then forgotten.
        for (name, labels) in pass.old.gauges.into_keys() {
            ::metrics::gauge!(name, labels_of(&labels)).set(0.0);
        }
        *state = pass.new;
    }

    /// Exports every `period` (at least 100 ms) on a Tokio task, until the task is aborted or
    /// the runtime shuts down. Must be called within a Tokio runtime.
    pub fn spawn(self, period: Duration) -> tokio::task::JoinHandle<()> {
        let period = period.max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.export();
            }
        })
    }
}

fn describe() {
    let mut d = Describe;
    families::visit(&[], &mut d);
}

struct Describe;

impl Sink for Describe {
    fn family(&mut self, f: &'static Family) {
        match f.kind {
            Kind::Counter => ::metrics::describe_counter!(f.name, f.help),
            Kind::Gauge => ::metrics::describe_gauge!(f.name, f.help),
            Kind::Histogram => {
                ::metrics::describe_histogram!(f.name, ::metrics::Unit::Seconds, f.help)
            }
        }
    }
    fn sample(&mut self, _: &'static Family, _: &Labels<'_>, _: Value<'_>) {}
}

fn labels_of(labels: &[(&'static str, String)]) -> Vec<::metrics::Label> {
    labels
        .iter()
        .map(|(k, v)| ::metrics::Label::new(*k, v.clone()))
        .collect()
}

struct Pass {
    old: State,
    new: State,
}

impl Sink for Pass {
    fn family(&mut self, _: &'static Family) {}

    fn sample(&mut self, f: &'static Family, labels: &Labels<'_>, value: Value<'_>) {
        let key: Series = (
            f.name,
            labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect(),
        );
        let labels = labels_of(&key.1);
        match value {
            Value::Counter(now) => {
                let last = self.old.counters.remove(&key).unwrap_or(0);
                // Fewer than last time: the target left and came back, a new count.
                let delta = if now >= last { now - last } else { now };
                ::metrics::counter!(f.name, labels).increment(delta);
                self.new.counters.insert(key, now);
            }
            Value::Gauge(v) => {
                self.old.gauges.remove(&key);
                ::metrics::gauge!(f.name, labels).set(v);
                self.new.gauges.insert(key, ());
            }
            Value::Histogram(now) => {
                let last = self.old.histograms.remove(&key).unwrap_or_default();
                let h = ::metrics::histogram!(f.name, labels);
                record_delta(&h, &last, now);
                self.new.histograms.insert(key, *now);
            }
        }
    }
}

/// Records the latencies `now` has and `last` had not, each at its bucket's upper bound.
fn record_delta(h: &::metrics::Histogram, last: &LatencyHistogram, now: &LatencyHistogram) {
    let reset = now.counts().iter().zip(last.counts()).any(|(n, l)| n < l);
    let empty = LatencyHistogram::default();
    let last = if reset { &empty } else { last };
    let bounds = LatencyHistogram::bounds();
    let mut bounded_secs = 0.0;
    let mut overflow = 0;
    for (i, (n, l)) in now.counts().iter().zip(last.counts()).enumerate() {
        let delta = n - l;
        if delta == 0 {
            continue;
        }
        match bounds.get(i) {
            Some(b) => {
                let secs = b.as_secs_f64();
                h.record_many(secs, usize::try_from(delta).unwrap_or(usize::MAX));
                bounded_secs += secs * delta as f64;
            }
            None => overflow = delta,
        }
    }
    if overflow > 0 {
        // Above the last bound: their mean, from the sum less the bounded ones' bounds
        // (at least just above the last bound).
        let floor = bounds.last().map_or(0.0, Duration::as_secs_f64) + 1e-6;
        let sum = now.sum().saturating_sub(last.sum()).as_secs_f64();
        let mean = ((sum - bounded_secs) / overflow as f64).max(floor);
        h.record_many(mean, usize::try_from(overflow).unwrap_or(usize::MAX));
    }
}
