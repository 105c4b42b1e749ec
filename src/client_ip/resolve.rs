use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::header::{FORWARDED, HeaderName};
use http::{HeaderMap, Request};

use super::TrustedProxies;
use crate::key::{ClientAddr, ClientIp};

/// The most hops [`ClientIpResolver::max_hops`] accepts.
pub const MAX_HOPS: usize = 64;

/// Which header a trusted proxy reports the client in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the default). Several header lines are one
    /// list, in order.
    XForwardedFor,
    /// `Forwarded: for=client;proto=https, for="[2001:db8::1]:443"` (RFC 7239), the `for`
    /// parameter of each element.
    Forwarded,
    /// One header holding one address, set by the trusted proxy (nginx's `X-Real-IP`). More
    /// than one line of it is ambiguous and ignored.
    Single(HeaderName),
}

impl Source {
    /// nginx's `X-Real-IP` header.
    pub fn x_real_ip() -> Self {
        Source::Single(HeaderName::from_static("x-real-ip"))
    }
}

/// Resolves the client IP of a request: the socket peer, unless the peer is a
/// [trusted proxy](TrustedProxies); then the forwarding header is read from right to left and
/// the first hop that is not itself a trusted proxy is the client.
///
/// - A hop that does not parse (`unknown`, an obfuscated `_node`, garbage, a `Forwarded`
///   element without `for`) ends the walk: the result is the peer, never a guess.
/// - Ports (`192.0.2.1:4711`, `[2001:db8::1]:443`) are dropped and IPv4-mapped IPv6 is
///   taken as IPv4, so one client has one address whatever the proxy wrote.
/// - At most [`max_hops`](Self::max_hops) hops (default 16) are read from the right; if all
///   of them are trusted, the leftmost of them (a trusted proxy) is the result.
/// - If every hop is trusted, the leftmost hop is the client (nginx's `real_ip_recursive`).
///
/// # Examples
///
/// ```
/// use http::HeaderMap;
/// use tower_lb::client_ip::{ClientIpResolver, TrustedProxies};
///
/// let resolver = ClientIpResolver::new(TrustedProxies::new(["10.0.0.0/8"])?);
/// let mut headers = HeaderMap::new();
/// headers.insert("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.0.0.2".parse()?);
///
/// // From a trusted proxy: the first untrusted hop from the right.
/// let c = resolver.resolve("10.0.0.1:5000".parse()?, &headers);
/// assert_eq!(c.ip().to_string(), "203.0.113.9");
/// assert!(c.peer_trusted());
///
/// // From anyone else: the peer, whatever the header says.
/// let c = resolver.resolve("192.0.2.50:5000".parse()?, &headers);
/// assert_eq!(c.ip().to_string(), "192.0.2.50");
/// assert!(!c.peer_trusted());
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientIpResolver {
    trusted: TrustedProxies,
    source: Source,
    max_hops: usize,
}

impl Default for ClientIpResolver {
    fn default() -> Self {
        ClientIpResolver::new(TrustedProxies::none())
    }
}

impl ClientIpResolver {
    /// A resolver trusting `trusted`, reading `X-Forwarded-For`, at most 16 hops.
    pub fn new(trusted: TrustedProxies) -> Self {
        ClientIpResolver {
            trusted,
            source: Source::XForwardedFor,
            max_hops: 16,
        }
    }

