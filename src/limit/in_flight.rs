use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::LimitKey;
use super::body::InFlightBody;
use super::error::{InvalidLimit, Overloaded};
use super::future::InFlightLimitFuture;
use super::key::KeyMap;
use crate::error::BoxError;
use crate::util::lock;

const SHARDS: usize = 16;

/// Limits requests in flight, group-wide and per key (nginx `limit_conn`), shedding the
/// excess at once with [`Overloaded`] (`503`) instead of queueing it.
///
/// A request counts from `call` until its response body has ended, failed or been dropped
/// (or, without a response, until its future completes or is dropped): the response's body
/// is an [`InFlightBody`], which holds the request's place, so a large download or an event
/// stream counts for as long as it flows.
/// Per-key counts live in a map that holds only keys with requests in flight, bounded by
/// `max_keys` (default 100 000): when it is full, requests of new keys are shed too.
///
/// # Examples
///
/// ```
/// use tower_lb::limit::{InFlightLimitLayer, LimitKey};
///
/// // At most 1000 requests in flight, at most 10 per client IP.
/// let layer = InFlightLimitLayer::builder()
///     .max_in_flight(1000)
///     .per_key(LimitKey::client_ip(), 10)
///     .build()
///     .unwrap();
/// assert_eq!(layer.in_flight(), 0);
/// ```
#[derive(Clone)]
pub struct InFlightLimitLayer {
    shared: Arc<Shared>,
}

struct Shared {
    max: usize,
    total: AtomicUsize,
    per_key: Option<(LimitKey, u32)>,
    shards: Box<[Mutex<KeyMap<u32>>]>,
    keys: AtomicUsize,
    max_keys: usize,
    /// Requests shed so far.
    shed: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for InFlightLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlightLimitLayer")
            .field("max", &self.shared.max)
            .field("per_key", &self.shared.per_key)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl InFlightLimitLayer {
    /// Group-wide limit of `max` requests in flight, no per-key limit.
    pub fn new(max: usize) -> Self {
        match Self::builder().max_in_flight(max).build() {
            Ok(l) => l,
            Err(_) => unreachable!("a group-wide limit alone is always valid"),
        }
    }

    /// Starts configuring a limit (default: no limit at all).
    pub fn builder() -> InFlightLimitLayerBuilder {
        InFlightLimitLayerBuilder {
            max: usize::MAX,
            per_key: None,
            max_keys: 100_000,
        }
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.shared.total.load(Ordering::Relaxed)
    }

    /// Requests shed so far (refused with [`Overloaded`]).
    ///
    /// ```
    /// use tower_lb::limit::InFlightLimitLayer;
    ///
    /// assert_eq!(InFlightLimitLayer::new(10).shed(), 0);
    /// ```
    pub fn shed(&self) -> u64 {
        self.shared.shed.load(Ordering::Relaxed)
    }

    /// Keys with requests in flight now.
    pub fn tracked_keys(&self) -> usize {
        self.shared.shards.iter().map(|s| lock(s).len()).sum()
    }
}

/// Configures an [`InFlightLimitLayer`].
#[derive(Debug)]
#[must_use]
pub struct InFlightLimitLayerBuilder {
    max: usize,
    per_key: Option<(LimitKey, u32)>,
    max_keys: usize,
}

impl InFlightLimitLayerBuilder {
    /// At most `max` requests in flight through every service of this layer.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// At most `max` requests in flight per key.
    pub fn per_key(mut self, key: LimitKey, max: u32) -> Self {
        self.per_key = Some((key, max));
        self
    }

    /// The most keys tracked at once (default 100 000).
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }

