//! Per-target latency state: a peak-EWMA estimate kept in atomics.
//!
//! Only groups whose selector asks for latency (see
//! [`Selector::latency`](super::Selector::latency)) ever write here, so every other
//! algorithm pays nothing for it.

use std::sync::atomic::{AtomicU64, Ordering};

/// The latency half of a target's live state. Times are nanoseconds on the crate's latency
/// clock (see [`LatencyTracker`](super::LatencyTracker)); an estimate of 0 means
/// "never measured".
#[derive(Debug, Default)]
pub(crate) struct LatencyState {
    /// The estimate in nanoseconds, as `f64` bits.
    estimate: AtomicU64,
    /// When the estimate was last updated.
    stamp: AtomicU64,
    /// Until when a failure penalty (from `Retry-After`) applies.
    penalty_until: AtomicU64,
}

impl LatencyState {
    /// The stored estimate and when it was taken, if ever measured.
    #[inline]
    pub(crate) fn load(&self) -> Option<(f64, u64)> {
        let est = f64::from_bits(self.estimate.load(Ordering::Relaxed));
        (est > 0.0).then(|| (est, self.stamp.load(Ordering::Relaxed)))
    }

    #[inline]
    pub(crate) fn penalty_until(&self) -> u64 {
        self.penalty_until.load(Ordering::Relaxed)
    }

    /// Folds one sample into the peak EWMA: a sample above the estimate replaces it at once
    /// (peak), one below pulls it down with weight `1 - exp(-elapsed / decay)`.
    ///
    /// Loads and stores, no locked instruction: two responses from the same target finishing
    /// at the same instant may both start from the same estimate, and the later store wins,
    /// so one of the two samples is lost. An estimate that follows thousands of samples loses
    /// nothing it needs by that (a peak lost this way is taken again with the target's next
    /// slow response); every response paying for a compare-and-swap would cost more.
    pub(crate) fn record(&self, sample_ns: f64, now: u64, decay_ns: f64) {
        let sample_ns = sample_ns.max(1.0);
        let stamp = self.stamp.load(Ordering::Relaxed);
        self.stamp.store(now, Ordering::Relaxed);
        let elapsed = now.saturating_sub(stamp) as f64;
        let prev = f64::from_bits(self.estimate.load(Ordering::Relaxed));
        let next = if prev <= 0.0 || sample_ns >= prev {
            sample_ns
        } else {
            let w = super::decay_weight(elapsed / decay_ns);
            prev * w + sample_ns * (1.0 - w)
        };
        self.estimate.store(next.to_bits(), Ordering::Relaxed);
    }

    /// Holds the failure penalty until `until` (never shortens an existing hold).
    pub(crate) fn hold_until(&self, until: u64) {
        self.penalty_until.fetch_max(until, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_then_decay() {
        let s = LatencyState::default();
        assert_eq!(s.load(), None);
        s.record(10e6, 0, 1e9);
        assert_eq!(s.load(), Some((10e6, 0)));
        // A peak is taken at once.
        s.record(50e6, 1, 1e9);
        assert_eq!(s.load().unwrap().0, 50e6);
        // A lower sample one decay period later moves ~63% of the way down.
        s.record(10e6, 1 + 1_000_000_000, 1e9);
        let est = s.load().unwrap().0;
        assert!(
            (est - (10e6 + 40e6 / std::f64::consts::E)).abs() < 1.0,
            "{est}"
        );
    }
}
