use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::Context;
use super::TargetState;

/// Keeps per-target latency estimates (peak EWMA, after Finagle) for a [`Selector`](super::Selector) that asks
/// for them through [`Selector::latency`](super::Selector::latency).
///
/// The balancer times each request only when the group's selector returns a tracker, and feeds
/// every finished attempt into the target's estimate: a sample above the estimate replaces it
/// at once, a lower one pulls it down exponentially with the `decay` time constant. When read,
/// the estimate decays towards zero with the time since its last sample, so a target that was
/// slow once gets probed again instead of being shunned forever.
///
/// Failure-aware mode ([`failure_penalty`](Self::failure_penalty)) counts an error, a `5xx` or
/// a `429` as a sample of at least the penalty latency (after linkerd's penalty EWMA), and
/// honours `Retry-After` (in seconds, capped by [`retry_after_cap`](Self::retry_after_cap)) by
/// holding the penalty that long.
///
/// Picks read a coarse clock kept by the tracker: it advances with every timed response and
/// with a real clock read once every 64 picks, so a pick almost never reads the clock itself.
///
/// A response updates its target's estimate with plain loads and stores, no locked
/// instruction: when two responses from the same target complete at the same instant on two
/// threads, one of the two samples may be lost. An estimate fed by a steady stream of samples
/// loses nothing it needs by that (a lost peak is taken again with the target's next slow
/// response).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::algorithm::LatencyTracker;
///
/// let tracker = LatencyTracker::new(Duration::from_secs(10))
///     .default_rtt(Duration::from_millis(30))
///     .failure_penalty(Duration::from_secs(1));
/// # let _ = tracker;
/// ```
#[derive(Debug, Clone)]
pub struct LatencyTracker {
    // One pointer, so that timing a request adds little to the request's future.
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    decay_ns: f64,
    default_rtt_ns: f64,
    penalty_ns: Option<f64>,
    retry_after_cap: Duration,
    clock: AtomicU64,
}

impl Inner {
    fn edit(tracker: LatencyTracker, f: impl FnOnce(&mut Inner)) -> LatencyTracker {
        let i = &tracker.inner;
        let mut copy = Inner {
            decay_ns: i.decay_ns,
            default_rtt_ns: i.default_rtt_ns,
            penalty_ns: i.penalty_ns,
            retry_after_cap: i.retry_after_cap,
            clock: AtomicU64::new(i.clock.load(Ordering::Relaxed)),
        };
        f(&mut copy);
        LatencyTracker {
            inner: Arc::new(copy),
        }
    }
}

/// Every latency timestamp is nanoseconds since one process-wide origin, far enough in the
/// past that no instant a (paused or real) tokio clock hands out can precede it.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(30 * 24 * 3600))
            .or_else(|| now.checked_sub(Duration::from_secs(3600)))
            .unwrap_or(now)
    })
}

