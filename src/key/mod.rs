//! Request keys for the hashing algorithms.
//!
//! A [`Key`] says which part of a request decides its target under
//! [`HashRing`](crate::algorithm::HashRing) or [`Maglev`](crate::algorithm::Maglev): the client's
//! IP address, a header, a cookie, the path, a query parameter, or a closure. The balancer
//! hashes it once per request (a keyed stable hash of the raw bytes, no allocation) and hands
//! the hash to the selector through [`Context::key`](crate::algorithm::Context::key).
//!
//! A request without the key (no such header, cookie or parameter; neither a [`ClientIp`]
//! nor a [`ClientAddr`] extension) gets no key hash: the hashing algorithms then pick as if at random (weighted by
//! their tables), so it is still served, just not pinned.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{service_fn, ServiceExt};
//! use tower_lb::algorithm::Maglev;
//! use tower_lb::balance::{Balance, ServedBy};
//! use tower_lb::key::Key;
//! use tower_lb::{Target, TargetGroup};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
//! let group = TargetGroup::builder("carts")
//!     .algorithm(Maglev::new())
//!     .targets((0..5).map(|i| Target::new(format!("c{i}"), format!("10.0.0.{i}:80")).unwrap()))
//!     .build()?;
//! let balance = Balance::new(group, |_t: &Target| {
//!     service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) })
//! })
//! .served_by(true)
//! .key(Key::header("x-user-id")?);
//!
//! let served = |rsp: Response<_>| rsp.extensions().get::<ServedBy>().unwrap().target().clone();
//! let req = || Request::builder().header("x-user-id", "alice").body(()).unwrap();
//! let first = served(balance.clone().oneshot(req()).await?);
//! for _ in 0..10 {
//!     assert_eq!(served(balance.clone().oneshot(req()).await?), first);
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::{COOKIE, HeaderName};
use http::{Extensions, HeaderMap, Method, Request, Uri};

use crate::util::stable_hash;

pub mod error;

pub use self::error::InvalidHeaderName;

/// Request extension: the socket address of the client, set by the server glue (for example
/// from axum's `ConnectInfo` or hyper's accepted stream). Read by [`Key::client_ip`].
///
/// # Examples
///
/// ```
/// use tower_lb::key::ClientAddr;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(ClientAddr("192.0.2.7:51000".parse().unwrap()));
/// assert_eq!(req.extensions().get::<ClientAddr>().unwrap().ip().to_string(), "192.0.2.7");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub SocketAddr);

impl ClientAddr {
    /// The client's IP address.
    pub fn ip(&self) -> IpAddr {
        self.0.ip()
    }
}

/// Request extension: the client's IP address as resolved through trusted proxies (set by
/// `client_ip::ClientIpLayer`), with the socket peer it was resolved from and whether that
/// peer is a trusted proxy.
///
/// Client-IP keys ([`Key::client_ip`], `limit::LimitKey::client_ip`), splits and access
/// control read this first and fall back to the raw [`ClientAddr`] peer: see [`client_ip_of`].
/// The address is canonical (an IPv4-mapped IPv6 address is stored as IPv4).
///
/// # Examples
///
/// ```
/// use tower_lb::key::{ClientAddr, ClientIp, client_ip_of};
///
/// let peer = "10.0.0.5:40000".parse().unwrap();
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(ClientAddr(peer));
/// assert_eq!(client_ip_of(req.extensions()), Some("10.0.0.5".parse().unwrap()));
///
/// // A resolver found the client behind the trusted proxy 10.0.0.5:
/// req.extensions_mut().insert(ClientIp::new("203.0.113.9".parse().unwrap(), peer, true));
/// assert_eq!(client_ip_of(req.extensions()), Some("203.0.113.9".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp {
    ip: IpAddr,
    peer: SocketAddr,
    peer_trusted: bool,
}

impl ClientIp {
    /// The client `ip` resolved from `peer`; `peer_trusted` says whether the peer is a trusted
    /// proxy (whose forwarding headers were read). Both addresses are canonicalized.
    pub fn new(ip: IpAddr, peer: SocketAddr, peer_trusted: bool) -> Self {
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        ClientIp {
            ip: ip.to_canonical(),
            peer,
            peer_trusted,
        }
    }

