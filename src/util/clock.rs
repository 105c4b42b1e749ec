//! One clock reading per request, shared within the poll that took it.
//!
//! A request through the resilience stack and the target client would read the clock twice
//! when its first poll finds it waiting: the client, to tell how long the connection it took
//! from the pool had been idle, and the [`Timeout`](crate::timeout::Timeout) around it, to
//! start its deadline. Both readings fall in the same poll, microseconds apart. So a reader
//! that others may use reads through [`now`], which leaves its reading in a thread-local slot,
//! and a timeout clears the slot ([`forget`]) before it polls its inner future and takes what
//! was read there ([`seen`]) as its start. Only a reading taken during that very poll is ever
//! used: the slot is cleared first, and a poll is synchronous.
//!
//! A thread-local slot, not a request extension: inserting into a request's extension map
//! costs more than the clock read it would save, and the timeout has no request to read it
//! from, only the future it polls.

use std::cell::Cell;

use tokio::time::Instant;

thread_local! {
    /// The latest reading taken through [`now`] since the last [`forget`] on this thread.
    static SEEN: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Reads the clock (tokio's, so paused time is honoured) and leaves the reading for [`seen`].
#[inline]
pub(crate) fn now() -> Instant {
    let now = Instant::now();
    let _ = SEEN.try_with(|slot| slot.set(Some(now)));
    now
}

/// Clears the slot: what [`seen`] answers from here on was read after this call.
#[inline]
pub(crate) fn forget() {
    let _ = SEEN.try_with(|slot| slot.set(None));
}

/// The latest reading taken through [`now`] since the last [`forget`], if any.
#[inline]
pub(crate) fn seen() -> Option<Instant> {
    SEEN.try_with(Cell::get).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn only_a_reading_taken_since_the_last_forget_is_seen() {
        forget();
        assert_eq!(seen(), None);
        let read = now();
        assert_eq!(seen(), Some(read));
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        let later = now();
        assert_eq!(seen(), Some(later), "the latest reading");
        forget();
        assert_eq!(seen(), None);
    }
}
