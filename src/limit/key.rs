use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderName;
use http::Request;
use siphasher::sip::SipHasher13;

use crate::key::{Key, RequestHead, client_ip_of};

type KeyFn = dyn Fn(&RequestHead<'_>) -> Option<u64> + Send + Sync;

/// What a limit counts requests by.
///
/// Keys are hashed with a per-process random key (SipHash), so clients cannot aim collisions.
/// Requests that have no key (neither a resolved [`ClientIp`](crate::key::ClientIp) nor a
/// [`ClientAddr`](crate::key::ClientAddr) extension, a missing header, a closure that
/// returns `None`) share one bucket, so a missing key never bypasses a limit.
///
/// Why a type apart from [`Key`]: a [`Key`] decides *placement* and must hash the same in every
/// process and release (replicas of a proxy must agree where a key lives), so its hash is seeded
/// and stable; a limit key must not be predictable (a client who can compute it can aim many
/// keys at one bucket), so it is hashed with a per-process random key, and it groups addresses by
/// network prefix. [`LimitKey::request_key`] limits by any [`Key`] under those rules.
///
/// # Examples
///
/// ```
/// use tower_lb::limit::LimitKey;
///
/// let by_ip = LimitKey::client_ip();                  // IPv6 grouped by /64
/// let by_net = LimitKey::client_ip().ipv4_prefix(24).ipv6_prefix(48);
/// let by_token = LimitKey::header(http::HeaderName::from_static("x-api-key"));
/// let by_tenant = LimitKey::custom(|head| {
///     let tenant = head.uri().path().split('/').nth(1)?;
///     Some(tower_lb::key::hash_bytes(0, tenant.as_bytes()))
/// });
/// let by_cookie = LimitKey::request_key(tower_lb::key::Key::cookie("session"));
/// # let _ = (by_ip, by_net, by_token, by_tenant, by_cookie);
/// ```
#[derive(Clone)]
pub struct LimitKey {
    kind: Kind,
    seed: (u64, u64),
}

#[derive(Clone)]
enum Kind {
    Global,
    ClientIp { v4: u8, v6: u8 },
    Header(HeaderName),
    Custom(Arc<KeyFn>),
    Request(Key),
}

impl fmt::Debug for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Global => f.write_str("LimitKey::Global"),
            Kind::ClientIp { v4, v6 } => write!(f, "LimitKey::ClientIp(/{v4}, /{v6})"),
            Kind::Header(h) => write!(f, "LimitKey::Header({h})"),
            Kind::Custom(_) => f.write_str("LimitKey::Custom"),
            Kind::Request(k) => write!(f, "LimitKey::Request({k:?})"),
        }
    }
}

const NO_KEY: u8 = 0xff;

impl LimitKey {
    fn with(kind: Kind) -> Self {
        let s = std::collections::hash_map::RandomState::new();
        LimitKey {
            kind,
            seed: (s.hash_one(1u8), s.hash_one(2u8)),
        }
    }

    /// One key for every request: the limit is global.
    pub fn global() -> Self {
        LimitKey::with(Kind::Global)
    }

    /// The client IP: the resolved [`ClientIp`](crate::key::ClientIp) extension if present,
    /// else the [`ClientAddr`](crate::key::ClientAddr) peer; IPv4 by full address (/32) and IPv6
    /// by /64 (one subscriber's usual allocation) unless set otherwise.
    pub fn client_ip() -> Self {
        LimitKey::with(Kind::ClientIp { v4: 32, v6: 64 })
    }

    /// For a client-IP key: group IPv4 addresses by this prefix length (clamped to 0..=32).
    pub fn ipv4_prefix(mut self, bits: u8) -> Self {
        if let Kind::ClientIp { v4, .. } = &mut self.kind {
            *v4 = bits.min(32);
        }
        self
    }

    /// For a client-IP key: group IPv6 addresses by this prefix length (clamped to 0..=128).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        if let Kind::ClientIp { v6, .. } = &mut self.kind {
            *v6 = bits.min(128);
        }
        self
    }

    /// The value of a request header (e.g. an API key). Never trust a header a client can
    /// forge for anything but partitioning.
    pub fn header(name: HeaderName) -> Self {
        LimitKey::with(Kind::Header(name))
    }

    /// A key computed by `f` from the request head; `None` means no key.
    pub fn custom(f: impl Fn(&RequestHead<'_>) -> Option<u64> + Send + Sync + 'static) -> Self {
        LimitKey::with(Kind::Custom(Arc::new(f)))
    }

    /// Any request [`Key`] (cookie, path, query parameter…), as used by hash-based balancing.
    /// Its client-IP key does not group IPv6 by prefix; [`LimitKey::client_ip`] does.
    pub fn request_key(key: Key) -> Self {
        LimitKey::with(Kind::Request(key))
    }

    /// Whether every request has the same key.
    #[cfg_attr(not(feature = "governor"), allow(dead_code))]
    pub(crate) fn is_global(&self) -> bool {
        matches!(self.kind, Kind::Global)
    }

    /// The hashed key of a request, through `last`: the client address the caller saw last
    /// and its hash, reused while a client-address key does not change (a connection's
    /// requests come from one address; hashing it again per request costs more than the rest
    /// of finding its key).
    #[inline]
    #[cfg_attr(not(feature = "governor"), allow(dead_code))]
    pub(crate) fn key_of_cached<B>(
        &self,
        req: &Request<B>,
        last: &mut Option<(IpAddr, u64)>,
    ) -> u64 {
        let Kind::ClientIp { v4, v6 } = self.kind else {
            return self.key_of(req);
        };
        let Some(ip) = client_ip_of(req.extensions()) else {
            return self.key_of(req);
        };
        match *last {
            Some((seen, hash)) if seen == ip => hash,
            _ => {
                let hash = self.ip_hash(Some(ip), v4, v6);
                *last = Some((ip, hash));
                hash
            }
        }
    }

    /// The hash of a client-address key (`None`: the request has no address).
    fn ip_hash(&self, ip: Option<IpAddr>, v4: u8, v6: u8) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.seed.0, self.seed.1);
        match ip {
            Some(IpAddr::V4(ip)) => {
                h.write_u8(4);
                h.write_u32(u32::from(ip) & mask32(v4));
            }
            Some(IpAddr::V6(ip)) => {
                h.write_u8(6);
                h.write_u128(u128::from(ip) & mask128(v6));
            }
            None => h.write_u8(NO_KEY),
        }
        h.finish()
    }

    /// The hashed key of a request.
    pub(crate) fn key_of<B>(&self, req: &Request<B>) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.seed.0, self.seed.1);
        match &self.kind {
            // One key for everyone: no hashing needed.
            Kind::Global => return self.seed.0,
            Kind::ClientIp { v4, v6 } => {
                return self.ip_hash(client_ip_of(req.extensions()), *v4, *v6);
            }
            Kind::Header(name) => match req.headers().get(name) {
                Some(v) => {
                    h.write_u8(1);
                    h.write(v.as_bytes());
                }
                None => h.write_u8(NO_KEY),
            },
            Kind::Custom(f) => match f(&RequestHead::of(req)) {
                Some(k) => {
                    h.write_u8(2);
                    h.write_u64(k);
                }
                None => h.write_u8(NO_KEY),
            },
            Kind::Request(key) => match key.hash(req) {
                Some(k) => {
                    h.write_u8(3);
                    h.write_u64(k);
                }
                None => h.write_u8(NO_KEY),
            },
        }
        h.finish()
    }
}

