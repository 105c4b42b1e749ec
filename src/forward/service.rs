use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::HOST;
use http::uri::PathAndQuery;
use http::{Extensions, Method, Request, Response, StatusCode, Uri, Version};
use tower_service::Service;

use super::ForwardLayer;
use super::future::ResponseFuture;
use super::headers::{self, Hop};
use super::layer::Config;
use super::upgrade;
use crate::key::{ClientAddr, ClientIp};
use crate::upstream::ResponseBody;

/// Marks a request that arrived over TLS (inserted by the server glue that terminated it).
/// `X-Forwarded-Proto` says `https` for such requests, `http` otherwise.
///
/// # Examples
///
/// ```
/// use tower_lb::forward::ClientTls;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(ClientTls);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientTls;

/// The service of [`ForwardLayer`].
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use std::net::SocketAddr;
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::forward::Forward;
/// use tower_lb::key::ClientAddr;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // A target that echoes the X-Forwarded-For it received.
/// let target = service_fn(|req: http::Request<String>| async move {
///     let mut rsp = http::Response::new(String::new());
///     rsp.headers_mut().insert("seen", req.headers()["x-forwarded-for"].clone());
///     Ok::<_, Infallible>(rsp)
/// });
/// let mut req = http::Request::get("/")
///     .header("x-forwarded-for", "6.6.6.6")
///     .body(String::new())
///     .unwrap();
/// req.extensions_mut().insert(ClientAddr("192.0.2.7:5000".parse::<SocketAddr>().unwrap()));
/// let rsp = Forward::new(target).oneshot(req).await.unwrap();
/// // The peer is not a trusted proxy: its claim is replaced by its own address.
/// assert_eq!(rsp.headers()["seen"], "192.0.2.7");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Forward<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Forward<S> {
    /// Wraps `inner` with the defaults of [`ForwardLayer::new`].
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&ForwardLayer::new(), inner)
    }

    pub(crate) fn from_config(inner: S, config: Arc<Config>) -> Self {
        Forward { inner, config }
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
impl Forward<()> {
    /// A layer configuring this service.
    pub fn layer() -> ForwardLayer {
        ForwardLayer::new()
    }
}

/// Who sent the request: the socket peer, whether it is a trusted proxy, and the client
/// address resolved through trusted proxies.
fn who(ext: &Extensions) -> (Option<IpAddr>, bool, Option<IpAddr>) {
    if let Some(c) = ext.get::<ClientIp>() {
        return (Some(c.peer().ip()), c.peer_trusted(), Some(c.ip()));
    }
    // Without a trusted-proxy resolver ahead of us every peer is untrusted: client-supplied
    // forwarding headers are replaced, never believed.
    let peer = ext.get::<ClientAddr>().map(|a| a.ip().to_canonical());
    (peer, false, peer)
}

/// `uri` in origin form (path and query only).
fn origin_form(uri: Uri) -> Uri {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return uri;
    }
    let pq = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(pq)
}

impl<S, B, RB> Service<Request<B>> for Forward<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Send + 'static,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // One pass over the headers says which of the names below are there at all.
        let mut scan = headers::Scan::of(req.headers());
        if let Err(why) = headers::check_framing(&scan) {
            tracing::debug!(?why, "request with ambiguous framing refused");
            return ResponseFuture::rejected(StatusCode::BAD_REQUEST, "bad request\n");
        }
        if req.method() == Method::CONNECT {
            // A reverse proxy does not open tunnels to where the client says.
            return ResponseFuture::rejected(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed\n",
            );
        }
        let config = &*self.config;
        let mut req = req;
        let version = req.version();
        let may_upgrade = headers::may_upgrade(version, req.method());
        let stripped = headers::strip_hop_by_hop(req.headers_mut(), &mut scan);
        if stripped.te_trailers {
            req.headers_mut()
                .insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        }
        let mut upgrade = None;
        if let Some(proto) = stripped.upgrade.filter(|_| config.upgrades && may_upgrade) {
            if let Some(client) = upgrade::take(req.extensions_mut()) {
                headers::restore_upgrade(req.headers_mut(), &proto);
                upgrade = Some(client);
            }
        }
        let (peer, trusted, client) = who(req.extensions());
        // Only the server glue says whether the connection is TLS; a client's `:scheme` or
        // absolute URI does not.
        let tls = req.extensions().get::<ClientTls>().is_some();
        // The message to the target is a new one on the target client's connection: origin
        // form (a client's scheme or authority never picks how or where it is sent) and the
        // target connection's version.
        let uri = std::mem::take(req.uri_mut());
        let host = headers::client_host(req.headers_mut(), &uri, &mut scan);
        let hop = Hop {
            peer,
            trusted,
            client,
            tls,
            host,
        };
        headers::write_forwarding(req.headers_mut(), hop, &config.write, version, &scan);
        if let Some(h) = &config.host {
            req.headers_mut().insert(HOST, h.clone());
        }
        *req.uri_mut() = origin_form(uri);
        *req.version_mut() = Version::HTTP_11;
        let fut = self.inner.call(req);
        ResponseFuture::forwarding(fut, upgrade, config.write.via.clone())
    }
}
