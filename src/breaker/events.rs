use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::broadcast;

use super::StateChange;

/// Events kept for a subscriber that is slow to read; state changes are rare, so a subscriber
/// that falls this far behind has stopped reading.
pub(crate) const EVENT_CAPACITY: usize = 64;

/// One item of a breaker's [`BreakerEvents`] stream.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BreakerEvent {
    /// The breaker changed state (also logged with `tracing`: `warn!` when it opens, `info!`
    /// otherwise).
    StateChanged(StateChange),
    /// This subscriber fell behind and missed events.
    Lagged {
        /// The breaker's name.
        name: Arc<str>,
        /// How many events were missed.
        missed: u64,
    },
}

/// A stream of a breaker's state changes; see
/// [`CircuitBreakerLayer::events`](super::CircuitBreakerLayer::events).
///
/// Each subscriber gets every change from the moment it subscribed. A subscriber that falls
/// more than 64 events behind gets one [`BreakerEvent::Lagged`] and continues with the newest.
/// The stream ends once the layer and every service it built are gone.
///
/// The breaker sends to the stream after the change, outside its lock; with no subscriber,
/// sending costs nothing but a check.
pub struct BreakerEvents {
    inner: Pin<Box<dyn Stream<Item = BreakerEvent> + Send>>,
}

impl BreakerEvents {
    pub(crate) fn new(name: Arc<str>, rx: broadcast::Receiver<StateChange>) -> Self {
        let inner = futures_util::stream::unfold((rx, name), |(mut rx, name)| async move {
            let event = match rx.recv().await {
                Ok(change) => BreakerEvent::StateChanged(change),
                Err(broadcast::error::RecvError::Lagged(missed)) => BreakerEvent::Lagged {
                    name: name.clone(),
                    missed,
                },
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((event, (rx, name)))
        });
        BreakerEvents {
            inner: Box::pin(inner),
        }
    }
}

impl fmt::Debug for BreakerEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerEvents").finish_non_exhaustive()
    }
}

impl Stream for BreakerEvents {
    type Item = BreakerEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BreakerEvent>> {
        self.inner.as_mut().poll_next(cx)
    }
}