fn mask32(bits: u8) -> u32 {
    if bits == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(bits.min(32)))
    }
}

fn mask128(bits: u8) -> u128 {
    if bits == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(bits.min(128)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{ClientAddr, ClientIp};

    fn parts_from(addr: &str) -> Request<()> {
        let mut req = http::Request::new(());
        req.extensions_mut()
            .insert(ClientAddr(addr.parse().unwrap()));
        req
    }

    /// The cached hash is the hash: the same as `key_of` for every request, whether the
    /// address changed since the last one or not.
    #[test]
    fn a_cached_key_is_the_key() {
        let k = LimitKey::client_ip();
        let mut last = None;
        for addr in [
            "192.0.2.1:1",
            "192.0.2.1:2",
            "192.0.2.2:1",
            "[2001:db8::1]:1",
            "[2001:db8::2]:1",
            "192.0.2.1:3",
        ] {
            let req = parts_from(addr);
            assert_eq!(k.key_of_cached(&req, &mut last), k.key_of(&req), "{addr}");
        }
        let none = http::Request::new(());
        assert_eq!(k.key_of_cached(&none, &mut last), k.key_of(&none));
        let header = LimitKey::header(http::HeaderName::from_static("x-key"));
        let mut req = parts_from("192.0.2.1:1");
        req.headers_mut().insert("x-key", "a".parse().unwrap());
        assert_eq!(header.key_of_cached(&req, &mut last), header.key_of(&req));
    }

    #[test]
    fn ipv6_grouped_by_64_ipv4_by_address() {
        let k = LimitKey::client_ip();
        assert_eq!(
            k.key_of(&parts_from("[2001:db8:1:2::1]:1")),
            k.key_of(&parts_from("[2001:db8:1:2:ffff::9]:2"))
        );
        assert_ne!(
            k.key_of(&parts_from("[2001:db8:1:2::1]:1")),
            k.key_of(&parts_from("[2001:db8:1:3::1]:1"))
        );
        assert_eq!(
            k.key_of(&parts_from("10.0.0.1:1")),
            k.key_of(&parts_from("10.0.0.1:2"))
        );
        assert_ne!(
            k.key_of(&parts_from("10.0.0.1:1")),
            k.key_of(&parts_from("10.0.0.2:1"))
        );
        let k24 = LimitKey::client_ip().ipv4_prefix(24);
        assert_eq!(
            k24.key_of(&parts_from("10.0.0.1:1")),
            k24.key_of(&parts_from("10.0.0.2:1"))
        );
        // Mapped IPv4 is IPv4.
        assert_eq!(
            k.key_of(&parts_from("[::ffff:10.0.0.1]:1")),
            k.key_of(&parts_from("10.0.0.1:1"))
        );
    }

    #[test]
    fn resolved_client_ip_wins_over_the_peer() {
        let k = LimitKey::client_ip();
        let mut behind_proxy = parts_from("10.0.0.1:1");
        behind_proxy.extensions_mut().insert(ClientIp::new(
            "192.0.2.7".parse().unwrap(),
            "10.0.0.1:1".parse().unwrap(),
            true,
        ));
        assert_eq!(
            k.key_of(&behind_proxy),
            k.key_of(&parts_from("192.0.2.7:9"))
        );
        assert_ne!(k.key_of(&behind_proxy), k.key_of(&parts_from("10.0.0.1:1")));
    }

    #[test]
    fn missing_key_shares_one_bucket() {
        let k = LimitKey::client_ip();
        let none = http::Request::new(());
        let none2 = http::Request::new(());
        assert_eq!(k.key_of(&none), k.key_of(&none2));
        assert_ne!(k.key_of(&none), k.key_of(&parts_from("10.0.0.1:1")));
    }
}

/// Hashes the already-hashed `u64` keys of the limit maps by taking them as they are.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by hashed limit keys.
pub(crate) type KeyMap<V> =
    std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<KeyHasher>>;
