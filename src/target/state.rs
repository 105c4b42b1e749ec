use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use tokio::sync::Notify;

use super::TargetId;
use super::hooks::TargetObserver;
use super::latency::LatencyState;
use super::slots::{Acquire, Hot, IN_FLIGHT_MASK, REQUEST, STATUS_SHIFT, Slot, SlotPool};
use super::status::Status;
use crate::classify::Outcome;

/// Whether an operator lets a target take new requests, independent of observed health.
///
/// Admin state is a flag that picks skip, so changing it is a single atomic store: no
/// snapshot is rebuilt, and requests already in flight to the target are never cancelled.
///
/// # Examples
///
/// ```
/// use tower_lb::target::AdminState;
/// use tower_lb::{Target, TargetGroup};
///
/// let group = TargetGroup::builder("api")
///     .target(Target::new("a", "127.0.0.1:8080")?)
///     .build()?;
/// group.set_admin(&"a".into(), AdminState::Disabled)?;
/// assert_eq!(group.admin(&"a".into())?, AdminState::Disabled);
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AdminState {
    /// In rotation (the default).
    #[default]
    Enabled,
    /// No new requests; requests in flight finish. See [`TargetGroup::drain`](crate::group::TargetGroup::drain).
    Draining,
    /// Out of rotation.
    Disabled,
}

/// The live, mutable state of one target: atomics only, shared by every snapshot that
/// contains the target and by every request in flight to it.
#[derive(Debug, Default)]
pub(crate) struct TargetState {
    /// The status bits, requests in flight and requests (modulo 2³²), in the group's dense
    /// table (see `slots`).
    slot: Slot,
    /// Requests counted before the word's request count last wrapped (a multiple of 2³²).
    /// Locked only to wrap and to read the total, so a reader never sees a wrap half done.
    wrapped: Mutex<u64>,
    failures: AtomicU64,
    drained: Notify,
    /// Latency estimate, written only when the group's selector asks for latency.
    pub(crate) latency: LatencyState,
    /// Learns of status changes and outcomes (health's per-target bookkeeping); set once.
    observer: OnceLock<Box<dyn TargetObserver>>,
}

impl TargetState {
    /// A state whose counters live in `pool`.
    pub(crate) fn in_pool(pool: &std::sync::Arc<SlotPool>) -> Self {
        TargetState {
            slot: pool.alloc(),
            ..TargetState::default()
        }
    }

    /// Attaches the observer that learns of every status change and outcome from now on;
    /// `false` (and `observer` dropped) if one is attached already.
    pub(crate) fn set_observer(&self, observer: Box<dyn TargetObserver>) -> bool {
        self.observer.set(observer).is_ok()
    }

    /// The attached observer, if any.
    pub(crate) fn observer(&self) -> Option<&dyn TargetObserver> {
        self.observer.get().map(|o| &**o)
    }

    /// Where the counters live.
    pub(crate) fn slot(&self) -> &Slot {
        &self.slot
    }

    #[inline]
    fn hot(&self) -> &Hot {
        self.slot.hot()
    }

    /// Whether new requests may be sent here (not counting the connection limit).
    #[inline]
    pub(crate) fn is_routable(&self) -> bool {
        !Hot::status_of(self.hot().load(Ordering::Relaxed)).intersects(Status::BLOCKING)
    }

    #[inline]
    pub(crate) fn status(&self) -> Status {
        Hot::status_of(self.hot().load(Ordering::Acquire))
    }

