use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::{InFlight, Table, TrackedBody};
use super::error::NoAvailableTarget;
use super::future::{ResponseFuture, Tagging};
use super::{Affinity, AvoidTargets, BalanceLayer, WantServedBy};
use crate::error::BoxError;
use crate::group::TargetGroup;
use crate::key::Key;
use crate::stats::{self, GroupReport, Recorders, TargetFacts};
use crate::target::{Snapshot, Target, TargetId};

/// How many times a pick is retried when the picked target filled up in the meantime.
const ACQUIRE_TRIES: usize = 3;

/// Makes the service that sends requests to one target.
///
/// Implemented for every `Fn(&Target) -> S`. Called once per target when it joins the group
/// (and again if it is replaced), off the request path.
pub trait MakeTarget<S>: Send + Sync + 'static {
    /// The service for `target`.
    fn make_target(&self, target: &Target) -> S;
}

impl<F, S> MakeTarget<S> for F
where
    F: Fn(&Target) -> S + Send + Sync + 'static,
{
    fn make_target(&self, target: &Target) -> S {
        self(target)
    }
}

/// Load-balances HTTP requests over a [`TargetGroup`].
///
/// Each request is matched to a target in [`call`](Service::call) (so request-aware algorithms
/// can see it): the group's algorithm picks among the targets that are available now, the
/// picked target's service is driven ready-then-call inside the returned future, and the
/// response comes back with a body that keeps the request counted as in flight until it ends,
/// and tagged with [`ServedBy`](super::ServedBy) where a reader needs it (see
/// [`served_by`](Balance::served_by)).
///
/// `Balance` is always ready, `Clone + Send + Sync`, and shares its state behind an `Arc`, so it
/// needs no `Buffer`. Each clone remembers the per-target service table it last dispatched with,
/// so a request checks one version number instead of loading the shared table; the first request
/// after a membership change moves that clone to the new table. Until then an idle clone keeps
/// its old table (with the services of targets removed since) alive; a clone that never served
/// a request, such as the one a router clones for each request, holds none. With no available
/// target it fails at once with
/// [`NoAvailableTarget`]; an error from a target's service fails that request only (the target
/// stays in the group). Map errors to responses with [`crate::upstream::ErrorResponseLayer`].
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::balance::{Balance, ServedBy};
/// use tower_lb::{Target, TargetGroup};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let group = TargetGroup::builder("echo")
///     .target(Target::new("a", "127.0.0.1:8080")?)
///     .target(Target::new("b", "127.0.0.1:8081")?)
///     .build()?;
///
/// // One service per target; here a stub that answers with the target's id.
/// let balance = Balance::new(group, |t: &Target| {
///     let id = t.id().to_string();
///     service_fn(move |_req: Request<String>| {
///         let id = id.clone();
///         async move { Ok::<_, Infallible>(Response::new(id)) }
///     })
/// })
/// .served_by(true); // tag every response, not only failures
///
/// let rsp = balance.oneshot(Request::new(String::new())).await?;
/// assert_eq!(rsp.extensions().get::<ServedBy>().unwrap().target().as_str(), "a");
/// # Ok(()) }
/// ```
pub struct Balance<S> {
    shared: Arc<Shared<S>>,
    /// The service table this clone last dispatched with. While it is current (one version
    /// load tells), a request reads it without touching the shared `ArcSwap`. Empty until the
    /// first request, so a clone that never serves (a router's prototype) holds no table.
    cache: Option<Arc<Services<S>>>,
    /// `None`: tag on demand (see [`Balance::served_by`]).
    served_by: Option<bool>,
}

struct Shared<S> {
    group: TargetGroup,
    maker: Arc<dyn MakeTarget<S>>,
    services: ArcSwap<Services<S>>,
    sync: Mutex<()>,
    key: Option<Key>,
    /// Per-target statistics, kept by id across snapshots.
    recorders: Arc<Recorders>,
    /// Whether requests are recorded (see [`Balance::statistics`]).
    record: bool,
}