#[inline]
pub(crate) fn nanos(at: Instant) -> u64 {
    // Whole seconds and the rest, not `as_nanos` (a 128-bit product and a range check): 64
    // bits of nanoseconds last 584 years past the origin.
    let d = at.saturating_duration_since(origin());
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// `exp(-x)` for `x ≥ 0`: the weight an estimate keeps after `x` decay periods.
///
/// Between back-to-back samples `x` is tiny (10 ms against a 10 s decay is 0.001), where a
/// cubic is exact to 4·10⁻¹⁰ (the first omitted term, `x⁴/24`, at `x = 0.01`) and costs a few
/// multiplications instead of a libm call; larger gaps take `exp`.
#[inline]
pub(crate) fn decay_weight(x: f64) -> f64 {
    if x < 0.01 {
        1.0 - x * (1.0 - x * (0.5 - x * (1.0 / 6.0)))
    } else {
        (-x).exp()
    }
}

impl LatencyTracker {
    /// A tracker whose estimates decay with time constant `decay` (Finagle and tower use 10 s).
    /// Defaults: 30 ms for a target never measured, not failure-aware, `Retry-After` capped at
    /// 30 s.
    pub fn new(decay: Duration) -> Self {
        LatencyTracker {
            inner: Arc::new(Inner {
                decay_ns: (decay.as_nanos() as f64).max(1.0),
                default_rtt_ns: 30e6,
                penalty_ns: None,
                retry_after_cap: Duration::from_secs(30),
                clock: AtomicU64::new(nanos(Instant::now())),
            }),
        }
    }

    pub(crate) fn with_decay(self, decay: Duration) -> Self {
        Inner::edit(self, |i| i.decay_ns = (decay.as_nanos() as f64).max(1.0))
    }

    /// The latency assumed for a target that has not answered yet (default 30 ms).
    pub fn default_rtt(self, rtt: Duration) -> Self {
        Inner::edit(self, |i| {
            i.default_rtt_ns = (rtt.as_nanos() as f64).max(1.0)
        })
    }

    /// Makes the estimate failure-aware: an error, a `5xx` or a `429` counts as a sample of at
    /// least `penalty`, and `Retry-After` holds the penalty for that long (capped).
    pub fn failure_penalty(self, penalty: Duration) -> Self {
        Inner::edit(self, |i| {
            i.penalty_ns = Some((penalty.as_nanos() as f64).max(1.0));
        })
    }

    /// The longest `Retry-After` honoured (default 30 s); longer values are cut to this.
    pub fn retry_after_cap(self, cap: Duration) -> Self {
        Inner::edit(self, |i| i.retry_after_cap = cap)
    }

    /// Whether failures count as penalty samples.
    pub fn is_failure_aware(&self) -> bool {
        self.inner.penalty_ns.is_some()
    }

    /// The current latency estimate for the target at `index`: the peak EWMA decayed to the
    /// tracker's clock, at least the penalty while a `Retry-After` hold lasts, or the default
    /// for a target never measured.
    ///
    /// # Panics
    ///
    /// If `index >= cx.len()`.
    #[inline]
    pub fn estimate(&self, cx: &Context<'_>, index: usize) -> Duration {
        Duration::from_nanos(self.estimate_ns(cx.state(index), self.now()) as u64)
    }

    #[inline]
    pub(crate) fn estimate_ns(&self, state: &TargetState, now: u64) -> f64 {
        let l = &state.latency;
        let est = match l.load() {
            None => self.inner.default_rtt_ns,
            Some((est, stamp)) => {
                let elapsed = now.saturating_sub(stamp) as f64;
                est * decay_weight(elapsed / self.inner.decay_ns)
            }
        };
        match self.inner.penalty_ns {
            Some(p) if now < l.penalty_until() => est.max(p),
            _ => est,
        }
    }

    /// The coarse clock.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.inner.clock.load(Ordering::Relaxed)
    }

    /// Advances the coarse clock from the real one.
    #[cold]
    pub(crate) fn refresh(&self) {
        self.inner
            .clock
            .fetch_max(nanos(Instant::now()), Ordering::Relaxed);
    }

    /// Moves the coarse clock forward to `now`. A load and, when `now` is later, a plain store
    /// (no locked instruction per response): a racing store of a slightly earlier instant
    /// only makes the clock lag by the gap between two responses, and the next one fixes it.
    #[inline]
    fn advance(&self, now: u64) {
        if now > self.inner.clock.load(Ordering::Relaxed) {
            self.inner.clock.store(now, Ordering::Relaxed);
        }
    }

    /// The start stamp of an attempt (nanoseconds on the latency clock).
    #[inline]
    pub(crate) fn start(&self) -> u64 {
        nanos(Instant::now())
    }

    /// Records one finished attempt that started at `started` (see [`start`](Self::start)).
    ///
    /// `failed` is an error, a `5xx` or a `429`; `retry_after` is the response's hint.
    pub(crate) fn observe(
        &self,
        state: &TargetState,
        started: u64,
        failed: bool,
        errored: bool,
        retry_after: Option<Duration>,
    ) {
        let now = nanos(Instant::now());
        self.advance(now);
        let rtt = now.saturating_sub(started) as f64;
        let sample = match (self.inner.penalty_ns, failed) {
            (Some(p), true) => rtt.max(p),
            // Without a penalty an error says nothing about latency (a refused connection is
            // fast, not good), so it is not sampled.
            (None, _) if errored => return,
            _ => rtt,
        };
        state.latency.record(sample, now, self.inner.decay_ns);
        if let (Some(_), Some(ra)) = (self.inner.penalty_ns, retry_after) {
            let hold = ra.min(self.inner.retry_after_cap);
            state
                .latency
                .hold_until(now.saturating_add(hold.as_nanos() as u64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn penalty_and_capped_retry_after() {
        let state = TargetState::default();
        let t = LatencyTracker::new(Duration::from_secs(10))
            .failure_penalty(Duration::from_secs(2))
            .retry_after_cap(Duration::from_secs(5));
        let start = t.start();
        tokio::time::advance(Duration::from_millis(10)).await;
        // A fast 429 counts as the 2 s penalty; Retry-After 3600 s is cut to 5 s.
        t.observe(&state, start, true, false, Some(Duration::from_secs(3600)));
        let now = t.now();
        assert_eq!(state.latency.load().unwrap().0, 2e9);
        assert_eq!(state.latency.penalty_until(), now + 5_000_000_000);
        // While held, the estimate never drops below the penalty, however much it decays.
        assert!(t.estimate_ns(&state, now + 4_000_000_000) >= 2e9);
        // After the hold it decays normally.
        let later = now + 20_000_000_000;
        let est = t.estimate_ns(&state, later);
        assert!((est - 2e9 * (-2.0f64).exp()).abs() < 1e3, "{est}");
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_not_samples_unless_failure_aware() {
        let state = TargetState::default();
        let t = LatencyTracker::new(Duration::from_secs(10)).default_rtt(Duration::from_millis(7));
        t.observe(&state, t.start(), true, true, None);
        assert_eq!(state.latency.load(), None);
        assert_eq!(t.estimate_ns(&state, t.now()), 7e6);
        // A 5xx response without the penalty is an ordinary sample.
        let start = t.start();
        tokio::time::advance(Duration::from_millis(3)).await;
        t.observe(&state, start, true, false, Some(Duration::from_secs(1)));
        assert_eq!(state.latency.load().unwrap().0, 3e6);
        assert_eq!(state.latency.penalty_until(), 0);
    }

    #[test]
    fn decay_weight_matches_exp() {
        // Both sides of the switch to `exp`, and the boundary itself.
        let mut x = 0.0;
        for _ in 0..2_000 {
            let (w, e) = (decay_weight(x), (-x).exp());
            assert!((w - e).abs() <= 1e-9 * e, "x = {x}: {w} vs {e}");
            x += 1.0 / 64_000.0;
        }
        assert_eq!(decay_weight(0.0), 1.0);
        assert!((decay_weight(0.01) - (-0.01f64).exp()).abs() < 1e-12);
        assert_eq!(decay_weight(50.0), (-50.0f64).exp());
    }

    #[tokio::test(start_paused = true)]
    async fn the_coarse_clock_only_moves_forward() {
        let state = TargetState::default();
        let t = LatencyTracker::new(Duration::from_secs(10));
        let before = t.now();
        tokio::time::advance(Duration::from_millis(5)).await;
        t.observe(&state, t.start(), false, false, None);
        let after = t.now();
        assert!(after >= before + 5_000_000, "{before} → {after}");
        // A late response that read an earlier instant does not move it back.
        t.advance(after - 1_000);
        assert_eq!(t.now(), after);
    }
}
