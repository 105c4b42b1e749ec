use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::target::TargetId;

/// One health flip of a target (or of the whole group, for panic mode).
///
/// Events are emitted only when something changes: a target turning healthy or unhealthy,
/// being ejected or restored, an admin state change, the group entering or leaving panic.
/// Each one is also logged with `tracing` (`warn!` for bad news, `info!` otherwise).
///
/// # Examples
///
/// ```
/// use futures_util::StreamExt;
/// use tower_lb::health::HealthEventKind;
/// use tower_lb::{target::AdminState, Target, TargetGroup};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let group = TargetGroup::builder("api").target(Target::new("a", "127.0.0.1:1")?).build()?;
/// let mut events = group.events();
/// group.set_admin(&"a".into(), AdminState::Disabled)?;
/// let event = events.next().await.unwrap();
/// assert_eq!(event.target().unwrap().as_str(), "a");
/// assert!(matches!(event.kind(), HealthEventKind::Disabled));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HealthEvent {
    group: Arc<str>,
    target: Option<TargetId>,
    kind: HealthEventKind,
    at: Instant,
}

/// What happened; see [`HealthEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthEventKind {
    /// Active checks passed `rise` times in a row (or once, for a target waiting for its
    /// first check): the target is healthy again.
    Healthy,
    /// Active checks failed `fall` times in a row.
    Unhealthy {
        /// The last check's error.
        reason: Arc<str>,
    },
    /// Outlier detection ejected the target.
    Ejected {
        /// How long the ejection lasts (unless an active check passes first).
        duration: Duration,
        /// How many times the target has been ejected (after decay).
        times: u32,
        /// Which rule ejected it.
        reason: EjectReason,
    },
    /// An ejection ended.
    Restored {
        /// What ended it.
        by: RestoredBy,
    },
    /// An operator enabled the target.
    Enabled,
    /// An operator started draining the target.
    Draining,
    /// An operator disabled the target.
    Disabled,
    /// The group entered panic mode (see [`PanicThreshold`](super::PanicThreshold)).
    PanicEntered {
        /// Targets in service that are available.
        available: usize,
        /// Targets in service.
        total: usize,
    },
    /// The group left panic mode.
    PanicLeft {
        /// Targets in service that are available.
        available: usize,
        /// Targets in service.
        total: usize,
    },
    /// This subscriber fell behind and missed events.
    Lagged {
        /// How many.
        missed: u64,
    },
}

/// Why outlier detection ejected a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EjectReason {
    /// This many failures in a row.
    ConsecutiveFailures(u32),
    /// Too many failures in the window.
    FailureRate {
        /// Failures in the window.
        failures: u32,
        /// Requests in the window.
        requests: u32,
    },
}

/// What ended an ejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoredBy {
    /// The ejection time ran out.
    Timer,
    /// An active check passed.
    ActiveCheck,
}

impl HealthEvent {
    pub(crate) fn new(
        group: Arc<str>,
        target: Option<TargetId>,
        kind: HealthEventKind,
        at: Instant,
    ) -> Self {
        HealthEvent {
            group,
            target,
            kind,
            at,
        }
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The target concerned; `None` for group-wide events (panic mode, lag).
    pub fn target(&self) -> Option<&TargetId> {
        self.target.as_ref()
    }

    /// What happened.
    pub fn kind(&self) -> &HealthEventKind {
        &self.kind
    }

    /// When it happened.
    pub fn at(&self) -> Instant {
        self.at
    }
}

impl HealthEventKind {
    pub(crate) fn is_bad_news(&self) -> bool {
        matches!(
            self,
            HealthEventKind::Unhealthy { .. }
                | HealthEventKind::Ejected { .. }
                | HealthEventKind::PanicEntered { .. }
                | HealthEventKind::Lagged { .. }
        )
    }
}

impl fmt::Display for HealthEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthEventKind::Healthy => f.write_str("healthy"),
            HealthEventKind::Unhealthy { reason } => write!(f, "unhealthy ({reason})"),
            HealthEventKind::Ejected {
                duration,
                times,
                reason,
            } => {
                write!(f, "ejected for {duration:?} (ejection #{times}, ")?;
                match reason {
                    EjectReason::ConsecutiveFailures(n) => write!(f, "{n} failures in a row)"),
                    EjectReason::FailureRate { failures, requests } => {
                        write!(f, "{failures} of {requests} requests failed)")
                    }
                }
            }
            HealthEventKind::Restored {
                by: RestoredBy::Timer,
            } => f.write_str("restored (ejection time over)"),
            HealthEventKind::Restored {
                by: RestoredBy::ActiveCheck,
            } => f.write_str("restored (active check passed)"),
            HealthEventKind::Enabled => f.write_str("enabled"),
            HealthEventKind::Draining => f.write_str("draining"),
            HealthEventKind::Disabled => f.write_str("disabled"),
            HealthEventKind::PanicEntered { available, total } => {
                write!(f, "panic mode entered ({available} of {total} available)")
            }
            HealthEventKind::PanicLeft { available, total } => {
                write!(f, "panic mode left ({available} of {total} available)")
            }
            HealthEventKind::Lagged { missed } => write!(f, "missed {missed} events"),
        }
    }
}

impl fmt::Display for HealthEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Some(t) => write!(f, "{}/{}: {}", self.group, t, self.kind),
            None => write!(f, "{}: {}", self.group, self.kind),
        }
    }
}

/// A stream of a group's [`HealthEvent`]s; see
/// [`TargetGroup::events`](crate::group::TargetGroup::events).
///
/// Each subscriber gets every event from the moment it subscribed. A subscriber that falls more
/// than 1024 events behind gets one [`HealthEventKind::Lagged`] and continues with the newest.
/// The stream ends once the group and every request in flight to it are gone.
pub struct HealthEvents {
    inner: Pin<Box<dyn Stream<Item = HealthEvent> + Send>>,
}

impl HealthEvents {
    pub(crate) fn new(group: Arc<str>, rx: broadcast::Receiver<HealthEvent>) -> Self {
        let inner = futures_util::stream::unfold((rx, group), |(mut rx, group)| async move {
            let event = match rx.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(missed)) => HealthEvent::new(
                    group.clone(),
                    None,
                    HealthEventKind::Lagged { missed },
                    Instant::now(),
                ),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((event, (rx, group)))
        });
        HealthEvents {
            inner: Box::pin(inner),
        }
    }
}

impl fmt::Debug for HealthEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthEvents").finish_non_exhaustive()
    }
}

impl Stream for HealthEvents {
    type Item = HealthEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<HealthEvent>> {
        self.inner.as_mut().poll_next(cx)
    }
}
