use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use arc_swap::{ArcSwap, Guard};
use futures_core::Stream;
use futures_util::StreamExt;

use super::error::{DuplicateTarget, NoRuntime, UnknownTarget};
use super::slots::SlotPool;
use super::snapshot::{Entry, Snapshot};
use super::state::TargetState;
use super::{AdminState, Target, TargetId, TargetStats};
use crate::algorithm::{Algorithm, SmoothWeightedRoundRobin};
use crate::classify::Classify;
#[allow(unused_imports)] // rustdoc links
use crate::classify::DefaultClassifier;
use crate::discover::Change;
use crate::error::BoxError;
use crate::health::{GroupHealth, HealthSettings};

/// The most changes a discovery task folds into one snapshot.
const MAX_BATCH: usize = 1024;

/// A named set of targets plus the algorithm that picks among them.
///
/// `TargetGroup` is a cheap-to-clone, `Send + Sync` handle: clones share one group. Every
/// update (insert, remove, replace, a batch from a discovery stream) builds a new immutable
/// snapshot off the request path and publishes it atomically, so a pick always sees one
/// consistent membership. Per-target live state (in-flight requests, counters, admin state)
/// is carried over by id, and removing a target never cancels the requests in flight to it.
///
/// Background tasks started by [`attach`](Self::attach) end when the last handle is dropped.
///
/// # Examples
///
/// ```
/// use tower_lb::algorithm::RoundRobin;
/// use tower_lb::target::{Target, TargetGroup};
///
/// let group = TargetGroup::builder("api")
///     .algorithm(RoundRobin::new())
///     .target(Target::new("a", "127.0.0.1:8080")?)
///     .target(Target::builder("b", "127.0.0.1:8081").weight(2).build()?)
///     .build()?;
///
/// group.insert(Target::new("c", "127.0.0.1:8082")?);
/// group.remove(&"a".into())?;
/// let ids: Vec<_> = group.targets().iter().map(|t| t.id().to_string()).collect();
/// assert_eq!(ids, ["b", "c"]);
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Clone)]
pub struct TargetGroup {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    /// `None` means [`DefaultClassifier`], applied without any per-request reference counting.
    classifier: Option<Arc<dyn Classify>>,
    current: ArcSwap<Snapshot>,
    /// The version of `current`, stored right after it is published: a balancer compares its
    /// cached snapshot against this one atomic instead of loading the `ArcSwap` every request.
    version: AtomicU64,
    writer: Mutex<Writer>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    health: Arc<GroupHealth>,
    /// Where the targets' pick counters live (dense, shared by every snapshot).
    slots: Arc<SlotPool>,
}

struct Writer {
    algorithm: Arc<dyn Algorithm>,
    version: u64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        self.health.shutdown();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these structures half-updated (every update
    // is built aside and published whole), so poisoning carries no information.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl fmt::Debug for TargetGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snap = self.inner.current.load();
        f.debug_struct("TargetGroup")
            .field("name", &self.inner.name)
            .field("version", &snap.version)
            .field("targets", &snap.entries.len())
            .finish()
    }
}

impl TargetGroup {
    /// An empty group using the default algorithm ([`SmoothWeightedRoundRobin`]).
    pub fn new(name: impl Into<String>) -> TargetGroup {
        TargetGroup::with_parts(
            name.into(),
            Arc::new(SmoothWeightedRoundRobin::new()),
            None,
            Vec::new(),
            HealthSettings::default(),
        )
    }

    /// Starts building a group.
    pub fn builder(name: impl Into<String>) -> TargetGroupBuilder {
        TargetGroupBuilder {
            name: name.into(),
            algorithm: None,
            classifier: None,
            targets: Vec::new(),
            health: HealthSettings::default(),
        }
    }