/// Reads a balancer's [`GroupReport`]; see [`Balance::report`].
#[cfg_attr(not(feature = "hyper"), allow(dead_code))]
pub(crate) type Reporter = Arc<dyn Fn() -> GroupReport + Send + Sync>;

fn report(group: &TargetGroup, recorders: &Recorders) -> GroupReport {
    let snap = group.snapshot_full();
    let facts = snap
        .entries
        .iter()
        .map(|e| {
            let id = e.target.id();
            let s = e.state.stats(id);
            TargetFacts {
                id: id.clone(),
                address: e.target.address().to_string(),
                requests: s.requests(),
                in_flight: s.in_flight(),
                admin: s.admin(),
                health: group.health(id).ok(),
            }
        })
        .collect();
    stats::report(group.name(), facts, |id| recorders.get(id))
}

/// One snapshot of the group and the per-target services made for it, indexed alike. Held in
/// one `ArcSwap`, so a request loads both with a single load.
struct Services<S> {
    snapshot: Arc<Snapshot>,
    /// What a request in flight holds on to (not the whole snapshot: see [`Table`]).
    table: Arc<Table>,
    list: Box<[S]>,
}

impl<S> Services<S> {
    fn new(
        group: &TargetGroup,
        snapshot: Arc<Snapshot>,
        list: Box<[S]>,
        recorders: Option<&Recorders>,
    ) -> Self {
        let table = Arc::new(Table::new(
            &snapshot,
            group.name_arc().clone(),
            group.classifier().cloned(),
            match recorders {
                Some(r) => r.sync(snapshot.entries.iter().map(|e| e.target.id())),
                None => Arc::new([]),
            },
        ));
        Services {
            snapshot,
            table,
            list,
        }
    }

    fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }
}

impl<S> Clone for Balance<S> {
    fn clone(&self) -> Self {
        Balance {
            shared: self.shared.clone(),
            cache: self.cache.clone(),
            served_by: self.served_by,
        }
    }
}

impl<S> fmt::Debug for Balance<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balance")
            .field("group", &self.shared.group)
            .finish()
    }
}

