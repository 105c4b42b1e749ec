//! Per-target recorders and the reports read from them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quanta::Instant;

use super::histogram::{BUCKETS, LatencySummary, Window, lower_of, upper_of};
use crate::classify::{FailureKind, Outcome};
use crate::health::TargetHealthStatus;
use crate::target::{AdminState, TargetId};

/// How long the latency window of a report reaches back.
pub const LATENCY_WINDOW: Duration = Duration::from_secs(60);

/// The upper bounds (inclusive) of the cumulative latency buckets of a [`LatencyHistogram`],
/// in microseconds; one more bucket takes everything slower. Prometheus' usual bounds, from
/// 1 ms to 10 s. Filled from the window's finer buckets (see [`LatencyHistogram::from_fine`]).
const BOUNDS_US: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// Now, on the statistics' clock: `quanta`'s (the CPU's time-stamp counter where it is
/// reliable, a few nanoseconds per read; the system's monotonic clock otherwise).
#[inline]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// What one target's finished attempts were: counters and a latency window, recorded when an
/// attempt ends (its response body ended or was dropped), never on the pick.
#[derive(Debug)]
pub(crate) struct TargetRecorder {
    /// Responses by status class: `1xx` to `5xx`.
    classes: [AtomicU64; 5],
    /// Attempts that ended without a response (connect error, timeout, other error).
    no_response: AtomicU64,
    /// Failures by kind: connect, timeout, status, other.
    failures: [AtomicU64; 4],
    latency: Window,
}

impl Default for TargetRecorder {
    fn default() -> Self {
        TargetRecorder {
            classes: Default::default(),
            no_response: AtomicU64::new(0),
            failures: Default::default(),
            latency: Window::new(LATENCY_WINDOW),
        }
    }
}

impl TargetRecorder {
    /// Records one finished attempt: its status (`0`: none), its outcome, when it started and
    /// when it ended (see [`now`]).
    #[inline]
    pub(crate) fn record(
        &self,
        status: u16,
        outcome: Option<Outcome>,
        started: Instant,
        ended: Instant,
    ) {
        match status {
            100..=599 => {
                self.classes[usize::from(status / 100 - 1)].fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                self.no_response.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(Outcome::Failure(kind)) = outcome {
            let i = match kind {
                FailureKind::Connect => 0,
                FailureKind::Timeout => 1,
                FailureKind::Status(_) => 2,
                _ => 3,
            };
            self.failures[i].fetch_add(1, Ordering::Relaxed);
        }
        let end = self.latency.offset(ended);
        let took = ended.saturating_duration_since(started);
        let us = took.as_secs().saturating_mul(1_000_000) + u64::from(took.subsec_micros());
        self.latency.record(end, us);
    }

    /// Every latency since the target joined, from the window's totals (nothing is recorded
    /// for it per request).
    fn histogram(&self) -> LatencyHistogram {
        let mut fine = [0u64; BUCKETS];
        self.latency.totals(&mut fine);
        LatencyHistogram::from_fine(&fine)
    }

    fn read(&self) -> (ResponseCounts, FailureCounts) {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (
            ResponseCounts {
                classes: self.classes.each_ref().map(l),
                no_response: l(&self.no_response),
            },
            FailureCounts {
                connect: l(&self.failures[0]),
                timeout: l(&self.failures[1]),
                status: l(&self.failures[2]),
                other: l(&self.failures[3]),
            },
        )
    }
}

/// The recorders of one group's targets, by id. A target keeps its recorder across snapshot
/// changes (and configuration reloads) for as long as it stays in the group; one that leaves
/// is dropped from here (requests still in flight to it finish recording into their own
/// reference).
#[derive(Debug, Default)]
pub(crate) struct Recorders {
    by_id: Mutex<HashMap<TargetId, Arc<TargetRecorder>>>,
}

impl Recorders {
    /// The recorders for `ids`, in their order; keeps exactly these.
    pub(crate) fn sync<'a>(
        &self,
        ids: impl ExactSizeIterator<Item = &'a TargetId>,
    ) -> Arc<[Arc<TargetRecorder>]> {
        let mut map = crate::util::lock(&self.by_id);
        let mut next = HashMap::with_capacity(ids.len());
        let list = ids
            .map(|id| {
                let r = map.remove(id).unwrap_or_default();
                next.insert(id.clone(), r.clone());
                r
            })
            .collect();
        *map = next;
        list
    }

    /// The recorder of `id`, if it is a current target.
    pub(crate) fn get(&self, id: &TargetId) -> Option<Arc<TargetRecorder>> {
        let map = crate::util::lock(&self.by_id);
        map.get(id).cloned()
    }
}

/// Responses by status class, and attempts that got none.
///
/// # Examples
///
/// ```
/// use tower_lb::stats::ResponseCounts;
///
/// let none = ResponseCounts::default();
/// assert_eq!(none.class(5), 0);
/// assert_eq!(none.total(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResponseCounts {
    classes: [u64; 5],
    no_response: u64,
}