    fn with_parts(
        name: String,
        algorithm: Arc<dyn Algorithm>,
        classifier: Option<Arc<dyn Classify>>,
        targets: Vec<Target>,
        settings: HealthSettings,
    ) -> TargetGroup {
        let name: Arc<str> = name.into();
        let health = Arc::new(GroupHealth::new(name.clone(), settings));
        let slots = Arc::new(SlotPool::with_capacity(targets.len()));
        // In id order, so that the counters sit in snapshot order (picks skip a lookup).
        let mut targets = targets;
        targets.sort_by(|a, b| a.id().cmp(b.id()));
        let entries = targets
            .into_iter()
            .map(|t| new_entry(t, &health, &slots))
            .collect();
        let snapshot = Snapshot::build(1, entries, &*algorithm).with_health(health.clone());
        health.join(&snapshot.entries, &[], false);
        TargetGroup {
            inner: Arc::new(Inner {
                name,
                classifier,
                current: ArcSwap::from_pointee(snapshot),
                version: AtomicU64::new(1),
                writer: Mutex::new(Writer {
                    algorithm,
                    version: 1,
                }),
                tasks: Mutex::new(Vec::new()),
                health,
                slots,
            }),
        }
    }

    /// The group's name (used in errors, metrics and the served-by extension).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.inner.name
    }

    /// The group's response classifier; `None` means [`DefaultClassifier`].
    pub(crate) fn classifier(&self) -> Option<&Arc<dyn Classify>> {
        self.inner.classifier.as_ref()
    }

    #[inline]
    pub(crate) fn snapshot(&self) -> Guard<Arc<Snapshot>> {
        self.inner.current.load()
    }

    /// The version of the latest published snapshot (one atomic load).
    #[inline]
    pub(crate) fn published_version(&self) -> u64 {
        self.inner.version.load(Ordering::Acquire)
    }

    pub(crate) fn snapshot_full(&self) -> Arc<Snapshot> {
        self.inner.current.load_full()
    }

    /// A [`Picker`](super::Picker) over the current membership: asks the algorithm for
    /// targets without sending anything.
    pub fn picker(&self) -> super::Picker {
        super::Picker::new(self.snapshot_full())
    }

    /// The version of the current snapshot; it grows by one with every published update.
    pub fn version(&self) -> u64 {
        self.inner.current.load().version
    }

    /// The current targets, ordered by id.
    pub fn targets(&self) -> Vec<Target> {
        self.snapshot()
            .entries
            .iter()
            .map(|e| (*e.target).clone())
            .collect()
    }

    /// The number of targets.
    pub fn len(&self) -> usize {
        self.snapshot().entries.len()
    }

    /// Whether the group has no targets.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters for every current target, ordered by id.
    pub fn stats(&self) -> Vec<TargetStats> {
        self.snapshot()
            .entries
            .iter()
            .map(|e| e.state.stats(e.target.id()))
            .collect()
    }

    /// Adds a target, or replaces the target with the same id (keeping its live state).
    pub fn insert(&self, target: Target) {
        self.apply([Change::Insert(target)]);
    }

    /// Removes a target. Requests in flight to it are not cancelled; they finish.
    pub fn remove(&self, id: &TargetId) -> Result<(), UnknownTarget> {
        let mut w = lock(&self.inner.writer);
        let snap = self.inner.current.load();
        if snap.position(id).is_none() {
            return Err(UnknownTarget::new(id.clone()));
        }
        let entries = snap
            .entries
            .iter()
            .filter(|e| e.target.id() != id)
            .cloned()
            .collect();
        self.publish(&mut w, entries);
        Ok(())
    }

    /// Replaces the whole set at once. Targets whose id was already present keep their live
    /// state. On a duplicate id nothing changes.
    pub fn replace(
        &self,
        targets: impl IntoIterator<Item = Target>,
    ) -> Result<(), DuplicateTarget> {
        let mut targets: Vec<Target> = targets.into_iter().collect();
        targets.sort_by(|a, b| a.id().cmp(b.id()));
        if let Some(w) = targets.windows(2).find(|w| w[0].id() == w[1].id()) {
            return Err(DuplicateTarget::new(w[0].id().clone()));
        }
        let mut w = lock(&self.inner.writer);
        let snap = self.inner.current.load();
        let entries = targets
            .into_iter()
            .map(|t| match snap.get(t.id()) {
                Some(e) => Entry::new(Arc::new(t), e.state.clone()),
                None => new_entry(t, &self.inner.health, &self.inner.slots),
            })
            .collect();
        self.publish(&mut w, entries);
        Ok(())
    }

    /// Applies a batch of changes as one snapshot. Inserting an existing id replaces that
    /// target (keeping its live state); removing an unknown id is ignored.
    pub fn apply(&self, changes: impl IntoIterator<Item = Change>) {
        let mut w = lock(&self.inner.writer);
        let snap = self.inner.current.load();
        let mut entries: Vec<Entry> = snap.entries.to_vec();
        let mut changed = false;
        for change in changes {
            changed = true;
            match change {
                Change::Insert(t) => match entries.iter_mut().find(|e| e.target.id() == t.id()) {
                    Some(e) => *e = Entry::new(Arc::new(t), e.state.clone()),
                    None => {
                        // A target removed earlier in this batch and inserted again keeps its state.
                        let state = snap.get(t.id()).map(|e| e.state.clone());
                        let state = state.unwrap_or_else(|| {
                            new_state(t.id(), &self.inner.health, &self.inner.slots)
                        });
                        entries.push(Entry::new(Arc::new(t), state));
                    }
                },
                Change::Remove(id) => {
                    let before = entries.len();
                    entries.retain(|e| *e.target.id() != id);
                    if entries.len() == before {
                        tracing::debug!(group = %self.inner.name, target = %id, "remove of an unknown target ignored");
                    }
                }
            }
        }
        if changed {
            self.publish(&mut w, entries);
        }
    }

    /// Replaces the selection algorithm; the new one takes over with the next pick.
    pub fn set_algorithm(&self, algorithm: impl Algorithm) {
        let mut w = lock(&self.inner.writer);
        w.algorithm = Arc::new(algorithm);
        let entries = self.inner.current.load().entries.to_vec();
        self.publish(&mut w, entries);
    }

    /// Sets a target's admin state. Takes effect for the next pick; in-flight requests finish.
    pub fn set_admin(&self, id: &TargetId, admin: AdminState) -> Result<(), UnknownTarget> {
        let snap = self.snapshot();
        let entry = snap.get(id).ok_or_else(|| UnknownTarget::new(id.clone()))?;
        let prev = entry.state.swap_admin(admin);
        self.inner
            .health
            .admin_changed(id, &entry.state, prev, admin);
        Ok(())
    }

    /// A target's admin state.
    pub fn admin(&self, id: &TargetId) -> Result<AdminState, UnknownTarget> {
        let snap = self.snapshot();
        let entry = snap.get(id).ok_or_else(|| UnknownTarget::new(id.clone()))?;
        Ok(entry.state.admin())
    }

    /// Puts a target into [`AdminState::Draining`] now and returns a future that resolves
    /// once it has nothing in flight (then remove or disable it).
    ///
    /// ```
    /// # use tower_lb::target::{AdminState, Target, TargetGroup};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
    /// let group = TargetGroup::builder("api").target(Target::new("a", "127.0.0.1:1")?).build()?;
    /// group.drain(&"a".into())?.await;
    /// group.remove(&"a".into())?;
    /// # Ok(()) }
    /// ```
    pub fn drain(
        &self,
        id: &TargetId,
    ) -> Result<impl Future<Output = ()> + Send + 'static + use<>, UnknownTarget> {
        let state = {
            let snap = self.snapshot();
            let entry = snap.get(id).ok_or_else(|| UnknownTarget::new(id.clone()))?;
            entry.state.clone()
        };
        let prev = state.swap_admin(AdminState::Draining);
        self.inner
            .health
            .admin_changed(id, &state, prev, AdminState::Draining);
        Ok(async move { state.wait_idle().await })
    }

    /// Attaches a discovery stream: a background task applies its changes, folding every
    /// change that is already waiting into one snapshot. A stream error is logged and skipped
    /// (the current targets stay in force); the task ends with the stream or when the last
    /// handle to the group is dropped.
    ///
    /// Must be called within a Tokio runtime.
    ///
    /// ```
    /// use tower_lb::discover;
    /// use tower_lb::target::{Target, TargetGroup};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
    /// let group = TargetGroup::new("api");
    /// let (updater, changes) = discover::channel(16);
    /// group.attach(changes)?;
    /// updater.insert(Target::new("a", "127.0.0.1:8080")?).await?;
    /// # tokio::task::yield_now().await;
    /// # while group.is_empty() { tokio::task::yield_now().await; }
    /// assert_eq!(group.len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn attach<S, E>(&self, stream: S) -> Result<(), NoRuntime>
    where
        S: Stream<Item = Result<Change, E>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| NoRuntime::new())?;
        let weak = Arc::downgrade(&self.inner);
        let task = handle.spawn(run_discovery(weak, stream));
        let mut tasks = lock(&self.inner.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task.abort_handle());
        Ok(())
    }

    fn publish(&self, w: &mut Writer, entries: Vec<Entry>) {
        w.version += 1;
        let health = &self.inner.health;
        let snapshot =
            Snapshot::build(w.version, entries, &*w.algorithm).with_health(health.clone());
        tracing::debug!(group = %self.inner.name, version = w.version, targets = snapshot.entries.len(), "snapshot published");
        let old = self.inner.current.load_full();
        // Joiners get their health flags before they become pickable; leavers lose theirs after.
        health.join(&snapshot.entries, &old.entries, true);
        let snapshot = Arc::new(snapshot);
        self.inner.current.store(snapshot.clone());
        self.inner.version.store(w.version, Ordering::Release);
        health.leave(&old.entries, &snapshot.entries);
        health.membership_changed();
    }

    /// The group's shared health bookkeeping.
    pub(crate) fn health_shared(&self) -> &Arc<GroupHealth> {
        &self.inner.health
    }

    /// Hands a background task to the group: it is aborted when the last handle is dropped.
    pub(crate) fn own_task(&self, task: tokio::task::AbortHandle) {
        let mut tasks = lock(&self.inner.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// A handle that does not keep the group alive.
    pub(crate) fn downgrade(&self) -> WeakGroup {
        WeakGroup(Arc::downgrade(&self.inner))
    }
}

/// A [`TargetGroup`] reference that does not keep it (or its tasks) alive.
#[derive(Clone)]
pub(crate) struct WeakGroup(Weak<Inner>);

impl WeakGroup {
    pub(crate) fn upgrade(&self) -> Option<TargetGroup> {
        self.0.upgrade().map(|inner| TargetGroup { inner })
    }
}

impl fmt::Debug for WeakGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeakGroup")
    }
}

