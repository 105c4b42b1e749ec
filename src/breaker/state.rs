//! The breaker's shared state machine.

use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::error::CircuitOpen;
use crate::classify::{Classify, Outcome};

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerState {
    /// Requests flow; outcomes are counted.
    Closed,
    /// Requests fail fast with [`CircuitOpen`] until the open period ends.
    Open,
    /// A bounded number of probes may go through; their outcomes close or reopen the circuit.
    HalfOpen,
}

impl BreakerState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        })
    }
}

/// One state change of a circuit breaker, as given to
/// [`on_state_change`](super::CircuitBreakerBuilder::on_state_change) callbacks.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StateChange {
    /// The breaker's name.
    pub name: Arc<str>,
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
    /// The failure rate over the window when the circuit opened from closed.
    pub failure_rate: Option<f64>,
}

pub(crate) type Callback = Arc<dyn Fn(&StateChange) + Send + Sync>;

pub(crate) struct Settings {
    pub(crate) name: Arc<str>,
    pub(crate) failure_rate: f64,
    pub(crate) min_requests: u32,
    pub(crate) window: Duration,
    pub(crate) open_for: Duration,
    pub(crate) probes: u32,
    pub(crate) classifier: Arc<dyn Classify>,
    pub(crate) callbacks: Vec<Callback>,
}

pub(crate) const BUCKETS: usize = 10;

/// One slice of the window: its epoch (bucket number since creation) and counts packed as
/// `total << 32 | failures`, updated without a lock. Two completions racing across a bucket
/// boundary may lose a count; the rate stays a good estimate.
#[derive(Default)]
struct Bucket {
    epoch: AtomicU64,
    counts: AtomicU64,
}

struct Machine {
    state: BreakerState,
    opened_at: Instant,
    probes_in_flight: u32,
    probe_successes: u32,
}

/// Shared by every clone of a breaker service and its layer.
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    created: Instant,
    bucket_nanos: u64,
    state: AtomicU8,
    generation: AtomicU64,
    buckets: [Bucket; BUCKETS],
    machine: Mutex<Machine>,
}

/// Admission to one request; its outcome is reported through [`Shared::record`]. A probe's
/// permit is handed back when the permit is dropped without an outcome (a cancelled request).
pub(crate) struct Permit {
    shared: Arc<Shared>,
    generation: u64,
    probe: bool,
    done: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("probe", &self.probe)
            .finish()
    }
}

