//! The running stack a configuration built, and its reload.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fmt;
use std::future::Ready;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::future::Either;
use http::{Request, Response, StatusCode};
use http_body::Body;
use tower::ServiceExt;
use tower::util::Oneshot;
use tower_service::Service;

use super::build;
use super::compile::{Plan, compile};
use super::error::{ConfigError, ConfigErrorKind};
use super::model::{AdminConfig, Config};
use crate::error::BoxError;
use crate::group::TargetGroup;
use crate::lb::{LoadBalancer, Registry, ResponseBody};
use crate::target::Target;

/// One load balancer in force, with the plan it was built from.
struct Live<B> {
    plan: Plan,
    lb: LoadBalancer<B>,
}

/// Everything in force: swapped whole by a reload.
struct State<B> {
    config: Arc<Config>,
    lbs: BTreeMap<String, Arc<Live<B>>>,
}

struct Inner<B> {
    state: ArcSwap<State<B>>,
    registry: Registry<B>,
    /// One reload at a time.
    reload: Mutex<()>,
    /// Signing keys made for sticky sessions that name none, by load balancer.
    keys: Mutex<HashMap<String, Arc<[u8]>>>,
    applied: AtomicU64,
    rejected: AtomicU64,
    last_error: Mutex<Option<ConfigError>>,
}

/// The load balancers a [`Config`] built, kept in a [`Registry`], and the handle that
/// reloads them: [`reload`](Self::reload) checks a new configuration whole and applies it
/// at once, or refuses it and keeps the one in force. Cheap to clone; clones share
/// everything.
///
/// What a reload keeps: a target whose id stays keeps its live state (requests in flight,
/// health, ejection, latency estimate, slow start, sticky cookies that name it); a removed
/// target takes no new request and its requests in flight finish; a load balancer whose
/// breaker, retry, timeout, rate-limit, sticky or trusted-proxy settings (or set of pools)
/// change gets new layers over the same groups; only a change of `outlier_detection`,
/// `panic` or `slow_start` starts its groups afresh. See `docs/configuration.md`.
///
/// # Examples
///
/// ```
/// use tower_lb::config::Config;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let v1 = Config::from_toml_str(r#"
/// [[load_balancers]]
/// name = "api-lb"
/// targets = [{ id = "api-1", address = "127.0.0.1:8080" }]
/// "#)?;
/// let runtime = v1.build::<String>()?;
/// let api = runtime.service("api-lb"); // follows reloads
///
/// let v2 = Config::from_toml_str(r#"
/// [[load_balancers]]
/// name = "api-lb"
/// targets = [{ id = "api-1", address = "127.0.0.1:8080" }, { id = "api-2", address = "127.0.0.1:8081" }]
/// "#)?;
/// let report = runtime.reload(v2)?;
/// assert_eq!(report.targets_added, 1);
/// assert_eq!(runtime.registry().get("api-lb").unwrap().group().len(), 2);
///
/// // An invalid configuration is refused whole; the one in force stays.
/// assert!(runtime.reload(Config::from_toml_str("[[load_balancers]]\nname = \"\"")?).is_err());
/// assert_eq!(runtime.stats().rejected, 1);
/// # drop(api); Ok(()) }
/// ```
pub struct Runtime<B> {
    inner: Arc<Inner<B>>,
}

impl<B> Clone for Runtime<B> {
    fn clone(&self) -> Self {
        Runtime {
            inner: self.inner.clone(),
        }
    }
}

impl<B> fmt::Debug for Runtime<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field(
                "load_balancers",
                &self.inner.state.load().lbs.keys().collect::<Vec<_>>(),
            )
            .field("stats", &self.stats())
            .finish()
    }
}

/// What a [`Runtime::reload`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// Load balancers added to the registry.
    pub added: Vec<String>,
    /// Load balancers taken out of the registry (their targets drain).
    pub removed: Vec<String>,
    /// Load balancers changed in place (targets, rules, algorithm, health checks).
    pub updated: Vec<String>,
    /// Load balancers whose layers were rebuilt over the same groups (targets keep their
    /// state).
    pub rebuilt: Vec<String>,
    /// Load balancers whose groups were built anew (`outlier_detection`, `panic` or
    /// `slow_start` changed): their targets start with fresh state.
    pub reset: Vec<String>,
    /// Load balancers left exactly as they were.
    pub unchanged: Vec<String>,
    /// Targets added, over every pool.
    pub targets_added: usize,
    /// Targets removed (they drain).
    pub targets_removed: usize,
    /// Targets that stayed but whose address, weight, limits or labels changed.
    pub targets_updated: usize,
}

