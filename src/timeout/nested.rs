//! Nested timeouts share one timer: an outer deadline that an inner timer already covers
//! registers none of its own.
//!
//! A proxy stacks an overall deadline over a per-attempt timeout. The per-attempt timer, armed
//! when the attempt first waits, is due first (5 s against 10 s, say), so while it is armed the
//! task is certain to be woken, and the overall deadline to be looked at again, before the
//! overall deadline passes: registering a second timer for it buys nothing. Only when no inner
//! timer covers it (the attempt failed and a backoff runs, or the next attempt's timer is due
//! after the overall deadline) does the outer timeout arm its own.
//!
//! The inner timeout tells the outer one through a thread-local slot, the way tokio's
//! cooperative budget does: a poll is synchronous, so whatever a timeout polls inside its own
//! poll runs between its [`enter`] and [`leave`]. A timeout that is left pending with a timer
//! armed (or covered by one) [`report`]s it; the enclosing timeout reads the report, trusting it
//! only if the timer was registered with the waker it was itself polled with (a future polled
//! with another waker, e.g. inside a `FuturesUnordered`, wakes the task through that one). The
//! report is trusted until the next poll, and a timeout dropped before then clears the slot, so
//! a timer cancelled within the same poll is never relied on. A report also carries the instant
//! the inner timeout read from the clock, so the outer one needs no clock read of its own: one
//! clock read per request.

use std::cell::Cell;
use std::task::{Context, RawWakerVTable};

use tokio::time::Instant;

/// A timer armed and pending, registered with a waker.
#[derive(Clone, Copy, Debug)]
pub(super) struct Armed {
    /// When it fires, at the latest (tokio rounds up to its tick).
    pub(super) deadline: Instant,
    /// The clock reading its timeout started from (the first poll that found it pending).
    pub(super) start: Instant,
    waker_data: *const (),
    waker_vtable: *const RawWakerVTable,
}

impl Armed {
    pub(super) fn new(deadline: Instant, start: Instant, cx: &Context<'_>) -> Self {
        let waker = cx.waker();
        Armed {
            deadline,
            start,
            waker_data: waker.data(),
            waker_vtable: waker.vtable(),
        }
    }

    /// Whether this timer wakes the task polled with `cx` (the test `Waker::will_wake` makes).
    #[inline]
    pub(super) fn wakes(&self, cx: &Context<'_>) -> bool {
        let waker = cx.waker();
        std::ptr::eq(self.waker_data, waker.data())
            && std::ptr::eq(self.waker_vtable, waker.vtable())
    }
}

thread_local! {
    /// The earliest timer reported since the innermost enclosing [`enter`].
    static ARMED: Cell<Option<Armed>> = const { Cell::new(None) };
}

/// Starts a timeout's poll of its inner future: returns what was reported before (to be put
/// back by [`leave`]) and empties the slot for the inner timeouts.
#[inline]
pub(super) fn enter() -> Option<Armed> {
    ARMED.try_with(Cell::take).unwrap_or(None)
}

/// Ends the inner poll begun by [`enter`]: returns the earliest timer the inner future
/// reported and puts `saved` back.
#[inline]
pub(super) fn leave(saved: Option<Armed>) -> Option<Armed> {
    ARMED.try_with(|slot| slot.replace(saved)).unwrap_or(None)
}

/// Reports a pending timer to the enclosing timeout, if any.
#[inline]
pub(super) fn report(armed: Armed) {
    let _ = ARMED.try_with(|slot| {
        let earliest = match slot.get() {
            Some(other) if other.deadline <= armed.deadline => other,
            _ => armed,
        };
        slot.set(Some(earliest));
    });
}

/// Forgets every report: a timeout that may have reported is being dropped, so its timer may
/// be gone before the enclosing timeout reads the slot.
#[inline]
pub(super) fn forget() {
    let _ = ARMED.try_with(|slot| slot.set(None));
}
