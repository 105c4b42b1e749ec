use std::net::SocketAddr;
use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use super::ClientIpResolver;
use crate::key::ClientAddr;

/// Sets the client-address extensions of every request: [`ClientAddr`] (the socket peer) and
/// [`ClientIp`](crate::key::ClientIp) (the client resolved through trusted proxies).
///
/// The peer comes from, in order: [`peer`](Self::peer) (one layer per accepted hyper
/// connection), an existing [`ClientAddr`] extension, or (feature `axum`) axum's
/// `ConnectInfo<SocketAddr>`. A request with no known peer passes through unchanged.
///
/// # Examples
///
/// Per accepted connection with hyper (`serve_connection(io, svc)`):
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_lb::client_ip::{ClientIpLayer, ClientIpResolver, TrustedProxies};
/// use tower_lb::key::ClientIp;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let layer = ClientIpLayer::new(ClientIpResolver::new(TrustedProxies::loopback()));
/// let app = service_fn(|req: Request<()>| async move {
///     let client = req.extensions().get::<ClientIp>().unwrap().ip();
///     Ok::<_, Infallible>(Response::new(client.to_string()))
/// });
/// // let (stream, peer) = listener.accept().await?;
/// let peer = "127.0.0.1:50000".parse()?;
/// let svc = layer.clone().peer(peer).layer(app);
/// let req = Request::builder().header("x-forwarded-for", "203.0.113.7").body(())?;
/// assert_eq!(svc.oneshot(req).await?.into_body(), "203.0.113.7");
/// # Ok(()) }
/// ```
///
/// With axum (feature `axum`), served by `into_make_service_with_connect_info::<SocketAddr>()`:
///
/// ```no_run
/// use std::net::SocketAddr;
/// use tower_lb::client_ip::{ClientIpLayer, ClientIpResolver, TrustedProxies};
///
/// # async fn run() -> Result<(), tower_lb::BoxError> {
/// let resolver = ClientIpResolver::new(TrustedProxies::new(["10.0.0.0/8"])?);
/// let app = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "hi" }))
///     .layer(ClientIpLayer::new(resolver));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientIpLayer {
    resolver: ClientIpResolver,
    peer: Option<SocketAddr>,
}

impl ClientIpLayer {
    /// A layer resolving with `resolver`.
    pub fn new(resolver: ClientIpResolver) -> Self {
        ClientIpLayer {
            resolver,
            peer: None,
        }
    }

    /// Every request through this layer came from socket `peer` (one layer per connection).
    pub fn peer(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }
}

impl<S> Layer<S> for ClientIpLayer {
    type Service = ClientIpService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientIpService {
            inner,
            resolver: self.resolver.clone(),
            peer: self.peer,
        }
    }
}

/// The service of [`ClientIpLayer`].
#[derive(Debug, Clone)]
pub struct ClientIpService<S> {
    inner: S,
    resolver: ClientIpResolver,
    peer: Option<SocketAddr>,
}

impl<S> ClientIpService<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for ClientIpService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(peer) = self.peer.or_else(|| peer_of(&req)) {
            let client = self.resolver.resolve(peer, req.headers());
            let ext = req.extensions_mut();
            ext.insert(ClientAddr(peer));
            ext.insert(client);
        }
        self.inner.call(req)
    }
}

fn peer_of<B>(req: &Request<B>) -> Option<SocketAddr> {
    if let Some(a) = req.extensions().get::<ClientAddr>() {
        return Some(a.0);
    }
    #[cfg(feature = "axum")]
    if let Some(info) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(info.0);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_ip::TrustedProxies;
    use crate::key::ClientIp;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    fn echo() -> impl Service<
        Request<()>,
        Response = (Option<ClientAddr>, Option<ClientIp>),
        Error = Infallible,
        Future = impl Send,
    > + Clone {
        service_fn(|r: Request<()>| async move {
            let e = r.extensions();
            Ok::<_, Infallible>((e.get::<ClientAddr>().copied(), e.get::<ClientIp>().copied()))
        })
    }

    fn xff(v: &str) -> Request<()> {
        Request::builder()
            .header("x-forwarded-for", v)
            .body(())
            .unwrap()
    }

    #[tokio::test]
    async fn peer_from_connection_or_extension() {
        let layer = ClientIpLayer::new(ClientIpResolver::new(TrustedProxies::loopback()));
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let (addr, ip) = layer
            .clone()
            .peer(peer)
            .layer(echo())
            .oneshot(xff("192.0.2.4"))
            .await
            .unwrap();
        assert_eq!(addr, Some(ClientAddr(peer)));
        assert_eq!(ip.unwrap().ip().to_string(), "192.0.2.4");

        let mut req = xff("192.0.2.4");
        req.extensions_mut()
            .insert(ClientAddr("198.51.100.3:1".parse().unwrap()));
        let (_, ip) = layer.clone().layer(echo()).oneshot(req).await.unwrap();
        let ip = ip.unwrap();
        assert_eq!(ip.ip().to_string(), "198.51.100.3");
        assert!(!ip.peer_trusted());

        // No peer known: nothing set, nothing guessed from the header.
        let (addr, ip) = layer.layer(echo()).oneshot(xff("192.0.2.4")).await.unwrap();
        assert_eq!((addr, ip), (None, None));
    }

    #[cfg(feature = "axum")]
    #[tokio::test]
    async fn peer_from_axum_connect_info() {
        let layer = ClientIpLayer::new(ClientIpResolver::new(TrustedProxies::loopback()));
        let mut req = xff("192.0.2.4");
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let (addr, ip) = layer.layer(echo()).oneshot(req).await.unwrap();
        assert_eq!(addr, Some(ClientAddr(peer)));
        assert_eq!(ip.unwrap().ip().to_string(), "192.0.2.4");
    }
}
