//! The facade's routing step: the [`Router`] while rules are set, and a direct call to the
//! default pool while none are (most load balancers), so that a facade without rules costs
//! what the same layers composed by hand cost.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::http::ResponseBody;
use crate::route::{EscapedSlashes, Router, normalize_path};

/// The routing step of a [`LoadBalancer`](super::LoadBalancer)'s stack: with no rules set,
/// a request whose path is already in normal form goes straight to the default pool; any
/// other request goes through the [`Router`] (which normalizes or refuses its path, and
/// applies the rules). Both answer alike: the router, without rules, sends every request
/// with a normal path to the default pool unchanged.
pub struct Routes<S> {
    router: Router<S>,
    direct: S,
    /// Whether any rule is set; written only under the facade's rules lock, after the
    /// router's rules change.
    rules: Arc<AtomicBool>,
}

impl<S: Clone> Clone for Routes<S> {
    fn clone(&self) -> Self {
        Routes {
            router: self.router.clone(),
            direct: self.direct.clone(),
            rules: self.rules.clone(),
        }
    }
}

impl<S> fmt::Debug for Routes<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routes")
            .field("router", &self.router)
            .field("rules", &self.rules.load(Ordering::Relaxed))
            .finish()
    }
}

impl<S> Routes<S> {
    /// `direct` is the router's fallback destination (the default pool's service).
    pub(crate) fn new(router: Router<S>, direct: S, rules: Arc<AtomicBool>) -> Self {
        Routes {
            router,
            direct,
            rules,
        }
    }
}

impl<S, B, RB> Service<Request<B>> for Routes<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = S::Error;
    type Future = RoutesFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The router is always ready; the direct path needs the default pool ready.
        self.direct.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let plain = !self.rules.load(Ordering::Acquire)
            && matches!(
                normalize_path(req.uri().path(), EscapedSlashes::default()),
                Ok(Cow::Borrowed(_))
            );
        let inner = if plain {
            Inner::Direct {
                fut: self.direct.call(req),
            }
        } else {
            Inner::Routed {
                fut: self.router.call(req),
            }
        };
        RoutesFuture { inner }
    }
}

pin_project! {
    /// The response future of [`Routes`].
    pub struct RoutesFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        inner: Inner<S, B>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<S, B>
    where
        S: Service<Request<B>>,
    {
        // Sent straight to the default pool.
        Direct { #[pin] fut: S::Future },
        // Sent through the router.
        Routed { #[pin] fut: crate::route::ResponseFuture<S, B> },
    }
}

impl<S, B> fmt::Debug for RoutesFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = match &self.inner {
            Inner::Direct { .. } => "direct",
            Inner::Routed { .. } => "routed",
        };
        f.debug_struct("RoutesFuture").field("path", &path).finish()
    }
}

impl<S, B, RB> Future for RoutesFuture<S, B>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Output = Result<Response<ResponseBody<RB>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.project() {
            InnerProj::Direct { fut } => fut
                .poll(cx)
                .map(|r| r.map(|rsp| rsp.map(ResponseBody::new))),
            InnerProj::Routed { fut } => fut.poll(cx),
        }
    }
}
