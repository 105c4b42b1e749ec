//! [`Context`]: what a selector reads of one request and of every target's live word.

use std::cell::Cell;
use std::sync::atomic::Ordering;

use super::hooks::HealthView;
use super::slots::{Hot, LiveTable, Words};
use super::snapshot::Entry;
use super::state::TargetState;
use super::status::Status;
use super::{AvoidTargets, Target};
#[allow(unused_imports)] // rustdoc links
use super::{LatencyTracker, Selector};

/// What a [`Selector`] sees of one request and of the live state of each target.
#[derive(Debug)]
pub struct Context<'a> {
    entries: &'a [Entry],
    /// The targets' counters (status bits, requests in flight), borrowed once for the pick.
    live: Words<'a>,
    /// No target is a backup or has a connection limit and none is to be avoided: a target's
    /// counters alone decide whether it is available.
    plain: bool,
    /// The status bits that keep a target out of this pick (fewer in panic mode).
    blocking: Status,
    backup: bool,
    avoid: Option<&'a AvoidTargets>,
    key: Option<u64>,
    health: Option<&'a HealthView>,
    /// The clock, read at most once per pick and only while a slow-start ramp is active.
    now: Cell<Option<tokio::time::Instant>>,
}

impl<'a> Context<'a> {
    #[inline(always)]
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
            live: live.words(),
            plain: !has_backups && !backup && !has_limits && avoid.is_none(),
            blocking: Status::BLOCKING,
            backup,
            avoid,
            key,
            health: None,
            now: Cell::new(None),
        }
    }

    /// The counters of the target at `index` (`index < len()`), found the one way
    /// ([`Words::hot`]): when they sit in snapshot order, without reading the target's entry.
    #[inline(always)]
    fn hot(&self, index: usize) -> &'a Hot {
        self.live.hot(index, self.entries)
    }

    /// The targets' counters by index, when they alone decide availability (no backups, no
    /// connection limits, nothing to avoid) and sit in snapshot order; with the status bits
    /// that block a target in this pick.
    ///
    /// Why the built-in P2C selectors read this instead of two [`load`](Self::load) calls: with
    /// equal weights they compare both candidates' words in one step (one `Status` test over
    /// both, a branch-free tie break), 199 instead of 236 instructions per pick (callgrind,
    /// n = 10 000, `docs/benchmarks.md` history); peak EWMA likewise, 191 instead of 301
    /// instructions per pick (callgrind, n = 10, 2026-11-29); every other selector uses the
    /// public accessors, and both paths answer alike (a property test checks every layout).
    #[inline(always)]
    pub(crate) fn plain_counters(&self) -> Option<(&'a [Hot], Status)> {
        match self.live.dense() {
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
    pub(crate) fn with_health(mut self, health: Option<&'a HealthView>, panic: bool) -> Self {
        self.health = health;
        // Panic mode: observed health (unhealthy, ejected) is ignored for this pick.
        if panic {
            self.blocking = Status::BLOCKING_IN_PANIC;
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
        if Hot::status_of(word).intersects(self.blocking) {
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
        if status.intersects(self.blocking) {
            return None;
        }
        let in_flight = Hot::in_flight_of(word);
        if !self.entry_allows(index, in_flight) {
            return None;
        }
        let weight = if status.intersects(Status::RAMP) {
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
        // The ramp flag is read through the target's state (the entry is in hand for the
        // weight): through the live table it cost more, least_conn at n = 100 taking 15.4k
        // instead of 13.5k instructions per pick (callgrind).
        let e = &self.entries[index];
        if !e.state.status().intersects(Status::RAMP) {
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
            Some(h) if e.state.status().intersects(Status::RAMP) => {
                let now = match self.now.get() {
                    Some(now) => now,
                    None => {
                        let now = tokio::time::Instant::now();
                        self.now.set(Some(now));
                        now
                    }
                };
                h.ramp.ramped_weight_milli(&e.state, w, now)
            }
            _ => w,
        }
    }

    /// Whether some target's [`weight`](Self::weight) differs from its configured weight right
    /// now (a slow-start ramp is active). Selectors that precompute weighted tables use it to
    /// correct their picks only while it matters; it costs one atomic load.
    #[inline]
    pub fn weights_adjusted(&self) -> bool {
        self.health.is_some_and(|h| h.signals.is_ramping())
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
    pub(crate) fn state(&self, index: usize) -> &'a TargetState {
        &self.entries[index].state
    }

    /// The hash of the request's key, when the balancer was given a key to hash on.
    #[inline]
    pub fn key(&self) -> Option<u64> {
        self.key
    }
}
