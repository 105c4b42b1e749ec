use std::cell::Cell;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// A lock-free, seedable random source for picks: splitmix64.
///
/// Seeded, it steps one shared atomic counter (one `fetch_add` per draw, like a round-robin
/// counter), so a seeded sequence is reproducible and threads never see the same number twice.
/// Unseeded (the default), it steps a counter of the calling thread's own: no atomic and no
/// cache line shared between cores, which matters on the request path where every other
/// counter is already per target.
#[derive(Debug)]
pub(crate) struct FastRng {
    state: AtomicU64,
    seeded: bool,
}

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

thread_local! {
    /// The per-thread state of unseeded sources; 0 until the thread's first draw.
    static LOCAL: Cell<u64> = const { Cell::new(0) };
}

#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn os_seed() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(0u64)
}

impl FastRng {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        FastRng {
            state: AtomicU64::new(seed.unwrap_or(0)),
            seeded: seed.is_some(),
        }
    }

    #[inline]
    pub(crate) fn next_u64(&self) -> u64 {
        if self.seeded {
            return mix(self
                .state
                .fetch_add(GAMMA, Ordering::Relaxed)
                .wrapping_add(GAMMA));
        }
        LOCAL.with(|cell| {
            let mut x = cell.get();
            if x == 0 {
                x = os_seed();
            }
            x = x.wrapping_add(GAMMA);
            cell.set(x);
            mix(x)
        })
    }

    /// A number in `0..n` (`n > 0`), by multiply-shift (bias below n / 2^64).
    #[inline]
    pub(crate) fn below(&self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_deterministic_and_in_range() {
        let a = FastRng::new(Some(7));
        let b = FastRng::new(Some(7));
        for _ in 0..1000 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            assert!(x < 10);
        }
    }

    #[test]
    fn unseeded_draws_differ_and_spread() {
        let a = FastRng::new(None);
        let b = FastRng::new(None);
        let draws: std::collections::HashSet<u64> = (0..1000)
            .flat_map(|_| [a.next_u64(), b.next_u64()])
            .collect();
        assert_eq!(
            draws.len(),
            2000,
            "no repeats, even across sources on one thread"
        );
        let mut buckets = [0u32; 10];
        for _ in 0..10_000 {
            buckets[a.below(10) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (800..1200).contains(&n)),
            "{buckets:?}"
        );
        let other = std::thread::spawn(|| FastRng::new(None).next_u64())
            .join()
            .unwrap();
        assert!(
            !draws.contains(&other),
            "another thread has its own sequence"
        );
    }
}
