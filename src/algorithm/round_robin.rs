use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Algorithm, Context, Selector, Targets};

/// Plain round robin: each target in turn, weights ignored.
///
/// Unavailable targets are skipped (the next one in order takes the turn).
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
            next: AtomicUsize::new(0),
        })
    }
}

#[derive(Debug)]
struct RoundRobinSelector {
    next: AtomicUsize,
}

impl Selector for RoundRobinSelector {
    #[inline]
    fn select(&self, cx: &Context<'_>) -> Option<usize> {
        let n = cx.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        if cx.is_available(start) {
            return Some(start);
        }
        (1..n)
            .map(|k| (start + k) % n)
            .find(|&i| cx.is_available(i))
    }
}
