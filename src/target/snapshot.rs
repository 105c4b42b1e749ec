use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::hooks::{HealthView, PanicState};
use super::slots::LiveTable;
use super::state::{TargetState, acquire};
use super::{Algorithm, AvoidTargets, Context, LatencyTracker, Selector, Targets};
use super::{Target, TargetId};

/// One member of a snapshot: the immutable target and its live state.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) target: Arc<Target>,
    pub(crate) state: Arc<TargetState>,
    /// Copies of the target fields a pick reads, kept inline so that checking a target touches
    /// only its live state, not the `Target` behind another pointer.
    pub(crate) backup: bool,
    /// `0` means no limit.
    pub(crate) max_conns: u32,
    pub(crate) weight: u32,
    /// Where the state's counters sit in the snapshot's [`LiveTable`] (set by `Snapshot::build`).
    pub(crate) chunk: u32,
    pub(crate) slot: u32,
}

impl Entry {
    pub(crate) fn new(target: Arc<Target>, state: Arc<TargetState>) -> Entry {
        Entry {
            backup: target.is_backup(),
            max_conns: target.max_conns().map_or(0, |m| m.get()),
            weight: target.weight(),
            chunk: 0,
            slot: 0,
            target,
            state,
        }
    }
}

/// An immutable view of a group's membership plus the algorithm's tables built for it.
///
/// Published whole through one `ArcSwap`; a pick reads exactly one snapshot.
pub(crate) struct Snapshot {
    pub(crate) version: u64,
    /// Shared with the balancer's per-snapshot table, which requests in flight hold: a long
    /// response keeps the entries alive, not the selector's tables.
    pub(crate) entries: Arc<[Entry]>,
    index: HashMap<TargetId, usize>,
    selector: Box<dyn Selector>,
    /// The targets' counters, dense.
    pub(crate) live: LiveTable,
    has_backups: bool,
    /// Some target has a connection limit.
    has_limits: bool,
    /// The group's health view (panic mode, slow start); `None` in bare test snapshots.
    health: Option<HealthView>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version)
            .field("targets", &self.entries.len())
            .field("selector", &self.selector)
            .finish()
    }
}