impl<S: Clone + 'static> Balance<S> {
    /// A balancer over `group`; `make` builds the service for each target.
    pub fn new<F>(group: TargetGroup, make: F) -> Self
    where
        F: Fn(&Target) -> S + Send + Sync + 'static,
    {
        Balance::with_maker(group, make)
    }

    /// A balancer over `group` with a [`MakeTarget`] implementation.
    pub fn with_maker(group: TargetGroup, maker: impl MakeTarget<S>) -> Self {
        let snapshot = group.snapshot_full();
        let list = snapshot
            .entries
            .iter()
            .map(|e| maker.make_target(&e.target))
            .collect();
        let recorders = Arc::new(Recorders::default());
        let services = Services::new(&group, snapshot, list, Some(&recorders));
        Balance {
            shared: Arc::new(Shared {
                group,
                maker: Arc::new(maker),
                services: ArcSwap::from_pointee(services),
                sync: Mutex::new(()),
                key: None,
                recorders,
                record: true,
            }),
            cache: None,
            served_by: None,
        }
    }

    /// Hashes each request on `key` and hands the hash to the group's algorithm (used by
    /// [`HashRing`](crate::algorithm::HashRing) and [`Maglev`](crate::algorithm::Maglev)); a
    /// request without the key is balanced as if it had none. See [`crate::key`].
    ///
    /// Returns a balancer sharing this one's group and per-target services; clones made
    /// before this call keep their own key.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{Request, Response};
    /// use tower::service_fn;
    /// use tower_lb::algorithm::HashRing;
    /// use tower_lb::balance::Balance;
    /// use tower_lb::key::Key;
    /// use tower_lb::{Target, TargetGroup};
    ///
    /// let group = TargetGroup::builder("g").algorithm(HashRing::new()).build()?;
    /// let balance = Balance::new(group, |_t: &Target| {
    ///     service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) })
    /// })
    /// .key(Key::client_ip());
    /// # Ok::<(), tower_lb::BoxError>(())
    /// ```
    pub fn key(self, key: Key) -> Self {
        let shared = &self.shared;
        Balance {
            shared: Arc::new(Shared {
                group: shared.group.clone(),
                maker: shared.maker.clone(),
                services: ArcSwap::new(shared.services.load_full()),
                sync: Mutex::new(()),
                key: Some(key),
                recorders: shared.recorders.clone(),
                record: shared.record,
            }),
            cache: None,
            served_by: self.served_by,
        }
    }

    /// Tags every response with [`ServedBy`](super::ServedBy) (`true`), or nothing at all (`false`).
    ///
    /// By default (this method not called) the target is named where a reader is known to need
    /// it, because inserting any `http` extension costs three small allocations (the response's
    /// extension map is boxed on first use):
    ///
    /// - a response with an error status (`4xx` or `5xx`), a response the group's classifier
    ///   counts as a failure, a response to a request that carries [`WantServedBy`] and one to
    ///   a request whose [`Affinity`] was not honoured get
    ///   [`ServedBy`](super::ServedBy) (so a retry can avoid the target that answered: retries are for error
    ///   statuses, and the [`RetryLayer`](crate::retry::RetryLayer) marks requests itself if
    ///   it is told to retry any other status);
    /// - an error from a target's service is wrapped in
    ///   [`AttemptFailed`](super::error::AttemptFailed), which names the target;
    /// - any other response goes untagged, and a dispatch allocates nothing.
    ///
    /// `true` tags every response (for access logs, metrics or sticky sessions that read it
    /// on every request; a single request can ask with [`WantServedBy`] instead). `false` tags
    /// nothing, not even failures and errors, so a retry can no longer avoid the target that
    /// failed.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{Request, Response, StatusCode};
    /// use tower::{service_fn, ServiceExt};
    /// use tower_lb::balance::{Balance, ServedBy, WantServedBy};
    /// use tower_lb::{Target, TargetGroup};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
    /// let group = TargetGroup::builder("g").target(Target::new("a", "127.0.0.1:1")?).build()?;
    /// let backend = |_t: &Target| {
    ///     service_fn(|req: Request<()>| async move {
    ///         let mut rsp = Response::new(String::new());
    ///         if req.uri().path() == "/fail" {
    ///             *rsp.status_mut() = StatusCode::BAD_GATEWAY;
    ///         }
    ///         Ok::<_, Infallible>(rsp)
    ///     })
    /// };
    /// let served = |rsp: &Response<_>| rsp.extensions().get::<ServedBy>().is_some();
    ///
    /// // Default: error statuses and marked requests are tagged, plain successes are not.
    /// let balance = Balance::new(group.clone(), backend);
    /// assert!(!served(&balance.clone().oneshot(Request::new(())).await?));
    /// assert!(served(&balance.clone().oneshot(Request::get("/fail").body(())?).await?));
    /// let mut req = Request::new(());
    /// req.extensions_mut().insert(WantServedBy);
    /// assert!(served(&balance.oneshot(req).await?));
    ///
    /// // Every response.
    /// let always = Balance::new(group, backend).served_by(true);
    /// assert!(served(&always.oneshot(Request::new(())).await?));
    /// # Ok(()) }
    /// ```
    pub fn served_by(mut self, record: bool) -> Self {
        self.served_by = Some(record);
        self
    }

    /// The group this balancer picks from.
    pub fn group(&self) -> &TargetGroup {
        &self.shared.group
    }

    /// What this balancer's requests did, per target and in total: requests, responses by
    /// class, failures by kind, in flight, latency percentiles over the last
    /// [`LATENCY_WINDOW`](crate::stats::LATENCY_WINDOW), health and admin state. Shared by
    /// every clone. See [`crate::stats`].
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{Request, Response};
    /// use tower::service_fn;
    /// use tower_lb::balance::Balance;
    /// use tower_lb::{Target, TargetGroup};
    ///
    /// let group = TargetGroup::builder("g").target(Target::new("a", "127.0.0.1:1")?).build()?;
    /// let balance = Balance::new(group, |_t: &Target| {
    ///     service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(())) })
    /// });
    /// let report = balance.report();
    /// assert_eq!(report.name(), "g");
    /// assert_eq!(report.targets()[0].id().as_str(), "a");
    /// # Ok::<(), tower_lb::BoxError>(())
    /// ```
    pub fn report(&self) -> GroupReport {
        report(&self.shared.group, &self.shared.recorders)
    }

    /// Turns recording of statistics on (the default) or off. Off, a request costs two clock
    /// reads and a few atomic adds less, and [`report`](Self::report) shows zero responses
    /// and no latency (requests and in flight are the group's own counts and stay).
    ///
    /// Returns a balancer sharing this one's group and per-target services; clones made
    /// before this call keep recording as before.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{Request, Response};
    /// use tower::{service_fn, ServiceExt};
    /// use tower_lb::balance::Balance;
    /// use tower_lb::{Target, TargetGroup};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
    /// let group = TargetGroup::builder("g").target(Target::new("a", "127.0.0.1:1")?).build()?;
    /// let balance = Balance::new(group, |_t: &Target| {
    ///     service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) })
    /// })
    /// .statistics(false);
    /// drop(balance.clone().oneshot(Request::new(())).await?);
    /// assert_eq!(balance.report().requests(), 1);
    /// assert_eq!(balance.report().responses().total(), 0);
    /// # Ok(()) }
    /// ```
    pub fn statistics(self, on: bool) -> Self {
        let shared = &self.shared;
        let old = shared.services.load_full();
        let services = Services::new(
            &shared.group,
            old.snapshot.clone(),
            old.list.clone(),
            on.then_some(&*shared.recorders),
        );
        Balance {
            shared: Arc::new(Shared {
                group: shared.group.clone(),
                maker: shared.maker.clone(),
                services: ArcSwap::from_pointee(services),
                sync: Mutex::new(()),
                key: shared.key.clone(),
                recorders: shared.recorders.clone(),
                record: on,
            }),
            cache: None,
            served_by: self.served_by,
        }
    }

    /// Reads [`report`](Self::report) without holding the balancer (or its services).
    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    pub(crate) fn reporter(&self) -> Reporter {
        let group = self.shared.group.clone();
        let recorders = self.shared.recorders.clone();
        Arc::new(move || report(&group, &recorders))
    }

    /// Moves this clone to the shared service table (brought up to the group's latest
    /// snapshot if needed).
    #[cold]
    #[inline(never)]
    fn refresh(&mut self) {
        let mut services = self.shared.services.load_full();
        if services.snapshot().version != self.shared.group.published_version() {
            services = self.sync();
        }
        self.cache = Some(services);
    }

    /// Brings the service table up to the group's latest snapshot, keeping existing services.
    #[cold]
    fn sync(&self) -> Arc<Services<S>> {
        let _lock = crate::util::lock(&self.shared.sync);
        let snap = self.shared.group.snapshot_full();
        let old = self.shared.services.load_full();
        if old.snapshot().version == snap.version {
            return old;
        }
        let by_id: HashMap<&TargetId, (&Arc<Target>, &S)> = old
            .snapshot()
            .entries
            .iter()
            .zip(old.list.iter())
            .map(|(e, s)| (e.target.id(), (&e.target, s)))
            .collect();
        let list = snap
            .entries
            .iter()
            .map(|e| match by_id.get(e.target.id()) {
                // Same id at the same address: keep the service (and its connections).
                Some((t, svc)) if t.address() == e.target.address() => (*svc).clone(),
                _ => self.shared.maker.make_target(&e.target),
            })
            .collect();
        let new = Arc::new(Services::new(
            &self.shared.group,
            snap,
            list,
            self.shared.record.then_some(&*self.shared.recorders),
        ));
        self.shared.services.store(new.clone());
        new
    }

    /// Picks a target for `req` and counts the request in flight there: the target's index
    /// and how the attempt's outcome is to be tagged. Reads the request, never moves it.
    #[inline(always)]
    fn pick<B>(&self, services: &Services<S>, req: &Request<B>) -> Option<(usize, Tagging)> {
        let snap = &**services.snapshot();
        let avoid = req.extensions().get::<AvoidTargets>();
        let key = self.shared.key.as_ref().and_then(|k| k.hash(req));
        // An affinity that is not honoured asks for the response to be tagged: the sticky
        // layer then learns where the request went instead.
        let mut missed = false;
        let mut chosen = match req.extensions().get::<Affinity>() {
            Some(affinity) => {
                let i = self.affine(snap, affinity, avoid);
                missed = i.is_none();
                i
            }
            None => None,
        };
        if chosen.is_none() {
            for _ in 0..ACQUIRE_TRIES {
                let Some(i) = snap.pick(key, avoid) else {
                    break;
                };
                if snap.try_acquire(i) {
                    chosen = Some(i);
                    break;
                }
            }
        }
        let Some(i) = chosen else {
            tracing::trace!(group = %self.shared.group.name(), "no available target");
            return None;
        };
        let e = &snap.entries[i];
        tracing::trace!(group = %self.shared.group.name(), target = %e.target.id(), "picked");
        let tagging = match self.served_by {
            Some(true) => Tagging::Every,
            Some(false) => Tagging::Never,
            None if missed || req.extensions().get::<WantServedBy>().is_some() => Tagging::Every,
            None => Tagging::Errors,
        };
        Some((i, tagging))
    }

    /// The target `affinity` names, counted in flight, if this balancer's group has it and it
    /// could be picked now; otherwise `None` and the request is balanced as usual.
    #[inline(never)]
    fn affine(
        &self,
        snap: &Snapshot,
        affinity: &Affinity,
        avoid: Option<&AvoidTargets>,
    ) -> Option<usize> {
        if !affinity.applies_to(self.shared.group.name()) {
            return None;
        }
        let i = snap.affine(affinity.target(), affinity.hint(), avoid)?;
        snap.try_acquire(i).then_some(i)
    }

    #[cold]
    fn no_target<Req>(&self) -> ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        ResponseFuture::failed(Box::new(NoAvailableTarget::new(
            self.shared.group.name_arc().clone(),
        )))
    }
}

