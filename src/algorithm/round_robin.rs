use super::turns::Turns;
use super::{Algorithm, Context, Selector, Targets};

/// Plain round robin: each target in turn, weights ignored.
///
/// Unavailable targets are skipped (the next one in order takes the turn).
///
/// Turns are counted per thread, not in one counter for the whole process: each thread goes
/// through the targets in order (0, 1, 2, … from the group's build or last change), as each
/// nginx worker and each Envoy worker thread does, and over time every target gets its share
/// from every thread. One shared counter would move its cache line between cores on every
/// pick, which costs more than the whole pick as soon as two threads balance at once.
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
    _p: (),
}

impl RoundRobin {
    /// Round robin.
    pub fn new() -> Self {
        RoundRobin { _p: () }
    }
}

impl Algorithm for RoundRobin {
    fn build(&self, _targets: &Targets<'_>) -> Box<dyn Selector> {
        Box::new(RoundRobinSelector {
            turns: Turns::default(),
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
