use std::sync::atomic::Ordering;

use super::{Algorithm, Context, FastRng, InvalidBias, Selector, Targets};
use crate::target::{Hot, Status, Target};

/// Power of two choices on requests in flight (Mitzenmacher, "The Power of Two Choices in
/// Randomized Load Balancing", 2001): draw two targets at random, send to the one with the
/// better score `weight / (in_flight + 1)^bias`.
///
/// Two random draws get almost all the benefit of asking every target, at O(1) per pick and
/// without the herd behaviour of strict least-connections across many balancers.
///
/// Weights are honoured the way Envoy's least-request does it: they divide the load rather
/// than standing in for it (tower's `p2c` treats weight as load, which skews badly; tower
/// #696). When weights differ, the two candidates are drawn in proportion to weight and two
/// idle candidates are a coin toss, so light traffic follows the weights exactly; under load
/// the score keeps each target's requests in flight in proportion to its weight. `bias`
/// (default 1) sets how strongly load counts against weight; 0 ignores load entirely.
///
/// When both draws are unavailable the pick falls back to the best-scoring available target
/// (O(n)), so it never fails while one is available.
///
/// # Examples
///
/// ```
/// use tower_lb::algorithm::P2cInFlight;
/// use tower_lb::TargetGroup;
///
/// let group = TargetGroup::builder("api").algorithm(P2cInFlight::new().bias(1.0)?).build()?;
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Debug, Clone)]
pub struct P2cInFlight {
    bias: f64,
    seed: Option<u64>,
}

impl Default for P2cInFlight {
    fn default() -> Self {
        P2cInFlight::new()
    }
}

impl P2cInFlight {
    /// Power of two choices with bias 1 and an OS-seeded random source.
    pub fn new() -> Self {
        P2cInFlight {
            bias: 1.0,
            seed: None,
        }
    }