impl Snapshot {
    /// Builds a snapshot; entries are ordered by id so that placement never depends on the
    /// order in which targets arrived.
    pub(crate) fn build(
        version: u64,
        mut entries: Vec<Entry>,
        algorithm: &dyn Algorithm,
    ) -> Snapshot {
        entries.sort_by(|a, b| a.target.id().cmp(b.target.id()));
        entries.dedup_by(|b, a| a.target.id() == b.target.id());
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.target.id().clone(), i))
            .collect();
        let has_backups = entries.iter().any(|e| e.backup);
        let has_limits = entries.iter().any(|e| e.max_conns != 0);
        let (live, places) = LiveTable::build(entries.iter().map(|e| e.state.slot()));
        for (e, (chunk, slot)) in entries.iter_mut().zip(places) {
            e.chunk = chunk;
            e.slot = slot;
        }
        let selector = algorithm.build(&Targets::new(&entries));
        Snapshot {
            version,
            entries: entries.into(),
            index,
            selector,
            live,
            has_backups,
            has_limits,
            health: None,
        }
    }

    /// The latency tracker of the selector, if it reads latency.
    #[inline]
    pub(crate) fn latency(&self) -> Option<&LatencyTracker> {
        self.selector.latency()
    }

    /// Whether a successful attempt must reach its target's state (see
    /// `HealthView::watches_successes`); failures always do.
    pub(crate) fn watches_successes(&self) -> bool {
        self.health.as_ref().is_some_and(|h| h.watches_successes)
    }

    /// Counts one more request in flight (and one more request) to target `i`, unless it is
    /// at its connection limit: [`acquire`] on the word the live table finds. Without limits
    /// in the group, the target's entry and state are not read.
    #[inline]
    pub(crate) fn try_acquire(&self, i: usize) -> bool {
        let hot = self.live.hot(i, &self.entries);
        let state = || &*self.entries[i].state;
        // Two calls, so that without limits the word's own limit is a constant.
        if self.has_limits {
            acquire(hot, self.entries[i].max_conns, state)
        } else {
            acquire(hot, 0, state)
        }
    }

    /// Attaches the group's health view.
    pub(crate) fn with_health(mut self, health: HealthView) -> Snapshot {
        self.health = Some(health);
        self
    }

    pub(crate) fn position(&self, id: &TargetId) -> Option<usize> {
        self.index.get(id).copied()
    }

    pub(crate) fn get(&self, id: &TargetId) -> Option<&Entry> {
        self.position(id).map(|i| &self.entries[i])
    }

    /// Picks a target: primaries first, backups only when no primary is available; within
    /// each tier, targets to avoid only when nothing else is available.
    #[inline]
    pub(crate) fn pick(&self, key: Option<u64>, avoid: Option<&AvoidTargets>) -> Option<usize> {
        let avoid = avoid.filter(|a| !a.is_empty());
        // One relaxed load: the panic state is recomputed when health flips, never per pick.
        let health = self.health.as_ref();
        let panic = match health.map_or(PanicState::Normal, |h| h.signals.panic_state()) {
            PanicState::Normal => false,
            PanicState::FailOpen => true,
            PanicState::FailFast => return None,
        };
        if avoid.is_none() && !self.has_backups {
            // The common case: one tier, nothing to avoid, one call to the selector.
            let cx = self.context(false, None, key).with_health(health, panic);
            return self.checked(&cx);
        }
        self.pick_tiered(key, avoid, health, panic)
    }

    /// The index of target `id` if it is a primary that could be picked now (the checks of a
    /// pick: status, panic mode, connection limit, `avoid`); a backup is left to [`pick`](Self::pick).
    ///
    /// `hint` is where the caller believes the target sits: taken if the entry there has the
    /// id, which saves hashing it.
    pub(crate) fn affine(
        &self,
        id: &TargetId,
        hint: Option<usize>,
        avoid: Option<&AvoidTargets>,
    ) -> Option<usize> {
        let hinted = hint.filter(|&h| self.entries.get(h).is_some_and(|e| e.target.id() == id));
        let i = match hinted {
            Some(i) => i,
            None => self.position(id)?,
        };
        if self.entries[i].backup {
            return None;
        }
        let health = self.health.as_ref();
        let panic = match health.map_or(PanicState::Normal, |h| h.signals.panic_state()) {
            PanicState::Normal => false,
            PanicState::FailOpen => true,
            PanicState::FailFast => return None,
        };
        let avoid = avoid.filter(|a| !a.is_empty());
        let cx = self.context(false, avoid, None).with_health(health, panic);
        cx.is_available(i).then_some(i)
    }

    /// Primaries, then backups; in each tier, first without the targets to avoid.
    fn pick_tiered(
        &self,
        key: Option<u64>,
        avoid: Option<&AvoidTargets>,
        health: Option<&HealthView>,
        panic: bool,
    ) -> Option<usize> {
        let tiers: &[bool] = if self.has_backups {
            &[false, true]
        } else {
            &[false]
        };
        for &backup in tiers {
            if avoid.is_some() {
                let cx = self.context(backup, avoid, key).with_health(health, panic);
                if let Some(i) = self.checked(&cx) {
                    return Some(i);
                }
            }
            let cx = self.context(backup, None, key).with_health(health, panic);
            if let Some(i) = self.checked(&cx) {
                return Some(i);
            }
        }
        None
    }

    #[inline]
    fn context<'a>(
        &'a self,
        backup: bool,
        avoid: Option<&'a AvoidTargets>,
        key: Option<u64>,
    ) -> Context<'a> {
        Context::new(
            &self.entries,
            &self.live,
            self.has_backups,
            self.has_limits,
            backup,
            avoid,
            key,
        )
    }

    /// Runs the selector and refuses an out-of-range or unavailable answer, so a faulty
    /// custom algorithm can never route to a target it was told was unavailable.
    #[inline]
    fn checked(&self, cx: &Context<'_>) -> Option<usize> {
        self.selector.select(cx).filter(|&i| cx.is_available(i))
    }
}
