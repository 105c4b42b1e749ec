use std::sync::atomic::{AtomicU64, Ordering};

use super::turns::{BuildOffsets, Turns};
use super::{Algorithm, Context, Selector, Targets};

/// The longest weighted cycle kept; larger weight sums are scaled down to fit (proportions are
/// then exact to within one slot per target).
const MAX_CYCLE: u64 = 1 << 20;
/// Above this many steps (targets × cycle), the cycle is laid out by stride scheduling instead
/// of nginx's O(targets) per step loop.
const NGINX_WORK_LIMIT: u64 = 1 << 23;
/// Consecutive unavailable slots tried before falling back to a scan.
const MAX_SKIPS: usize = 64;

/// Smooth weighted round robin, the algorithm of nginx's `upstream` module.
///
/// Over every cycle of `Σ weights` picks, each target is picked exactly `weight` times, and the
/// picks of a heavy target are spread through the cycle instead of coming in a burst (weights
/// 5, 1, 1 give `a a b a c a a`, not `a a a a a b c`).
///
/// The whole cycle is laid out once per membership change, so a pick is one atomic increment
/// and one table read. Each thread walks the cycle on a counter of its own (as nginx workers
/// do; one shared counter would bounce between cores on every pick), so one thread sees the
/// exact sequence and several threads each keep exact shares per cycle. Each rebuild (a
/// membership change) starts the cycle at a spread offset, so churn does not hand every first
/// pick to the same target; any `Σ weights` consecutive picks still hold exact shares. A pick that lands on an unavailable target's slot moves on to the next
/// slot, so the targets that are available keep exact proportions among themselves. Very large
/// sets (targets × cycle above about 8 million) are laid out by stride scheduling, which keeps
/// the exact per-cycle counts with a slightly different interleaving.
///
/// While a target's weight ramps up ([slow start](crate::health::SlowStart)), its slots are
/// thinned by credit: each time one of its slots comes up it earns its current
/// [`weight_milli`](super::Context::weight_milli) and the slot is taken only once the credit
/// reaches the full weight, so it serves `current / full` of its slots, deterministically;
/// skipped slots pass to the next target in the cycle. Without an active ramp this costs one
/// atomic load per pick.
///
/// # Examples
///
/// ```
/// use tower_lb::algorithm::SmoothWeightedRoundRobin;
/// use tower_lb::target::{Target, TargetGroup};
///
/// let group = TargetGroup::builder("api")
///     .algorithm(SmoothWeightedRoundRobin::new())
///     .target(Target::builder("a", "10.0.0.1:80").weight(5).build()?)
///     .target(Target::builder("b", "10.0.0.2:80").weight(1).build()?)
///     .build()?;
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct SmoothWeightedRoundRobin {
    offsets: BuildOffsets,
}

impl SmoothWeightedRoundRobin {
    /// Smooth weighted round robin.
    pub fn new() -> Self {
        SmoothWeightedRoundRobin {
            offsets: BuildOffsets::default(),
        }
    }
}

impl Algorithm for SmoothWeightedRoundRobin {
    fn build(&self, targets: &Targets<'_>) -> Box<dyn Selector> {
        let weights: Vec<u32> = targets.iter().map(|t| t.weight()).collect();
        Box::new(SmoothSelector {
            cycle: cycle(&weights).into_boxed_slice(),
            turns: Turns::starting_at(self.offsets.next()),
            credits: weights.iter().map(|_| AtomicU64::new(0)).collect(),
        })
    }
}

#[derive(Debug)]
struct SmoothSelector {
    cycle: Box<[u32]>,
    /// Where each thread is in the cycle (see `turns`).
    turns: Turns,
    /// Slow-start credit per target (see the type's docs); untouched unless a ramp is active.
    credits: Box<[AtomicU64]>,
}

impl SmoothSelector {
    /// Whether a ramping target takes the slot that just came up.
    fn take_slot(&self, cx: &Context<'_>, i: usize) -> bool {
        let full = u64::from(cx.target(i).weight()) * 1000;
        let now = cx.weight_milli(i);
        if now >= full {
            return true;
        }
        let Some(credit) = self.credits.get(i) else {
            return true;
        };
        let prev = credit
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                let c = c + now;
                Some(if c >= full { c - full } else { c })
            })
            .unwrap_or_else(|c| c);
        prev + now >= full
    }
}

impl Selector for SmoothSelector {
    #[inline]
    fn select(&self, cx: &Context<'_>) -> Option<usize> {
        let len = self.cycle.len();
        if len == 0 {
            return None;
        }
        let adjusted = cx.weights_adjusted();
        for _ in 0..len.min(MAX_SKIPS) {
            let i = self.cycle[self.turns.next() % len] as usize;
            if cx.is_available(i) && (!adjusted || self.take_slot(cx, i)) {
                return Some(i);
            }
        }
        let n = cx.len();
        let start = self.turns.peek() % n.max(1);
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| cx.is_available(i))
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Lays out one cycle of target indices for `weights` (all ≥ 1).
pub(crate) fn cycle(weights: &[u32]) -> Vec<u32> {
    if weights.is_empty() {
        return Vec::new();
    }
    let g = weights.iter().fold(0u64, |g, &w| gcd(g, w.max(1) as u64));
    let mut w: Vec<u64> = weights.iter().map(|&x| x.max(1) as u64 / g).collect();
    let mut total: u64 = w.iter().sum();
    if total > MAX_CYCLE {
        for x in &mut w {
            *x = (*x * MAX_CYCLE / total).max(1);
        }
        total = w.iter().sum();
    }
    let n = w.len() as u64;
    if n.saturating_mul(total) <= NGINX_WORK_LIMIT {
        nginx(&w, total)
    } else {
        stride(&w, total)
    }
}

/// nginx: every step, add each weight to its running score, take the highest, subtract the total.
fn nginx(w: &[u64], total: u64) -> Vec<u32> {
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, &wi) in w.iter().enumerate() {
            current[i] += wi as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total as i64;
        out.push(best as u32);
    }
    out
}

/// Stride scheduling: the k-th pick of target i is due at (k + ½) / wᵢ of the cycle.
fn stride(w: &[u64], total: u64) -> Vec<u32> {
    let mut slots: Vec<(u32, u64)> = Vec::with_capacity(total as usize);
    for (i, &wi) in w.iter().enumerate() {
        slots.extend((0..wi).map(|k| (i as u32, k)));
    }
    slots.sort_by(|&(i, k), &(j, l)| {
        let lhs = (2 * k + 1) * w[j as usize];
        let rhs = (2 * l + 1) * w[i as usize];
        lhs.cmp(&rhs).then(i.cmp(&j))
    });
    slots.into_iter().map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_nginx_reference_sequence() {
        assert_eq!(cycle(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(cycle(&[2, 2]), vec![0, 1]);
        assert!(cycle(&[]).is_empty());
    }

    #[test]
    fn large_sets_keep_exact_counts() {
        let weights: Vec<u32> = (0..5000).map(|i| 1 + (i % 7)).collect();
        let c = cycle(&weights);
        let mut counts = vec![0u32; weights.len()];
        for &i in &c {
            counts[i as usize] += 1;
        }
        assert_eq!(counts, weights);
    }
}
