use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::future::ResponseFuture;
use super::state::Shared;
use super::{BreakerEvents, BreakerState, CircuitBreakerLayer};
use crate::error::BoxError;

/// A circuit breaker around a service; built by [`CircuitBreakerLayer`].
///
/// Decides in `call` (never in `poll_ready`, so a refusal fails one request, not the stack):
/// an open circuit fails the request at once with [`CircuitOpen`](super::error::CircuitOpen).
/// `Clone + Send + Sync`; every clone, and every service built by the same layer, shares one
/// state.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_lb::breaker::{BreakerState, CircuitBreakerLayer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let layer = CircuitBreakerLayer::builder("api").build()?;
/// let svc = ServiceBuilder::new()
///     .layer(layer.clone())
///     .service(service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(())) }));
/// svc.oneshot(Request::new(())).await?;
/// assert_eq!(layer.state(), BreakerState::Closed);
/// # Ok(()) }
/// ```
pub struct CircuitBreaker<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for CircuitBreaker<S> {
    fn clone(&self) -> Self {
        CircuitBreaker {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for CircuitBreaker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.shared.settings.name)
            .field("state", &self.shared.state())
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S> CircuitBreaker<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        CircuitBreaker { inner, shared }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.shared.state()
    }

    /// Subscribes to the breaker's state changes (see [`CircuitBreakerLayer::events`]).
    pub fn events(&self) -> BreakerEvents {
        self.shared.subscribe()
    }

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

/// Constructors that need no type annotation: the wrapped service is not known yet.
impl CircuitBreaker<()> {
    /// A builder for a [`CircuitBreakerLayer`] named `name`.
    pub fn layer(name: impl Into<Arc<str>>) -> super::CircuitBreakerLayerBuilder {
        CircuitBreakerLayer::builder(name)
    }
}

impl<S, B, RB> Service<Request<B>> for CircuitBreaker<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.shared.acquire() {
            Ok(permit) => ResponseFuture::admitted(self.inner.call(req), permit),
            Err(open) => {
                tracing::trace!(breaker = %self.shared.settings.name, "refused: circuit open");
                ResponseFuture::refused(open)
            }
        }
    }
}
