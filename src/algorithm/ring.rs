use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::InvalidLoadFactor;
use super::{Algorithm, Context, FastRng, Selector, Targets, stable_hash};

/// The most virtual nodes a ring holds; weights are scaled down (each target keeping at least
/// one) when `vnodes × total weight` would exceed it, so a rebuild stays bounded.
pub const MAX_RING_POINTS: usize = 4_000_000;

/// Consistent hashing on a ring (Karger et al. 1997; ketama), built on the `hashring` crate.
///
/// Each target gets `vnodes × weight` points (default 160 per unit of weight, as ketama),
/// placed by a keyed stable hash of the target's id, the point's number and the seed, so every
/// process with the same targets and seed builds the same ring, whatever the order in which
/// targets arrived. A request goes to the first point at or after its key's hash; adding or
/// removing a target moves only the keys on the arcs it gains or loses (about 1/n of them).
///
/// When the key's target is unavailable the pick walks on along the ring to the next point of
/// an available target, so a key's fallback is as stable as its first choice. A request
/// without a key (see [`crate::key`]) starts from a random point.
///
/// Bounded load ([`bounded_load`](Self::bounded_load), Mirrokni, Thorup and Zadimoghaddam,
/// "Consistent Hashing with Bounded Loads", 2018): a target whose requests in flight exceed
/// `factor ×` its weighted share of the total spills the key to the next ring point. The
/// total is re-summed every 16 picks (O(n / 16) per pick, amortized), so the bound lags a
/// burst by a few requests.
///
/// # Examples
///
/// ```
/// use tower_lb::algorithm::HashRing;
/// use tower_lb::TargetGroup;
///
/// let ring = HashRing::new().vnodes(160).seed(42).bounded_load(1.25)?;
/// let group = TargetGroup::builder("cache").algorithm(ring).build()?;
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Debug, Clone)]
pub struct HashRing {
    vnodes: u32,
    seed: u64,
    bound: Option<f64>,
}

impl Default for HashRing {
    fn default() -> Self {
        HashRing::new()
    }
}

impl HashRing {
    /// 160 points per unit of weight, seed 0, no load bound.
    pub fn new() -> Self {
        HashRing {
            vnodes: 160,
            seed: 0,
            bound: None,
        }
    }

    /// Points per unit of weight (at least 1; 0 is taken as 1).
    pub fn vnodes(mut self, vnodes: u32) -> Self {
        self.vnodes = vnodes.max(1);
        self
    }

    /// The placement seed: processes that must agree on placement use the same one.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Caps each target's requests in flight at `factor ×` its weighted share (e.g. 1.25);
    /// keys over the cap spill along the ring.
    pub fn bounded_load(mut self, factor: f64) -> Result<Self, InvalidLoadFactor> {
        if !factor.is_finite() || factor < 1.0 {
            return Err(InvalidLoadFactor { factor });
        }
        self.bound = Some(factor);
        Ok(self)
    }
}

/// One point of the ring. Its hash (its position) covers explicit bytes only: the seed, the
/// target's id and the point's number; `slot` (its rank on the ring) is not hashed.
#[derive(Debug, Clone)]
struct Point {
    id_hash: u64,
    replica: u32,
    target: u32,
    slot: u32,
}

impl Hash for Point {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.id_hash.to_le_bytes());
        state.write(&self.replica.to_le_bytes());
    }
}

/// A key's position: hashes the key hash's bytes, little-endian on every platform.
struct KeyPos(u64);

impl Hash for KeyPos {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.0.to_le_bytes());
    }
}

fn position(p: &Point) -> u64 {
    use std::hash::BuildHasher;
    hashring::DefaultHashBuilder.hash_one(p)
}

