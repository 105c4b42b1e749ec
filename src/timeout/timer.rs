//! A timeout's timer, boxed, and reused from request to request on the same thread.
//!
//! A tokio [`Sleep`] is about a hundred bytes, and arming one costs more than the rest of a
//! timeout: a new `Sleep` is entered into tokio's timer wheel when first polled and taken out
//! again when dropped, each under the timer's lock. A proxy arms one per request (the
//! per-attempt timeout) and finishes it long before it fires. So a timeout done with its timer
//! leaves it, boxed and still entered in the wheel, to the next timeout on the thread (at most
//! [`KEEP`] per thread), which moves its deadline with [`Sleep::reset`]: for a deadline later
//! than the old one (the common case, the same duration from a later start) tokio only
//! records the new deadline, and the wheel, finding the entry not due when the old deadline
//! comes, files it again for the new one. Boxed, the timer is also one word of the response
//! future instead of a hundred bytes, and a proxy's chain of futures is moved several times
//! while it is built and served.
//!
//! What a spare timer keeps until it is reused: its entry in the wheel, due at its last
//! deadline, and the waker of the task that polled it last. If it is still spare when that
//! deadline comes, it fires once and wakes that task for nothing (a spurious wake-up, which
//! every future must tolerate), after which it holds no entry. So a thread that goes idle
//! after a burst wakes each of its spare timers once, at most one timeout duration later; in
//! tests with paused time, those entries are timers the runtime can auto-advance to.
//!
//! A timer belongs to the runtime it was made on: a spare made on another runtime (tests run
//! several on one thread) is dropped, never reused.

use std::cell::RefCell;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::runtime::{Handle, Id};
use tokio::task::Id as TaskId;
use tokio::time::{Instant, Sleep};

use crate::util::spare;

/// Spare timers kept per thread, at most: as many as timeouts armed at once on a thread
/// before they need new ones.
const KEEP: usize = 128;

/// A timer left for the next timeout on the thread, and its runtime.
struct Spare {
    runtime: Id,
    sleep: Pin<Box<Sleep>>,
}

thread_local! {
    /// Timers of timeouts done with them.
    static SPARE: RefCell<Vec<Spare>> = const { RefCell::new(Vec::new()) };
}

/// Tasks whose runtime this thread remembers, at most (one slot each, by task number).
const TASKS: usize = 64;

/// A task and its runtime (`None`: outside one).
type TaskRuntime = (TaskId, Option<Id>);

thread_local! {
    /// The runtime of tasks seen on this thread, each in the slot its number picks. A task
    /// never changes runtime and task ids are never reused in a process (tokio counts them
    /// from one counter), so a slot holding the current task's id names its runtime.
    static RUNTIME_OF: RefCell<[Option<TaskRuntime>; TASKS]> =
        const { RefCell::new([None; TASKS]) };
}

/// The runtime this code runs on, if any. Asking tokio (`Handle::try_current`) clones and
/// drops a reference to the runtime's handle, shared by all its threads; so the answer is
/// remembered per task, and a connection's task, which arms a timer per request, asks once.
#[inline]
fn current_runtime() -> Option<Id> {
    let Some(task) = tokio::task::try_id() else {
        // Not in a task (a `block_on` future): ask.
        return Handle::try_current().ok().map(|handle| handle.id());
    };
    // A task's number, as tokio counts them: only where its slot is, so any number would be
    // correct, and this one spreads a thread's tasks evenly.
    let slot = (crate::util::id_number(&task) % TASKS as u64) as usize;
    let known = RUNTIME_OF
        .try_with(|seen| {
            let seen = seen.try_borrow().ok()?;
            let (id, runtime) = seen[slot]?;
            (id == task).then_some(runtime)
        })
        .ok()
        .flatten();
    if let Some(runtime) = known {
        return runtime;
    }
    let runtime = Handle::try_current().ok().map(|handle| handle.id());
    let _ = RUNTIME_OF.try_with(|seen| {
        if let Ok(mut seen) = seen.try_borrow_mut() {
            seen[slot] = Some((task, runtime));
        }
    });
    runtime
}

/// A timer armed for a deadline: a spare one of this thread's, reset, or a new one; left for
/// the next timeout when dropped.
pub(super) struct Timer {
    /// Taken out only when dropped.
    sleep: Option<Pin<Box<Sleep>>>,
    /// The runtime it belongs to (`None` when made outside one, which `sleep_until` refuses).
    runtime: Option<Id>,
}

