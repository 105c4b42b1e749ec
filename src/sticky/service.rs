use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::StickyLayer;
use super::future::ResponseFuture;
use super::layer::Table;
use crate::balance::WantServedBy;

/// Turns a valid affinity token on a request into an [`Affinity`](crate::balance::Affinity)
/// extension, and sets a fresh token on responses that need one. See the [module docs](super).
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::balance::Balance;
/// use tower_lb::sticky::{Sticky, StickyLayer};
/// use tower_lb::{Target, TargetGroup};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let group = TargetGroup::builder("api")
///     .target(Target::new("a", "127.0.0.1:8080")?)
///     .target(Target::new("b", "127.0.0.1:8081")?)
///     .build()?;
/// let balance = Balance::new(group.clone(), |t: &Target| {
///     let id = t.id().to_string();
///     service_fn(move |_r: Request<()>| {
///         let id = id.clone();
///         async move { Ok::<_, Infallible>(Response::new(id)) }
///     })
/// });
/// let layer = StickyLayer::cookie("SERVERID").group(&group).key([9; 32]).build()?;
/// let svc = Sticky::new(balance, layer);
///
/// // The first response names its target in a cookie ...
/// let first = svc.clone().oneshot(Request::new(())).await?;
/// let set = first.headers()["set-cookie"].to_str()?;
/// let pair = set.split(';').next().unwrap().to_string();
/// // ... and every request that sends it back lands there.
/// for _ in 0..4 {
///     let req = Request::builder().header("cookie", &pair).body(())?;
///     let rsp = svc.clone().oneshot(req).await?;
///     assert_eq!(rsp.body().get_ref(), first.body().get_ref());
///     assert!(rsp.headers().get("set-cookie").is_none(), "no need to set it again");
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Sticky<S> {
    inner: S,
    layer: StickyLayer,
    /// The layer's tag table as of this service's last request: checked against the layer's
    /// current one by its generation number, so a request reads no shared pointer.
    table: Arc<Table>,
}

impl<S: fmt::Debug> fmt::Debug for Sticky<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sticky")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S> Sticky<S> {
    /// Wraps `inner` (a [`Balance`](crate::balance::Balance), or a stack above one).
    pub fn new(inner: S, layer: StickyLayer) -> Self {
        let table = layer.shared.table();
        Sticky {
            inner,
            layer,
            table,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> Service<Request<B>> for Sticky<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let shared = &self.layer.shared;
        if let Some(newer) = shared.newer_table(&self.table) {
            self.table = newer;
        }
        // With a token, `Balance` tags the response only if it went elsewhere; without one,
        // the response must name its target to get a cookie.
        let hit = match shared.hit(&self.table, &req) {
            Some((hit, affinity)) => {
                req.extensions_mut().insert(affinity);
                Some(hit)
            }
            None => {
                req.extensions_mut().insert(WantServedBy);
                None
            }
        };
        let shared = shared.clone();
        ResponseFuture::new(self.inner.call(req), shared, hit)
    }
}
