//! A bounded, lock-free latency histogram over a sliding window.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Values below this many microseconds get one bucket each.
const LINEAR: u64 = 16;
/// Sub-buckets per power of two above `LINEAR` (3 bits: a bucket is at most 12.5 % wide).
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// The largest exponent kept apart; slower samples share the last bucket (2³² µs ≈ 71 min).
const MAX_EXP: u32 = 31;
/// Buckets in one slice: `LINEAR` linear ones, then `SUB` per power of two from 2⁴ to 2³¹.
pub(crate) const BUCKETS: usize = LINEAR as usize + (MAX_EXP as usize - 3) * SUB as usize;
/// Slices in the window; the oldest is reused when time moves past it.
pub(crate) const SLICES: usize = 4;

/// The bucket of a latency of `us` microseconds.
#[inline]
pub(crate) fn bucket_of(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros();
    if exp > MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = (us >> (exp - SUB_BITS)) & (SUB - 1);
    LINEAR as usize + (exp as usize - 4) * SUB as usize + sub as usize
}

/// The smallest latency (microseconds) that falls in `bucket`.
pub(crate) fn lower_of(bucket: usize) -> u64 {
    match bucket {
        0 => 0,
        b => upper_of(b - 1) + 1,
    }
}

/// The largest latency (microseconds) that falls in `bucket`: what a percentile reports, so a
/// figure never understates.
pub(crate) fn upper_of(bucket: usize) -> u64 {
    let b = bucket as u64;
    if b < LINEAR {
        return b;
    }
    let exp = (b - LINEAR) / SUB + 4;
    let sub = (b - LINEAR) % SUB;
    ((SUB + sub + 1) << (exp - u64::from(SUB_BITS))) - 1
}

/// One time slice of the window.
#[derive(Debug)]
struct Slice {
    /// Which slice of time (`now / slice length`) the counts belong to; `u64::MAX`: none yet.
    epoch: AtomicU64,
    counts: Box<[AtomicU32]>,
    max_us: AtomicU64,
}

impl Slice {
    fn new() -> Self {
        Slice {
            epoch: AtomicU64::new(u64::MAX),
            counts: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            max_us: AtomicU64::new(0),
        }
    }
}

/// Latencies of the last `window`, in `SLICES` slices of fixed buckets: a fixed size (about
/// 6 KiB), no allocation after construction, one atomic add per sample (plus a reset when a
/// slice is reused, once per slice length).
///
/// A slice's counts are moved into `retired` when it is reused, so every sample since the
/// window was made is also known ([`totals`](Self::totals), for cumulative histograms) at no
/// cost per sample.
#[derive(Debug)]
pub(crate) struct Window {
    slices: [Slice; SLICES],
    slice_ns: u64,
    /// Where the window's time starts (on the clock samples are taken from).
    origin: quanta::Instant,
    /// Counts of the slices reused so far, by bucket. Locked to move a slice's counts in (once
    /// per slice length) and to read the totals, so a reader sees each sample exactly once.
    retired: Mutex<[u64; BUCKETS]>,
}

impl Window {
    /// A window of about `window` (at least 4 ms).
    pub(crate) fn new(window: Duration) -> Self {
        let ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        Window {
            slices: std::array::from_fn(|_| Slice::new()),
            slice_ns: (ns / SLICES as u64).max(1_000_000),
            origin: quanta::Instant::now(),
            retired: Mutex::new([0; BUCKETS]),
        }
    }

