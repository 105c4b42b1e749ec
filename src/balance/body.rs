//! The response body wrapper that keeps a request counted as in flight until its body ends.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use http_body_util::BodyExt;
//! use tower::{service_fn, ServiceExt};
//! use tower_lb::balance::Balance;
//! use tower_lb::{Target, TargetGroup};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
//! let group = TargetGroup::builder("g").target(Target::new("a", "127.0.0.1:1")?).build()?;
//! let balance = Balance::new(group.clone(), |_t: &Target| {
//!     service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new("streamed".to_string())) })
//! });
//! let rsp = balance.oneshot(Request::new(())).await?;
//! assert_eq!(group.stats()[0].in_flight(), 1); // the body has not been read yet
//! let body = rsp.into_body().collect().await?.to_bytes();
//! assert_eq!(body, "streamed");
//! assert_eq!(group.stats()[0].in_flight(), 0);
//! # Ok(()) }
//! ```

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::ServedBy;
use crate::body::{BodyGuard, GuardedBody};
use crate::classify::{Classify, DefaultClassifier, FailureKind, Outcome};
use crate::stats::TargetRecorder;
use crate::target::{Entry, Hot, LatencyTracker, LiveTable, Snapshot, Status};

/// What the requests picked from one snapshot share: its entries (each target and its live
/// state), the latency tracker, the group's name and its classifier. One `Arc` of it per request
/// stands for the picked target's state, the tracker, the classifier and the [`ServedBy`] tag
/// alike, so an attempt costs one reference count, not one per piece.
///
/// Not the snapshot itself: a response that streams for hours holds its table, and with it only
/// the entries of its snapshot, never the selector's tables (a ring of 10 000 targets has 1.6
/// million points), however often membership changes meanwhile.
pub(crate) struct Table {
    entries: Arc<[Entry]>,
    /// The entries' counters, so a finished attempt releases its target without reading the
    /// target's entry or state.
    live: LiveTable,
    /// Successes reach the target's state only when its health watches them.
    watches_successes: bool,
    latency: Option<LatencyTracker>,
    group: Arc<str>,
    classifier: Option<Arc<dyn Classify>>,
    /// The entries' statistics, indexed alike.
    recorders: Arc<[Arc<TargetRecorder>]>,
}

impl Table {
    pub(crate) fn new(
        snapshot: &Snapshot,
        group: Arc<str>,
        classifier: Option<Arc<dyn Classify>>,
        recorders: Arc<[Arc<TargetRecorder>]>,
    ) -> Self {
        Table {
            entries: snapshot.entries.clone(),
            live: snapshot.live.clone(),
            watches_successes: snapshot.watches_successes(),
            latency: snapshot.latency().cloned(),
            group,
            classifier,
            recorders,
        }
    }
}

/// Counts one request in flight to a target for as long as it lives.
///
/// Holds the table the target was picked from and its index there; times the attempt
/// (latency-aware selectors) and holds its outcome, which reaches the target once, when the
/// guard drops.
pub(crate) struct InFlight {
    table: Arc<Table>,
    index: usize,
    /// When the attempt started, for groups whose selector tracks latency.
    started: Option<u64>,
    outcome: Option<Outcome>,
    /// When the attempt began, for the statistics (see `crate::stats`); `None` when the
    /// balancer records none.
    begun: Option<quanta::Instant>,
    /// The response's status, once there is one (`0` before).
    status: u16,
}

impl InFlight {
    /// Wraps entry `index` of `table`, whose in-flight count was already incremented.
    #[inline]
    pub(crate) fn acquired(table: Arc<Table>, index: usize) -> Self {
        let begun = (!table.recorders.is_empty()).then(crate::stats::now);
        InFlight {
            table,
            index,
            started: None,
            outcome: None,
            begun,
            status: 0,
        }
    }

    /// Notes the response's status for the statistics.
    #[inline]
    pub(crate) fn responded(&mut self, status: http::StatusCode) {
        self.status = status.as_u16();
    }

    /// Starts timing the attempt if the group's selector tracks latency (reads the clock only
    /// then).
    #[inline]
    pub(crate) fn timed(mut self) -> Self {
        if let Some(t) = &self.table.latency {
            self.started = Some(t.start());
        }
        self
    }

    #[inline]
    fn entry(&self) -> Option<&Entry> {
        self.table.entries.get(self.index)
    }

