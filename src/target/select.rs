//! Selection algorithms, and the [`Algorithm`] trait to write your own.
//!
//! An algorithm has two halves, after pingora's `BackendSelection`:
//!
//! - [`Algorithm::build`] runs off the request path whenever a group's membership changes and
//!   returns a [`Selector`] holding whatever tables the algorithm wants (a weighted sequence, a
//!   hash ring, …), built for exactly that set of targets;
//! - [`Selector::select`] runs once per request through `&self`. It must not lock, allocate or
//!   block; it reads the live state of each target through the [`Context`] (weight, requests in
//!   flight, labels, whether the target may be picked right now) and returns an index.
//!
//! The balancer handles everything around the pick: it asks for a primary target first and for a
//! backup only when no primary is available, it steers around targets a retry wants to avoid
//! whenever something else is available, and it discards any answer that
//! [`Context::is_available`] rejects (so a buggy selector can fail a request but never route to
//! a disabled, draining or full target).
//!
//! Built-ins:
//!
//! | algorithm | weights | state read per pick | cost per pick |
//! |---|---|---|---|
//! | [`RoundRobin`] | ignored | a shared counter | O(1), O(n) when many are unavailable |
//! | [`SmoothWeightedRoundRobin`] (default) | exact per cycle (nginx) | a shared counter | O(1) |
//! | [`WeightedRandom`] | in expectation | a shared random state | O(log n) |
//! | [`LeastConnections`] | in-flight ÷ weight | every target's in-flight count | O(n) |
//! | [`P2cInFlight`] | `weight / (in_flight + 1)^bias` | two targets' in-flight counts | O(1) |
//! | [`P2cPeakEwma`] | cost ÷ weight | two targets' latency and in-flight | O(1), coarse clock |
//! | [`HashRing`] | virtual nodes | the request key | O(log points) |
//! | [`Maglev`] | table share | the request key | O(1) |
//!
//! The hashing algorithms read the request key the balancer computes (see [`crate::key`] and
//! [`Balance::key`](crate::balance::Balance::key)). Guidance on choosing, with simulator
//! figures, is in `docs/algorithms.md`.
//!
//! # Writing an algorithm
//!
//! ```
//! use tower_lb::algorithm::{Algorithm, Context, Selector, Targets};
//!
//! /// Always the available target with the fewest requests in flight among those
//! /// labelled `tier=gold`, else nothing.
//! #[derive(Debug)]
//! struct GoldOnly;
//!
//! #[derive(Debug)]
//! struct GoldSelector { gold: Vec<usize> }
//!
//! impl Algorithm for GoldOnly {
//!     fn build(&self, targets: &Targets<'_>) -> Box<dyn Selector> {
//!         let gold = targets.iter().enumerate()
//!             .filter(|(_, t)| t.label("tier") == Some("gold"))
//!             .map(|(i, _)| i)
//!             .collect();
//!         Box::new(GoldSelector { gold })
//!     }
//! }
//!
//! impl Selector for GoldSelector {
//!     fn select(&self, cx: &Context<'_>) -> Option<usize> {
//!         self.gold.iter().copied().filter(|&i| cx.is_available(i)).min_by_key(|&i| cx.in_flight(i))
//!     }
//! }
//!
//! let group = tower_lb::target::TargetGroup::builder("g").algorithm(GoldOnly).build()?;
//! # Ok::<(), tower_lb::BoxError>(())
//! ```

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::Ordering;

use crate::balance::AvoidTargets;
use crate::health::GroupHealth;
use crate::target::{Entry, Hot, LiveTable, Target};

mod hash;
mod latency;
mod least_conn;
mod maglev;
mod p2c;
mod peak_ewma;
mod random;
mod ring;
mod rng;
mod round_robin;
mod smooth;
#[cfg(test)]
mod tests;
mod turns;

pub use self::latency::LatencyTracker;
pub(crate) use self::latency::decay_weight;
pub use self::least_conn::LeastConnections;
pub use self::maglev::{DEFAULT_TABLE_SIZE, InvalidTableSize, MAX_TABLE_SIZE, Maglev};
pub use self::p2c::P2cInFlight;
pub use self::peak_ewma::P2cPeakEwma;
pub use self::random::WeightedRandom;
pub use self::ring::{HashRing, InvalidLoadFactor, MAX_RING_POINTS};
pub use self::round_robin::RoundRobin;
pub use self::smooth::SmoothWeightedRoundRobin;

pub(crate) use self::hash::stable_hash;
pub(crate) use self::rng::FastRng;

/// A selection algorithm: builds a [`Selector`] for each membership snapshot.
///
/// Implementations are configuration: cheap, immutable, shared by every snapshot of a group.
pub trait Algorithm: fmt::Debug + Send + Sync + 'static {
    /// Builds the selector for `targets`. Called off the request path, on every membership
    /// change; may allocate freely. Must not panic, whatever the set (it may be empty).
    fn build(&self, targets: &Targets<'_>) -> Box<dyn Selector>;
}

