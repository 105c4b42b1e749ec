//! Forwarding: what a reverse proxy must do to a request and its response so that the target
//! sees a correct message and the client cannot steer the proxy.
//!
//! [`ForwardLayer`] goes in front of the balancer, inside the server glue that inserts the
//! peer's [`ClientAddr`](crate::key::ClientAddr) and [`ClientTls`], and inside a
//! [`ClientIpLayer`](crate::client_ip::ClientIpLayer) when requests come through trusted
//! proxies (its [`ClientIp`](crate::key::ClientIp) says whether the peer is trusted):
//!
//! - **Hop-by-hop headers** (`Connection`, `Keep-Alive`, `Proxy-Connection`, `TE`,
//!   `Transfer-Encoding`, `Upgrade`, `Trailer`, `Proxy-Authenticate`, `Proxy-Authorization`)
//!   and every header named in `Connection` are removed both ways (RFC 9110 §7.6.1): they
//!   describe the client's connection, not the message, and forwarding them lets a client
//!   drop headers or confuse the target's framing. `TE: trailers` is kept, because gRPC needs
//!   it to receive trailers.
//! - **Forwarding headers**: `X-Forwarded-For` (the peer appended), `X-Forwarded-Proto`,
//!   `X-Forwarded-Host`, `X-Real-IP`, and optionally `Forwarded` (RFC 7239) and `Via`. A
//!   client's own values are believed only when its peer is a trusted proxy; otherwise they are
//!   replaced, so a client cannot forge its address for the target.
//! - **Framing**: a request with both `Content-Length` and `Transfer-Encoding`, or with more
//!   than one `Content-Length`, gets a `400` and is never sent: a target that reads the framing
//!   differently would see a second, smuggled request.
//! - **Upgrades** (WebSocket and others; feature `hyper`): after the target's `101`, bytes are
//!   relayed both ways, and the target stays counted in flight until both directions close.
//! - **Host**: kept as the client sent it (an HTTP/2 `:authority` becomes `Host`), or set to a
//!   fixed value; the target client then sends it or the target's address.
//!
//! Long guide: `docs/proxy.md` in the repository.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use tower::{service_fn, ServiceExt};
//! use tower_lb::forward::ForwardLayer;
//! use tower::Layer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let target = service_fn(|req: http::Request<String>| async move {
//!     assert!(req.headers().get("connection").is_none());
//!     assert!(req.headers().get("x-session").is_none()); // named in Connection
//!     Ok::<_, Infallible>(http::Response::new(String::new()))
//! });
//! let req = http::Request::get("/")
//!     .header("connection", "keep-alive, x-session")
//!     .header("x-session", "secret")
//!     .body(String::new())
//!     .unwrap();
//! let rsp = ForwardLayer::new().layer(target).oneshot(req).await.unwrap();
//! assert_eq!(rsp.status(), 200);
//! # }
//! ```

pub mod future;
mod headers;
mod layer;
mod service;
#[cfg(feature = "hyper")]
mod upgrade;
#[cfg(not(feature = "hyper"))]
mod upgrade {
    //! Without hyper there is no upgraded connection to relay: upgrades are stripped.
    #[derive(Debug)]
    pub(crate) enum ClientSide {}

    pub(crate) fn take(_: &mut http::Extensions) -> Option<ClientSide> {
        None
    }

    pub(crate) fn relay<B, H>(
        client: ClientSide,
        _: &mut http::Response<B>,
        _: H,
    ) -> Result<(), H> {
        match client {}
    }
}

pub use self::layer::ForwardLayer;
pub use self::service::{ClientTls, Forward};
