use super::{Algorithm, Context, FastRng, Selector, Targets};

/// Tries from the full weighted distribution before an exact pass over the available targets.
const REJECTION_TRIES: usize = 4;

/// Weighted random: each pick independently chooses target *i* with probability
/// `weightᵢ / Σ weights` over the available targets.
///
/// Stateless between picks apart from the random source, so it needs no coordination between
/// threads or processes. Seed it for reproducible runs.
///
/// While a target's weight ramps up ([slow start](crate::health::SlowStart)), a draw that lands
/// on it is kept with probability `current / full weight`, which makes the distribution exactly
/// proportional to the current weights; without an active ramp this costs one atomic load.
///
/// # Examples
///
/// ```
/// use tower_lb::algorithm::WeightedRandom;
/// use tower_lb::TargetGroup;
///
/// let group = TargetGroup::builder("api").algorithm(WeightedRandom::new().seed(42)).build()?;
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct WeightedRandom {
    seed: Option<u64>,
}

impl WeightedRandom {
    /// Weighted random, seeded from the OS.
    pub fn new() -> Self {
        WeightedRandom { seed: None }
    }

    /// Uses a fixed seed (each snapshot's selector restarts from it).
    ///
    /// Seeded draws come from one counter shared by every thread (reproducible, one atomic
    /// operation per draw); unseeded, each thread draws from its own (no shared write per pick).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

impl Algorithm for WeightedRandom {
    fn build(&self, targets: &Targets<'_>) -> Box<dyn Selector> {
        let mut sum = 0u64;
        let cumulative = targets
            .iter()
            .map(|t| {
                sum += u64::from(t.weight());
                sum
            })
            .collect();
        Box::new(RandomSelector {
            cumulative,
            rng: FastRng::new(self.seed),
        })
    }
}

#[derive(Debug)]
struct RandomSelector {
    cumulative: Box<[u64]>,
    rng: FastRng,
}

impl RandomSelector {
    /// Thins draws of a ramping target down to its current weight.
    fn keep(&self, cx: &Context<'_>, i: usize) -> bool {
        let full = u64::from(cx.target(i).weight()) * 1000;
        let now = cx.weight_milli(i);
        now >= full || self.rng.below(full) < now
    }
}

impl Selector for RandomSelector {
    #[inline]
    fn select(&self, cx: &Context<'_>) -> Option<usize> {
        let total = *self.cumulative.last()?;
        // Rejection sampling keeps the distribution exact over the available subset.
        let adjusted = cx.weights_adjusted();
        for _ in 0..REJECTION_TRIES {
            let r = self.rng.below(total);
            let i = self.cumulative.partition_point(|&c| c <= r);
            if cx.is_available(i) && (!adjusted || self.keep(cx, i)) {
                return Some(i);
            }
        }
        let n = cx.len();
        let available: u64 = (0..n)
            .filter(|&i| cx.is_available(i))
            .map(|i| cx.weight_milli(i))
            .sum();
        if available == 0 {
            return None;
        }
        let mut r = self.rng.below(available);
        for i in (0..n).filter(|&i| cx.is_available(i)) {
            let w = cx.weight_milli(i);
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        None
    }
}