async fn run_discovery<S, E>(group: Weak<Inner>, stream: S)
where
    S: Stream<Item = Result<Change, E>> + Send + 'static,
    E: Into<BoxError> + Send + 'static,
{
    let mut stream = std::pin::pin!(stream);
    let mut batch = Vec::new();
    while let Some(first) = stream.next().await {
        batch.push(first);
        // Coalesce whatever is already waiting into the same snapshot. `unconstrained`: tokio's
        // cooperative budget would otherwise cut a burst into several snapshots.
        while batch.len() < MAX_BATCH {
            match futures_util::FutureExt::now_or_never(tokio::task::unconstrained(stream.next())) {
                Some(Some(item)) => batch.push(item),
                _ => break,
            }
        }
        let Some(inner) = group.upgrade() else { return };
        let group = TargetGroup { inner };
        let changes: Vec<Change> = batch
            .drain(..)
            .filter_map(|r| match r {
                Ok(c) => Some(c),
                Err(e) => {
                    let e: BoxError = e.into();
                    tracing::warn!(group = %group.inner.name, error = %e, "discovery error; keeping current targets");
                    None
                }
            })
            .collect();
        group.apply(changes);
    }
}

fn new_entry(target: Target, health: &Arc<GroupHealth>, slots: &Arc<SlotPool>) -> Entry {
    let state = new_state(target.id(), health, slots);
    Entry::new(Arc::new(target), state)
}

