use std::convert::Infallible;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{
    BoxError, CircuitOpen, ClientError, ClientErrorKind, RateLimited, find_cause, is_caused_by,
};

/// The status for an error of this crate (or of tower's timeout): `503` when nothing could
/// take the request (no available target, circuit open, overloaded), `429` when rate limited,
/// `400`/`413`/`431` for the client's own fault ([`ClientError`]), `504` on a timeout, `502`
/// for anything else (an upstream failure).
///
/// # Examples
///
/// ```
/// use http::StatusCode;
/// use tower_lb::balance::error::NoAvailableTarget;
/// use tower_lb::upstream::status_for_error;
///
/// assert_eq!(status_for_error(&NoAvailableTarget::new("api")), StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(status_for_error(&std::io::Error::other("reset")), StatusCode::BAD_GATEWAY);
/// ```
pub fn status_for_error(err: &(dyn Error + 'static)) -> StatusCode {
    if is_caused_by::<RateLimited>(err) {
        StatusCode::TOO_MANY_REQUESTS
    } else if crate::classify::is_local_rejection(err) {
        // No available target, an open breaker, overload: the list lives in `classify`.
        StatusCode::SERVICE_UNAVAILABLE
    } else if let Some(c) = find_cause::<ClientError>(err) {
        match c.kind() {
            ClientErrorKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ClientErrorKind::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    } else if is_caused_by::<tower::timeout::error::Elapsed>(err) {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    }
}

/// A short response for `err`: the status from [`status_for_error`], a fixed one-line body,
/// and `Retry-After` (whole seconds) when the error says when to come back (rate limited,
/// circuit open).
///
/// The body never contains the error's text, which may name a backend address.
///
/// # Examples
///
/// ```
/// use tower_lb::balance::error::NoAvailableTarget;
/// use tower_lb::upstream::{error_response, ResponseBody};
///
/// let rsp = error_response::<ResponseBody<String>>(&NoAvailableTarget::new("api"));
/// assert_eq!(rsp.status(), 503);
/// ```
pub fn error_response<B>(err: &(dyn Error + 'static)) -> Response<ResponseBody<B>> {
    let status = status_for_error(err);
    let text: &'static str = match status {
        StatusCode::SERVICE_UNAVAILABLE => "service unavailable\n",
        StatusCode::GATEWAY_TIMEOUT => "gateway timeout\n",
        StatusCode::TOO_MANY_REQUESTS => "too many requests\n",
        StatusCode::BAD_REQUEST => "bad request\n",
        StatusCode::PAYLOAD_TOO_LARGE => "payload too large\n",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "request header fields too large\n",
        _ => "bad gateway\n",
    };
    tracing::debug!(%status, error = %err, "error mapped to a response");
    let mut rsp = Response::new(ResponseBody::full(Bytes::from_static(text.as_bytes())));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let retry_after = match find_cause::<RateLimited>(err) {
        Some(r) => Some(r.retry_after_secs()),
        None => find_cause::<CircuitOpen>(err)
            .and_then(|c| c.retry_after())
            .map(|d| RateLimited::new(d).retry_after_secs()),
    };
    if let Some(secs) = retry_after {
        rsp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    rsp
}

pin_project! {
    /// A response body that is either the inner service's body or a short error message.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    /// Wraps the inner service's body.
    pub fn new(body: B) -> Self {
        ResponseBody {
            kind: Kind::Inner { body },
        }
    }

    /// A body holding `data`.
    pub fn full(data: Bytes) -> Self {
        ResponseBody {
            kind: Kind::Full {
                data: Some(data).filter(|d| !d.is_empty()),
            },
        }
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { .. } => f.write_str("ResponseBody::Inner"),
            Kind::Full { data } => f.debug_tuple("ResponseBody::Full").field(data).finish(),
        }
    }
}

impl<B: Body<Data = Bytes>> Body for ResponseBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// Turns every error of the wrapped service into a response (see [`error_response`]), so the
/// stack's error type becomes [`Infallible`], as `axum::Router::route_service` requires.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_lb::balance::Balance;
/// use tower_lb::upstream::ErrorResponseLayer;
/// use tower_lb::{Target, TargetGroup};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let empty = TargetGroup::new("api");
/// let balance = Balance::new(empty, |_t: &Target| {
///     service_fn(|_r: Request<String>| async { Ok::<_, Infallible>(Response::new(String::new())) })
/// });
/// let svc = ServiceBuilder::new().layer(ErrorResponseLayer::new()).service(balance);
/// let rsp: Response<_> = svc.oneshot(Request::new(String::new())).await.unwrap();
/// assert_eq!(rsp.status(), 503);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ErrorResponseLayer {
    _p: (),
}

impl ErrorResponseLayer {
    /// The layer.
    pub fn new() -> Self {
        ErrorResponseLayer { _p: () }
    }
}

impl<S> Layer<S> for ErrorResponseLayer {
    type Service = ErrorResponse<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorResponse::new(inner)
    }
}