    /// Which header trusted proxies report the client in (default `X-Forwarded-For`).
    ///
    /// ```
    /// use http::HeaderMap;
    /// use tower_lb::client_ip::{ClientIpResolver, Source, TrustedProxies};
    ///
    /// let resolver = ClientIpResolver::new(TrustedProxies::loopback()).source(Source::Forwarded);
    /// let mut headers = HeaderMap::new();
    /// headers.insert("forwarded", r#"for="[2001:db8:cafe::17]:4711";proto=https"#.parse()?);
    /// let c = resolver.resolve("127.0.0.1:1".parse()?, &headers);
    /// assert_eq!(c.ip().to_string(), "2001:db8:cafe::17");
    ///
    /// let real_ip = ClientIpResolver::new(TrustedProxies::loopback()).source(Source::x_real_ip());
    /// let mut headers = HeaderMap::new();
    /// headers.insert("x-real-ip", "192.0.2.8".parse()?);
    /// assert_eq!(real_ip.resolve("127.0.0.1:1".parse()?, &headers).ip().to_string(), "192.0.2.8");
    /// # Ok::<(), tower_lb::BoxError>(())
    /// ```
    pub fn source(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    /// Read at most this many hops from the right (clamped to `1..=`[`MAX_HOPS`]).
    pub fn max_hops(mut self, hops: usize) -> Self {
        self.max_hops = hops.clamp(1, MAX_HOPS);
        self
    }

    /// The trusted proxies.
    pub fn trusted(&self) -> &TrustedProxies {
        &self.trusted
    }

    /// The client of a request that came from socket `peer` with `headers`.
    pub fn resolve(&self, peer: SocketAddr, headers: &HeaderMap) -> ClientIp {
        let peer_ip = peer.ip().to_canonical();
        if !self.trusted.contains(peer_ip) {
            return ClientIp::new(peer_ip, peer, false);
        }
        let ip = match &self.source {
            Source::XForwardedFor => {
                self.walk(headers, &HeaderName::from_static("x-forwarded-for"), false)
            }
            Source::Forwarded => self.walk(headers, &FORWARDED, true),
            Source::Single(name) => {
                let mut values = headers.get_all(name).iter();
                match (values.next(), values.next()) {
                    (Some(v), None) => parse_node(v.as_bytes()),
                    _ => None,
                }
            }
        };
        ClientIp::new(ip.unwrap_or(peer_ip), peer, true)
    }

    /// [`resolve`](Self::resolve) with the peer from the request's [`ClientAddr`] extension;
    /// `None` without it.
    ///
    /// ```
    /// use tower_lb::client_ip::{ClientIpResolver, TrustedProxies};
    /// use tower_lb::key::ClientAddr;
    ///
    /// let resolver = ClientIpResolver::new(TrustedProxies::loopback());
    /// let mut req = http::Request::builder().header("x-forwarded-for", "192.0.2.3").body(())?;
    /// assert!(resolver.resolve_request(&req).is_none());
    /// req.extensions_mut().insert(ClientAddr("127.0.0.1:9000".parse()?));
    /// assert_eq!(resolver.resolve_request(&req).unwrap().ip().to_string(), "192.0.2.3");
    /// # Ok::<(), tower_lb::BoxError>(())
    /// ```
    pub fn resolve_request<B>(&self, req: &Request<B>) -> Option<ClientIp> {
        let peer = req.extensions().get::<ClientAddr>()?.0;
        Some(self.resolve(peer, req.headers()))
    }

    /// Walks the hops right to left; `None` means "the peer" (no header, or an unparsable hop).
    fn walk(&self, headers: &HeaderMap, name: &HeaderName, forwarded: bool) -> Option<IpAddr> {
        // The last `max_hops` elements, oldest overwritten first, without allocating; only
        // those are parsed, so a long header costs a scan, not a parse per element.
        let mut ring: [&[u8]; MAX_HOPS] = [&[]; MAX_HOPS];
        let mut n = 0usize;
        for value in headers.get_all(name) {
            for element in split_quoted(value.as_bytes(), b',') {
                if element.trim_ascii().is_empty() {
                    continue; // empty list elements are allowed and mean nothing
                }
                ring[n % self.max_hops] = element;
                n += 1;
            }
        }
        let mut client = None;
        for i in (n.saturating_sub(self.max_hops)..n).rev() {
            let element = ring[i % self.max_hops];
            let ip = if forwarded {
                forwarded_for(element)
            } else {
                parse_node(element)
            }?;
            client = Some(ip);
            if !self.trusted.contains(ip) {
                break;
            }
        }
        client
    }
}

/// Splits `s` on `sep` outside double-quoted strings (with `\` escapes inside them).
fn split_quoted(s: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, &b) in s.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if quoted && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = !quoted;
            } else if b == sep && !quoted {
                rest = Some(&s[i + 1..]);
                return Some(&s[..i]);
            }
        }
        rest = None;
        Some(s)
    })
}