impl ResponseCounts {
    /// Responses of status class `class` (`1` for `1xx` … `5` for `5xx`; `0` otherwise).
    pub fn class(&self, class: u8) -> u64 {
        match class {
            1..=5 => self.classes[usize::from(class - 1)],
            _ => 0,
        }
    }
    /// Attempts that ended without a response (connection refused, timeout, error).
    pub fn no_response(&self) -> u64 {
        self.no_response
    }
    /// Every finished attempt: responses of every class plus those without one.
    pub fn total(&self) -> u64 {
        self.classes.iter().sum::<u64>() + self.no_response
    }
    fn add(&mut self, o: &ResponseCounts) {
        for (a, b) in self.classes.iter_mut().zip(o.classes) {
            *a += b;
        }
        self.no_response += o.no_response;
    }
}

/// Failed attempts by kind (as the group's classifier judged them; a client's fault is none).
///
/// # Examples
///
/// ```
/// use tower_lb::stats::FailureCounts;
///
/// assert_eq!(FailureCounts::default().total(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailureCounts {
    connect: u64,
    timeout: u64,
    status: u64,
    other: u64,
}

impl FailureCounts {
    /// The target could not be reached.
    pub fn connect(&self) -> u64 {
        self.connect
    }
    /// The attempt timed out.
    pub fn timeout(&self) -> u64 {
        self.timeout
    }
    /// The target answered with a failure status (`5xx`, or as classified).
    pub fn status(&self) -> u64 {
        self.status
    }
    /// Anything else (a broken body, an unknown error).
    pub fn other(&self) -> u64 {
        self.other
    }
    /// Every failure.
    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.status + self.other
    }
    fn add(&mut self, o: &FailureCounts) {
        self.connect += o.connect;
        self.timeout += o.timeout;
        self.status += o.status;
        self.other += o.other;
    }
}

/// Every latency a target recorded since it joined its group, in fixed buckets (Prometheus'
/// usual bounds, 1 ms to 10 s, and one for anything slower): what a Prometheus histogram
/// exports, where [`LatencySummary`] is the recent window.
///
/// It is read from the same fine buckets as the window (at most 12.5 % wide), so it costs
/// nothing per request: a latency counts in the first bucket whose bound is at least the upper
/// edge of its fine bucket (like a percentile, it never understates: near a bound, up to
/// 12.5 % faster latencies may count in the next bucket; below 16 µs and at bounds that are
/// fine edges, it is exact). The sum takes each latency at its fine bucket's midpoint (within
/// 6.25 %).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::stats::LatencyHistogram;
///
/// let h = LatencyHistogram::default();
/// assert_eq!(LatencyHistogram::bounds()[0], Duration::from_millis(1));
/// assert_eq!(h.counts().len(), LatencyHistogram::bounds().len() + 1);
/// assert_eq!((h.count(), h.sum()), (0, Duration::ZERO));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencyHistogram {
    counts: [u64; BOUNDS_US.len() + 1],
    sum_us: u64,
}

