use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::client::legacy::{self, Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::SetTarget;
use crate::balance::MakeTarget;
use crate::error::{BoxError, ClientError, ClientErrorKind, ConnectFailed};

/// How long an idle pooled connection is kept by default: below the 5 s keep-alive of Node.js
/// and Apache httpd, the shortest among common servers.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
use crate::target::Target;

/// A pooled HTTP/1 client (hyper-util) for sending requests to targets.
///
/// One client holds one connection pool for every target; clone it freely. As a
/// [`MakeTarget`] it gives each target a [`SetTarget`] around itself, so
/// `Balance::with_maker(group, HttpClient::new())` sends each request to the picked target's
/// address, keeping path and query.
///
/// # Examples
///
/// ```no_run
/// use tower::ServiceExt;
/// use tower_lb::balance::Balance;
/// use tower_lb::upstream::HttpClient;
/// use tower_lb::{Target, TargetGroup};
///
/// # #[tokio::main] async fn main() -> Result<(), tower_lb::BoxError> {
/// let group = TargetGroup::builder("api").target(Target::new("a", "127.0.0.1:8080")?).build()?;
/// let balance = Balance::with_maker(group, HttpClient::<String>::new());
/// let rsp = balance.oneshot(http::Request::get("/health").body(String::new())?).await?;
/// println!("{}", rsp.status());
/// # Ok(()) }
/// ```
pub struct HttpClient<B> {
    client: Client<HttpConnector, B>,
    preserve_host: bool,
}

impl<B> Clone for HttpClient<B> {
    fn clone(&self) -> Self {
        HttpClient {
            client: self.client.clone(),
            preserve_host: self.preserve_host,
        }
    }
}

impl<B> fmt::Debug for HttpClient<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

impl<B> Default for HttpClient<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    fn default() -> Self {
        HttpClient::new()
    }
}

impl<B> HttpClient<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    /// A client with the default settings: connect timeout 5 s, idle connections kept 4 s
    /// (see [`HttpClientBuilder::pool_idle_timeout`]), `TCP_NODELAY` on.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts configuring a client.
    pub fn builder() -> HttpClientBuilder {
        HttpClientBuilder {
            connect_timeout: Some(Duration::from_secs(5)),
            pool_idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            pool_max_idle_per_host: usize::MAX,
            preserve_host: false,
            #[cfg(feature = "http2")]
            http2_only: false,
        }
    }
}

/// Configures an [`HttpClient`].
#[derive(Debug, Clone)]
#[must_use]
pub struct HttpClientBuilder {
    connect_timeout: Option<Duration>,
    pool_idle_timeout: Option<Duration>,
    pool_max_idle_per_host: usize,
    preserve_host: bool,
    #[cfg(feature = "http2")]
    http2_only: bool,
}

impl HttpClientBuilder {
    /// How long a connection attempt may take (`None`: no limit). A connect failure happens
    /// before anything is sent, so it is always safe to retry.
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        let timeout = timeout.map(crate::util::cap);
        self.connect_timeout = timeout;
        self
    }

    /// How long an idle pooled connection is kept (`None`: forever; default 4 s).
    ///
    /// The default is below the keep-alive timeout of common servers (Node.js and Apache
    /// httpd close idle connections after 5 s, nginx after 75 s): a connection the server is
    /// about to close is dropped here first, so a request is rarely written onto a connection
    /// the server closes at the same moment. Set it below your backends' keep-alive timeout.
    pub fn pool_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        let timeout = timeout.map(crate::util::cap);
        self.pool_idle_timeout = timeout;
        self
    }

    /// The most idle connections kept per target.
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// Keeps the client's `Host` header rather than setting it to the target's address.
    pub fn preserve_host(mut self, preserve: bool) -> Self {
        self.preserve_host = preserve;
        self
    }

    /// Speaks HTTP/2 with prior knowledge (h2c) to every target, multiplexing requests over
    /// one connection per target, instead of HTTP/1.1 (feature `http2`). Targets must accept
    /// cleartext HTTP/2 (gRPC servers do).
    ///
    /// # Examples
    ///
    /// ```
    /// use tower_lb::upstream::HttpClient;
    ///
    /// let grpc = HttpClient::<String>::builder().http2_only(true).build::<String>();
    /// # let _ = grpc;
    /// ```
    #[cfg(feature = "http2")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
    pub fn http2_only(mut self, on: bool) -> Self {
        self.http2_only = on;
        self
    }

    /// Builds the client. Requests are driven on the current Tokio runtime.
    pub fn build<B>(self) -> HttpClient<B>
    where
        B: Body + Send + 'static,
        B::Data: Send,
    {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(self.connect_timeout);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .pool_timer(hyper_util::rt::TokioTimer::new());
        #[cfg(feature = "http2")]
        builder.http2_only(self.http2_only);
        let client = builder.build(connector);
        HttpClient {
            client,
            preserve_host: self.preserve_host,
        }
    }
}