    /// Validates and builds the layer.
    pub fn build(self) -> Result<InFlightLimitLayer, InvalidLimit> {
        if self.max_keys == 0 {
            return Err(InvalidLimit::new("max keys must be at least 1"));
        }
        let shards = SHARDS.min(self.max_keys);
        Ok(InFlightLimitLayer {
            shared: Arc::new(Shared {
                max: self.max,
                total: AtomicUsize::new(0),
                per_key: self.per_key,
                shards: (0..shards).map(|_| Mutex::new(KeyMap::default())).collect(),
                keys: AtomicUsize::new(0),
                max_keys: self.max_keys,
                shed: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }
}

/// Counts one request in flight (and its key's share) while alive.
pub(crate) struct Permit {
    shared: Arc<Shared>,
    key: Option<u64>,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Permit")
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shared.total.fetch_sub(1, Ordering::Release);
        if let Some(k) = self.key {
            let mut map = lock(self.shared.shard(k));
            if let Some(n) = map.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&k);
                    self.shared.keys.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }
}

impl Shared {
    fn shard(&self, key: u64) -> &Mutex<KeyMap<u32>> {
        &self.shards[(key >> 48) as usize % self.shards.len()]
    }

    fn acquire<B>(self: &Arc<Self>, req: &Request<B>) -> Result<Permit, Overloaded> {
        let r = self.try_acquire(req);
        if r.is_err() {
            self.shed.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    #[inline]
    fn try_acquire<B>(self: &Arc<Self>, req: &Request<B>) -> Result<Permit, Overloaded> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.total.fetch_sub(1, Ordering::Release);
            return Err(Overloaded::new(false));
        }
        // From here the permit's drop undoes the count.
        let mut permit = Permit {
            shared: self.clone(),
            key: None,
        };
        if let Some((key, max)) = &self.per_key {
            let k = key.key_of(req);
            let mut map = lock(self.shard(k));
            match map.get_mut(&k) {
                Some(n) if *n >= *max => return Err(Overloaded::new(true)),
                Some(n) => *n += 1,
                None if *max == 0 => return Err(Overloaded::new(true)),
                None => {
                    if self.keys.fetch_add(1, Ordering::AcqRel) >= self.max_keys {
                        // Overflow policy: the key map is full, new keys are shed.
                        self.keys.fetch_sub(1, Ordering::AcqRel);
                        return Err(Overloaded::new(true));
                    }
                    map.insert(k, 1);
                }
            }
            permit.key = Some(k);
        }
        Ok(permit)
    }
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;

    fn layer(&self, inner: S) -> InFlightLimit<S> {
        InFlightLimit {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Sheds requests beyond the in-flight limits; built by [`InFlightLimitLayer`].
///
/// Decides in `call`; `Clone + Send + Sync`, clones share the counts. Responses come back as
/// `Response<`[`InFlightBody<B>`]`>`: the request counts until that body ends or is dropped.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
/// use tower_lb::error::is_caused_by;
/// use tower_lb::limit::{error::Overloaded, InFlightLimitLayer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let mut svc = ServiceBuilder::new().layer(InFlightLimitLayer::new(1)).service(service_fn(
///     |_r: Request<()>| async { Ok::<_, Infallible>(Response::new(())) },
/// ));
/// let first = svc.ready().await?.call(Request::new(())).await?; // in flight until its body ends
/// let err = svc.ready().await?.call(Request::new(())).await.unwrap_err();
/// assert!(is_caused_by::<Overloaded>(&*err));
/// drop(first);
/// svc.ready().await?.call(Request::new(())).await?;
/// # Ok(()) }
/// ```
pub struct InFlightLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for InFlightLimit<S> {
    fn clone(&self) -> Self {
        InFlightLimit {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for InFlightLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlightLimit")
            .field("inner", &self.inner)
            .field("in_flight", &self.shared.total.load(Ordering::Relaxed))
            .finish()
    }
}

impl<S> InFlightLimit<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> Service<Request<B>> for InFlightLimit<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<InFlightBody<RB>>;
    type Error = BoxError;
    type Future = InFlightLimitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.shared.acquire(&req) {
            Ok(permit) => InFlightLimitFuture::admitted(self.inner.call(req), permit),
            Err(e) => {
                tracing::trace!(per_key = e.is_per_key(), "shed: too many in flight");
                InFlightLimitFuture::refused(Box::new(e))
            }
        }
    }
}