impl LatencyHistogram {
    /// From counts of the window's fine buckets.
    fn from_fine(fine: &[u64; BUCKETS]) -> Self {
        let mut h = LatencyHistogram::default();
        for (b, &n) in fine.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let upper = upper_of(b);
            h.counts[BOUNDS_US.partition_point(|&x| x < upper)] += n;
            let mid = lower_of(b) + (upper - lower_of(b)) / 2;
            h.sum_us = h.sum_us.saturating_add(n.saturating_mul(mid));
        }
        h
    }

    /// The buckets' upper bounds (inclusive), ascending; the last bucket of
    /// [`counts`](Self::counts) has none.
    pub fn bounds() -> &'static [Duration] {
        const B: [Duration; BOUNDS_US.len()] = {
            let mut b = [Duration::ZERO; BOUNDS_US.len()];
            let mut i = 0;
            while i < b.len() {
                b[i] = Duration::from_micros(BOUNDS_US[i]);
                i += 1;
            }
            b
        };
        &B
    }
    /// Latencies per bucket (not cumulative): `counts()[i]` above `bounds()[i - 1]` and at most
    /// `bounds()[i]`; the last one above every bound.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }
    /// Every latency recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
    /// Their sum (each at its fine bucket's midpoint: within 6.25 %).
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_us)
    }
}

/// One target's figures; part of a [`GroupReport`].
#[derive(Debug, Clone, PartialEq)]
pub struct TargetReport {
    id: TargetId,
    address: String,
    requests: u64,
    in_flight: u32,
    admin: AdminState,
    health: Option<TargetHealthStatus>,
    responses: ResponseCounts,
    failures: FailureCounts,
    latency: LatencySummary,
    histogram: LatencyHistogram,
}

impl TargetReport {
    /// The target's id.
    pub fn id(&self) -> &TargetId {
        &self.id
    }
    /// The target's address (for operators; never sent to clients).
    pub fn address(&self) -> &str {
        &self.address
    }
    /// Requests dispatched to it since it joined the group.
    pub fn requests(&self) -> u64 {
        self.requests
    }
    /// Requests in flight now (a streaming body counts until it ends).
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }
    /// Its admin state.
    pub fn admin(&self) -> AdminState {
        self.admin
    }
    /// Its health: checks, ejection (and how often), slow start.
    pub fn health(&self) -> Option<&TargetHealthStatus> {
        self.health.as_ref()
    }
    /// Finished attempts by response class.
    pub fn responses(&self) -> &ResponseCounts {
        &self.responses
    }
    /// Failed attempts by kind.
    pub fn failures(&self) -> &FailureCounts {
        &self.failures
    }
    /// Latency percentiles over the last [`LATENCY_WINDOW`].
    pub fn latency(&self) -> &LatencySummary {
        &self.latency
    }
    /// Every latency since it joined the group, in fixed buckets (for a Prometheus histogram).
    pub fn latency_histogram(&self) -> &LatencyHistogram {
        &self.histogram
    }
}

/// One group's figures: every target's and their totals; from
/// [`Balance::report`](crate::balance::Balance::report).
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response, StatusCode};
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::balance::Balance;
/// use tower_lb::{Target, TargetGroup};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let group = TargetGroup::builder("api").target(Target::new("a", "127.0.0.1:1")?).build()?;
/// let balance = Balance::new(group, |_t: &Target| {
///     service_fn(|_r: Request<()>| async {
///         Ok::<_, Infallible>(Response::builder().status(StatusCode::BAD_GATEWAY).body(String::new()).unwrap())
///     })
/// });
/// drop(balance.clone().oneshot(Request::new(())).await?);
/// let report = balance.report();
/// assert_eq!(report.responses().class(5), 1);
/// assert_eq!(report.failures().status(), 1);
/// assert_eq!(report.targets()[0].latency().count(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GroupReport {
    name: String,
    targets: Vec<TargetReport>,
    responses: ResponseCounts,
    failures: FailureCounts,
    latency: LatencySummary,
}