/// The `for` node of one `Forwarded` element (RFC 7239 §4), if it is an address.
fn forwarded_for(element: &[u8]) -> Option<IpAddr> {
    let mut found = None;
    for pair in split_quoted(element, b';') {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        if !pair[..eq].trim_ascii().eq_ignore_ascii_case(b"for") {
            continue;
        }
        if found.is_some() {
            return None; // `for` twice: ambiguous
        }
        let value = pair[eq + 1..].trim_ascii();
        let value = match value.strip_prefix(b"\"") {
            Some(v) => v.strip_suffix(b"\"")?,
            None => value,
        };
        if value.contains(&b'\\') || value.contains(&b'"') {
            return None; // addresses need no escapes
        }
        found = Some(parse_node(value)?);
    }
    found
}

/// One address as proxies write it: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:443`; canonicalized (IPv4-mapped IPv6 as IPv4).
pub(crate) fn parse_node(node: &[u8]) -> Option<IpAddr> {
    let node = std::str::from_utf8(node.trim_ascii()).ok()?;
    if node.len() > 64 {
        return None;
    }
    let ip = if let Some(rest) = node.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        IpAddr::V6(host.parse::<Ipv6Addr>().ok()?)
    } else if let Ok(ip) = node.parse::<IpAddr>() {
        ip
    } else {
        let (host, port) = node.split_once(':')?;
        if !is_port(port) {
            return None;
        }
        IpAddr::V4(host.parse::<Ipv4Addr>().ok()?)
    };
    Some(ip.to_canonical())
}

