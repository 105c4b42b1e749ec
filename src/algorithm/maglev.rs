use super::error::InvalidTableSize;
use super::{Algorithm, Context, FastRng, Selector, Targets, stable_hash};

/// The default Maglev table size: a prime comfortably above 100 × a few hundred targets.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

/// The largest table size accepted (a prime, about 16.7 million entries, 64 MiB of table).
pub const MAX_TABLE_SIZE: u32 = 16_777_213;

/// Maglev hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
/// Balancer", NSDI 2016): a lookup table of prime size `M` filled from each target's own
/// permutation of the slots, so a pick is one hash and one array read.
///
/// Compared with a ring, Maglev spreads keys almost perfectly evenly (each target's share is
/// within one table entry of its weighted ideal) and looks up in O(1), at the price of
/// slightly more disruption on a change (a little over the ideal 1/n of keys move). Weights
/// are honoured by letting each target claim slots in proportion to its weight. The table
/// should be much larger than the number of targets (the paper suggests `M ≥ 100 n`).
///
/// Placement depends only on the targets' ids, weights and the seed (a keyed stable hash), so
/// every process builds the same table whatever the insertion order. When a key's target is
/// unavailable the pick walks to the next slots of the table, a stable fallback for that key.
/// A request without a key starts at a random slot.
///
/// # Examples
///
/// ```
/// use tower_lb::algorithm::Maglev;
/// use tower_lb::TargetGroup;
///
/// let maglev = Maglev::new().table_size(65_537)?.seed(7);
/// let group = TargetGroup::builder("cache").algorithm(maglev).build()?;
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Maglev {
    size: u32,
    seed: u64,
}

impl Default for Maglev {
    fn default() -> Self {
        Maglev::new()
    }
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

impl Maglev {
    /// A table of [`DEFAULT_TABLE_SIZE`] entries, seed 0.
    pub fn new() -> Self {
        Maglev {
            size: DEFAULT_TABLE_SIZE,
            seed: 0,
        }
    }

    /// The table size: a prime no larger than [`MAX_TABLE_SIZE`].
    pub fn table_size(mut self, size: u64) -> Result<Self, InvalidTableSize> {
        if size > u64::from(MAX_TABLE_SIZE) || !is_prime(size) {
            return Err(InvalidTableSize { size });
        }
        self.size = size as u32;
        Ok(self)
    }

    /// The placement seed: processes that must agree on placement use the same one.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// Fills a Maglev table of `m` slots for targets with the given permutations and weights.
fn populate(m: u64, perms: &[(u64, u64)], weights: &[u64]) -> Box<[u32]> {
    const EMPTY: u32 = u32::MAX;
    let mut table = vec![EMPTY; m as usize];
    if perms.is_empty() {
        return Box::default();
    }
    let max_w = weights.iter().copied().max().unwrap_or(1).max(1);
    let mut next = vec![0u64; perms.len()];
    let mut credit = vec![0u64; perms.len()];
    let mut filled = 0u64;
    'fill: loop {
        for (i, &(offset, skip)) in perms.iter().enumerate() {
            // Weighted Maglev: a target claims a slot each time its credit reaches the
            // heaviest weight, so claims per round are proportional to weight.
            credit[i] += weights[i];
            if credit[i] < max_w {
                continue;
            }
            credit[i] -= max_w;
            let mut c = (offset + next[i] * skip) % m;
            while table[c as usize] != EMPTY {
                next[i] += 1;
                c = (offset + next[i] * skip) % m;
            }
            table[c as usize] = i as u32;
            next[i] += 1;
            filled += 1;
            if filled == m {
                break 'fill;
            }
        }
    }
    table.into_boxed_slice()
}

impl Algorithm for Maglev {
    fn build(&self, targets: &Targets<'_>) -> Box<dyn Selector> {
        let m = u64::from(self.size);
        let perms: Vec<(u64, u64)> = targets
            .iter()
            .map(|t| {
                let id = t.id().as_str().as_bytes();
                let offset = stable_hash(self.seed, &[b"offset", id]) % m;
                let skip = stable_hash(self.seed, &[b"skip", id]) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let weights: Vec<u64> = targets
            .iter()
            .map(|t| u64::from(t.weight().max(1)))
            .collect();
        Box::new(MaglevSelector {
            table: populate(m, &perms, &weights),
            rng: FastRng::new(Some(self.seed)),
        })
    }
}

struct MaglevSelector {
    table: Box<[u32]>,
    rng: FastRng,
}

impl std::fmt::Debug for MaglevSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaglevSelector")
            .field("table_size", &self.table.len())
            .finish()
    }
}

impl Selector for MaglevSelector {
    #[inline]
    fn select(&self, cx: &Context<'_>) -> Option<usize> {
        let m = self.table.len();
        if m == 0 {
            return None;
        }
        let key = cx.key().unwrap_or_else(|| self.rng.next_u64());
        let slot = ((u128::from(key) * m as u128) >> 64) as usize;
        let first = self.table[slot] as usize;
        if cx.is_available(first) {
            return Some(first);
        }
        // The next slots of the table, for a bounded number of steps, then every target once:
        // a pick never walks the whole table, even when nothing is available.
        let n = cx.len();
        let steps = m.min(8 * n + 64);
        (1..steps)
            .map(|k| self.table[(slot + k) % m] as usize)
            .chain((1..=n).map(|k| (first + k) % n.max(1)))
            .find(|&i| cx.is_available(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert!(Maglev::new().table_size(65_537).is_ok());
        assert!(Maglev::new().table_size(655_373).is_ok());
        assert!(Maglev::new().table_size(65_536).is_err());
        assert!(Maglev::new().table_size(1).is_err());
        assert!(
            Maglev::new()
                .table_size(u64::from(MAX_TABLE_SIZE) + 2)
                .is_err()
        );
        assert!(is_prime(u64::from(MAX_TABLE_SIZE)));
    }

    #[test]
    fn weighted_table_shares() {
        let t = populate(65_537, &[(1, 3), (7, 11), (100, 13)], &[1, 2, 1]);
        let mut counts = [0u64; 3];
        for &i in t.iter() {
            counts[i as usize] += 1;
        }
        assert_eq!(counts.iter().sum::<u64>(), 65_537);
        assert!(counts[1].abs_diff(2 * counts[0]) <= 2, "{counts:?}");
        assert!(counts[0].abs_diff(counts[2]) <= 1, "{counts:?}");
    }
}