/// Reload counters of a [`Runtime`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadStats {
    /// Configurations applied (the first one included).
    pub applied: u64,
    /// Configurations refused.
    pub rejected: u64,
}

/// A change to an existing group, applied once the whole reload is known to be valid.
struct GroupUpdate {
    group: TargetGroup,
    targets: Vec<Target>,
    algorithm: Option<super::compile::AnyAlgorithm>,
}

fn random_key() -> Arc<[u8]> {
    let mut key = Vec::with_capacity(32);
    for i in 0..4u64 {
        let s = std::collections::hash_map::RandomState::new();
        key.extend_from_slice(&s.hash_one(i).to_le_bytes());
    }
    key.into()
}

impl Config {
    /// Checks the configuration and builds every load balancer it describes, registered by
    /// name in a [`Runtime`] that can [`reload`](Runtime::reload) them.
    ///
    /// Needs a Tokio runtime when a load balancer has active health checks.
    ///
    /// ```
    /// use tower_lb::config::Config;
    ///
    /// let config = Config::from_yaml_str("load_balancers:\n  - name: web\n    targets: [{ id: a, address: '127.0.0.1:8080' }]\n")?;
    /// let runtime = config.build::<String>()?;
    /// assert_eq!(runtime.registry().list(), ["web"]);
    /// # Ok::<(), tower_lb::BoxError>(())
    /// ```
    pub fn build<B>(&self) -> Result<Runtime<B>, ConfigError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let runtime = Runtime {
            inner: Arc::new(Inner {
                state: ArcSwap::from_pointee(State {
                    config: Arc::new(Config::default()),
                    lbs: BTreeMap::new(),
                }),
                registry: Registry::new(),
                reload: Mutex::new(()),
                keys: Mutex::new(HashMap::new()),
                applied: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                last_error: Mutex::new(None),
            }),
        };
        runtime.apply(self.clone())?;
        runtime.inner.applied.fetch_add(1, Ordering::Relaxed);
        Ok(runtime)
    }
}

impl<B> Runtime<B> {
    /// The registry of load balancers in force (for an admin endpoint).
    pub fn registry(&self) -> &Registry<B> {
        &self.inner.registry
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.inner.state.load().config.clone()
    }

    /// The admin settings in force, if the configuration has any.
    pub fn admin(&self) -> Option<AdminConfig> {
        self.inner.state.load().config.admin.clone()
    }

    /// Reloads applied and refused so far.
    pub fn stats(&self) -> ReloadStats {
        ReloadStats {
            applied: self.inner.applied.load(Ordering::Relaxed),
            rejected: self.inner.rejected.load(Ordering::Relaxed),
        }
    }

    /// The error of the last refused configuration, if any.
    pub fn last_error(&self) -> Option<ConfigError> {
        crate::util::lock(&self.inner.last_error).clone()
    }

    /// A service that sends each request through the load balancer named `name` as it is
    /// at that moment, so it follows reloads (mount this, not a clone of one
    /// [`LoadBalancer`], when the configuration can change). A request that arrives while no
    /// load balancer has that name gets a `503`.
    ///
    /// ```
    /// use tower::ServiceExt;
    /// use tower_lb::config::Config;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
    /// use axum::body::Body;
    /// let runtime = Config::from_toml_str("[[load_balancers]]\nname = \"api\"\n")?.build::<Body>()?;
    /// let app: axum::Router = axum::Router::new().fallback_service(runtime.service("api"));
    /// # let _ = app;
    /// let rsp = runtime.service("gone").oneshot(http::Request::new(Body::empty())).await?;
    /// assert_eq!(rsp.status(), 503);
    /// # Ok(()) }
    /// ```
    pub fn service(&self, name: &str) -> LiveService<B> {
        LiveService {
            name: name.into(),
            inner: self.inner.clone(),
        }
    }
}

