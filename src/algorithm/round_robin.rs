use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Algorithm, Context, Selector, Targets};

/// Plain round robin: each target in turn, weights ignored.
///
/// Unavailable targets are skipped (the next one in order takes the turn).
///
/// Turns are counted per thread, not in one counter for the whole process: each thread goes
/// through the targets in order (0, 1, 2, … from the group's build or last change), as each
/// nginx worker and each Envoy worker thread does, and over time every target gets its share
/// from every thread. One shared counter would move its cache line between cores on every
/// pick, which costs more than the whole pick as soon as two threads balance at once. (Threads
/// share 16 counters, spread by thread; two threads may share one, which stays correct.)
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
            turns: Box::default(),
        })
    }
}

/// How many turn counters a round-robin selector keeps (each thread uses one).
const STRIPES: usize = 16;

/// A turn counter on cache lines of its own (128 bytes: a line and the neighbour that Intel
/// cores prefetch with it), so threads on different counters never share a line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Turns(AtomicUsize);

thread_local! {
    /// This thread's counter index; `usize::MAX` until its first round-robin pick.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The index of the calling thread's turn counter.
#[inline]
fn stripe() -> usize {
    STRIPE.with(|cell| match cell.get() {
        usize::MAX => {
            // Spread by the address of the thread's own storage: distinct for every live
            // thread, and no shared state to hand out numbers.
            let s = (super::rng::mix(cell as *const Cell<usize> as u64) % STRIPES as u64) as usize;
            cell.set(s);
            s
        }
        s => s,
    })
}

#[derive(Debug)]
struct RoundRobinSelector {
    turns: Box<[Turns; STRIPES]>,
}

impl Selector for RoundRobinSelector {
    #[inline]
    fn select(&self, cx: &Context<'_>) -> Option<usize> {
        let n = cx.len();
        if n == 0 {
            return None;
        }
        let start = self.turns[stripe()].0.fetch_add(1, Ordering::Relaxed) % n;
        if cx.is_available(start) {
            return Some(start);
        }
        (1..n)
            .map(|k| (start + k) % n)
            .find(|&i| cx.is_available(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_its_counter() {
        let mine = stripe();
        assert!(mine < STRIPES);
        assert_eq!(stripe(), mine);
        let other = std::thread::spawn(stripe).join().unwrap();
        assert!(other < STRIPES);
    }
}