impl Shared {
    pub(crate) fn new(settings: Settings) -> Self {
        let now = Instant::now();
        let bucket_nanos =
            (settings.window.as_nanos() / BUCKETS as u128).clamp(1, u64::MAX as u128) as u64;
        Shared {
            settings,
            created: now,
            bucket_nanos,
            state: AtomicU8::new(BreakerState::Closed.as_u8()),
            generation: AtomicU64::new(0),
            buckets: Default::default(),
            machine: Mutex::new(Machine {
                state: BreakerState::Closed,
                opened_at: now,
                probes_in_flight: 0,
                probe_successes: 0,
            }),
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Acquire))
    }

    fn lock(&self) -> MutexGuard<'_, Machine> {
        self.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn epoch(&self, now: Instant) -> u64 {
        // u64 division: a u128 one costs more than the rest of the bookkeeping.
        let nanos = now.saturating_duration_since(self.created).as_nanos();
        nanos.min(u128::from(u64::MAX)) as u64 / self.bucket_nanos
    }

    /// Admits a request or refuses it with [`CircuitOpen`].
    pub(crate) fn acquire(self: &Arc<Self>) -> Result<Permit, CircuitOpen> {
        if self.state.load(Ordering::Acquire) == BreakerState::Closed.as_u8() {
            return Ok(Permit {
                shared: self.clone(),
                generation: self.generation.load(Ordering::Acquire),
                probe: false,
                done: false,
            });
        }
        let now = Instant::now();
        let mut m = self.lock();
        let mut change = None;
        if m.state == BreakerState::Open {
            let reopen = m.opened_at + self.settings.open_for;
            if now < reopen {
                return Err(CircuitOpen::new(
                    self.settings.name.clone(),
                    Some(reopen - now),
                ));
            }
            change = Some(self.transition(&mut m, BreakerState::HalfOpen, now, None));
        }
        let result = match m.state {
            BreakerState::Closed => Ok(false),
            BreakerState::HalfOpen
                if m.probes_in_flight + m.probe_successes < self.settings.probes =>
            {
                m.probes_in_flight += 1;
                Ok(true)
            }
            _ => Err(CircuitOpen::new(self.settings.name.clone(), None)),
        };
        let generation = self.generation.load(Ordering::Acquire);
        drop(m);
        if let Some(c) = change {
            self.emit(c);
        }
        result.map(|probe| Permit {
            shared: self.clone(),
            generation,
            probe,
            done: false,
        })
    }

    /// Records the outcome of an admitted request.
    fn record(&self, generation: u64, probe: bool, outcome: Option<Outcome>) {
        if !probe && outcome.is_none_or(|o| o == Outcome::Rejected) {
            // Nothing to count, nothing to hand back.
            return;
        }
        if generation != self.generation.load(Ordering::Acquire) {
            // Admitted under an earlier state: its outcome belongs to a closed chapter.
            return;
        }
        let now = Instant::now();
        if !probe {
            if let Some(o) = outcome {
                self.count_closed(generation, o, now);
            }
            return;
        }
        let mut m = self.lock();
        if generation != self.generation.load(Ordering::Acquire) {
            return;
        }
        let change = match (m.state, outcome) {
            (BreakerState::HalfOpen, o) if probe => {
                m.probes_in_flight = m.probes_in_flight.saturating_sub(1);
                match o {
                    Some(Outcome::Success) => {
                        m.probe_successes += 1;
                        (m.probe_successes >= self.settings.probes)
                            .then(|| self.transition(&mut m, BreakerState::Closed, now, None))
                    }
                    Some(Outcome::Failure(_)) => {
                        Some(self.transition(&mut m, BreakerState::Open, now, None))
                    }
                    // Cancelled or rejected downstream: the permit is simply free again.
                    _ => None,
                }
            }
            _ => None,
        };
        drop(m);
        if let Some(c) = change {
            self.emit(c);
        }
    }

    /// Counts a closed-state outcome (lock-free) and opens the circuit past the threshold.
    fn count_closed(&self, generation: u64, outcome: Outcome, now: Instant) {
        let epoch = self.epoch(now);
        let b = &self.buckets[(epoch % BUCKETS as u64) as usize];
        let seen = b.epoch.load(Ordering::Acquire);
        if seen != epoch
            && b.epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // This completion opened the bucket's new epoch: drop the old epoch's counts.
            b.counts.store(0, Ordering::Release);
        }
        b.counts.fetch_add(
            (1 << 32) | u64::from(outcome.is_failure()),
            Ordering::AcqRel,
        );
        let (mut total, mut failures) = (0u64, 0u64);
        for b in &self.buckets {
            let e = b.epoch.load(Ordering::Acquire);
            if e <= epoch && e + BUCKETS as u64 > epoch {
                let c = b.counts.load(Ordering::Acquire);
                total += c >> 32;
                failures += c & 0xffff_ffff;
            }
        }
        if total < u64::from(self.settings.min_requests) {
            return;
        }
        let rate = failures as f64 / total as f64;
        if rate < self.settings.failure_rate {
            return;
        }
        let mut m = self.lock();
        if m.state != BreakerState::Closed || generation != self.generation.load(Ordering::Acquire)
        {
            return; // another completion got there first
        }
        let change = self.transition(&mut m, BreakerState::Open, now, Some(rate));
        drop(m);
        self.emit(change);
    }

    fn transition(
        &self,
        m: &mut Machine,
        to: BreakerState,
        now: Instant,
        failure_rate: Option<f64>,
    ) -> StateChange {
        let from = m.state;
        m.state = to;
        m.probes_in_flight = 0;
        m.probe_successes = 0;
        match to {
            BreakerState::Open => m.opened_at = now,
            BreakerState::Closed => {
                for b in &self.buckets {
                    b.epoch.store(0, Ordering::Release);
                    b.counts.store(0, Ordering::Release);
                }
            }
            BreakerState::HalfOpen => {}
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.state.store(to.as_u8(), Ordering::Release);
        StateChange {
            name: self.settings.name.clone(),
            from,
            to,
            failure_rate,
        }
    }

    fn emit(&self, change: StateChange) {
        match change.to {
            BreakerState::Open => tracing::warn!(
                breaker = %change.name, from = %change.from, to = %change.to,
                failure_rate = ?change.failure_rate, "circuit breaker state changed"
            ),
            _ => tracing::info!(
                breaker = %change.name, from = %change.from, to = %change.to,
                "circuit breaker state changed"
            ),
        }
        for cb in &self.settings.callbacks {
            cb(&change);
        }
    }
}

impl Permit {
    /// Reports the outcome of the admitted request.
    pub(crate) fn complete(mut self, outcome: Outcome) {
        self.done = true;
        self.shared
            .record(self.generation, self.probe, Some(outcome));
    }

    pub(crate) fn classifier(&self) -> &dyn Classify {
        &*self.shared.settings.classifier
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done && self.probe {
            self.shared.record(self.generation, true, None);
        }
    }
}