    /// How strongly requests in flight count against weight (default 1): a finite number of
    /// at least 0, or [`InvalidBias`].
    pub fn bias(mut self, bias: f64) -> Result<Self, InvalidBias> {
        if !(bias.is_finite() && bias >= 0.0) {
            return Err(InvalidBias { bias });
        }
        self.bias = bias;
        Ok(self)
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

impl Algorithm for P2cInFlight {
    fn build(&self, targets: &Targets<'_>) -> Box<dyn Selector> {
        let sampler = Sampler::new(targets);
        Box::new(P2cSelector {
            // Equal weights need not be read per pick.
            uniform_weight: sampler
                .uniform
                .then(|| targets.iter().next().map(Target::weight))
                .flatten(),
            sampler,
            rng: FastRng::new(self.seed),
            bias: self.bias,
        })
    }
}

#[derive(Debug)]
struct P2cSelector {
    sampler: Sampler,
    /// The weight every target has, when they all have the same.
    uniform_weight: Option<u32>,
    rng: FastRng,
    bias: f64,
}

impl P2cSelector {
    /// Whether `a` scores strictly better than `b` (`None` on a tie).
    #[inline]
    fn better(&self, cx: &Context<'_>, a: usize, b: usize) -> Option<bool> {
        // Thousandths keep slow-start ramps of small weights precise.
        let la = (cx.weight_milli(a), u64::from(cx.in_flight(a)));
        let lb = (cx.weight_milli(b), u64::from(cx.in_flight(b)));
        self.compare(cx, (a, la), (b, lb))
    }

    /// [`better`](Self::better) on already loaded `(weight in thousandths, in flight)` pairs.
    #[inline]
    fn compare(
        &self,
        cx: &Context<'_>,
        (a, (wa, fa)): (usize, (u64, u64)),
        (b, (wb, fb)): (usize, (u64, u64)),
    ) -> Option<bool> {
        if fa == 0 && fb == 0 {
            if cx.weights_adjusted() {
                // Idle pair while a slow-start ramp is active: choose in proportion to how far
                // each has ramped (current ÷ configured weight), so a joiner gets its reduced
                // share even when nothing is in flight, and not none at all.
                let (sa, sb) = (
                    u64::from(cx.target(a).weight()) * 1000,
                    u64::from(cx.target(b).weight()) * 1000,
                );
                let (pa, pb) = (wa * sb, wb * sa);
                if pa != pb {
                    return Some(self.rng.below(pa + pb) < pa);
                }
            }
            if !self.sampler.uniform {
                // The pair was already drawn in proportion to weight.
                return None;
            }
        }
        if self.bias == 1.0 {
            // wa / (fa + 1) vs wb / (fb + 1), without division.
            let (l, r) = (wa * (fb + 1), wb * (fa + 1));
            return (l != r).then_some(l > r);
        }
        let (sa, sb) = (self.score(wa, fa), self.score(wb, fb));
        (sa != sb).then_some(sa > sb)
    }

    #[inline]
    fn score(&self, w: u64, f: u64) -> f64 {
        w as f64 / ((f + 1) as f64).powf(self.bias)
    }
}

impl Selector for P2cSelector {
    #[inline]
    fn select(&self, cx: &Context<'_>) -> Option<usize> {
        let n = cx.len();
        if n == 0 {
            return None;
        }
        let r = self.rng.next_u64();
        let (a, b) = self.sampler.pair(r, n);
        if let (Some((counters, blocking)), Some(_), true) =
            (cx.plain_counters(), self.uniform_weight, self.bias > 0.0)
        {
            // The common case, read straight from the dense counters: equal weights, nothing
            // ramping, no backups, limits or targets to avoid. Fewer in flight wins (any bias
            // above 0 orders equal weights by load alone).
            if let (Some(ha), Some(hb)) = (counters.get(a), counters.get(b)) {
                // One load per candidate: status and load share a word.
                let (wa, wb) = (ha.load(Ordering::Relaxed), hb.load(Ordering::Relaxed));
                if !Hot::status_of(wa | wb).intersects(blocking | Status::RAMP) {
                    let (fa, fb) = (Hot::in_flight_of(wa), Hot::in_flight_of(wb));
                    let take_b = fb < fa || (fb == fa && r & 1 != 0);
                    let mask = usize::from(take_b).wrapping_neg();
                    return Some(a ^ ((a ^ b) & mask));
                }
            }
        }
        // One read of each candidate's state: availability, weight and load together.
        match (
            cx.load(a, self.uniform_weight),
            cx.load(b, self.uniform_weight),
        ) {
            (Some(la), Some(lb)) => {
                let take_b = match self.compare(cx, (a, la), (b, lb)) {
                    Some(a_better) => !a_better,
                    None => r & 1 != 0,
                };
                // Without a branch: a tie is a coin toss, which no predictor can learn.
                let mask = usize::from(take_b).wrapping_neg();
                Some(a ^ ((a ^ b) & mask))
            }
            (Some(_), None) => Some(a),
            (None, Some(_)) => Some(b),
            (None, None) => (0..n)
                .map(|k| (a + k) % n)
                .filter(|&i| cx.is_available(i))
                .reduce(|best, i| match self.better(cx, i, best) {
                    Some(true) => i,
                    _ => best,
                }),
        }
    }
}

/// Draws the two candidates of a power-of-two-choices pick: uniformly (two distinct indices)
/// when all weights are equal, else in proportion to weight.
#[derive(Debug)]
pub(crate) struct Sampler {
    pub(crate) uniform: bool,
    cumulative: Box<[u64]>,
}

impl Sampler {
    pub(crate) fn new(targets: &Targets<'_>) -> Self {
        let first = targets.iter().next().map(|t| t.weight());
        let uniform = targets.iter().all(|t| Some(t.weight()) == first);
        let cumulative = if uniform {
            Box::default()
        } else {
            targets
                .iter()
                .scan(0u64, |acc, t| {
                    *acc += u64::from(t.weight().max(1));
                    Some(*acc)
                })
                .collect()
        };
        Sampler {
            uniform,
            cumulative,
        }
    }

    /// Two indices in `0..n` from one random word (`n > 0`).
    #[inline]
    pub(crate) fn pair(&self, r: u64, n: usize) -> (usize, usize) {
        if self.uniform || self.cumulative.len() != n {
            let n64 = n as u64;
            let wide = u128::from(r) * u128::from(n64);
            let a = (wide >> 64) as usize;
            if n == 1 {
                return (0, 0);
            }
            // The low half is still uniform: draw the second from the other n - 1.
            let lo = wide as u64;
            let k = ((u128::from(lo) * u128::from(n64 - 1)) >> 64) as usize;
            // a < n and k < n - 1, so one subtraction wraps it (no division on the hot path).
            let b = a + 1 + k;
            (a, if b >= n { b - n } else { b })
        } else {
            let total = self.cumulative[n - 1];
            let x = ((u128::from(r) * u128::from(total)) >> 64) as u64;
            let y = ((u128::from(r.rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15) * u128::from(total))
                >> 64) as u64;
            let a = self.cumulative.partition_point(|&c| c <= x);
            let b = self.cumulative.partition_point(|&c| c <= y);
            (a.min(n - 1), b.min(n - 1))
        }
    }
}