impl<B> Service<Request<B>> for HttpClient<B>
where
    B: Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = HttpClientFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // This client speaks plain HTTP/1 to an address: anything else is the request's fault
        // and must not be reported as a failure to connect to a target.
        let sendable = req.uri().scheme() == Some(&http::uri::Scheme::HTTP)
            && req.uri().authority().is_some_and(|a| !a.host().is_empty());
        if !sendable {
            return HttpClientFuture {
                inner: None,
                refused: Some(Box::new(ClientError::from_kind(
                    ClientErrorKind::InvalidRequest,
                ))),
            };
        }
        HttpClientFuture {
            inner: Some(self.client.request(req)),
            refused: None,
        }
    }
}

impl<B> MakeTarget<SetTarget<HttpClient<B>>> for HttpClient<B>
where
    B: Send + 'static,
{
    fn make_target(&self, target: &Target) -> SetTarget<HttpClient<B>> {
        SetTarget::new(self.clone(), target).preserve_host(self.preserve_host)
    }
}

pin_project! {
    /// The future of [`HttpClient`].
    pub struct HttpClientFuture {
        #[pin]
        inner: Option<legacy::ResponseFuture>,
        refused: Option<BoxError>,
    }
}

impl fmt::Debug for HttpClientFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClientFuture").finish_non_exhaustive()
    }
}

impl Future for HttpClientFuture {
    type Output = Result<Response<Incoming>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            let e = this.refused.take();
            return Poll::Ready(Err(
                e.unwrap_or_else(|| "response future polled after completion".into())
            ));
        };
        inner.poll(cx).map_err(attribute)
    }
}

/// Says whose fault a client error is: a failed connect is the target's (nothing was sent); a
/// request body that failed or ended before its declared length is the client's; anything
/// else (reset, early close, bad response) is the target's.
fn attribute(e: legacy::Error) -> BoxError {
    if e.is_connect() {
        return Box::new(ConnectFailed::new(e));
    }
    let hyper_err = crate::error::find_cause::<hyper::Error>(&e);
    // hyper reports the request body's own error as a user error carrying it as its source,
    // and a body shorter than its `Content-Length` as an aborted body write.
    let client = hyper_err.is_some_and(|h| {
        h.is_body_write_aborted() || (h.is_user() && std::error::Error::source(h).is_some())
    });
    if client {
        Box::new(ClientError::new(ClientErrorKind::BodyAborted, e))
    } else {
        Box::new(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connections_are_dropped_before_common_servers_close_them() {
        let b = HttpClient::<String>::builder();
        // Node.js and Apache httpd close idle keep-alive connections after 5 s.
        assert!(
            b.pool_idle_timeout
                .is_some_and(|d| d < Duration::from_secs(5))
        );
        let b = b.pool_idle_timeout(Some(Duration::MAX));
        assert_eq!(b.pool_idle_timeout, Some(crate::util::FOREVER));
    }
}
