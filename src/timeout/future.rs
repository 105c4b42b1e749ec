//! The future returned by [`Timeout`](super::Timeout).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::timeout::error::Elapsed;

use super::nested::{self, Armed};
use super::timer::Timer;
use crate::error::BoxError;
use crate::util::clock;

pin_project! {
    /// The inner response future, with a deadline set at the first poll that finds it pending
    /// and a timer armed for it unless an inner timeout's timer covers it (see the
    /// [module docs](super)).
    pub struct ResponseFuture<F> {
        // `None` once dropped for the deadline.
        #[pin]
        inner: Option<F>,
        // `None` until a timer is needed; boxed in a slot reused on the thread (see
        // `timeout::timer`), so the future is small and a pending request does not allocate.
        sleep: Option<Timer>,
        // The first poll that found the inner future pending.
        start: Option<Instant>,
        timeout: Duration,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // A timer this future reported may be relied on until the next poll of the
            // timeout around it; going away, it withdraws the report.
            if this.start.is_some() {
                nested::forget();
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    #[inline(always)]
    pub(crate) fn new(inner: F, timeout: Duration) -> Self {
        ResponseFuture {
            inner: Some(inner),
            sleep: None,
            start: None,
            timeout,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("timeout", &self.timeout)
            .field("armed", &self.sleep.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(Elapsed::new().into()));
        };
        let saved = nested::enter();
        if this.start.is_none() {
            // Until the deadline has started: a clock reading taken inside may start it.
            clock::forget();
        }
        let polled = inner.poll(cx);
        // An inner timer that wakes this task: it fires first, or this one has no use for it.
        let covered = nested::leave(saved).filter(|armed| armed.wakes(cx));
        if let Poll::Ready(res) = polled {
            return Poll::Ready(res.map_err(Into::into));
        }
        // The first poll that finds it pending: the deadline starts from an inner timeout's
        // start, else from a clock reading taken in this poll (the target client's), else
        // from a reading of its own, which it leaves for a timeout around it.
        let start = *this.start.get_or_insert_with(|| {
            covered
                .map(|armed| armed.start)
                .or_else(clock::seen)
                .unwrap_or_else(clock::now)
        });
        // `timeout` is capped (see `crate::util::cap`): the sum does not overflow.
        let deadline = start.checked_add(*this.timeout).unwrap_or(start);
        if this.sleep.is_none() {
            if let Some(armed) = covered.filter(|armed| armed.deadline <= deadline) {
                // Woken by the inner timer before the deadline, then looked at again.
                nested::report(armed);
                return Poll::Pending;
            }
            *this.sleep = Some(Timer::until(deadline));
        }
        match this.sleep.as_mut().map(|timer| timer.poll(cx)) {
            Some(Poll::Ready(())) => {
                // Drop the attempt now, marked as cut off by a deadline, so the target it
                // was waiting on counts a timeout (a caller that merely goes away does not).
                crate::classify::drop_for_deadline(|| this.inner.set(None));
                Poll::Ready(Err(Elapsed::new().into()))
            }
            _ => {
                nested::report(Armed::new(deadline, start, cx));
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::{Future, pending};
    use std::pin::{Pin, pin};
    use std::task::{Context, Poll};
    use std::time::Duration;

    use super::ResponseFuture;

    type Hung = std::future::Pending<Result<(), std::convert::Infallible>>;

    /// An overall deadline over a per-attempt timeout, the attempt pending: one timer, the
    /// attempt's; the overall deadline starts from the attempt's clock reading.
    #[tokio::test(start_paused = true)]
    async fn an_outer_deadline_covered_by_the_inner_timer_arms_none() {
        let mut outer = pin!(nested(5, 10));
        polled_once(outer.as_mut()).await;
        let inner: &ResponseFuture<Hung> = outer.inner.as_ref().unwrap();
        assert!(inner.sleep.is_some(), "the attempt's timer");
        assert!(outer.sleep.is_none(), "no second timer");
        assert_eq!(outer.start, inner.start, "one clock reading");

        // The attempt's timer due after the overall deadline: both armed.
        let mut outer = pin!(nested(20, 10));
        polled_once(outer.as_mut()).await;
        assert!(outer.sleep.is_some());
    }

    /// A clock reading the inner future took through `util::clock` during the poll that found
    /// it pending starts the deadline: no reading of the timeout's own. One taken before that
    /// poll does not.
    #[tokio::test]
    async fn the_deadline_starts_from_a_reading_taken_inside_the_first_poll() {
        use crate::util::clock;
        use tokio::time::Instant;

        /// Reads the clock the shared way, then waits (bounded) until the clock has moved on,
        /// so that a reading of the timeout's own would differ from it; stays pending.
        fn reads_then_pends(
            read: &std::cell::Cell<Option<Instant>>,
        ) -> Poll<Result<(), std::convert::Infallible>> {
            let at = clock::now();
            read.set(Some(at));
            let moved = (0..10_000_000).any(|_| Instant::now() > at);
            assert!(moved, "the clock moved on");
            Poll::Pending
        }

        let read = std::cell::Cell::new(None);
        let inner = std::future::poll_fn(|_cx: &mut Context<'_>| reads_then_pends(&read));
        let mut timeout = pin!(ResponseFuture::new(inner, Duration::from_secs(5)));
        let polled =
            std::future::poll_fn(|cx: &mut Context<'_>| Poll::Ready(timeout.as_mut().poll(cx)))
                .await;
        assert!(polled.is_pending());
        assert_eq!(timeout.start, read.get(), "the inner reading");
        assert!(timeout.sleep.is_some());

        // A reading left from before the poll is not taken.
        let stale = clock::now();
        while Instant::now() <= stale {
            std::hint::spin_loop();
        }
        let mut timeout = pin!(ResponseFuture::new(
            pending::<Result<(), std::convert::Infallible>>(),
            Duration::from_secs(5)
        ));
        let polled =
            std::future::poll_fn(|cx: &mut Context<'_>| Poll::Ready(timeout.as_mut().poll(cx)))
                .await;
        assert!(polled.is_pending());
        assert!(timeout.start.is_some_and(|start| start > stale));
    }

    /// A per-attempt timeout of `inner` seconds over a hung attempt, under an overall one of
    /// `outer` seconds.
    fn nested(inner: u64, outer: u64) -> ResponseFuture<ResponseFuture<Hung>> {
        let attempt = ResponseFuture::new(pending(), Duration::from_secs(inner));
        ResponseFuture::new(attempt, Duration::from_secs(outer))
    }

    /// Polls `fut` once, in a task, and checks it is pending.
    async fn polled_once(mut fut: Pin<&mut ResponseFuture<ResponseFuture<Hung>>>) {
        let polled =
            std::future::poll_fn(|cx: &mut Context<'_>| Poll::Ready(fut.as_mut().poll(cx))).await;
        assert!(polled.is_pending());
    }
}