impl<B> Runtime<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// Checks `config` whole and applies it at once; on any error nothing changes, the error
    /// is counted, logged and returned, and the configuration in force stays.
    ///
    /// ```
    /// use tower_lb::config::Config;
    ///
    /// # fn main() -> Result<(), tower_lb::BoxError> {
    /// let one = "[[load_balancers]]\nname = \"api\"\ntargets = [{ id = \"a\", address = \"127.0.0.1:8080\" }]\n";
    /// let runtime = Config::from_toml_str(one)?.build::<String>()?;
    /// let group = runtime.registry().get("api").unwrap().group().clone();
    ///
    /// // A heavier `a` and a new `b`: the same group, `a` keeps its live state.
    /// let two = "[[load_balancers]]\nname = \"api\"\ntargets = [{ id = \"a\", address = \"127.0.0.1:8080\", weight = 3 }, { id = \"b\", address = \"127.0.0.1:8081\" }]\n";
    /// let report = runtime.reload(Config::from_toml_str(two)?)?;
    /// assert_eq!(report.updated, ["api"]);
    /// assert_eq!((report.targets_added, report.targets_updated), (1, 1));
    /// assert_eq!(group.len(), 2);
    ///
    /// // Refused whole: nothing changes.
    /// let bad = two.replace("weight = 3", "weight = 0");
    /// let err = runtime.reload(Config::from_toml_str(&bad)?).unwrap_err();
    /// assert_eq!(err.path(), "load_balancers[0].targets[0].weight");
    /// assert_eq!(group.targets()[0].weight(), 3);
    /// # Ok(()) }
    /// ```
    pub fn reload(&self, config: Config) -> Result<ReloadReport, ConfigError> {
        match self.apply(config) {
            Ok(report) => {
                self.inner.applied.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    added = ?report.added,
                    removed = ?report.removed,
                    updated = ?report.updated,
                    rebuilt = ?report.rebuilt,
                    reset = ?report.reset,
                    targets_added = report.targets_added,
                    targets_removed = report.targets_removed,
                    "configuration reloaded"
                );
                Ok(report)
            }
            Err(e) => {
                self.inner.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "configuration refused; the one in force stays");
                *crate::util::lock(&self.inner.last_error) = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Reads the file at `path` ([`Config::from_path`]) and [`reload`](Self::reload)s it; a
    /// file that cannot be read or parsed is refused like an invalid configuration.
    pub fn reload_from_path(&self, path: impl AsRef<Path>) -> Result<ReloadReport, ConfigError> {
        match Config::from_path(path) {
            Ok(config) => self.reload(config),
            Err(e) => {
                self.inner.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "configuration file refused; the one in force stays");
                *crate::util::lock(&self.inner.last_error) = Some(e.clone());
                Err(e)
            }
        }
    }

    fn sticky_key(&self, name: &str) -> Arc<[u8]> {
        crate::util::lock(&self.inner.keys)
            .entry(name.to_owned())
            .or_insert_with(random_key)
            .clone()
    }

    fn apply(&self, config: Config) -> Result<ReloadReport, ConfigError> {
        let _one = crate::util::lock(&self.inner.reload);
        let plans = compile(&config)?;
        let old = self.inner.state.load_full();
        let mut report = ReloadReport::default();
        let mut lbs = BTreeMap::new();
        let mut updates: Vec<GroupUpdate> = Vec::new();
        let mut set_rules: Vec<Arc<Live<B>>> = Vec::new();
        let mut retired: Vec<TargetGroup> = Vec::new();
        let needs_runtime = |plan: &Plan| -> Result<(), ConfigError> {
            if plan.health_check.is_some() && tokio::runtime::Handle::try_current().is_err() {
                return Err(ConfigError::invalid(
                    format!("{}.health_check", plan.path),
                    "active health checks need a Tokio runtime",
                ));
            }
            Ok(())
        };

        // 1. Build whatever is new, change nothing in force.
        for plan in plans {
            let name = plan.name.clone();
            let key = self.sticky_key(&name);
            let Some(live) = old.lbs.get(&name) else {
                needs_runtime(&plan)?;
                let mut groups = Vec::new();
                for (pool, targets) in &plan.pools {
                    report.targets_added += targets.len();
                    groups.push(build::new_group(&plan, pool, targets.clone())?);
                }
                let lb = build::load_balancer::<B>(&plan, groups, &key)?;
                report.added.push(name.clone());
                lbs.insert(name, Arc::new(Live { plan, lb }));
                continue;
            };
            if live.plan.config == plan.config {
                report.unchanged.push(name.clone());
                lbs.insert(name, live.clone());
                continue;
            }
            let same_groups = live.plan.group_shape() == plan.group_shape();
            let same_stack = live.plan.stack_shape() == plan.stack_shape();
            let algorithm_changed = live.plan.algorithm_shape() != plan.algorithm_shape();
            let health_changed = live.plan.config.health_check != plan.config.health_check;
            if health_changed {
                needs_runtime(&plan)?;
            }
            if !same_groups {
                // Fresh groups: built now, the old ones drain when the swap is done.
                needs_runtime(&plan)?;
                let mut groups = Vec::new();
                for (pool, targets) in &plan.pools {
                    groups.push(build::new_group(&plan, pool, targets.clone())?);
                }
                count_targets(&mut report, live.lb.pools(), &plan);
                let lb = build::load_balancer::<B>(&plan, groups, &key)?;
                retired.extend(live.lb.pools().iter().cloned());
                report.reset.push(name.clone());
                lbs.insert(name, Arc::new(Live { plan, lb }));
                continue;
            }
            // The groups stay; their targets, algorithm and checks change at apply time.
            count_targets(&mut report, live.lb.pools(), &plan);
            let mut groups = Vec::new();
            retired.extend(
                live.lb
                    .pools()
                    .iter()
                    .filter(|g| !plan.pools.iter().any(|(p, _)| p == g.name()))
                    .cloned(),
            );
            for (pool, targets) in &plan.pools {
                match live.lb.pool(pool) {
                    Some(group) => {
                        updates.push(GroupUpdate {
                            group: group.clone(),
                            targets: targets.clone(),
                            algorithm: algorithm_changed.then(|| plan.algorithm.clone()),
                        });
                        groups.push(group.clone());
                    }
                    None => groups.push(build::new_group(&plan, pool, targets.clone())?),
                }
            }
            if same_stack {
                let next = Arc::new(Live {
                    plan,
                    lb: live.lb.clone(),
                });
                set_rules.push(next.clone());
                report.updated.push(name.clone());
                lbs.insert(name, next);
            } else {
                let lb = build::load_balancer::<B>(&plan, groups, &key)?;
                report.rebuilt.push(name.clone());
                lbs.insert(name, Arc::new(Live { plan, lb }));
            }
        }
        let removed: Vec<Arc<Live<B>>> = old
            .lbs
            .iter()
            .filter(|(name, _)| !lbs.contains_key(*name))
            .map(|(_, live)| live.clone())
            .collect();

        // 2. Apply: nothing below can fail.
        for u in updates {
            if let Some(a) = u.algorithm {
                u.group.set_algorithm(a);
            }
            if let Err(e) = u.group.replace(u.targets) {
                tracing::error!(group = %u.group.name(), error = %e, "checked target set refused");
            }
        }
        for live in &set_rules {
            if let Err(e) = live.lb.set_rules(live.plan.rules.clone()) {
                tracing::error!(load_balancer = %live.plan.name, error = %e, "checked rules refused");
            }
        }
        // Health checks of kept groups, now that their targets are the new ones.
        for live in lbs.values() {
            if report.updated.contains(&live.plan.name) || report.rebuilt.contains(&live.plan.name)
            {
                let old_health = old
                    .lbs
                    .get(&live.plan.name)
                    .map(|l| &l.plan.config.health_check);
                if old_health != Some(&live.plan.config.health_check) {
                    for group in live.lb.pools() {
                        if let Err(e) = build::start_health_check(&live.plan, group) {
                            tracing::error!(error = %e, "health check not restarted");
                        }
                    }
                }
            }
        }
        // Keys made for load balancers that are not (or no longer) in force go.
        crate::util::lock(&self.inner.keys).retain(|name, _| lbs.contains_key(name));
        self.inner.state.store(Arc::new(State {
            config: Arc::new(config),
            lbs: lbs.clone(),
        }));
        for (name, live) in &lbs {
            let changed = old.lbs.get(name).is_none_or(|o| !Arc::ptr_eq(o, live));
            if changed {
                self.inner.registry.replace(live.lb.clone());
            }
        }
        for live in removed {
            report.removed.push(live.plan.name.clone());
            report.targets_removed += live.lb.pools().iter().map(TargetGroup::len).sum::<usize>();
            // Out of the registry; its targets drain (requests in flight finish).
            let _ = self.inner.registry.deregister(&live.plan.name);
        }
        // Groups no load balancer uses any more (a reset, a pool that is gone): no new
        // request reaches them through the registry; a stale clone finds them draining, and
        // their requests in flight finish.
        for group in retired {
            group.stop_health_check();
            for t in group.targets() {
                let _ = group.drain(t.id());
            }
        }
        Ok(report)
    }
}