/// Constructors that need no type annotation: the wrapped service is not known yet.
impl Balance<()> {
    /// A [`BalanceLayer`] over `group`.
    pub fn layer(group: TargetGroup) -> BalanceLayer {
        BalanceLayer::new(group)
    }
}

impl<S, B, RB> Service<Request<B>> for Balance<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + 'static,
    S::Error: Into<BoxError>,
    RB: Body,
{
    type Response = Response<TrackedBody<RB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S, Request<B>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is per target and checked after the pick, inside the future.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let current = self.shared.group.published_version();
        if self
            .cache
            .as_ref()
            .is_none_or(|s| s.snapshot().version != current)
        {
            self.refresh();
        }
        let Some(services) = &self.cache else {
            return self.no_target();
        };
        // The request is only read until the one place that moves it into the target's
        // service: moved through helpers, the compiler copies all 224 bytes of it each time.
        let Some((i, tagging)) = self.pick(services, &req) else {
            return self.no_target();
        };
        let guard = InFlight::acquired(services.table.clone(), i).timed();
        // A target service that is ready at once is called right away (the common case:
        // pooled clients are always ready), so the request is never parked in the future;
        // otherwise readiness is awaited when the future is polled. Polling readiness here with
        // a no-op waker is harmless: a pending service is polled again, with the caller's
        // waker, before anything waits on it.
        let mut svc = services.list[i].clone();
        match svc.poll_ready(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
            Poll::Ready(Ok(())) => ResponseFuture::called(svc.call(req), guard, tagging),
            Poll::Pending => ResponseFuture::parked(svc, req, guard, tagging),
            Poll::Ready(Err(e)) => ResponseFuture::refused(e, guard, tagging),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::{Ready, ready};

    use http_body_util::StreamBody;
    use tower::ServiceExt;

    use super::*;

    type Frames = futures_util::stream::Pending<Result<http_body::Frame<bytes::Bytes>, Infallible>>;

    /// A body that never ends: its request stays in flight for as long as it is held.
    fn endless(_req: Request<()>) -> Ready<Result<Response<StreamBody<Frames>>, Infallible>> {
        ready(Ok(Response::new(StreamBody::new(
            futures_util::stream::pending(),
        ))))
    }

    #[tokio::test]
    async fn a_streaming_response_does_not_keep_its_snapshot_alive() {
        let group = TargetGroup::builder("g")
            .target(Target::new("a", "127.0.0.1:1").unwrap())
            .build()
            .unwrap();
        let mut balance = Balance::new(group.clone(), |_t: &Target| {
            tower::service_fn(endless as fn(Request<()>) -> _)
        });
        let streaming = balance
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        let old = Arc::downgrade(&group.snapshot_full());
        assert!(old.upgrade().is_some(), "the current snapshot");

        group.insert(Target::new("b", "127.0.0.1:2").unwrap());
        // The next request moves this clone to the new snapshot.
        let second = balance
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        assert!(
            old.upgrade().is_none(),
            "a request in flight holds its target's entry, not the old snapshot (selector tables)"
        );
        let a = group
            .stats()
            .into_iter()
            .find(|s| s.id().as_str() == "a")
            .unwrap();
        assert!(a.in_flight() >= 1, "the streaming request still counts");
        drop((streaming, second));
        assert_eq!(group.stats().iter().map(|s| s.in_flight()).sum::<u32>(), 0);
    }

    /// An affinity's position hint only saves the lookup by id: a hint past the end, at
    /// another target, or one the group's changes made stale still lands on the target named.
    #[tokio::test]
    async fn a_wrong_or_stale_position_hint_still_lands_on_the_named_target() {
        let group = TargetGroup::builder("g")
            .targets(["a", "b", "c"].map(|id| Target::new(id, "127.0.0.1:1").unwrap()))
            .build()
            .unwrap();
        let balance = Balance::new(group.clone(), |t: &Target| {
            let id = t.id().clone();
            tower::service_fn(move |_r: Request<()>| {
                ready(Ok::<_, Infallible>(Response::new(id.to_string())))
            })
        });
        let send = |affinity: Affinity| {
            let mut req = Request::new(());
            req.extensions_mut().insert(affinity);
            balance.clone().oneshot(req)
        };
        for (hint, expect) in [(1, "b"), (0, "b"), (2, "b"), (7, "b"), (2, "c")] {
            let affinity = Affinity::in_group_at("g".into(), expect.into(), hint);
            let rsp = send(affinity).await.unwrap();
            assert_eq!(rsp.body().get_ref(), expect, "hint {hint}");
        }
        // "b" moves to position 2 when "a0" joins: its old hint is stale.
        group.insert(Target::new("a0", "127.0.0.1:1").unwrap());
        for _ in 0..5 {
            let rsp = send(Affinity::in_group_at("g".into(), "b".into(), 1))
                .await
                .unwrap();
            assert_eq!(rsp.body().get_ref(), "b");
        }
    }
}
