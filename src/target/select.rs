//! The selection contract: what an algorithm builds per snapshot and what it sees per pick.
//!
//! It lives in the core, beside the snapshot that calls it, so that algorithms depend on the
//! core and never the other way round; `crate::algorithm` re-exports it with the built-ins.

use std::fmt;

use super::snapshot::Entry;
use super::{Context, LatencyTracker, Target};

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