impl Timer {
    /// A timer due at `deadline`.
    #[inline]
    pub(super) fn until(deadline: Instant) -> Self {
        let runtime = current_runtime();
        let spare = runtime.and_then(|id| match spare::take(&SPARE)? {
            Spare { runtime, sleep } if runtime == id => Some(sleep),
            _ => {
                // Left by another runtime: none of them is of use here.
                let _ = SPARE.try_with(|spares| spares.try_borrow_mut().map(|mut s| s.clear()));
                None
            }
        });
        let sleep = match spare {
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        Timer {
            sleep: Some(sleep),
            runtime,
        }
    }

    /// Polls the timer: `Ready` once the deadline has passed.
    #[inline]
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.sleep.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let (Some(runtime), Some(sleep)) = (self.runtime, self.sleep.take()) else {
            return;
        };
        spare::keep(&SPARE, Spare { runtime, sleep }, KEEP);
    }
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer")
            .field(
                "deadline",
                &self.sleep.as_ref().map(|sleep| sleep.deadline()),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use super::*;

    /// Polls `timer` once in the current task.
    async fn poll_once(timer: &mut Timer) -> Poll<()> {
        poll_fn(|cx| Poll::Ready(timer.poll(cx))).await
    }

    fn spares() -> usize {
        SPARE.with(|s| s.borrow().len())
    }

    /// The address of the `Sleep` in `timer`, to tell a reused one.
    fn at(timer: &Timer) -> *const Sleep {
        &**timer.sleep.as_ref().unwrap()
    }

    /// A spare timer serves the next timeout on the thread and fires at the new deadline,
    /// not at its last one, to the tick, in paused time: later than the last (tokio only
    /// records it) and earlier (tokio files it again).
    #[tokio::test(start_paused = true)]
    async fn a_reused_timer_fires_at_its_new_deadline() {
        SPARE.with(|s| s.borrow_mut().clear());
        let start = Instant::now();
        let mut first = Timer::until(start + Duration::from_secs(5));
        assert!(poll_once(&mut first).await.is_pending());
        let first_at = at(&first);
        drop(first);
        assert_eq!(spares(), 1);

        // Later than the last deadline.
        let mut second = Timer::until(start + Duration::from_secs(7));
        assert!(std::ptr::eq(at(&second), first_at), "the spare, reused");
        assert_eq!(spares(), 0);
        assert!(poll_once(&mut second).await.is_pending());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(
            poll_once(&mut second).await.is_pending(),
            "not at the last deadline"
        );
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert!(
            poll_once(&mut second).await.is_pending(),
            "not before its own"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(
            poll_once(&mut second).await.is_ready(),
            "at its own deadline"
        );
        drop(second);

        // Earlier than the last deadline, after it fired.
        let now = Instant::now();
        let mut third = Timer::until(now + Duration::from_millis(10));
        assert!(std::ptr::eq(at(&third), first_at), "reused after firing");
        assert!(poll_once(&mut third).await.is_pending());
        tokio::time::advance(Duration::from_millis(9)).await;
        assert!(poll_once(&mut third).await.is_pending());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(poll_once(&mut third).await.is_ready());
        drop(third);

        // Earlier than the last deadline, still pending in the wheel.
        let now = Instant::now();
        let mut long = Timer::until(now + Duration::from_secs(60));
        assert!(poll_once(&mut long).await.is_pending());
        drop(long);
        let mut short = Timer::until(now + Duration::from_secs(1));
        assert!(poll_once(&mut short).await.is_pending());
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(poll_once(&mut short).await.is_pending());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(poll_once(&mut short).await.is_ready());
    }

    /// A reused timer wakes the task now polling it at its new deadline (not only found ready
    /// when polled again), and the time that passes is exactly the new duration.
    #[tokio::test(start_paused = true)]
    async fn a_reused_timer_wakes_its_new_task() {
        let mut left = Timer::until(Instant::now() + Duration::from_secs(60));
        assert!(poll_once(&mut left).await.is_pending());
        drop(left);
        let start = Instant::now();
        let mut timer = Timer::until(start + Duration::from_secs(3));
        tokio::spawn(async move { poll_fn(|cx| timer.poll(cx)).await })
            .await
            .unwrap();
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
    }

    /// A spare timer of another runtime is never reused (it would be driven by that runtime's
    /// clock, or by none once it is gone); at most `KEEP` are kept.
    #[test]
    fn spares_stay_with_their_runtime_and_are_bounded() {
        std::thread::spawn(|| {
            let paused = || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .start_paused(true)
                    .build()
                    .unwrap()
            };
            let first = paused();
            first.block_on(async {
                let mut timer = Timer::until(Instant::now() + Duration::from_secs(5));
                assert!(poll_once(&mut timer).await.is_pending());
            });
            assert_eq!(spares(), 1);
            drop(first);
            // Reused, the other runtime's timer would panic when polled (its driver is gone).
            paused().block_on(async {
                let start = Instant::now();
                let mut timer = Timer::until(start + Duration::from_secs(2));
                assert_eq!(spares(), 0, "the other runtime's spare is dropped");
                poll_fn(|cx| timer.poll(cx)).await;
                assert_eq!(Instant::now() - start, Duration::from_secs(2));
                let timers: Vec<_> = (0..KEEP + 10)
                    .map(|_| Timer::until(Instant::now()))
                    .collect();
                drop(timers);
                assert_eq!(spares(), KEEP);
            });
        })
        .join()
        .unwrap();
    }

    /// Tasks of runtimes run one after another on one thread: each task's timers are its own
    /// runtime's (the runtime remembered per task is never another's), and a task's second
    /// timer reuses its first.
    #[test]
    fn a_task_s_timers_belong_to_its_own_runtime() {
        std::thread::spawn(|| {
            for _ in 0..3 {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .start_paused(true)
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    // More tasks than the thread remembers: every slot has held a task of an
                    // earlier runtime by the time the later runtimes' tasks look.
                    for _ in 0..TASKS + 8 {
                        tokio::spawn(async {
                            let start = Instant::now();
                            let mut timer = Timer::until(start + Duration::from_secs(2));
                            poll_fn(|cx| timer.poll(cx)).await;
                            assert_eq!(Instant::now() - start, Duration::from_secs(2));
                            let first_at = at(&timer);
                            drop(timer);
                            let mut again = Timer::until(Instant::now() + Duration::from_secs(1));
                            assert!(std::ptr::eq(at(&again), first_at), "reused in the task");
                            assert!(poll_once(&mut again).await.is_pending());
                        })
                        .await
                        .unwrap();
                    }
                });
                // The runtime and its driver go; its spare stays on this thread.
                drop(runtime);
                assert_eq!(spares(), 1);
            }
        })
        .join()
        .unwrap();
    }
}