    /// The resolved client address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The socket peer (the last hop, which connected to us).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the socket peer is a trusted proxy. Only then may its forwarding headers be
    /// believed or extended; otherwise they are the client's own words.
    pub fn peer_trusted(&self) -> bool {
        self.peer_trusted
    }
}

/// The client IP a request is keyed on: the resolved [`ClientIp`] if a resolver ran, else the
/// socket peer's [`ClientAddr`], canonicalized (IPv4-mapped IPv6 as IPv4); `None` without
/// either extension.
///
/// ```
/// use tower_lb::key::{ClientAddr, client_ip_of};
///
/// let mut req = http::Request::new(());
/// assert_eq!(client_ip_of(req.extensions()), None);
/// req.extensions_mut().insert(ClientAddr("[::ffff:192.0.2.1]:80".parse().unwrap()));
/// assert_eq!(client_ip_of(req.extensions()), Some("192.0.2.1".parse().unwrap()));
/// ```
pub fn client_ip_of(extensions: &Extensions) -> Option<IpAddr> {
    // The common map, the server's `ClientAddr` alone: one lookup rather than two.
    if extensions.len() == 1 {
        if let Some(addr) = extensions.get::<ClientAddr>() {
            return Some(addr.ip().to_canonical());
        }
    }
    match extensions.get::<ClientIp>() {
        Some(c) => Some(c.ip),
        None => extensions
            .get::<ClientAddr>()
            .map(|a| a.ip().to_canonical()),
    }
}

/// What the closure of [`Key::custom`] sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// The head of `req`.
    pub fn of<B>(req: &'a Request<B>) -> Self {
        RequestHead {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
        }
    }

    /// The request method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The request URI.
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The request headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The request extensions.
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }
}

type CustomFn = dyn Fn(&RequestHead<'_>) -> Option<u64> + Send + Sync;

#[derive(Clone)]
enum Kind {
    ClientIp,
    Header(HeaderName),
    Cookie(Arc<str>),
    Path,
    Query(Arc<str>),
    Custom(Arc<CustomFn>),
}

/// Which part of a request the hashing algorithms hash; see the [module docs](self).
///
/// Cheap to clone. Values are hashed as raw bytes (no percent-decoding, no case folding of
/// values) with a keyed stable hash whose seed is [`seed`](Self::seed) (default 0), so every
/// process with the same seed maps a key to the same hash.
#[derive(Clone)]
pub struct Key {
    kind: Kind,
    seed: u64,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::ClientIp => "client_ip".to_string(),
            Kind::Header(h) => format!("header({h})"),
            Kind::Cookie(c) => format!("cookie({c})"),
            Kind::Path => "path".to_string(),
            Kind::Query(q) => format!("query({q})"),
            Kind::Custom(_) => "custom".to_string(),
        };
        f.debug_struct("Key")
            .field("kind", &kind)
            .field("seed", &self.seed)
            .finish()
    }
}

impl Key {
    fn new(kind: Kind) -> Self {
        Key { kind, seed: 0 }
    }

    /// The client's IP address (port excluded): the resolved [`ClientIp`] if present, else the
    /// [`ClientAddr`] peer (see [`client_ip_of`]).
    ///
    /// ```
    /// use tower_lb::key::{ClientAddr, Key};
    ///
    /// let key = Key::client_ip();
    /// let mut a = http::Request::new(());
    /// a.extensions_mut().insert(ClientAddr("192.0.2.7:1000".parse().unwrap()));
    /// let mut b = http::Request::new(());
    /// b.extensions_mut().insert(ClientAddr("192.0.2.7:2000".parse().unwrap()));
    /// assert_eq!(key.hash(&a), key.hash(&b));
    /// assert_eq!(key.hash(&http::Request::new(())), None);
    /// ```
    pub fn client_ip() -> Self {
        Key::new(Kind::ClientIp)
    }

