use std::sync::atomic::Ordering;
use std::time::Duration;

use super::p2c::Sampler;
use super::{Algorithm, Context, FastRng, LatencyTracker, Selector, Targets};
use crate::target::Hot;

/// Power of two choices on peak-EWMA latency ("least time"): draw two targets at random and
/// send to the one with the lower expected cost `latency × (in_flight + 1) / weight`.
///
/// The latency estimate is Finagle's peak EWMA (see [`LatencyTracker`]): it jumps to any
/// slower sample at once and forgets it smoothly, so a target that turns slow loses traffic
/// within a request or two, and gets probed again once the estimate decays. Optionally
/// failure-aware ([`failure_penalty`](Self::failure_penalty)): errors, `5xx` and `429` count as
/// a penalty latency and `Retry-After` holds the penalty.
///
/// The balancer times requests only for groups using a latency-aware algorithm; picks read a
/// coarse clock (one real clock read per 64 picks).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::algorithm::P2cPeakEwma;
/// use tower_lb::target::TargetGroup;
///
/// let least_time = P2cPeakEwma::new()
///     .decay(Duration::from_secs(10))
///     .failure_penalty(Duration::from_secs(1));
/// let group = TargetGroup::builder("api").algorithm(least_time).build()?;
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Debug, Clone)]
pub struct P2cPeakEwma {
    tracker: LatencyTracker,
    seed: Option<u64>,
}

impl Default for P2cPeakEwma {
    fn default() -> Self {
        P2cPeakEwma::new()
    }
}

impl P2cPeakEwma {
    /// Decay 10 s, 30 ms assumed for targets not measured yet, not failure-aware.
    pub fn new() -> Self {
        P2cPeakEwma {
            tracker: LatencyTracker::new(Duration::from_secs(10)),
            seed: None,
        }
    }

    /// The time constant with which the estimate forgets old samples (default 10 s).
    pub fn decay(mut self, decay: Duration) -> Self {
        let decay = crate::util::cap(decay);
        let old = self.tracker.clone();
        self.tracker = old.with_decay(decay);
        self
    }

    /// The latency assumed for a target not measured yet (default 30 ms).
    pub fn default_rtt(mut self, rtt: Duration) -> Self {
        let rtt = crate::util::cap(rtt);
        self.tracker = self.tracker.default_rtt(rtt);
        self
    }

    /// Failure-aware: errors, `5xx` and `429` count as at least `penalty`, and `Retry-After`
    /// holds the penalty (capped, see [`retry_after_cap`](Self::retry_after_cap)).
    pub fn failure_penalty(mut self, penalty: Duration) -> Self {
        let penalty = crate::util::cap(penalty);
        self.tracker = self.tracker.failure_penalty(penalty);
        self
    }

    /// The longest `Retry-After` honoured (default 30 s).
    pub fn retry_after_cap(mut self, cap: Duration) -> Self {
        let cap = crate::util::cap(cap);
        self.tracker = self.tracker.retry_after_cap(cap);
        self
    }

    /// Uses a fixed seed for the random draws.
    ///
    /// Seeded draws come from one counter shared by every thread (reproducible, one atomic
    /// operation per draw); unseeded, each thread draws from its own (no shared write per pick).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

impl Algorithm for P2cPeakEwma {
    fn build(&self, targets: &Targets<'_>) -> Box<dyn Selector> {
        self.tracker.refresh();
        Box::new(EwmaSelector {
            sampler: Sampler::new(targets),
            rng: FastRng::new(self.seed),
            tracker: self.tracker.clone(),
        })
    }
}

#[derive(Debug)]
struct EwmaSelector {
    sampler: Sampler,
    rng: FastRng,
    tracker: LatencyTracker,
}

impl EwmaSelector {
    #[inline]
    fn cost(&self, cx: &Context<'_>, i: usize, now: u64) -> f64 {
        let est = self.tracker.estimate_ns(cx.state(i), now);
        est * f64::from(cx.in_flight(i) + 1) * 1000.0 / cx.weight_milli(i).max(1) as f64
    }
}

impl Selector for EwmaSelector {
    #[inline]
    fn select(&self, cx: &Context<'_>) -> Option<usize> {
        let n = cx.len();
        if n == 0 {
            return None;
        }
        let r = self.rng.next_u64();
        if r & 63 == 0 {
            self.tracker.refresh();
        }
        let now = self.tracker.now();
        let (a, b) = self.sampler.pair(r, n);
        if let (Some((counters, blocking)), true) = (cx.plain_counters(), self.sampler.uniform) {
            // Equal weights, nothing ramping, no backups, limits or targets to avoid: status and
            // load come from the dense counters and the weight (the same for both) drops out
            // of the comparison.
            if let (Some(ha), Some(hb)) = (counters.get(a), counters.get(b)) {
                let (wa, wb) = (ha.load(Ordering::Relaxed), hb.load(Ordering::Relaxed));
                if Hot::status_of(wa | wb) & (blocking | crate::target::RAMP) == 0 {
                    let cost = |i: usize, w: u32| {
                        self.tracker.estimate_ns(cx.state(i), now)
                            * f64::from(Hot::in_flight_of(w) + 1)
                    };
                    let (ca, cb) = (cost(a, wa), cost(b, wb));
                    return Some(if ca < cb || (ca == cb && r & 1 == 0) {
                        a
                    } else {
                        b
                    });
                }
            }
        }
        match (cx.is_available(a), cx.is_available(b)) {
            (true, true) => {
                let (ca, cb) = (self.cost(cx, a, now), self.cost(cx, b, now));
                Some(if ca < cb || (ca == cb && r & 1 == 0) {
                    a
                } else {
                    b
                })
            }
            (true, false) => Some(a),
            (false, true) => Some(b),
            (false, false) => (0..n)
                .map(|k| (a + k) % n)
                .filter(|&i| cx.is_available(i))
                .map(|i| (i, self.cost(cx, i, now)))
                .reduce(|best, c| if c.1 < best.1 { c } else { best })
                .map(|(i, _)| i),
        }
    }

    fn latency(&self) -> Option<&LatencyTracker> {
        Some(&self.tracker)
    }
}