fn is_port(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 5
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn nodes() {
        assert_eq!(parse_node(b" 192.0.2.1 "), ip("192.0.2.1"));
        assert_eq!(parse_node(b"192.0.2.1:8080"), ip("192.0.2.1"));
        assert_eq!(parse_node(b"2001:db8::1"), ip("2001:db8::1"));
        assert_eq!(parse_node(b"[2001:db8::1]:443"), ip("2001:db8::1"));
        assert_eq!(parse_node(b"[2001:db8::1]"), ip("2001:db8::1"));
        assert_eq!(parse_node(b"::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_eq!(parse_node(b"[::ffff:192.0.2.1]:1"), ip("192.0.2.1"));
        for bad in [
            &b"unknown"[..],
            b"_hidden",
            b"192.0.2.1:99999",
            b"192.0.2.1:",
            b"[2001:db8::1",
            b"[2001:db8::1]x",
            b"[192.0.2.1]",
            b"",
            b"\xff",
            b"192.0.2.1:80:80",
        ] {
            assert_eq!(parse_node(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn forwarded_elements() {
        assert_eq!(
            forwarded_for(b"for=192.0.2.60;proto=http;by=203.0.113.43"),
            ip("192.0.2.60")
        );
        assert_eq!(
            forwarded_for(br#"For="[2001:db8:cafe::17]:4711""#),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(forwarded_for(b"proto=https"), None);
        assert_eq!(forwarded_for(b"for=unknown"), None);
        assert_eq!(forwarded_for(b"for=1.2.3.4;for=5.6.7.8"), None);
        assert_eq!(forwarded_for(br#"for="1.2.3.4"#), None);
    }

    #[test]
    fn quoted_commas_do_not_split() {
        let parts: Vec<_> = split_quoted(br#"for="a,b";x=1, for=c"#, b',').collect();
        assert_eq!(parts, vec![&br#"for="a,b";x=1"#[..], &b" for=c"[..]]);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// One hop as a proxy may have written it: (kind, host byte, written form).
    /// kind 0: trusted 10.0.0.x, 1: untrusted 192.0.2.x, 2: garbage.
    fn hop() -> impl Strategy<Value = (u8, u8, u8)> {
        (0u8..3, any::<u8>(), 0u8..3)
    }

    fn render((kind, b, form): (u8, u8, u8)) -> (String, Option<IpAddr>) {
        let ip: IpAddr = match kind {
            0 => format!("10.0.0.{b}").parse().unwrap(),
            1 => format!("192.0.2.{b}").parse().unwrap(),
            _ => return ("unknown".into(), None),
        };
        let text = match form {
            0 => ip.to_string(),
            1 => format!("{ip}:{}", 1000 + u16::from(b)),
            _ => format!("::ffff:{ip}"),
        };
        (text, Some(ip))
    }

    proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 512,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x7866_6621),
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// The resolved client is the peer, or a hop with only parsable trusted hops to its
        /// right: never an address left of an untrusted (or unparsable) hop. Against a plain
        /// model, over chains split across several header lines and a hop cap.
        #[test]
        fn never_left_of_an_untrusted_hop(
            hops in prop::collection::vec(hop(), 0..24),
            lines in 1usize..4,
            peer_trusted in any::<bool>(),
            cap in 1usize..20,
        ) {
            let trusted = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
            let resolver = ClientIpResolver::new(trusted.clone()).max_hops(cap);
            let rendered: Vec<_> = hops.iter().copied().map(render).collect();
            let mut headers = HeaderMap::new();
            for chunk in rendered.chunks(rendered.len().div_ceil(lines).max(1)) {
                let line = chunk.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(", ");
                headers.append("x-forwarded-for", line.parse().unwrap());
            }
            let peer: SocketAddr = if peer_trusted { "10.9.9.9:1" } else { "198.51.100.1:1" }
                .parse()
                .unwrap();
            let got = resolver.resolve(peer, &headers);
            prop_assert_eq!(got.peer_trusted(), peer_trusted);
            prop_assert_eq!(got.peer(), peer);

            // Model.
            let mut expected = peer.ip();
            if peer_trusted {
                for (_, ip) in rendered.iter().rev().take(cap) {
                    match ip {
                        None => { expected = peer.ip(); break; }
                        Some(ip) => {
                            expected = *ip;
                            if !trusted.contains(*ip) { break; }
                        }
                    }
                }
            }
            prop_assert_eq!(got.ip(), expected);

            // The invariant itself, independent of the model.
            if got.ip() != peer.ip() {
                let j = rendered.iter().rposition(|(_, ip)| *ip == Some(got.ip())).unwrap();
                for (_, right) in &rendered[j + 1..] {
                    prop_assert!(right.is_some_and(|ip| trusted.contains(ip)));
                }
            }
        }

        /// Whatever bytes a header holds, resolution neither panics nor leaves the peer's
        /// network when the peer is untrusted.
        #[test]
        fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let resolver = ClientIpResolver::new(TrustedProxies::new(["0.0.0.0/0"]).unwrap());
            let mut headers = HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_bytes(&bytes) {
                headers.insert("x-forwarded-for", v.clone());
                headers.insert("forwarded", v);
            }
            let peer: SocketAddr = "192.0.2.1:1".parse().unwrap();
            let _ = resolver.resolve(peer, &headers);
            let _ = resolver.clone().source(Source::Forwarded).resolve(peer, &headers);
            let untrusted = ClientIpResolver::default();
            prop_assert_eq!(untrusted.resolve(peer, &headers).ip(), peer.ip());
        }
    }
}

#[cfg(test)]
mod resolver_tests {
    use super::*;

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, v.parse().unwrap());
        }
        h
    }

    fn resolver() -> ClientIpResolver {
        ClientIpResolver::new(TrustedProxies::new(["10.0.0.0/8", "2001:db8:ffff::/48"]).unwrap())
    }

    #[test]
    fn trusted_peer_reads_the_chain_untrusted_peer_does_not() {
        let h = headers("x-forwarded-for", &["6.6.6.6, 203.0.113.1", "10.0.0.3"]);
        let r = resolver();
        assert_eq!(
            r.resolve("10.0.0.1:1".parse().unwrap(), &h)
                .ip()
                .to_string(),
            "203.0.113.1"
        );
        assert_eq!(
            r.resolve("192.0.2.1:1".parse().unwrap(), &h)
                .ip()
                .to_string(),
            "192.0.2.1"
        );
        // A mapped-IPv6 peer inside a trusted IPv4 network is trusted.
        let c = r.resolve("[::ffff:10.0.0.1]:1".parse().unwrap(), &h);
        assert!(c.peer_trusted());
        assert_eq!(c.peer().ip().to_string(), "10.0.0.1");
    }

    #[test]
    fn all_trusted_takes_the_leftmost_and_the_cap_bounds_the_walk() {
        let h = headers("x-forwarded-for", &["10.0.0.7, 10.0.0.8, 10.0.0.9"]);
        let peer = "10.0.0.1:1".parse().unwrap();
        assert_eq!(resolver().resolve(peer, &h).ip().to_string(), "10.0.0.7");
        assert_eq!(
            resolver().max_hops(2).resolve(peer, &h).ip().to_string(),
            "10.0.0.8"
        );
        // A forged client left of the cap is never reached.
        let h = headers("x-forwarded-for", &["203.0.113.66, 10.0.0.8, 10.0.0.9"]);
        assert_eq!(
            resolver().max_hops(2).resolve(peer, &h).ip().to_string(),
            "10.0.0.8"
        );
    }

    #[test]
    fn unparsable_hop_means_the_peer() {
        let peer = "10.0.0.1:1".parse().unwrap();
        for chain in ["203.0.113.1, unknown", "garbage", "203.0.113.1, 10.0.0.2:x"] {
            let h = headers("x-forwarded-for", &[chain]);
            assert_eq!(
                resolver().resolve(peer, &h).ip().to_string(),
                "10.0.0.1",
                "{chain}"
            );
        }
        // Right of the first untrusted hop everything parsed: garbage further left is ignored.
        let h = headers("x-forwarded-for", &["garbage, 203.0.113.1, 10.0.0.2"]);
        assert_eq!(resolver().resolve(peer, &h).ip().to_string(), "203.0.113.1");
        // Empty list elements are skipped.
        let h = headers("x-forwarded-for", &["203.0.113.1,, 10.0.0.2 ,"]);
        assert_eq!(resolver().resolve(peer, &h).ip().to_string(), "203.0.113.1");
    }

    #[test]
    fn forwarded_header() {
        let r = resolver().source(Source::Forwarded);
        let peer = "[2001:db8:ffff::1]:443".parse().unwrap();
        let h = headers(
            "forwarded",
            &[
                r#"for=198.51.100.17;by=x, for="[2001:db8:cafe::17]:4711";proto=https"#,
                "for=10.1.1.1",
            ],
        );
        assert_eq!(r.resolve(peer, &h).ip().to_string(), "2001:db8:cafe::17");
        let h = headers("forwarded", &["for=198.51.100.17, proto=https"]);
        assert_eq!(r.resolve(peer, &h).ip().to_string(), "2001:db8:ffff::1");
        // X-Forwarded-For is not read when Forwarded is the source.
        let h = headers("x-forwarded-for", &["198.51.100.17"]);
        assert_eq!(r.resolve(peer, &h).ip().to_string(), "2001:db8:ffff::1");
    }

    #[test]
    fn single_header() {
        let r = resolver().source(Source::x_real_ip());
        let peer = "10.0.0.1:1".parse().unwrap();
        let h = headers("x-real-ip", &["198.51.100.2:5555"]);
        assert_eq!(r.resolve(peer, &h).ip().to_string(), "198.51.100.2");
        let h = headers("x-real-ip", &["198.51.100.2", "198.51.100.3"]);
        assert_eq!(r.resolve(peer, &h).ip().to_string(), "10.0.0.1");
        let h = headers("x-real-ip", &["198.51.100.2"]);
        assert_eq!(
            r.resolve("192.0.2.1:1".parse().unwrap(), &h)
                .ip()
                .to_string(),
            "192.0.2.1"
        );
    }

    #[test]
    fn bad_cidr_is_a_typed_error() {
        let err = TrustedProxies::new(["10.0.0.0/8", "nope"]).unwrap_err();
        assert_eq!(err.entry(), "nope");
        assert!(
            TrustedProxies::new(["::ffff:10.0.0.0/104"])
                .unwrap()
                .contains("10.2.3.4".parse().unwrap())
        );
        assert!(
            TrustedProxies::new(Vec::<String>::new())
                .unwrap()
                .is_empty()
        );
    }
}
