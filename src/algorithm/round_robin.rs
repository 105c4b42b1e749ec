use super::turns::{BuildOffsets, Turns};
use super::{Algorithm, Context, Selector, Targets};

/// Plain round robin: each target in turn, weights ignored.
///
/// Unavailable targets are skipped (the next one in order takes the turn).
///
/// Turns are counted per thread, not in one counter for the whole process: each thread goes
/// through the targets in order, as each
/// nginx worker and each Envoy worker thread does, and over time every target gets its share
/// from every thread. One shared counter would move its cache line between cores on every
/// pick, which costs more than the whole pick as soon as two threads balance at once.
///
/// The first build starts at the first target; each rebuild (a membership change) starts at a
/// spread offset, so under discovery churn the first picks after each change do not all go to
/// the first target. From there a thread keeps strict order.
///
/// # Examples
///
/// ```
/// use tower_lb::algorithm::RoundRobin;
/// use tower_lb::target::TargetGroup;
///
/// let group = TargetGroup::builder("api").algorithm(RoundRobin::new()).build()?;
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct RoundRobin {
    offsets: BuildOffsets,
}

impl RoundRobin {
    /// Round robin.
    pub fn new() -> Self {
        RoundRobin {
            offsets: BuildOffsets::default(),
        }
    }
}

impl Algorithm for RoundRobin {
    fn build(&self, _targets: &Targets<'_>) -> Box<dyn Selector> {
        Box::new(RoundRobinSelector {
            turns: Turns::starting_at(self.offsets.next()),
        })
    }
}

#[derive(Debug)]
struct RoundRobinSelector {
    turns: Turns,
}

impl Selector for RoundRobinSelector {
    #[inline]
    fn select(&self, cx: &Context<'_>) -> Option<usize> {
        let n = cx.len();
        if n == 0 {
            return None;
        }
        let start = self.turns.next() % n;
        if cx.is_available(start) {
            return Some(start);
        }
        (1..n)
            .map(|k| (start + k) % n)
            .find(|&i| cx.is_available(i))
    }
}