impl GroupReport {
    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Every current target, ordered by id.
    pub fn targets(&self) -> &[TargetReport] {
        &self.targets
    }
    /// Requests dispatched to the current targets.
    pub fn requests(&self) -> u64 {
        self.targets.iter().map(|t| t.requests).sum()
    }
    /// Requests in flight to the current targets.
    pub fn in_flight(&self) -> u64 {
        self.targets.iter().map(|t| u64::from(t.in_flight)).sum()
    }
    /// Responses by class, summed over the current targets.
    pub fn responses(&self) -> &ResponseCounts {
        &self.responses
    }
    /// Failures by kind, summed over the current targets.
    pub fn failures(&self) -> &FailureCounts {
        &self.failures
    }
    /// Latency percentiles of the whole group over the last [`LATENCY_WINDOW`].
    pub fn latency(&self) -> &LatencySummary {
        &self.latency
    }
}

/// What a report is made of, per target: filled by the balancer from the group.
#[derive(Debug)]
pub(crate) struct TargetFacts {
    pub(crate) id: TargetId,
    pub(crate) address: String,
    pub(crate) requests: u64,
    pub(crate) in_flight: u32,
    pub(crate) admin: AdminState,
    pub(crate) health: Option<TargetHealthStatus>,
}

/// Builds a group's report from its targets' facts and recorders.
pub(crate) fn report(
    name: &str,
    facts: Vec<TargetFacts>,
    recorder: impl Fn(&TargetId) -> Option<Arc<TargetRecorder>>,
) -> GroupReport {
    let now = now();
    let mut group_counts = [0u64; BUCKETS];
    let mut group_max = 0;
    let mut responses = ResponseCounts::default();
    let mut failures = FailureCounts::default();
    let targets = facts
        .into_iter()
        .map(|f| {
            let (r, fl, latency, histogram) = match recorder(&f.id) {
                Some(rec) => {
                    let (r, fl) = rec.read();
                    let mut counts = [0u64; BUCKETS];
                    let max = rec.latency.collect(rec.latency.offset(now), &mut counts);
                    for (g, c) in group_counts.iter_mut().zip(counts) {
                        *g += c;
                    }
                    group_max = group_max.max(max);
                    let h = rec.histogram();
                    (r, fl, LatencySummary::from_counts(&counts, max), h)
                }
                None => Default::default(),
            };
            responses.add(&r);
            failures.add(&fl);
            TargetReport {
                id: f.id,
                address: f.address,
                requests: f.requests,
                in_flight: f.in_flight,
                admin: f.admin,
                health: f.health,
                responses: r,
                failures: fl,
                latency,
                histogram,
            }
        })
        .collect();
    GroupReport {
        name: name.to_string(),
        targets,
        responses,
        failures,
        latency: LatencySummary::from_counts(&group_counts, group_max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_from_the_fine_ones_and_across_reused_slices() {
        let r = TargetRecorder::default();
        let t0 = now();
        let at = |us: u64| t0 + Duration::from_micros(us);
        // 0 and 500 µs: the first bucket; 1000 µs is in the fine bucket 960..=1023, so the
        // second, as is 2000; 20 s and 2 h above every bound.
        for us in [0, 500, 1_000, 2_000, 20_000_000, 7_200_000_000] {
            r.record(200, None, t0, at(us));
        }
        let h = r.histogram();
        assert_eq!(h.counts()[0], 2);
        assert_eq!(h.counts()[1], 2);
        assert_eq!(h.counts()[BOUNDS_US.len()], 2);
        assert_eq!(h.count(), 6);
        // Sums at fine midpoints: within 6.25 % of the latencies.
        let m = TargetRecorder::default();
        for us in [500, 1_000, 2_000, 20_000_000] {
            m.record(200, None, t0, at(us));
        }
        let (sum, exact) = (m.histogram().sum().as_micros() as f64, 20_003_500.0);
        assert!((sum - exact).abs() <= exact * 0.0625, "{sum} vs {exact}");
        // Samples of slices that the window reuses stay counted: minutes later, all are there.
        let later = t0 + Duration::from_secs(300);
        r.record(200, None, later, later + Duration::from_micros(3));
        let h2 = r.histogram();
        assert_eq!(h2.count(), 7);
        assert!(h2.counts().iter().zip(h.counts()).all(|(a, b)| a >= b));
        assert_eq!(LatencyHistogram::bounds().len(), BOUNDS_US.len());
        assert_eq!(LatencyHistogram::bounds()[12], Duration::from_secs(10));
    }
}
