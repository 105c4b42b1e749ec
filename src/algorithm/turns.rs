//! Turn counters per thread, for the round-robin selectors.
//!
//! One counter for the whole process moves its cache line between cores on every pick, which
//! costs more than the whole pick as soon as two threads balance at once. A selector keeps
//! [`STRIPES`] counters instead, each on cache lines of its own, and each thread takes its turns
//! from one of them: thread number `k` (std's `ThreadId`, which numbers threads in the order they
//! are created) uses counter `k mod STRIPES`, so 16 threads created one after another never share
//! one (others may, which stays correct). One thread sees exactly the sequence one shared counter
//! gives; several threads each rotate on their own, as nginx workers and Envoy worker threads do.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many counters a selector keeps.
pub(crate) const STRIPES: usize = 16;

/// A counter on cache lines of its own (128 bytes: a line and the neighbour that Intel cores
/// prefetch with it), so threads on different counters never share a line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicUsize);

thread_local! {
    /// This thread's counter index; `usize::MAX` until its first turn.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The index of the calling thread's counter.
#[inline]
pub(crate) fn stripe() -> usize {
    STRIPE.with(|cell| match cell.get() {
        usize::MAX => {
            // std numbers threads 1, 2, 3, … as they are created.
            let number = crate::util::id_number(&std::thread::current().id());
            let s = (number % STRIPES as u64) as usize;
            cell.set(s);
            s
        }
        s => s,
    })
}

/// Where the selectors an algorithm builds start their turns: the first build at 0, each
/// later one (a membership change) at a well-mixed offset (splitmix64 of the build number), so
/// under discovery churn the first picks after each change spread over every target instead of
/// all going to the first one. Deterministic per algorithm value; no global state.
#[derive(Debug, Clone, Default)]
pub(crate) struct BuildOffsets {
    builds: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl BuildOffsets {
    /// The offset for the next build.
    pub(crate) fn next(&self) -> usize {
        let k = self.builds.fetch_add(1, Ordering::Relaxed);
        let mut z = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        // Half the range: a counter has room for 2^63 turns before it wraps.
        ((z ^ (z >> 31)) >> 1) as usize
    }
}

/// A selector's turn counters.
#[derive(Debug, Default)]
pub(crate) struct Turns {
    counters: Box<[Padded; STRIPES]>,
}

impl Turns {
    /// Counters that all start at `offset`: each thread's turns run `offset`, `offset + 1`, …
    /// so any `len` consecutive turns still cover a cycle of `len` exactly once.
    pub(crate) fn starting_at(offset: usize) -> Self {
        Turns {
            counters: Box::new(std::array::from_fn(|_| Padded(AtomicUsize::new(offset)))),
        }
    }

    /// The calling thread's next turn (0, 1, 2, … on a counter of its own).
    #[inline]
    pub(crate) fn next(&self) -> usize {
        self.counters[stripe()].0.fetch_add(1, Ordering::Relaxed)
    }

    /// The calling thread's next turn, without taking it.
    #[inline]
    pub(crate) fn peek(&self) -> usize {
        self.counters[stripe()].0.load(Ordering::Relaxed)
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
        let turns = Turns::default();
        assert_eq!((turns.next(), turns.next(), turns.peek()), (0, 1, 2));
        let turns = Turns::starting_at(7);
        assert_eq!((turns.next(), turns.next(), turns.peek()), (7, 8, 9));
    }

    #[test]
    fn builds_start_spread() {
        let offsets = BuildOffsets::default();
        assert_eq!(offsets.next(), 0, "the first build starts at 0");
        let mut counts = [0u32; 3];
        for _ in 0..999 {
            counts[offsets.next() % 3] += 1;
        }
        assert!(counts.iter().all(|&c| c > 250), "{counts:?}");
    }
}