fn new_state(id: &TargetId, health: &Arc<GroupHealth>, slots: &Arc<SlotPool>) -> Arc<TargetState> {
    let state = TargetState::in_pool(slots);
    state.health.bind(health.clone(), id.clone());
    Arc::new(state)
}

/// Builds a [`TargetGroup`]; see [`TargetGroup::builder`].
#[derive(Debug)]
#[must_use]
pub struct TargetGroupBuilder {
    name: String,
    algorithm: Option<Arc<dyn Algorithm>>,
    classifier: Option<Arc<dyn Classify>>,
    targets: Vec<Target>,
    pub(crate) health: HealthSettings,
}

impl TargetGroupBuilder {
    /// The selection algorithm (default [`SmoothWeightedRoundRobin`]).
    pub fn algorithm(mut self, algorithm: impl Algorithm) -> Self {
        self.algorithm = Some(Arc::new(algorithm));
        self
    }

    /// How responses and errors count for or against a target (default [`DefaultClassifier`]:
    /// `5xx`, connection failures and timeouts are failures).
    pub fn classifier(mut self, classifier: impl Classify) -> Self {
        self.classifier = Some(Arc::new(classifier));
        self
    }

    /// Adds one target.
    pub fn target(mut self, target: Target) -> Self {
        self.targets.push(target);
        self
    }