/// The per-snapshot half of an [`Algorithm`]: picks one target per request.
pub trait Selector: fmt::Debug + Send + Sync + 'static {
    /// Returns the index of an available target (see [`Context::is_available`]), or `None` if
    /// there is none. Called on every request: must not lock, allocate or block.
    fn select(&self, cx: &Context<'_>) -> Option<usize>;

    /// The tracker that keeps latency estimates for this selector, if it reads latency.
    ///
    /// When this returns `Some`, the balancer times every request to the group and feeds the
    /// tracker; when `None` (the default), no clock is read for it at all.
    fn latency(&self) -> Option<&LatencyTracker> {
        None
    }
}

/// The targets an algorithm builds its tables for, ordered by id (so tables never depend on
/// the order in which targets arrived). Indices are the ones [`Selector::select`] returns.
#[derive(Debug, Clone, Copy)]
pub struct Targets<'a> {
    entries: &'a [Entry],
}

impl<'a> Targets<'a> {
    pub(crate) fn new(entries: &'a [Entry]) -> Self {
        Targets { entries }
    }

    /// The number of targets.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The target at `index`.
    ///
    /// # Panics
    ///
    /// If `index >= self.len()`.
    pub fn get(&self, index: usize) -> &'a Target {
        &self.entries[index].target
    }

    /// The targets in index order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'a Target> + 'a {
        self.entries.iter().map(|e| &*e.target)
    }
}

