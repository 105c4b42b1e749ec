use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// A lock-free, seedable random source for picks: splitmix64 over one atomic counter.
///
/// One `fetch_add` per draw, like a round-robin counter; every draw gets a distinct state, so
/// threads never see the same number twice.
#[derive(Debug)]
pub(crate) struct FastRng {
    state: AtomicU64,
}

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl FastRng {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        let seed =
            seed.unwrap_or_else(|| std::collections::hash_map::RandomState::new().hash_one(0u64));
        FastRng {
            state: AtomicU64::new(seed),
        }
    }

    #[inline]
    pub(crate) fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
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
}
