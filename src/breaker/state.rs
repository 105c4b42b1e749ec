//! The breaker's shared state machine.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use super::error::CircuitOpen;
use super::events::{BreakerEvents, EVENT_CAPACITY};
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
/// [`on_state_change`](super::CircuitBreakerLayerBuilder::on_state_change) callbacks and sent on
/// [`events`](super::CircuitBreakerLayer::events) streams.
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

/// A bucket's epoch before its first use (and after the counts are cleared on closing).
const UNUSED: u64 = u64::MAX;

/// The state word: `generation << STATE_BITS | state`. One load tells a request both whether
/// the circuit is closed and which chapter (generation) its outcome will belong to.
const STATE_BITS: u32 = 2;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

/// The quiet key keeps the low `QUIET_EPOCH_BITS` of the epoch and the generation above them.
const QUIET_EPOCH_BITS: u32 = 48;

/// One slice of the window: the epoch (bucket number since creation) it counts for and its
/// counts packed as `total << 32 | failures`. Completions add to it with one atomic add; the
/// first completion of a new epoch clears it (see [`Shared::roll`]).
struct Bucket {
    epoch: AtomicU64,
    counts: AtomicU64,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            epoch: AtomicU64::new(UNUSED),
            counts: AtomicU64::new(0),
        }
    }
}

struct Machine {
    state: BreakerState,
    opened_at: Instant,
    probes_in_flight: u32,
    probe_successes: u32,
}

/// Shared by every clone of a breaker service and its layer.
///
/// The closed state, the common case, takes no lock: admission is one load of `word`; an
/// outcome is one clock read, one atomic add to its bucket and (unless the window is known to
/// be quiet, see `quiet`) a scan of the ten buckets. The mutex guards the rest: opening,
/// the open and half-open states, and clearing a bucket when its epoch turns over (once per
/// bucket period, a tenth of the window).
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    created: Instant,
    bucket_nanos: u64,
    /// `generation << STATE_BITS | state`; the generation moves on every transition.
    word: AtomicU64,
    /// The epoch most recently computed: saves the division when the clock is still in it.
    epoch_hint: AtomicU64,
    /// `generation << QUIET_EPOCH_BITS | epoch` of the last judgement that found the window at
    /// volume and under the threshold. Until the epoch turns over or the state changes, the
    /// window only grows by the outcomes added since, and a success cannot raise the rate, so
    /// successes skip the judgement; failures are always judged.
    quiet: AtomicU64,
    buckets: [Bucket; BUCKETS],
    machine: Mutex<Machine>,
    events: broadcast::Sender<StateChange>,
}

/// Admission to one request; its outcome is reported through [`Shared::record`]. A probe's
/// permit is handed back when the permit is dropped without an outcome (a cancelled request).
pub(crate) struct Permit {
    shared: Arc<Shared>,
    /// The state word at admission: the outcome only counts if it is still current.
    word: u64,
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

fn state_of(word: u64) -> BreakerState {
    BreakerState::from_u8((word & STATE_MASK) as u8)
}

fn quiet_key(word: u64, epoch: u64) -> u64 {
    ((word >> STATE_BITS) << QUIET_EPOCH_BITS) | (epoch & ((1 << QUIET_EPOCH_BITS) - 1))
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
            word: AtomicU64::new(u64::from(BreakerState::Closed.as_u8())),
            epoch_hint: AtomicU64::new(0),
            quiet: AtomicU64::new(UNUSED),
            buckets: Default::default(),
            machine: Mutex::new(Machine {
                state: BreakerState::Closed,
                opened_at: now,
                probes_in_flight: 0,
                probe_successes: 0,
            }),
            events: broadcast::channel(EVENT_CAPACITY).0,
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        state_of(self.word.load(Ordering::Acquire))
    }

    pub(crate) fn subscribe(&self) -> BreakerEvents {
        BreakerEvents::new(self.settings.name.clone(), self.events.subscribe())
    }

