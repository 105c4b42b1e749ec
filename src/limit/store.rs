//! Governor glue kept private: a key store with a bounded key count, and a clock on tokio's
//! time (so paused-time tests drive the limiter).

use std::ops::Add;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;
use governor::state::StateStore;
use tokio::time::Instant;

use super::key::KeyMap;
use crate::util::lock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TokioInstant(Instant);

impl Add<Nanos> for TokioInstant {
    type Output = TokioInstant;

    fn add(self, rhs: Nanos) -> TokioInstant {
        TokioInstant(self.0 + Duration::from_nanos(rhs.as_u64()))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        Nanos::from(self.0.saturating_duration_since(earlier.0))
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        self.0
            .checked_sub(Duration::from_nanos(duration.as_u64()))
            .map_or(*self, TokioInstant)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokioClock;

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        TokioInstant(Instant::now())
    }
}

impl TokioClock {
    pub(crate) fn wait_from_now(&self, t: TokioInstant) -> Duration {
        t.0.saturating_duration_since(Instant::now())
    }
}

/// GCRA state per key: the key's theoretical arrival time in nanoseconds since the limiter's
/// start (0 = fresh). Sharded maps, each holding at most `per_shard` keys. Keys whose arrival
/// time has passed are indistinguishable from fresh ones and are swept out; when a shard is
/// still full, new keys share that shard's overflow cell.
pub(crate) struct BoundedStore {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    start: Instant,
    /// One emission interval plus a safety margin: a key is stale once its arrival time is
    /// this far behind now.
    stale_after: Duration,
    sweep_every: Duration,
    /// Sweeps of a full shard are at most this frequent (key floods must not cost a sweep each).
    full_sweep_gap: Duration,
}

struct Shard {
    map: KeyMap<u64>,
    overflow: u64,
    last_sweep: Instant,
}

impl BoundedStore {
    /// Built just before the limiter, so `start` is a hair earlier than the limiter's own: the
    /// 1 ms margin on staleness covers that.
    pub(crate) fn new(
        max_keys: usize,
        shards: usize,
        stale_after: Duration,
        sweep_every: Duration,
    ) -> Self {
        let shards = shards.clamp(1, max_keys.max(1));
        let start = Instant::now();
        BoundedStore {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        map: KeyMap::default(),
                        overflow: 0,
                        last_sweep: start,
                    })
                })
                .collect(),
            per_shard: max_keys / shards,
            start,
            stale_after: stale_after + Duration::from_millis(1),
            sweep_every,
            full_sweep_gap: Duration::from_millis(100).min(sweep_every),
        }
    }

    fn shard(&self, key: u64) -> MutexGuard<'_, Shard> {
        lock(&self.shards[(key >> 48) as usize % self.shards.len()])
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    pub(crate) fn sweep_all(&self) {
        let now = Instant::now();
        for s in self.shards.iter() {
            self.sweep(&mut lock(s), now);
        }
    }

    fn sweep(&self, shard: &mut Shard, now: Instant) {
        shard.last_sweep = now;
        let Some(cutoff) = now
            .saturating_duration_since(self.start)
            .checked_sub(self.stale_after)
        else {
            return;
        };
        let cutoff = cutoff.as_nanos().min(u64::MAX as u128) as u64;
        shard.map.retain(|_, tat| *tat > cutoff);
        if shard.overflow <= cutoff {
            shard.overflow = 0;
        }
    }
}

fn apply<T, F, E>(cell: &mut u64, f: F) -> Result<T, E>
where
    F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
{
    let prev = (*cell != 0).then(|| Nanos::from(*cell));
    let (t, next) = f(prev)?;
    *cell = next.as_u64();
    Ok(t)
}

impl StateStore for BoundedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut s = self.shard(*key);
        if let Some(cell) = s.map.get_mut(key) {
            return apply(cell, f);
        }
        let now = Instant::now();
        let since = now.saturating_duration_since(s.last_sweep);
        let full = s.map.len() >= self.per_shard;
        if since >= self.sweep_every || (full && since >= self.full_sweep_gap) {
            self.sweep(&mut s, now);
        }
        if s.map.len() >= self.per_shard {
            // Overflow policy: new keys beyond the maximum share one cell per shard.
            return apply(&mut s.overflow, f);
        }
        let mut cell = 0;
        let r = apply(&mut cell, f);
        if cell != 0 {
            s.map.insert(*key, cell);
        }
        r
    }
}

/// The store shared between the limiter and the layer (for its key count and sweeps).
pub(crate) struct SharedStore(pub(crate) std::sync::Arc<BoundedStore>);

impl StateStore for SharedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}