/// Maps errors to responses; see [`ErrorResponseLayer`].
#[derive(Debug)]
pub struct ErrorResponse<S> {
    inner: S,
    ready_error: Option<BoxError>,
}

impl<S: Clone> Clone for ErrorResponse<S> {
    fn clone(&self) -> Self {
        ErrorResponse {
            inner: self.inner.clone(),
            ready_error: None,
        }
    }
}

impl<S> ErrorResponse<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        ErrorResponse {
            inner,
            ready_error: None,
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

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Constructors that need no type annotation: the wrapped service is not known yet.
impl ErrorResponse<()> {
    /// A [`ErrorResponseLayer`].
    pub fn layer() -> ErrorResponseLayer {
        ErrorResponseLayer::new()
    }
}

impl<S, Req, B> Service<Req> for ErrorResponse<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<B>>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ready_error.is_none() {
            if let Err(e) = ready!(self.inner.poll_ready(cx)) {
                // Answer the next call with this error instead of failing the stack.
                self.ready_error = Some(e.into());
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.ready_error.take() {
            Some(e) => ResponseFuture {
                state: State::Ready {
                    error: Some(e),
                    _body: std::marker::PhantomData,
                },
            },
            None => ResponseFuture {
                state: State::Inner {
                    fut: self.inner.call(req),
                },
            },
        }
    }
}

pin_project! {
    /// The future of [`ErrorResponse`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Inner { #[pin] fut: F },
        // The error, answered when polled: an inline response would make every request's
        // future (and each layer's above it) larger.
        Ready { error: Option<BoxError>, _body: std::marker::PhantomData<fn() -> B> },
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { fut } => Poll::Ready(Ok(match ready!(fut.poll(cx)) {
                Ok(rsp) => rsp.map(ResponseBody::new),
                Err(e) => {
                    let e: BoxError = e.into();
                    error_response(&*e)
                }
            })),
            StateProj::Ready { error, .. } => Poll::Ready(Ok(match error.take() {
                Some(e) => error_response(&*e),
                None => error_response(&std::io::Error::other("polled after completion")),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::error::{NoAvailableTarget, Overloaded};

    #[test]
    fn every_rejection_maps_to_its_status() {
        let cases: Vec<(BoxError, u16, Option<&str>)> = vec![
            (Box::new(NoAvailableTarget::new("g")), 503, None),
            (
                Box::new(CircuitOpen::new("g", Some(Duration::from_millis(2500)))),
                503,
                Some("3"),
            ),
            (Box::new(CircuitOpen::new("g", None)), 503, None),
            (Box::new(Overloaded::new(false)), 503, None),
            (
                Box::new(RateLimited::new(Duration::from_millis(10))),
                429,
                Some("1"),
            ),
            (Box::new(tower::timeout::error::Elapsed::new()), 504, None),
            (
                Box::new(ClientError::from_kind(ClientErrorKind::BodyAborted)),
                400,
                None,
            ),
            (
                Box::new(ClientError::new(
                    ClientErrorKind::InvalidRequest,
                    "scheme ftp to 10.1.2.3:80",
                )),
                400,
                None,
            ),
            (
                Box::new(ClientError::from_kind(ClientErrorKind::BodyTooLarge)),
                413,
                None,
            ),
            (
                Box::new(ClientError::from_kind(ClientErrorKind::HeadersTooLarge)),
                431,
                None,
            ),
            (
                Box::new(crate::error::ConnectFailed::new(std::io::Error::other(
                    "connect 10.1.2.3:80 refused",
                ))),
                502,
                None,
            ),
        ];
        for (err, status, retry_after) in cases {
            let rsp = error_response::<()>(&*err);
            assert_eq!(rsp.status().as_u16(), status, "{err}");
            assert_eq!(
                rsp.headers().get(RETRY_AFTER).map(|v| v.to_str().unwrap()),
                retry_after,
                "{err}"
            );
            let body = match &rsp.body().kind {
                Kind::Full { data } => data.clone().unwrap_or_default(),
                Kind::Inner { .. } => unreachable!(),
            };
            assert!(body.len() < 40 && !body.windows(4).any(|w| w == b"10.1"));
        }
    }
}