    /// Adds several targets.
    pub fn targets(mut self, targets: impl IntoIterator<Item = Target>) -> Self {
        self.targets.extend(targets);
        self
    }

    /// Builds the group; fails if two targets share an id.
    pub fn build(self) -> Result<TargetGroup, DuplicateTarget> {
        let mut ids: Vec<&TargetId> = self.targets.iter().map(Target::id).collect();
        ids.sort();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(DuplicateTarget::new(w[0].clone()));
        }
        let algorithm = self
            .algorithm
            .unwrap_or_else(|| Arc::new(SmoothWeightedRoundRobin::new()));
        Ok(TargetGroup::with_parts(
            self.name,
            algorithm,
            self.classifier,
            self.targets,
            self.health,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str) -> Target {
        Target::new(id, "127.0.0.1:1").unwrap()
    }

    #[test]
    fn state_survives_updates_by_id() {
        let g = TargetGroup::builder("g")
            .targets([t("a"), t("b")])
            .build()
            .unwrap();
        let a_state = g.snapshot().get(&"a".into()).unwrap().state.clone();
        assert!(a_state.try_acquire(0));
        g.insert(
            Target::builder("a", "127.0.0.1:2")
                .weight(3)
                .build()
                .unwrap(),
        );
        g.replace([t("a"), t("c")]).unwrap();
        g.apply([Change::Remove("a".into()), Change::Insert(t("a"))]);
        let snap = g.snapshot();
        let e = snap.get(&"a".into()).unwrap();
        assert!(Arc::ptr_eq(&e.state, &a_state));
        assert_eq!(e.state.in_flight(), 1);
        assert_eq!(g.stats().iter().map(|s| s.requests()).sum::<u64>(), 1);
    }

    #[test]
    fn bad_updates_keep_the_old_state() {
        let g = TargetGroup::builder("g").targets([t("a")]).build().unwrap();
        let v = g.version();
        assert!(g.replace([t("x"), t("x")]).is_err());
        assert!(g.remove(&"nope".into()).is_err());
        assert!(g.set_admin(&"nope".into(), AdminState::Disabled).is_err());
        assert_eq!(g.version(), v);
        assert_eq!(g.targets(), vec![t("a")]);
        assert!(
            TargetGroup::builder("g")
                .targets([t("a"), t("a")])
                .build()
                .is_err()
        );
    }

    #[test]
    fn empty_group_picks_nothing() {
        let g = TargetGroup::new("g");
        assert!(g.is_empty());
        assert_eq!(g.snapshot().pick(None, None), None);
    }

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_in_flight() {
        let g = TargetGroup::builder("g").targets([t("a")]).build().unwrap();
        let state = g.snapshot().get(&"a".into()).unwrap().state.clone();
        assert!(state.try_acquire(0));
        let drained = g.drain(&"a".into()).unwrap();
        let mut drained = tokio_test::task::spawn(drained);
        assert!(drained.poll().is_pending());
        assert_eq!(g.admin(&"a".into()).unwrap(), AdminState::Draining);
        assert_eq!(g.snapshot().pick(None, None), None);
        state.release();
        assert!(drained.is_woken());
        assert!(drained.poll().is_ready());
    }

    #[tokio::test]
    async fn discovery_task_ends_with_the_group() {
        let g = TargetGroup::new("g");
        let (tx, rx) = crate::discover::channel(4);
        g.attach(rx).unwrap();
        tx.insert(t("a")).await.unwrap();
        for _ in 0..100 {
            if !g.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(g.len(), 1);
        drop(g);
        // The task was aborted, so its receiver is gone and sends fail.
        for _ in 0..100 {
            if tx.is_closed() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(tx.is_closed());
    }
}