/// Counts the targets a plan adds, removes and changes against the pools in force.
fn count_targets(report: &mut ReloadReport, pools: &[TargetGroup], plan: &Plan) {
    let mut before: BTreeMap<String, Target> = BTreeMap::new();
    for g in pools {
        for t in g.targets() {
            before.insert(t.id().to_string(), t);
        }
    }
    let mut after = BTreeMap::new();
    for (_, targets) in &plan.pools {
        for t in targets {
            after.insert(t.id().to_string(), t.clone());
        }
    }
    for (id, t) in &after {
        match before.get(id) {
            None => report.targets_added += 1,
            Some(b) if b != t => report.targets_updated += 1,
            Some(_) => {}
        }
    }
    report.targets_removed += before.keys().filter(|id| !after.contains_key(*id)).count();
}

/// A service over the load balancer a [`Runtime`] has under one name, as it is when each
/// request arrives: it follows reloads. From [`Runtime::service`].
pub struct LiveService<B> {
    name: Arc<str>,
    inner: Arc<Inner<B>>,
}

impl<B> Clone for LiveService<B> {
    fn clone(&self) -> Self {
        LiveService {
            name: self.name.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<B> fmt::Debug for LiveService<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveService")
            .field("name", &self.name)
            .finish()
    }
}

type LiveInner<B> =
    Either<Oneshot<LoadBalancer<B>, Request<B>>, Ready<Result<Response<ResponseBody>, Infallible>>>;

pin_project_lite::pin_project! {
    /// The future of a [`LiveService`].
    pub struct LiveFuture<B>
    where
        LoadBalancer<B>: Service<Request<B>>,
    {
        #[pin]
        inner: LiveInner<B>,
    }
}

impl<B> fmt::Debug for LiveFuture<B>
where
    LoadBalancer<B>: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveFuture").finish_non_exhaustive()
    }
}

