//! The hooks through which the layers above the core learn of a target's life, and what a pick
//! needs from them, without the core naming any of them.
//!
//! Why: health (and later metrics) must see every status change and every recorded outcome, and
//! a pick must honour panic mode and slow start. The core defines the small interfaces here;
//! `crate::health` implements them and hands them to the group, which attaches them to each
//! target's state and to each snapshot. Dependencies point one way: from health down to here.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};

use tokio::time::Instant;

use super::state::TargetState;
use super::status::Status;
use crate::classify::Outcome;

/// Learns of every status change of one target and of every outcome recorded for it.
///
/// Attached once to a [`TargetState`] (see `TargetState::set_observer`).
pub(crate) trait TargetObserver: fmt::Debug + Send + Sync + 'static {
    /// The target's status bits went from `prev` to `next` (`prev != next`).
    fn on_transition(&self, prev: Status, next: Status);

    /// One finished attempt to the target.
    fn observe(&self, state: &Arc<TargetState>, outcome: Outcome);

    /// The observer itself, for the layer that attached it to read its own per-target state.
    fn as_any(&self) -> &dyn Any;
}

/// What a pick does about panic mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PanicState {
    /// Observed health decides.
    Normal,
    /// Observed health is ignored: unhealthy and ejected targets are picked too.
    FailOpen,
    /// Nothing is picked.
    FailFast,
}

const NORMAL: u8 = 0;
const FAIL_OPEN: u8 = 1;
const FAIL_FAST: u8 = 2;

/// What a group's health publishes for every pick, each read with one relaxed load.
#[derive(Debug, Default)]
pub(crate) struct PickSignals {
    panic: AtomicU8,
    /// Targets of the group whose weight ramps up (slow start).
    pub(crate) ramping: AtomicI64,
}

impl PickSignals {
    #[inline]
    pub(crate) fn panic_state(&self) -> PanicState {
        match self.panic.load(Ordering::Relaxed) {
            NORMAL => PanicState::Normal,
            FAIL_OPEN => PanicState::FailOpen,
            _ => PanicState::FailFast,
        }
    }

    /// Sets the panic state; returns the previous one.
    pub(crate) fn swap_panic(&self, next: PanicState) -> PanicState {
        let next = match next {
            PanicState::Normal => NORMAL,
            PanicState::FailOpen => FAIL_OPEN,
            PanicState::FailFast => FAIL_FAST,
        };
        match self.panic.swap(next, Ordering::AcqRel) {
            NORMAL => PanicState::Normal,
            FAIL_OPEN => PanicState::FailOpen,
            _ => PanicState::FailFast,
        }
    }

    #[inline]
    pub(crate) fn is_ramping(&self) -> bool {
        self.ramping.load(Ordering::Relaxed) > 0
    }
}

/// Slow start's weight ramp, asked only about a target whose `RAMP` bit is set.
pub(crate) trait WeightRamp: fmt::Debug + Send + Sync + 'static {
    /// The effective weight (in thousandths) of a ramping target of weight `milli / 1000`;
    /// may end the ramp (clear `Status::RAMP`) once its window has passed.
    fn ramped_weight_milli(&self, state: &TargetState, milli: u64, now: Instant) -> u64;
}

/// A group's health as its snapshots and picks see it.
#[derive(Debug, Clone)]
pub(crate) struct HealthView {
    pub(crate) signals: Arc<PickSignals>,
    pub(crate) ramp: Arc<dyn WeightRamp>,
    /// Whether a successful attempt tells health anything (failures always do).
    pub(crate) watches_successes: bool,
}