    fn lock(&self) -> MutexGuard<'_, Machine> {
        crate::util::lock(&self.machine)
    }

    /// The bucket number of `now` since creation.
    fn epoch(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.created).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        // Most outcomes fall in the same epoch as the one before: a multiplication checks it,
        // where the division costs more than the rest of the bookkeeping.
        let hint = self.epoch_hint.load(Ordering::Relaxed);
        if nanos.wrapping_sub(hint.wrapping_mul(self.bucket_nanos)) < self.bucket_nanos {
            return hint;
        }
        let epoch = nanos / self.bucket_nanos;
        self.epoch_hint.store(epoch, Ordering::Relaxed);
        epoch
    }

    /// Admits a request or refuses it with [`CircuitOpen`].
    pub(crate) fn acquire(self: &Arc<Self>) -> Result<Permit, CircuitOpen> {
        let word = self.word.load(Ordering::Acquire);
        if state_of(word) == BreakerState::Closed {
            return Ok(Permit {
                shared: self.clone(),
                word,
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
        let word = self.word.load(Ordering::Acquire);
        drop(m);
        if let Some(c) = change {
            self.emit(c);
        }
        result.map(|probe| Permit {
            shared: self.clone(),
            word,
            probe,
            done: false,
        })
    }

    /// Records the outcome of an admitted request.
    fn record(&self, word: u64, probe: bool, outcome: Option<Outcome>) {
        if !probe && outcome.is_none_or(|o| o.is_neutral()) {
            // Nothing to count, nothing to hand back.
            return;
        }
        if word != self.word.load(Ordering::Acquire) {
            // Admitted under an earlier state: its outcome belongs to a closed chapter.
            return;
        }
        if !probe {
            if let Some(o) = outcome {
                self.count_closed(word, o);
            }
            return;
        }
        let now = Instant::now();
        let mut m = self.lock();
        if word != self.word.load(Ordering::Acquire) {
            return;
        }
        let change = match (m.state, outcome) {
            (BreakerState::HalfOpen, o) => {
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
    fn count_closed(&self, word: u64, outcome: Outcome) {
        let now = Instant::now();
        let epoch = self.epoch(now);
        let b = &self.buckets[(epoch % BUCKETS as u64) as usize];
        if b.epoch.load(Ordering::SeqCst) != epoch && !self.roll(b, epoch) {
            return;
        }
        let failed = outcome.is_failure();
        b.counts
            .fetch_add((1 << 32) | u64::from(failed), Ordering::SeqCst);
        let key = quiet_key(word, epoch);
        if !failed && self.quiet.load(Ordering::Acquire) == key {
            return;
        }
        let (total, failures) = self.window(epoch);
        if total < u64::from(self.settings.min_requests) {
            return;
        }
        let rate = failures as f64 / total as f64;
        if rate < self.settings.failure_rate {
            self.quiet.store(key, Ordering::Release);
            return;
        }
        let mut m = self.lock();
        if word != self.word.load(Ordering::Acquire) {
            return; // another completion got there first
        }
        let change = self.transition(&mut m, BreakerState::Open, now, Some(rate));
        drop(m);
        self.emit(change);
    }

    /// Turns bucket `b` over to `epoch`, clearing the counts of the epoch it held (ten or more
    /// epochs ago, out of the window). Returns `false` when the bucket already holds a later
    /// epoch: the caller read the clock a whole window ago and its outcome is out of the
    /// window.
    ///
    /// Under the lock, so two completions racing into a new epoch clear the bucket once and
    /// lose no count: the counts are cleared before the new epoch is published, and adders
    /// only add once they see their epoch published.
    #[cold]
    fn roll(&self, b: &Bucket, epoch: u64) -> bool {
        let _m = self.lock();
        let seen = b.epoch.load(Ordering::SeqCst);
        if seen == epoch {
            return true;
        }
        if seen != UNUSED && seen > epoch {
            return false;
        }
        b.counts.store(0, Ordering::SeqCst);
        b.epoch.store(epoch, Ordering::SeqCst);
        true
    }

    /// Requests and failures over the window ending in `epoch`: the buckets of the ten epochs
    /// up to and including it.
    fn window(&self, epoch: u64) -> (u64, u64) {
        let (mut total, mut failures) = (0u64, 0u64);
        for b in &self.buckets {
            let e = b.epoch.load(Ordering::SeqCst);
            if e <= epoch && epoch - e < BUCKETS as u64 {
                let c = b.counts.load(Ordering::SeqCst);
                total += c >> 32;
                failures += c & 0xffff_ffff;
            }
        }
        (total, failures)
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
                    b.epoch.store(UNUSED, Ordering::SeqCst);
                    b.counts.store(0, Ordering::SeqCst);
                }
            }
            BreakerState::HalfOpen => {}
        }
        // A new generation: outcomes admitted before this change no longer count.
        let generation = (self.word.load(Ordering::Acquire) >> STATE_BITS).wrapping_add(1);
        self.word.store(
            (generation << STATE_BITS) | u64::from(to.as_u8()),
            Ordering::Release,
        );
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
        // No subscriber: nothing to send, and nothing to do.
        let _ = self.events.send(change);
    }
}

impl Permit {
    /// Reports the outcome of the admitted request.
    pub(crate) fn complete(mut self, outcome: Outcome) {
        self.done = true;
        self.shared.record(self.word, self.probe, Some(outcome));
    }

    pub(crate) fn classifier(&self) -> &dyn Classify {
        &*self.shared.settings.classifier
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Cut off by a deadline: a timeout of what is behind the breaker. Dropped because the
        // caller went away: nothing (a probe's permit is simply free again).
        if crate::classify::dropped_for_deadline() {
            let timeout = Outcome::Failure(crate::classify::FailureKind::Timeout);
            self.shared.record(self.word, self.probe, Some(timeout));
        } else if self.probe {
            self.shared.record(self.word, true, None);
        }
    }
}
