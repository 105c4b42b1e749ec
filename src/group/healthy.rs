//! Health-aware discovery: a discovery stream filtered by active health checks.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc;

use super::{TargetGroup, WeakGroup};
use crate::discover::Change;
use crate::error::BoxError;
use crate::health::{ActiveCheck, PanicThreshold};
use crate::target::error::NoRuntime;
use crate::target::{Target, TargetId};

/// Turns a discovery stream into one that inserts targets only while they pass active health
/// checks and removes them when they stop passing (or leave discovery).
///
/// Use it to give health checking to balancers that know nothing about health, above all
/// tower's own `p2c::Balance`, through [`HealthyChanges::into_discover`]. (A
/// [`TargetGroup`] does not need it: attach the discovery stream and call
/// [`TargetGroup::health_check`] instead, which keeps each target's load state across flips.)
///
/// The checks run in background tasks that end when the returned stream is dropped. Use
/// [`wait_for_first_check`](crate::health::ActiveCheckBuilder::wait_for_first_check) so that no target is
/// inserted before it has passed once. Must be called within a Tokio runtime.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futures_util::StreamExt;
/// use tower_lb::discover::{self, Change};
/// use tower_lb::group::healthy_changes;
/// use tower_lb::health::{check_fn, ActiveCheck};
/// use tower_lb::target::Target;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), tower_lb::BoxError> {
/// let check = ActiveCheck::builder(check_fn(|t: &Target| {
///     let ok = t.id().as_str() != "sick";
///     async move { if ok { Ok(()) } else { Err("sick") } }
/// }))
/// .jitter(0.0)
/// .wait_for_first_check(true)
/// .build()?;
/// let targets = [Target::new("well", "127.0.0.1:1")?, Target::new("sick", "127.0.0.1:2")?];
/// let mut healthy = healthy_changes("api", discover::static_list(targets), check)?;
/// let Some(Ok(Change::Insert(t))) = healthy.next().await else { panic!() };
/// assert_eq!(t.id().as_str(), "well");
/// # Ok(()) }
/// ```
pub fn healthy_changes<S, E>(
    name: impl Into<String>,
    discovery: S,
    check: ActiveCheck,
) -> Result<HealthyChanges, NoRuntime>
where
    S: Stream<Item = Result<Change, E>> + Send + 'static,
    E: Into<BoxError> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| NoRuntime::new())?;
    // No picks happen on this group, so panic mode would only add noise to its events.
    let Ok(group) = TargetGroup::builder(name)
        .panic_threshold(PanicThreshold::disabled())
        .build()
    else {
        // Unreachable: a group without targets has no duplicate ids.
        return Err(NoRuntime::new());
    };
    group.health_check(check)?;
    group.attach(discovery)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let task = runtime.spawn(diff(group.downgrade(), tx));
    group.own_task(task.abort_handle());
    Ok(HealthyChanges { group, rx })
}

/// Emits the difference between the healthy members and what was already sent.
async fn diff(group: WeakGroup, tx: mpsc::UnboundedSender<Change>) {
    let Some(mut changes) = group
        .upgrade()
        .map(|g| g.health_shared().changes.subscribe())
    else {
        return;
    };
    let mut sent: HashMap<TargetId, Arc<Target>> = HashMap::new();
    loop {
        changes.borrow_and_update();
        {
            let Some(g) = group.upgrade() else { return };
            let snap = g.snapshot_full();
            drop(g);
            let healthy: HashMap<&TargetId, &Arc<Target>> = snap
                .entries
                .iter()
                .filter(|e| e.state.is_routable())
                .map(|e| (e.target.id(), &e.target))
                .collect();
            let gone: Vec<TargetId> = sent
                .iter()
                .filter(|(id, t)| healthy.get(id).is_none_or(|h| ***h != ***t))
                .map(|(id, _)| id.clone())
                .collect();
            for id in gone {
                sent.remove(&id);
                if tx.send(Change::Remove(id)).is_err() {
                    return;
                }
            }
            for (id, t) in healthy {
                if !sent.contains_key(id) {
                    sent.insert(id.clone(), t.clone());
                    if tx.send(Change::Insert((**t).clone())).is_err() {
                        return;
                    }
                }
            }
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// The stream returned by [`healthy_changes`]: inserts of healthy targets, removals of
/// targets that turned unhealthy or left discovery.
pub struct HealthyChanges {
    group: TargetGroup,
    rx: mpsc::UnboundedReceiver<Change>,
}

impl fmt::Debug for HealthyChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthyChanges")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl HealthyChanges {
    /// The internal group that tracks discovery and health (for its
    /// [events](TargetGroup::events) and [health](TargetGroup::health)).
    pub fn group(&self) -> &TargetGroup {
        &self.group
    }

    /// Turns the stream into tower's discovery items, making a service per inserted target:
    /// the result implements `tower::discover::Discover`, so it feeds `tower::balance::p2c`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_lb::{discover, group, health::{ActiveCheck, TcpCheck}, target::Target};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
    /// # let check = ActiveCheck::builder(TcpCheck::new()).build()?;
    /// let changes = group::healthy_changes("api", discover::static_list([Target::new("a", "127.0.0.1:1")?]), check)?;
    /// let discover = changes.into_discover(|t: &Target| {
    ///     let svc = tower::service_fn(|req: String| async move { Ok::<_, std::convert::Infallible>(req) });
    ///     tower::load::Constant::new(svc, 0)
    /// });
    /// let balance = tower::balance::p2c::Balance::new(discover);
    /// # drop(balance);
    /// # Ok(()) }
    /// ```
    pub fn into_discover<F, S>(self, make: F) -> TowerDiscover<F>
    where
        F: FnMut(&Target) -> S + Unpin,
    {
        TowerDiscover { inner: self, make }
    }
}

impl Stream for HealthyChanges {
    type Item = Result<Change, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|c| c.map(Ok))
    }
}

/// [`HealthyChanges`] as tower discovery items; see [`HealthyChanges::into_discover`].
pub struct TowerDiscover<F> {
    inner: HealthyChanges,
    make: F,
}

impl<F> fmt::Debug for TowerDiscover<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TowerDiscover")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<F, S> Stream for TowerDiscover<F>
where
    F: FnMut(&Target) -> S + Unpin,
{
    type Item = Result<tower::discover::Change<TargetId, S>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        this.inner.rx.poll_recv(cx).map(|c| {
            c.map(|c| {
                Ok(match c {
                    Change::Insert(t) => {
                        tower::discover::Change::Insert(t.id().clone(), (this.make)(&t))
                    }
                    Change::Remove(id) => tower::discover::Change::Remove(id),
                })
            })
        })
    }
}