impl<B> std::future::Future for LiveFuture<B>
where
    LoadBalancer<B>: Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible>,
{
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

impl<B> Service<Request<B>> for LiveService<B>
where
    LoadBalancer<B>: Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = LiveFuture<B>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let state = self.inner.state.load();
        match state.lbs.get(&*self.name) {
            Some(live) => LiveFuture {
                inner: Either::Left(live.lb.clone().oneshot(req)),
            },
            None => {
                let mut rsp = Response::new(ResponseBody::full(Bytes::from_static(
                    b"no such load balancer\n",
                )));
                *rsp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                LiveFuture {
                    inner: Either::Right(std::future::ready(Ok(rsp))),
                }
            }
        }
    }
}

/// Watches a configuration file and reloads it when it changes (the `notify` crate); from
/// [`Runtime::watch`]. Stops when dropped.
pub struct ConfigWatcher {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::AbortHandle,
}

impl fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigWatcher").finish_non_exhaustive()
    }
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<B> Runtime<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// Reloads the file at `path` whenever it changes (written in place, or replaced by a
    /// rename as editors and config managers do), after `settle` without further change. A
    /// reload that fails is counted and logged, and the configuration in force stays, as
    /// with [`reload`](Self::reload). Must be called within a Tokio runtime.
    ///
    /// ```no_run
    /// # async fn f(runtime: tower_lb::config::Runtime<String>) -> Result<(), tower_lb::BoxError> {
    /// let _watcher = runtime.watch("lb.toml", std::time::Duration::from_millis(200))?;
    /// // ... serve; the file is reloaded on change until `_watcher` is dropped.
    /// # Ok(()) }
    /// ```
    pub fn watch(
        &self,
        path: impl AsRef<Path>,
        settle: std::time::Duration,
    ) -> Result<ConfigWatcher, ConfigError> {
        use notify::Watcher;
        let io = |e: &dyn fmt::Display| {
            ConfigError::new(ConfigErrorKind::Io, "", format_args!("cannot watch: {e}"))
        };
        let handle = tokio::runtime::Handle::try_current().map_err(|e| io(&e))?;
        let file: PathBuf = path.as_ref().to_path_buf();
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = file.file_name().map(|n| n.to_os_string());
        let (tx, mut rx) = tokio::sync::watch::channel(0u64);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if event.kind.is_access() {
                    return;
                }
                if event
                    .paths
                    .iter()
                    .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
                {
                    tx.send_modify(|n| *n += 1);
                }
            })
            .map_err(|e| io(&e))?;
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| io(&e))?;
        let runtime = self.clone();
        let task = handle.spawn(async move {
            while rx.changed().await.is_ok() {
                // Let a burst of writes settle into one reload.
                loop {
                    match tokio::time::timeout(settle, rx.changed()).await {
                        Ok(Ok(())) => continue,
                        Ok(Err(_)) => return,
                        Err(_) => break,
                    }
                }
                rx.borrow_and_update();
                let _ = runtime.reload_from_path(&file);
            }
        });
        Ok(ConfigWatcher {
            _watcher: watcher,
            task: task.abort_handle(),
        })
    }
}