    /// The first value of header `name`.
    ///
    /// ```
    /// use tower_lb::key::Key;
    ///
    /// let key = Key::header("x-tenant")?;
    /// let req = http::Request::builder().header("x-tenant", "acme").body(())?;
    /// assert!(key.hash(&req).is_some());
    /// assert!(Key::header("bad header").is_err());
    /// # Ok::<(), tower_lb::BoxError>(())
    /// ```
    pub fn header(name: &str) -> Result<Self, InvalidHeaderName> {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| InvalidHeaderName { _p: () })?;
        Ok(Key::new(Kind::Header(name)))
    }

    /// The value of cookie `name` (from any `Cookie` header).
    ///
    /// ```
    /// use tower_lb::key::Key;
    ///
    /// let key = Key::cookie("session");
    /// let a = http::Request::builder().header("cookie", "theme=dark; session=abc").body(())?;
    /// let b = http::Request::builder().header("cookie", "session=abc").body(())?;
    /// assert_eq!(key.hash(&a), key.hash(&b));
    /// assert!(key.hash(&a).is_some());
    /// # Ok::<(), tower_lb::BoxError>(())
    /// ```
    pub fn cookie(name: &str) -> Self {
        Key::new(Kind::Cookie(name.into()))
    }

    /// The request path (without the query).
    pub fn path() -> Self {
        Key::new(Kind::Path)
    }

    /// The value of query parameter `name` (raw, as it appears in the URI).
    ///
    /// ```
    /// use tower_lb::key::Key;
    ///
    /// let key = Key::query("user");
    /// let a = http::Request::get("/x?user=7&y=1").body(())?;
    /// let b = http::Request::get("/z?user=7").body(())?;
    /// assert_eq!(key.hash(&a), key.hash(&b));
    /// assert_eq!(key.hash(&http::Request::get("/x?y=1").body(())?), None);
    /// # Ok::<(), tower_lb::BoxError>(())
    /// ```
    pub fn query(name: &str) -> Self {
        Key::new(Kind::Query(name.into()))
    }

    /// A closure that returns the key hash itself (`None`: no key). Use [`hash_bytes`] to hash
    /// bytes stably.
    ///
    /// ```
    /// use tower_lb::key::{hash_bytes, Key};
    ///
    /// // The first path segment, e.g. the tenant in `/acme/orders`.
    /// let key = Key::custom(|req| {
    ///     let seg = req.uri().path().trim_start_matches('/').split('/').next()?;
    ///     (!seg.is_empty()).then(|| hash_bytes(0, seg.as_bytes()))
    /// });
    /// let a = http::Request::get("/acme/orders").body(())?;
    /// let b = http::Request::get("/acme/users").body(())?;
    /// assert_eq!(key.hash(&a), key.hash(&b));
    /// # Ok::<(), tower_lb::BoxError>(())
    /// ```
    pub fn custom<F>(f: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> Option<u64> + Send + Sync + 'static,
    {
        Key::new(Kind::Custom(Arc::new(f)))
    }

    /// The seed of the key hash (default 0). Ignored by [`Key::custom`].
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The key hash of `req`, or `None` if the request has no such key.
    pub fn hash<B>(&self, req: &Request<B>) -> Option<u64> {
        let h = |bytes: &[u8]| hash_bytes(self.seed, bytes);
        match &self.kind {
            Kind::ClientIp => Some(match client_ip_of(req.extensions())? {
                IpAddr::V4(ip) => h(&ip.octets()),
                IpAddr::V6(ip) => h(&ip.octets()),
            }),
            Kind::Header(name) => req.headers().get(name).map(|v| h(v.as_bytes())),
            Kind::Cookie(name) => req
                .headers()
                .get_all(COOKIE)
                .iter()
                .find_map(|v| cookie_value(v.as_bytes(), name.as_bytes()))
                .map(h),
            Kind::Path => Some(h(req.uri().path().as_bytes())),
            Kind::Query(name) => query_value(req.uri().query()?, name).map(|v| h(v.as_bytes())),
            Kind::Custom(f) => f(&RequestHead::of(req)),
        }
    }
}

