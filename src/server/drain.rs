//! Graceful shutdown for the server's connections: a signal every connection sees, and a
//! count of live connections the server waits on.
//!
//! A connection checks the signal with one atomic load per poll; it is woken by it once,
//! through a `Notify` registration made at its first poll (a connection's task keeps the
//! same waker, so the registration stays valid without being polled again).

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

#[derive(Debug, Default)]
struct Shared {
    stopping: AtomicBool,
    notify: Notify,
}

/// The server's side: hands out one [`Graceful`] per connection, then signals and waits.
#[derive(Debug)]
pub(super) struct Drain {
    shared: Arc<Shared>,
    alive: watch::Sender<()>,
}

impl Drain {
    pub(super) fn new() -> Self {
        Drain {
            shared: Arc::default(),
            alive: watch::Sender::new(()),
        }
    }

    /// The handle of one new connection; the connection counts as live until it is dropped.
    pub(super) fn watcher(&self) -> Graceful {
        Graceful {
            shared: self.shared.clone(),
            _alive: self.alive.subscribe(),
        }
    }

    /// Asks every connection to finish and waits until all have, up to `limit`. Returns
    /// whether they all finished in time.
    pub(super) async fn shutdown(self, limit: Duration) -> bool {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.notify.notify_waiters();
        tokio::time::timeout(limit, self.alive.closed())
            .await
            .is_ok()
    }
}

/// One connection's view of the shutdown signal.
#[derive(Debug)]
pub(super) struct Graceful {
    shared: Arc<Shared>,
    _alive: watch::Receiver<()>,
}

impl Graceful {
    pub(super) fn stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::SeqCst)
    }

    /// Resolves once shutdown has begun.
    pub(super) async fn stopped(&self) {
        let mut notified = pin!(self.shared.notify.notified());
        notified.as_mut().enable();
        if self.stopping() {
            return;
        }
        notified.await;
    }

    /// Drives `conn` to its end; once shutdown begins, calls `shut` on it once (hyper's
    /// `graceful_shutdown`: HTTP/1.1 closes after the response in progress, HTTP/2 sends
    /// `GOAWAY`) and keeps driving it.
    pub(super) async fn watch<C, F>(&self, conn: C, shut: F) -> C::Output
    where
        C: Future,
        F: Fn(Pin<&mut C>),
    {
        let mut conn = pin!(conn);
        let mut notified = pin!(self.shared.notify.notified());
        notified.as_mut().enable();
        let mut registered = false;
        let mut shutting = false;
        poll_fn(|cx| {
            if !shutting {
                if !registered {
                    // Stores this task's waker in the registration; notify_waiters wakes it.
                    registered = true;
                    let _ = notified.as_mut().poll(cx);
                }
                if self.stopping() {
                    shutting = true;
                    shut(conn.as_mut());
                }
            }
            conn.as_mut().poll(cx)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn shutdown_reaches_a_watched_connection_and_waits_for_it() {
        let drain = Drain::new();
        let g = drain.watcher();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shut_called = Arc::new(AtomicBool::new(false));
        let seen = shut_called.clone();
        // A "connection" that ends only once shut down.
        let task = tokio::spawn(async move {
            let conn = async {
                let _ = rx.await;
            };
            g.watch(conn, |_| {
                seen.store(true, Ordering::SeqCst);
            })
            .await;
        });
        tokio::task::yield_now().await;
        let done = tokio::spawn(drain.shutdown(Duration::from_secs(5)));
        tokio::task::yield_now().await;
        assert!(
            shut_called.load(Ordering::SeqCst),
            "the connection was told"
        );
        assert!(!done.is_finished(), "and is waited for");
        tx.send(()).unwrap();
        assert!(done.await.unwrap(), "finished in time");
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_never_ends_is_given_up_on_after_the_limit() {
        let drain = Drain::new();
        let g = drain.watcher();
        tokio::spawn(async move { g.watch(std::future::pending::<()>(), |_| {}).await });
        tokio::task::yield_now().await;
        assert!(!drain.shutdown(Duration::from_secs(1)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_started_after_the_signal_is_shut_at_once() {
        let drain = Drain::new();
        let g = drain.watcher();
        let shutdown = tokio::spawn(drain.shutdown(Duration::from_secs(5)));
        tokio::task::yield_now().await;
        g.stopped().await;
        let shut = AtomicBool::new(false);
        g.watch(std::future::ready(()), |_| {
            shut.store(true, Ordering::SeqCst)
        })
        .await;
        assert!(shut.load(Ordering::SeqCst));
        drop(g);
        assert!(shutdown.await.unwrap());
    }
}