    /// Nanoseconds from the window's origin to `at`.
    #[inline]
    pub(crate) fn offset(&self, at: quanta::Instant) -> u64 {
        let d = at.saturating_duration_since(self.origin);
        d.as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(d.subsec_nanos()))
    }

    /// Records a latency of `us` microseconds finished at `now_ns`.
    #[inline]
    pub(crate) fn record(&self, now_ns: u64, us: u64) {
        let epoch = now_ns / self.slice_ns;
        let slice = &self.slices[(epoch % SLICES as u64) as usize];
        let seen = slice.epoch.load(Ordering::Acquire);
        if seen != epoch {
            self.rotate(slice, seen, epoch);
        }
        slice.counts[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        if us > slice.max_us.load(Ordering::Relaxed) {
            slice.max_us.fetch_max(us, Ordering::Relaxed);
        }
    }

    /// Adds the counts of the slices still inside the window at `now_ns` into `into`; returns
    /// their maximum.
    pub(crate) fn collect(&self, now_ns: u64, into: &mut [u64; BUCKETS]) -> u64 {
        let epoch = now_ns / self.slice_ns;
        let mut max = 0;
        for s in &self.slices {
            let e = s.epoch.load(Ordering::Acquire);
            if e == u64::MAX || e > epoch || epoch - e >= SLICES as u64 {
                continue;
            }
            for (sum, c) in into.iter_mut().zip(s.counts.iter()) {
                *sum += u64::from(c.load(Ordering::Relaxed));
            }
            max = max.max(s.max_us.load(Ordering::Relaxed));
        }
        max
    }

    /// Adds every sample recorded since the window was made into `into`, by bucket.
    pub(crate) fn totals(&self, into: &mut [u64; BUCKETS]) {
        let retired = crate::util::lock(&self.retired);
        for (sum, r) in into.iter_mut().zip(retired.iter()) {
            *sum += r;
        }
        for s in &self.slices {
            for (sum, c) in into.iter_mut().zip(s.counts.iter()) {
                *sum += u64::from(c.load(Ordering::Relaxed));
            }
        }
    }

    /// Claims `slice` for `epoch` and clears it, moving its counts to the retired ones. Only a
    /// newer epoch takes a slice over: a late sample of an old slice is counted in the newer
    /// one rather than reviving stale counts.
    #[cold]
    fn rotate(&self, slice: &Slice, seen: u64, epoch: u64) {
        if seen != u64::MAX && seen > epoch {
            return;
        }
        if slice
            .epoch
            .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let mut retired = crate::util::lock(&self.retired);
            for (r, c) in retired.iter_mut().zip(slice.counts.iter()) {
                *r += u64::from(c.swap(0, Ordering::Relaxed));
            }
            slice.max_us.store(0, Ordering::Relaxed);
        }
    }
}

/// Latency percentiles over a window; see [`TargetReport::latency`](super::TargetReport::latency).
///
/// Each percentile is the upper edge of the bucket it falls in (buckets are at most 12.5 %
/// wide), so it never understates; `max` is exact.
///
/// # Examples
///
/// ```
/// use tower_lb::stats::LatencySummary;
///
/// let empty = LatencySummary::default();
/// assert_eq!(empty.count(), 0);
/// assert_eq!(empty.p99(), std::time::Duration::ZERO);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencySummary {
    count: u64,
    p50: Duration,
    p95: Duration,
    p99: Duration,
    max: Duration,
}

impl LatencySummary {
    /// Summarizes bucket counts and a maximum (microseconds).
    pub(crate) fn from_counts(counts: &[u64; BUCKETS], max_us: u64) -> Self {
        let count: u64 = counts.iter().sum();
        if count == 0 {
            return LatencySummary::default();
        }
        let at = |q: f64| {
            let rank = ((count as f64 * q).ceil() as u64).clamp(1, count);
            let mut seen = 0;
            for (b, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Duration::from_micros(upper_of(b).min(max_us));
                }
            }
            Duration::from_micros(max_us)
        };
        LatencySummary {
            count,
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: Duration::from_micros(max_us),
        }
    }

    /// Samples in the window.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// The median.
    pub fn p50(&self) -> Duration {
        self.p50
    }
    /// The 95th percentile.
    pub fn p95(&self) -> Duration {
        self.p95
    }
    /// The 99th percentile.
    pub fn p99(&self) -> Duration {
        self.p99
    }
    /// The slowest sample in the window.
    pub fn max(&self) -> Duration {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order_and_bound_it() {
        let mut last = 0;
        for us in (0..100_000u64).chain([1 << 20, 1 << 31, (1 << 32) - 1]) {
            let b = bucket_of(us);
            assert!(b >= last && b < BUCKETS);
            assert!(
                upper_of(b) >= us,
                "{us} above its bucket's edge {}",
                upper_of(b)
            );
            if us >= LINEAR {
                assert!(upper_of(b) - us <= us / 8 + 1, "bucket too wide at {us}");
            }
            last = b;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_and_window_expiry() {
        let w = Window::new(Duration::from_secs(4));
        for i in 1..=100u64 {
            w.record(0, i * 1000);
        }
        let mut c = [0; BUCKETS];
        let max = w.collect(0, &mut c);
        let s = LatencySummary::from_counts(&c, max);
        assert_eq!(s.count(), 100);
        assert_eq!(s.max(), Duration::from_millis(100));
        let p50 = s.p50().as_micros() as u64;
        assert!((50_000..=56_250).contains(&p50), "{p50}");
        assert!(s.p99() >= Duration::from_millis(99) && s.p99() <= s.max());
        // Four seconds later every slice is out of the window.
        let mut c = [0; BUCKETS];
        assert_eq!(w.collect(4_000_000_000, &mut c), 0);
        assert_eq!(c.iter().sum::<u64>(), 0);
        // A reused slice starts from zero.
        w.record(4_000_000_000, 7);
        let max = w.collect(4_000_000_000, &mut c);
        assert_eq!((c.iter().sum::<u64>(), max), (1, 7));
    }
}