/// What a [`Selector`] sees of one request and of the live state of each target.
#[derive(Debug)]
pub struct Context<'a> {
    entries: &'a [Entry],
    /// The targets' counters (status bits, requests in flight), dense.
    live: &'a LiveTable,
    /// Target `i`'s counters at index `i`, when the snapshot has them so.
    dense: Option<&'a [Hot]>,
    /// Otherwise, the one chunk holding every target's counters, and target `i`'s place in it.
    mapped: Option<(&'a [Hot], &'a [u32])>,
    /// No target is a backup or has a connection limit and none is to be avoided: a target's
    /// counters alone decide whether it is available.
    plain: bool,
    /// The status bits that keep a target out of this pick (fewer in panic mode).
    blocking: u32,
    backup: bool,
    avoid: Option<&'a AvoidTargets>,
    key: Option<u64>,
    health: Option<&'a GroupHealth>,
    /// The clock, read at most once per pick and only while a slow-start ramp is active.
    now: Cell<Option<tokio::time::Instant>>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        entries: &'a [Entry],
        live: &'a LiveTable,
        has_backups: bool,
        has_limits: bool,
        backup: bool,
        avoid: Option<&'a AvoidTargets>,
        key: Option<u64>,
    ) -> Self {
        Context {
            entries,
            live,
            dense: live.dense(),
            mapped: live.mapped(),
            plain: !has_backups && !backup && !has_limits && avoid.is_none(),
            blocking: crate::target::BLOCKING,
            backup,
            avoid,
            key,
            health: None,
            now: Cell::new(None),
        }
    }

    /// The counters of the target at `index` (`index < len()`); when the counters sit in
    /// snapshot order, without reading the target's entry.
    #[inline(always)]
    fn hot(&self, index: usize) -> &'a Hot {
        if let Some(dense) = self.dense {
            &dense[index]
        } else if let Some((chunk, map)) = self.mapped {
            &chunk[map[index] as usize]
        } else {
            let e = &self.entries[index];
            self.live.at(e.chunk, e.slot)
        }
    }

    /// The targets' counters by index, when they alone decide availability (no backups, no
    /// connection limits, nothing to avoid) and sit in snapshot order; with the status bits
    /// that block a target in this pick.
    #[inline(always)]
    pub(crate) fn plain_counters(&self) -> Option<(&'a [Hot], u32)> {
        match self.dense {
            Some(dense) if self.plain => Some((dense, self.blocking)),
            _ => None,
        }
    }

    /// Whether the target at `index` (in range, not blocked by its status) passes the checks
    /// that need its entry: tier, connection limit, avoidance.
    #[inline(always)]
    fn entry_allows(&self, index: usize, in_flight: u32) -> bool {
        if self.plain {
            return true;
        }
        let e = &self.entries[index];
        if e.backup != self.backup || (e.max_conns != 0 && in_flight >= e.max_conns) {
            return false;
        }
        self.avoid.is_none_or(|a| !a.contains(e.target.id()))
    }

    /// Adds the group's health view: slow-start weights and panic mode.
    #[inline]
    pub(crate) fn with_health(mut self, health: Option<&'a GroupHealth>, panic: bool) -> Self {
        self.health = health;
        // Panic mode: observed health (unhealthy, ejected) is ignored for this pick.
        if panic {
            self.blocking = crate::target::BLOCKING_IN_PANIC;
        }
        self
    }

    /// The number of targets (available or not); valid indices are `0..len()`.
    #[inline]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no targets.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the target at `index` may be picked for this request: it is in the tier being
    /// served (primary, or backup when no primary is available), enabled, below its connection
    /// limit, and not one the request asked to avoid. Out-of-range indices are unavailable.
    #[inline]
    pub fn is_available(&self, index: usize) -> bool {
        if index >= self.entries.len() {
            return false;
        }
        let word = self.hot(index).load(Ordering::Relaxed);
        if Hot::status_of(word) & self.blocking != 0 {
            return false;
        }
        self.entry_allows(index, Hot::in_flight_of(word))
    }

    /// For a selector that weighs candidates: the current weight in thousandths (as
    /// [`weight_milli`](Self::weight_milli)) and the requests in flight of the target at `index`,
    /// or `None` if it is not [available](Self::is_available). Reads the target's state once.
    #[inline(always)]
    pub(crate) fn load(&self, index: usize, uniform: Option<u32>) -> Option<(u64, u64)> {
        if index >= self.entries.len() {
            return None;
        }
        let word = self.hot(index).load(Ordering::Relaxed);
        let status = Hot::status_of(word);
        if status & self.blocking != 0 {
            return None;
        }
        let in_flight = Hot::in_flight_of(word);
        if !self.entry_allows(index, in_flight) {
            return None;
        }
        let weight = if status & crate::target::RAMP != 0 {
            self.weight_milli(index)
        } else {
            u64::from(uniform.unwrap_or_else(|| self.entries[index].weight)) * 1000
        };
        Some((weight, u64::from(in_flight)))
    }

    /// The target at `index`.
    ///
    /// # Panics
    ///
    /// If `index >= self.len()`.
    #[inline]
    pub fn target(&self, index: usize) -> &'a Target {
        &self.entries[index].target
    }

    /// The weight to use for the target at `index` now: the target's weight, reduced while
    /// the target ramps up after joining or recovering (slow start, see
    /// [`SlowStart`](crate::health::SlowStart)), rounded and at least 1. Weight-aware selectors
    /// should read weights here (or, for precision with small weights, through
    /// [`weight_milli`](Self::weight_milli)) rather than from [`Target::weight`].
    ///
    /// # Panics
    ///
    /// If `index >= self.len()`.
    #[inline]
    pub fn weight(&self, index: usize) -> u32 {
        let e = &self.entries[index];
        if e.state.status() & crate::target::RAMP == 0 {
            return e.weight;
        }
        let milli = self.weight_milli(index);
        u32::try_from(((milli + 500) / 1000).max(1)).unwrap_or(u32::MAX)
    }

    /// The current [`weight`](Self::weight) in thousandths, without rounding: `weight × 1000`
    /// unless the target ramps up, then `weight × 1000 × ramp factor` (at least 1). A target of
    /// weight 1 ramping at 25% has `weight() == 1` but `weight_milli() == 250`.
    ///
    /// # Panics
    ///
    /// If `index >= self.len()`.
    #[inline]
    pub fn weight_milli(&self, index: usize) -> u64 {
        let e = &self.entries[index];
        let w = u64::from(e.weight) * 1000;
        match self.health {
            Some(h) if e.state.status() & crate::target::RAMP != 0 => {
                let now = match self.now.get() {
                    Some(now) => now,
                    None => {
                        let now = tokio::time::Instant::now();
                        self.now.set(Some(now));
                        now
                    }
                };
                h.ramped_weight_milli(&e.state, w, now)
            }
            _ => w,
        }
    }

    /// Whether some target's [`weight`](Self::weight) differs from its configured weight right
    /// now (a slow-start ramp is active). Selectors that precompute weighted tables use it to
    /// correct their picks only while it matters; it costs one atomic load.
    #[inline]
    pub fn weights_adjusted(&self) -> bool {
        self.health.is_some_and(GroupHealth::is_ramping)
    }

    /// Requests in flight to the target at `index` (counted until the response body ends).
    ///
    /// # Panics
    ///
    /// If `index >= self.len()`.
    #[inline]
    pub fn in_flight(&self, index: usize) -> u32 {
        assert!(index < self.entries.len(), "target index out of range");
        Hot::in_flight_of(self.hot(index).load(Ordering::Relaxed))
    }

    /// The last latency estimate recorded for the target at `index` (peak EWMA as of its last
    /// sample, not decayed to now), or `None` if the group does not track latency or the
    /// target has not answered yet. See [`LatencyTracker::estimate`] for the decayed value.
    ///
    /// # Panics
    ///
    /// If `index >= self.len()`.
    #[inline]
    pub fn latency(&self, index: usize) -> Option<std::time::Duration> {
        self.entries[index]
            .state
            .latency
            .load()
            .map(|(ns, _)| std::time::Duration::from_nanos(ns as u64))
    }

    #[inline]
    pub(crate) fn state(&self, index: usize) -> &'a crate::target::TargetState {
        &self.entries[index].state
    }

    /// The hash of the request's key, when the balancer was given a key to hash on.
    #[inline]
    pub fn key(&self) -> Option<u64> {
        self.key
    }
}
