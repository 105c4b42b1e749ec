//! Discovery: streams of membership [`Change`]s that keep a
//! [`TargetGroup`](crate::group::TargetGroup) up to date.
//!
//! Attach any `Stream<Item = Result<Change, E>>` with
//! [`TargetGroup::attach`](crate::group::TargetGroup::attach). This module provides a static
//! list and a channel that your own code (a config watcher, a service registry client) feeds.
//! tower's `discover::Change<K, Target>` converts into [`Change`].
//!
//! # Examples
//!
//! ```
//! use tower_lb::discover::{self, Change};
//! use tower_lb::{Target, TargetGroup};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
//! let group = TargetGroup::new("api");
//! group.attach(discover::static_list([Target::new("a", "127.0.0.1:8080")?]))?;
//!
//! let (updater, changes) = discover::channel(64);
//! group.attach(changes)?;
//! updater.send(Change::Insert(Target::new("b", "127.0.0.1:8081")?)).await?;
//! updater.remove("a".into()).await?;
//! # for _ in 0..100 { if group.len() == 1 && group.targets()[0].id().as_str() == "b" { break } tokio::task::yield_now().await; }
//! assert_eq!(group.targets()[0].id().as_str(), "b");
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc;

use crate::target::{Target, TargetId};

/// One membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// Add a target, or replace the target with the same id (its live state carries over).
    Insert(Target),
    /// Remove the target with this id; its in-flight requests finish.
    Remove(TargetId),
}

impl<K: Into<TargetId>> From<tower::discover::Change<K, Target>> for Change {
    fn from(c: tower::discover::Change<K, Target>) -> Self {
        match c {
            tower::discover::Change::Insert(_, t) => Change::Insert(t),
            tower::discover::Change::Remove(k) => Change::Remove(k.into()),
        }
    }
}

/// A stream that inserts `targets` once and then ends (the targets stay).
pub fn static_list(
    targets: impl IntoIterator<Item = Target>,
) -> impl Stream<Item = Result<Change, Infallible>> + Send + 'static {
    let changes: Vec<_> = targets.into_iter().map(|t| Ok(Change::Insert(t))).collect();
    futures_util::stream::iter(changes)
}

/// A channel-backed discovery source: send changes through the [`Updater`], attach the
/// [`ChangeStream`] to a group. Changes already queued when the group's task wakes are
/// applied as one snapshot.
pub fn channel(capacity: usize) -> (Updater, ChangeStream) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (Updater { tx }, ChangeStream { rx })
}

/// The sending half of [`channel`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct Updater {
    tx: mpsc::Sender<Change>,
}

impl Updater {
    /// Sends one change, waiting for room in the channel.
    pub async fn send(&self, change: Change) -> Result<(), Closed> {
        self.tx.send(change).await.map_err(|_| Closed { _p: () })
    }

    /// Sends an insert.
    pub async fn insert(&self, target: Target) -> Result<(), Closed> {
        self.send(Change::Insert(target)).await
    }

    /// Sends a removal.
    pub async fn remove(&self, id: TargetId) -> Result<(), Closed> {
        self.send(Change::Remove(id)).await
    }

    /// Whether the receiving side (the group's discovery task) is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The receiving half of [`channel`]: a stream of changes.
#[derive(Debug)]
pub struct ChangeStream {
    rx: mpsc::Receiver<Change>,
}

impl Stream for ChangeStream {
    type Item = Result<Change, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|c| c.map(Ok))
    }
}

/// The group that was to receive changes is gone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("discovery channel closed")]
pub struct Closed {
    _p: (),
}