impl Algorithm for HashRing {
    fn build(&self, targets: &Targets<'_>) -> Box<dyn Selector> {
        let total_weight: u64 = targets.iter().map(|t| u64::from(t.weight().max(1))).sum();
        let wanted = total_weight.saturating_mul(u64::from(self.vnodes));
        let scale = if wanted > MAX_RING_POINTS as u64 {
            MAX_RING_POINTS as f64 / wanted as f64
        } else {
            1.0
        };
        let mut points = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            let id_hash = stable_hash(self.seed, &[t.id().as_str().as_bytes()]);
            let n = ((f64::from(t.weight().max(1)) * f64::from(self.vnodes) * scale) as u32).max(1);
            points.extend((0..n).map(|replica| Point {
                id_hash,
                replica,
                target: i as u32,
                slot: 0,
            }));
        }
        // Rank the points as the ring will order them (ties by target and replica, so the
        // order never depends on anything but the bytes), then hand them to the ring.
        let mut keyed: Vec<(u64, Point)> = points.into_iter().map(|p| (position(&p), p)).collect();
        keyed.sort_unstable_by_key(|(k, p)| (*k, p.target, p.replica));
        let owners: Box<[u32]> = keyed.iter().map(|(_, p)| p.target).collect();
        let ranked: Vec<Point> = keyed
            .into_iter()
            .enumerate()
            .map(|(slot, (_, mut p))| {
                p.slot = slot as u32;
                p
            })
            .collect();
        let mut ring = hashring::HashRing::new();
        ring.batch_add(ranked);
        let weights: Box<[u64]> = targets
            .iter()
            .map(|t| u64::from(t.weight().max(1)))
            .collect();
        Box::new(RingSelector {
            ring,
            owners,
            rng: FastRng::new(Some(self.seed)),
            bound: self.bound.map(|factor| Bound {
                factor,
                total_weight,
                weights,
                total: AtomicU64::new(0),
                tick: AtomicU64::new(0),
            }),
        })
    }
}

#[derive(Debug)]
struct Bound {
    factor: f64,
    total_weight: u64,
    weights: Box<[u64]>,
    /// Total requests in flight, refreshed every few picks (O(n) per refresh).
    total: AtomicU64,
    tick: AtomicU64,
}

impl Bound {
    fn total(&self, cx: &Context<'_>) -> u64 {
        if self.tick.fetch_add(1, Ordering::Relaxed) % 16 == 0 {
            let sum = (0..cx.len()).map(|i| u64::from(cx.in_flight(i))).sum();
            self.total.store(sum, Ordering::Relaxed);
        }
        self.total.load(Ordering::Relaxed)
    }

    fn fits(&self, cx: &Context<'_>, i: usize, total: u64) -> bool {
        let share = (total + 1) as f64 * self.weights[i] as f64 / self.total_weight as f64;
        f64::from(cx.in_flight(i)) < (self.factor * share).ceil()
    }
}

struct RingSelector {
    ring: Ring,
    owners: Box<[u32]>,
    rng: FastRng,
    bound: Option<Bound>,
}

type Ring = hashring::HashRing<Point>;

impl std::fmt::Debug for RingSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingSelector")
            .field("points", &self.owners.len())
            .field("bound", &self.bound.as_ref().map(|b| b.factor))
            .finish()
    }
}

impl RingSelector {
    /// The ring slot a key hash lands on.
    #[inline]
    fn slot(&self, key: u64) -> Option<usize> {
        self.ring.get(&KeyPos(key)).map(|p| p.slot as usize)
    }

    /// The targets in ring order from `slot` on (targets repeat), for a bounded number of
    /// points, then every target once in index order from the last one seen: a pick never
    /// walks the whole ring, even when nothing is available.
    #[inline]
    fn walk(&self, slot: usize, targets: usize) -> impl Iterator<Item = usize> + '_ {
        let points = self.owners.len();
        let steps = points.min(8 * targets + 64);
        let last = self.owners[(slot + steps - 1) % points] as usize;
        (0..steps)
            .map(move |k| self.owners[(slot + k) % points] as usize)
            .chain((1..=targets).map(move |k| (last + k) % targets))
    }
}

impl Selector for RingSelector {
    #[inline]
    fn select(&self, cx: &Context<'_>) -> Option<usize> {
        let key = cx.key().unwrap_or_else(|| self.rng.next_u64());
        let slot = self.slot(key)?;
        let first = self.owners[slot] as usize;
        match &self.bound {
            None => {
                if cx.is_available(first) {
                    return Some(first);
                }
                self.walk(slot, cx.len()).find(|&i| cx.is_available(i))
            }
            Some(bound) => {
                let total = bound.total(cx);
                let mut fallback = None;
                for i in self.walk(slot, cx.len()) {
                    if cx.is_available(i) {
                        if bound.fits(cx, i, total) {
                            return Some(i);
                        }
                        fallback.get_or_insert(i);
                    }
                }
                fallback
            }
        }
    }
}
