use super::{Algorithm, Context, FastRng, Selector, Targets};

/// Least connections, weighted: the available target with the fewest requests in flight per
/// unit of weight (nginx `least_conn`, HAProxy `leastconn`).
///
/// Ties, including the common idle case where every target has nothing in flight, are broken at
/// random in proportion to weight (one random draw per pick), so light load still follows the
/// weights and no target is favoured just for coming first. Each pick reads every target's
/// in-flight count, twice when there is a tie: O(n).
///
/// # Examples
///
/// ```
/// use tower_lb::algorithm::LeastConnections;
/// use tower_lb::TargetGroup;
///
/// let group = TargetGroup::builder("api").algorithm(LeastConnections::new()).build()?;
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct LeastConnections {
    seed: Option<u64>,
}

impl LeastConnections {
    /// Least connections, with ties broken from an OS-seeded random source.
    pub fn new() -> Self {
        LeastConnections { seed: None }
    }

    /// Uses a fixed seed for tie-breaking.
    ///
    /// Seeded draws come from one counter shared by every thread (reproducible, one atomic
    /// operation per draw); unseeded, each thread draws from its own (no shared write per pick).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

impl Algorithm for LeastConnections {
    fn build(&self, _targets: &Targets<'_>) -> Box<dyn Selector> {
        Box::new(LeastConnSelector {
            rng: FastRng::new(self.seed),
        })
    }
}

#[derive(Debug)]
struct LeastConnSelector {
    rng: FastRng,
}

impl Selector for LeastConnSelector {
    #[inline]
    fn select(&self, cx: &Context<'_>) -> Option<usize> {
        // Pass 1: the lowest in-flight per unit of weight, and the total weight of the targets
        // that tie at it.
        let mut best: Option<(usize, u64, u64)> = None;
        let mut tied_weight = 0u64;
        for i in (0..cx.len()).filter(|&i| cx.is_available(i)) {
            let load = u64::from(cx.in_flight(i));
            // Thousandths keep slow-start ramps of small weights precise.
            let w = cx.weight_milli(i);
            match best {
                None => {
                    best = Some((i, load, w));
                    tied_weight = w;
                }
                // load/w vs bl/bw without division.
                Some((_, bl, bw)) => match (load * bw).cmp(&(bl * w)) {
                    std::cmp::Ordering::Less => {
                        best = Some((i, load, w));
                        tied_weight = w;
                    }
                    std::cmp::Ordering::Equal => tied_weight += w,
                    std::cmp::Ordering::Greater => {}
                },
            }
        }
        let (first, bl, bw) = best?;
        if tied_weight == bw {
            return Some(first);
        }
        // Pass 2: one weighted draw among the tied targets. Counts may move between the passes
        // (other requests start and end); if the draw finds no match, the first best stands.
        let mut r = self.rng.below(tied_weight);
        for i in (first..cx.len()).filter(|&i| cx.is_available(i)) {
            let w = cx.weight_milli(i);
            if u64::from(cx.in_flight(i)) * bw == bl * w {
                if r < w {
                    return Some(i);
                }
                r -= w;
            }
        }
        Some(first)
    }
}