    /// Applies `f` to the status bits atomically and lets the group's health bookkeeping see the
    /// transition; returns `(before, after)`. Every status change goes through here.
    pub(crate) fn transition(&self, f: impl Fn(Status) -> Status) -> (Status, Status) {
        let apply = |w: u64| {
            let low = w as u32;
            let s = f(Hot::status_of(low)).bits();
            (w & !u64::from(u32::MAX)) | u64::from((s << STATUS_SHIFT) | Hot::in_flight_of(low))
        };
        let prev = match self
            .hot()
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| Some(apply(w)))
        {
            Ok(w) | Err(w) => Hot::status_of(w as u32),
        };
        let next = f(prev);
        if prev != next {
            if let Some(o) = self.observer.get() {
                o.on_transition(prev, next);
            }
        }
        (prev, next)
    }

    #[inline]
    pub(crate) fn in_flight(&self) -> u32 {
        Hot::in_flight_of(self.hot().load(Ordering::Relaxed))
    }

    /// Counts one more request in flight, unless that would exceed `max` (`0`: no limit but
    /// the word's, 16 777 215): [`acquire`] on this state's own word, for tests that hold a
    /// state without a snapshot.
    #[cfg(test)]
    pub(crate) fn try_acquire(&self, max: u32) -> bool {
        acquire(self.hot(), max, || self)
    }

    /// [`acquire`] when the word's request count is about to wrap (once every 2³² requests):
    /// moves the wrap into `wrapped` under its lock. `limit` is the word's limit already
    /// (`1..=IN_FLIGHT_MASK`).
    #[cold]
    #[inline(never)]
    pub(super) fn acquire_wrapping(&self, limit: u32) -> bool {
        let mut wrapped = crate::util::lock(&self.wrapped);
        let full = u64::from(u32::MAX);
        match self
            .hot()
            .word
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                if Hot::in_flight_of(w as u32) >= limit {
                    None
                } else if w >> 32 == full {
                    // The count restarts at 0 and the wrap moves into `wrapped`.
                    Some((w & full) + 1)
                } else {
                    Some(w + REQUEST + 1)
                }
            }) {
            Ok(prev) => {
                if prev >> 32 == full {
                    *wrapped += full + 1;
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Requests ever counted here.
    pub(crate) fn requests(&self) -> u64 {
        let wrapped = crate::util::lock(&self.wrapped);
        *wrapped + (self.hot().word.load(Ordering::Relaxed) >> 32)
    }

    #[cfg(test)]
    pub(crate) fn release(&self) {
        let prev = self.hot().release();
        self.released(prev);
    }

    /// After a release that found `prev` (the word's low half) before it: wakes whoever waits
    /// for a draining target to go idle.
    #[inline]
    pub(crate) fn released(&self, prev: u32) {
        // Only a draining target has waiters; keep the common path free of `Notify`'s lock.
        if Hot::in_flight_of(prev) == 1 && Hot::status_of(prev).intersects(Status::DRAINING) {
            self.drained.notify_waiters();
        }
    }

    /// Records what one finished attempt says about this target.
    #[inline]
    pub(crate) fn observe(self: &std::sync::Arc<Self>, outcome: Outcome) {
        if outcome.is_failure() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(o) = self.observer.get() {
            o.observe(self, outcome);
        }
    }

    pub(crate) fn admin(&self) -> AdminState {
        admin_of(self.status())
    }

    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn set_admin(&self, admin: AdminState) {
        self.swap_admin(admin);
    }

    /// Sets the admin state; returns the previous one.
    pub(crate) fn swap_admin(&self, admin: AdminState) -> AdminState {
        let bits = match admin {
            AdminState::Enabled => Status::NONE,
            AdminState::Draining => Status::DRAINING,
            AdminState::Disabled => Status::DISABLED,
        };
        let (prev, _) = self.transition(|s| (s & !Status::ADMIN) | bits);
        if admin == AdminState::Draining
            && Hot::in_flight_of(self.hot().load(Ordering::Acquire)) == 0
        {
            self.drained.notify_waiters();
        }
        admin_of(prev)
    }

    /// Resolves once nothing is in flight.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.drained.notified();
            if Hot::in_flight_of(self.hot().load(Ordering::Acquire)) == 0 {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn stats(&self, id: &TargetId) -> TargetStats {
        TargetStats {
            id: id.clone(),
            in_flight: self.in_flight(),
            requests: self.requests(),
            failures: self.failures.load(Ordering::Relaxed),
            admin: self.admin(),
        }
    }
}

/// The one acquire path: counts one more request in flight (and one more request) on `hot`,
/// the word of the target whose state `state` returns, unless `max_conns` (`0`: no limit but
/// the word's, 16 777 215) are in flight already. `state` is called only when the word's
/// request count wraps, once every 2³² requests, so a dispatch reads neither the target's
/// entry nor its state: [`Snapshot::try_acquire`](super::Snapshot::try_acquire) finds `hot`
/// through the snapshot's live table, as a pick does.
#[inline(always)]
pub(crate) fn acquire<'s>(
    hot: &Hot,
    max_conns: u32,
    state: impl FnOnce() -> &'s TargetState,
) -> bool {
    let limit = if max_conns == 0 {
        IN_FLIGHT_MASK
    } else {
        max_conns.min(IN_FLIGHT_MASK)
    };
    match hot.try_count(limit) {
        Acquire::Done => true,
        Acquire::Full => false,
        Acquire::Wrap => {
            let state = state();
            debug_assert!(std::ptr::eq(hot, state.hot()), "another target's word");
            state.acquire_wrapping(limit)
        }
    }
}

fn admin_of(s: Status) -> AdminState {
    if s.intersects(Status::DISABLED) {
        AdminState::Disabled
    } else if s.intersects(Status::DRAINING) {
        AdminState::Draining
    } else {
        AdminState::Enabled
    }
}

/// A point-in-time view of one target's counters; see [`TargetGroup::stats`](crate::group::TargetGroup::stats).
///
/// Counters are carried over by id when the group's membership changes.
///
/// # Examples
///
/// ```
/// use tower_lb::{Target, TargetGroup};
///
/// let group = TargetGroup::builder("api").target(Target::new("a", "127.0.0.1:1")?).build()?;
/// let stats = group.stats();
/// assert_eq!(stats[0].id().as_str(), "a");
/// assert_eq!(stats[0].requests(), 0);
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStats {
    id: TargetId,
    in_flight: u32,
    requests: u64,
    failures: u64,
    admin: AdminState,
}

impl TargetStats {
    /// The target's id.
    pub fn id(&self) -> &TargetId {
        &self.id
    }
    /// Requests dispatched and not yet finished (a response body still streaming counts).
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }
    /// Requests dispatched to the target since it joined the group.
    pub fn requests(&self) -> u64 {
        self.requests
    }
    /// Requests that ended in an error from the target's service.
    pub fn failures(&self) -> u64 {
        self.failures
    }
    /// The target's admin state.
    pub fn admin(&self) -> AdminState {
        self.admin
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 128,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x776f_7264),
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// The packed word (in flight, status, request count) against a plain model, across
        /// acquires with and without a limit, releases and admin changes, from a fresh count and
        /// from one about to wrap.
        #[test]
        fn the_word_matches_a_model(
            near_wrap in any::<bool>(),
            ops in prop::collection::vec(0u8..5, 0..300),
        ) {
            let state = TargetState::default();
            let start = if near_wrap { u64::from(u32::MAX) - 3 } else { 0 };
            state.hot().word.fetch_add(start << 32, Ordering::Relaxed);
            let (mut in_flight, mut requests, mut admin) = (0u32, start, AdminState::Enabled);
            for op in ops {
                match op {
                    0 | 1 => {
                        let max = if op == 0 { 3 } else { 0 };
                        let admitted = max == 0 || in_flight < max;
                        prop_assert_eq!(state.try_acquire(max), admitted);
                        if admitted {
                            in_flight += 1;
                            requests += 1;
                        }
                    }
                    2 if in_flight > 0 => {
                        state.release();
                        in_flight -= 1;
                    }
                    3 => {
                        admin = if admin == AdminState::Draining {
                            AdminState::Enabled
                        } else {
                            AdminState::Draining
                        };
                        state.set_admin(admin);
                    }
                    _ => {
                        admin = AdminState::Disabled;
                        state.set_admin(admin);
                    }
                }
                prop_assert_eq!(state.in_flight(), in_flight);
                prop_assert_eq!(state.requests(), requests);
                prop_assert_eq!(state.admin(), admin);
            }
        }
    }

    /// A draining target whose word starts at `word` (a count close to a limit).
    fn draining_at(word: u64) -> TargetState {
        let state = TargetState::default();
        state.set_admin(AdminState::Draining);
        state.hot().word.fetch_add(word, Ordering::Relaxed);
        state
    }

    #[test]
    fn the_request_count_wraps_into_the_state_exactly() {
        // Two requests short of the word's request count wrapping.
        let state = draining_at((u64::from(u32::MAX) - 1) << 32);
        assert_eq!(state.requests(), u64::from(u32::MAX) - 1);
        for k in 0..4u64 {
            assert!(state.try_acquire(0));
            assert_eq!(state.requests(), u64::from(u32::MAX) + k, "no request lost");
        }
        assert_eq!(state.hot().word.load(Ordering::Relaxed) >> 32, 2, "wrapped");
        assert_eq!(state.in_flight(), 4);
        assert_eq!(state.admin(), AdminState::Draining, "status untouched");
        // A full target is refused on the wrapping path too, and counts nothing.
        let full = TargetState::default();
        full.hot()
            .word
            .fetch_add(u64::from(u32::MAX) << 32, Ordering::Relaxed);
        assert!(full.try_acquire(1));
        assert!(!full.try_acquire(1));
        assert!(!full.acquire_wrapping(1));
        assert_eq!(full.requests(), u64::from(u32::MAX) + 1);
    }

    #[test]
    fn in_flight_never_carries_into_the_status() {
        // Jump close to the word's limit, then acquire up to it.
        let state = draining_at(u64::from(IN_FLIGHT_MASK - 2));
        assert!(state.try_acquire(0));
        assert!(state.try_acquire(0));
        assert_eq!(state.in_flight(), IN_FLIGHT_MASK);
        assert!(!state.try_acquire(0), "full: refused, not wrapped");
        assert!(!state.try_acquire(u32::MAX), "a larger limit is capped too");
        assert_eq!(state.admin(), AdminState::Draining, "status untouched");
        state.release();
        assert_eq!(state.in_flight(), IN_FLIGHT_MASK - 1);
        assert_eq!(state.admin(), AdminState::Draining);
    }

    #[test]
    fn status_changes_keep_the_count() {
        let state = TargetState::default();
        for _ in 0..3 {
            assert!(state.try_acquire(3));
        }
        assert!(!state.try_acquire(3), "the target's own limit");
        state.set_admin(AdminState::Disabled);
        assert_eq!(state.in_flight(), 3);
        assert!(!state.is_routable());
        state.set_admin(AdminState::Enabled);
        assert!(state.is_routable());
        assert_eq!(state.in_flight(), 3);
    }
}