/// The stable keyed hash used for request keys: SipHash-1-3 of `bytes` keyed by `seed`; the
/// same in every process and release.
///
/// ```
/// assert_eq!(tower_lb::key::hash_bytes(0, b"alice"), tower_lb::key::hash_bytes(0, b"alice"));
/// assert_ne!(tower_lb::key::hash_bytes(0, b"alice"), tower_lb::key::hash_bytes(1, b"alice"));
/// ```
pub fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    stable_hash(seed, &[bytes])
}

fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (k, v) = (pair[..eq].trim_ascii(), &pair[eq + 1..]);
        let v = v.trim_ascii();
        let v = v
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(v);
        (k == name).then_some(v)
    })
}

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whichever extensions a map holds, alone or together, the resolved `ClientIp` wins over
    /// the peer's `ClientAddr` (the one-extension shortcut included).
    #[test]
    fn the_client_ip_wins_whatever_the_map_holds() {
        let peer: SocketAddr = "[::ffff:192.0.2.1]:80".parse().unwrap();
        let resolved = ClientIp::new("203.0.113.9".parse().unwrap(), peer, true);
        let mut ext = Extensions::new();
        assert_eq!(client_ip_of(&ext), None);
        ext.insert(ClientAddr(peer));
        assert_eq!(client_ip_of(&ext), Some("192.0.2.1".parse().unwrap()));
        ext.insert(resolved);
        assert_eq!(client_ip_of(&ext), Some("203.0.113.9".parse().unwrap()));
        let mut only = Extensions::new();
        only.insert(resolved);
        assert_eq!(client_ip_of(&only), Some("203.0.113.9".parse().unwrap()));
        let mut other = Extensions::new();
        other.insert(7u32);
        assert_eq!(client_ip_of(&other), None);
    }

    #[test]
    fn cookie_parsing() {
        assert_eq!(cookie_value(b"a=1; b=2", b"b"), Some(&b"2"[..]));
        assert_eq!(cookie_value(b"a=1;b=\"x y\"", b"b"), Some(&b"x y"[..]));
        assert_eq!(cookie_value(b"ab=1", b"a"), None);
        assert_eq!(cookie_value(b"junk;;=;a", b"a"), None);
        assert_eq!(cookie_value(b"", b"a"), None);
    }

    #[test]
    fn query_parsing() {
        assert_eq!(query_value("a=1&b=2", "b"), Some("2"));
        assert_eq!(query_value("a&b=", "a"), Some(""));
        assert_eq!(query_value("ab=1", "a"), None);
    }

    #[test]
    fn client_ip_key_prefers_the_resolved_ip() {
        let k = Key::client_ip();
        let req = |peer: &str, resolved: Option<&str>| {
            let mut r = Request::new(());
            r.extensions_mut().insert(ClientAddr(peer.parse().unwrap()));
            if let Some(ip) = resolved {
                let c = ClientIp::new(ip.parse().unwrap(), peer.parse().unwrap(), true);
                r.extensions_mut().insert(c);
            }
            r
        };
        let via_proxy = k.hash(&req("10.0.0.1:1", Some("192.0.2.7")));
        assert_eq!(via_proxy, k.hash(&req("192.0.2.7:5", None)));
        assert_ne!(via_proxy, k.hash(&req("10.0.0.1:1", None)));
        // Mapped IPv4 hashes as IPv4.
        assert_eq!(
            k.hash(&req("[::ffff:192.0.2.7]:5", None)),
            k.hash(&req("192.0.2.7:5", None))
        );
    }

    #[test]
    fn keys_differ_by_value_and_seed() {
        let k = Key::header("x").unwrap();
        let r = |v: &str| Request::builder().header("x", v).body(()).unwrap();
        assert_ne!(k.hash(&r("a")), k.hash(&r("b")));
        assert_ne!(k.hash(&r("a")), k.clone().seed(1).hash(&r("a")));
        assert_eq!(k.hash(&Request::new(())), None);
        assert!(Key::path().hash(&Request::new(())).is_some());
    }
}