    /// The group and target of this attempt, as a tag.
    pub(crate) fn served_by(&self) -> Option<ServedBy> {
        let e = self.entry()?;
        Some(ServedBy::new(
            self.table.group.clone(),
            e.target.id().clone(),
        ))
    }

    /// The group's classification of a response status.
    #[inline]
    pub(crate) fn classify_status(&self, status: http::StatusCode) -> Outcome {
        match self.table.classifier.as_deref() {
            Some(c) => c.classify_status(status),
            None => DefaultClassifier::new().classify_status(status),
        }
    }

    /// The group's classification of an error.
    pub(crate) fn classify_error(&self, e: &(dyn std::error::Error + 'static)) -> Outcome {
        match self.table.classifier.as_deref() {
            Some(c) => c.classify_error(e),
            None => DefaultClassifier::new().classify_error(e),
        }
    }

    /// Records the attempt's outcome; it reaches the target once, when the attempt ends (the
    /// guard drops), so a body that breaks off after a good head counts as one failure rather
    /// than a success and a failure.
    #[inline]
    pub(crate) fn observe(&mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
    }

    /// Feeds the attempt's latency to the tracker, if timed. `failed`: an error, a `5xx` or a
    /// `429`; `errored`: no response at all.
    #[inline]
    pub(crate) fn observe_latency(
        &mut self,
        failed: bool,
        errored: bool,
        retry_after: Option<std::time::Duration>,
    ) {
        if let Some(started) = self.started.take() {
            self.feed_latency(started, failed, errored, retry_after);
        }
    }

    fn feed_latency(
        &self,
        started: u64,
        failed: bool,
        errored: bool,
        retry_after: Option<std::time::Duration>,
    ) {
        if let (Some(t), Some(e)) = (&self.table.latency, self.entry()) {
            t.observe(&e.state, started, failed, errored, retry_after);
        }
    }

    /// Stops timing the attempt without feeding its latency.
    #[inline]
    pub(crate) fn untime(&mut self) {
        self.started = None;
    }

    /// Whether the attempt is being timed.
    #[inline]
    pub(crate) fn is_timed(&self) -> bool {
        self.started.is_some()
    }
}

impl Drop for InFlight {
    #[inline]
    fn drop(&mut self) {
        // Dropped before any answer, by a deadline (this crate's timeout layer, wherever it
        // sits): a timeout of this target, and it took at least this long, which a latency
        // estimate must not miss. Dropped because the caller went away: nothing.
        if self.outcome.is_none() && crate::classify::dropped_for_deadline() {
            self.outcome = Some(Outcome::Failure(FailureKind::Timeout));
            if let Some(started) = self.started.take() {
                self.feed_latency(started, true, false, None);
            }
        }
        let t = &*self.table;
        let Some(e) = t.entries.get(self.index) else {
            return;
        };
        if let (Some(r), Some(begun)) = (t.recorders.get(self.index), self.begun) {
            r.record(self.status, self.outcome, begun, crate::stats::now());
        }
        // Taking `e` reads nothing yet: only the branches that need the entry touch it.
        if let Some(outcome) = self.outcome.take() {
            if outcome != Outcome::Success || t.watches_successes {
                e.state.observe(outcome);
            }
        }
        let prev = t.live.hot(self.index, &t.entries).release();
        if Hot::status_of(prev).intersects(Status::DRAINING) {
            e.state.released(prev);
        }
    }
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InFlight")
    }
}

impl BodyGuard for InFlight {
    /// A body that breaks off turns the head's outcome into a failure.
    fn on_error(&mut self) {
        self.observe(Outcome::Failure(FailureKind::Other));
    }
}

pin_project! {
    /// A response body that keeps its request counted as in flight to the target that served
    /// it until the body has ended (or is dropped), so load-aware algorithms see streaming
    /// responses as the load they are.
    ///
    /// Everything else is passed through unchanged.
    pub struct TrackedBody<B> {
        #[pin]
        inner: GuardedBody<B, InFlight>,
    }
}

impl<B> TrackedBody<B> {
    #[inline]
    pub(crate) fn new(inner: B, guard: Option<InFlight>) -> Self {
        TrackedBody {
            inner: GuardedBody::new(inner, guard),
        }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        self.inner.get_ref()
    }

    /// Unwraps the body; the request stops counting as in flight.
    pub fn into_inner(self) -> B {
        self.inner.into_inner()
    }
}

impl<B: fmt::Debug> fmt::Debug for TrackedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackedBody")
            .field("inner", self.inner.get_ref())
            .field("in_flight", &self.inner.is_guarded())
            .finish()
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
