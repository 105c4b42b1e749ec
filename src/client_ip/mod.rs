//! The client's IP address, believing forwarding headers only from trusted proxies.
//!
//! Everything that keys on the client (hash balancing on [`Key::client_ip`](crate::key::Key),
//! rate and in-flight limits on `LimitKey::client_ip`, routing splits and access control)
//! reads one value: the [`ClientIp`] request extension, falling back to the socket peer's
//! [`ClientAddr`] (see [`client_ip_of`](crate::key::client_ip_of)). This module sets both.
//!
//! Why: behind a load balancer or CDN every request comes from the proxy's address, so the
//! client must be read from `X-Forwarded-For` or `Forwarded`. But those headers are whatever
//! the client sent, plus what each proxy appended; believing them from anyone lets a client
//! pick its own rate-limit bucket, canary side or admin access. So:
//!
//! - by default ([`TrustedProxies::none`]) the client is the socket peer, and headers are
//!   never read;
//! - headers are read only when the peer is inside a configured trusted CIDR, from right to
//!   left, and the first hop that is not a trusted proxy is the client: anything left of it
//!   was written by that untrusted hop and is ignored;
//! - a hop that does not parse ends the walk with the peer, never a guess; ports are dropped
//!   and IPv4-mapped IPv6 is IPv4; at most [`ClientIpResolver::max_hops`] hops are read.
//!
//! [`ClientIpLayer`] is the glue: it takes the peer from axum's `ConnectInfo<SocketAddr>`
//! (feature `axum`), an existing [`ClientAddr`], or a per-connection address given by hyper
//! server code, and sets [`ClientAddr`] and [`ClientIp`].
//!
//! # Contract for forwarding headers
//!
//! A layer that forwards the request to a backend reads [`ClientIp`]:
//! [`ip`](ClientIp::ip) is the client, [`peer`](ClientIp::peer) the socket peer, and
//! [`peer_trusted`](ClientIp::peer_trusted) whether the peer is a trusted proxy. When the
//! peer is trusted, its `X-Forwarded-For`/`Forwarded` may be kept and the peer appended;
//! when it is not, those headers are the client's own words and must be replaced by the peer
//! alone (nginx's `$proxy_add_x_forwarded_for` appends unconditionally, which is the bug this
//! avoids).
//!
//! # Examples
//!
//! ```
//! use http::HeaderMap;
//! use tower_lb::client_ip::{ClientIpResolver, TrustedProxies};
//!
//! let resolver = ClientIpResolver::new(TrustedProxies::new(["10.0.0.0/8", "127.0.0.1/32"])?);
//! let mut headers = HeaderMap::new();
//! // A client forged the first entry; the trusted proxy 10.0.0.9 appended what it saw.
//! headers.insert("x-forwarded-for", "1.1.1.1, 198.51.100.4, 10.0.0.9".parse()?);
//! let client = resolver.resolve("127.0.0.1:4000".parse()?, &headers);
//! assert_eq!(client.ip().to_string(), "198.51.100.4");
//! assert_eq!(client.peer().to_string(), "127.0.0.1:4000");
//! assert!(client.peer_trusted());
//! # Ok::<(), tower_lb::BoxError>(())
//! ```

pub mod error;
mod layer;
mod proxies;
mod resolve;

pub use self::layer::{ClientIpLayer, ClientIpService};
pub use self::proxies::TrustedProxies;
pub(crate) use self::proxies::parse_net;
pub use self::resolve::{ClientIpResolver, MAX_HOPS, Source};
/// Re-exported from [`crate::key`]: the client-address request extensions.
pub use crate::key::{ClientAddr, ClientIp};
