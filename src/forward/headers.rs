//! The header work of a forwarding hop: hop-by-hop stripping (RFC 9110 §7.6.1), framing checks
//! against request smuggling, and the `X-Forwarded-*`, `Forwarded` (RFC 7239), `X-Real-IP` and
//! `Via` headers.

use std::net::IpAddr;

use bytes::{BufMut, BytesMut};
use http::header::{
    CONNECTION, CONTENT_LENGTH, HOST, HeaderMap, HeaderName, HeaderValue, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE, VIA,
};
use http::{Method, Version};

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub(crate) const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1, plus the
/// proxy-authentication pair, which is meant for this hop, and the obsolete
/// `Proxy-Connection`).
static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    PROXY_CONNECTION,
    KEEP_ALIVE,
    TE,
    TRANSFER_ENCODING,
    UPGRADE,
    TRAILER,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
];

/// What [`strip_hop_by_hop`] found before removing it.
#[derive(Debug, Default)]
pub(crate) struct Stripped {
    /// `Connection` named `upgrade` and an `Upgrade` header was present: its value.
    pub(crate) upgrade: Option<HeaderValue>,
    /// `TE` listed `trailers` (the one `TE` value a gRPC peer needs passed on).
    pub(crate) te_trailers: bool,
}

fn tokens(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// Removes the headers `value` (a `Connection` line) names, noting `upgrade`.
fn remove_named(headers: &mut HeaderMap, value: &HeaderValue, upgrade_named: &mut bool) {
    for token in tokens(value) {
        if token.eq_ignore_ascii_case(b"upgrade") {
            *upgrade_named = true;
        }
        // Hop-by-hop headers are removed at the end, after `TE` and `Upgrade` are read.
        if HOP_BY_HOP
            .iter()
            .any(|h| h.as_str().as_bytes().eq_ignore_ascii_case(token))
        {
            continue;
        }
        // By `&str`: no allocation, and a token that is no header name finds nothing.
        if let Ok(name) = std::str::from_utf8(token) {
            headers.remove(name);
        }
    }
}

/// Removes every hop-by-hop header and every header that `Connection` names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) -> Stripped {
    let mut out = Stripped::default();
    let mut upgrade_named = false;
    // Take the `Connection` lines out first (the map cannot be borrowed while removing);
    // one line is the common case and needs no list.
    match headers.get_all(CONNECTION).iter().count() {
        0 => {}
        1 => {
            if let Some(value) = headers.remove(CONNECTION) {
                remove_named(headers, &value, &mut upgrade_named);
            }
        }
        _ => {
            let values: Vec<HeaderValue> = headers.get_all(CONNECTION).iter().cloned().collect();
            headers.remove(CONNECTION);
            for value in &values {
                remove_named(headers, value, &mut upgrade_named);
            }
        }
    }
    if let Some(te) = headers.remove(TE) {
        // `remove` returns the first line; a later one may list `trailers` too.
        out.te_trailers = std::iter::once(&te)
            .chain(headers.get_all(TE).iter())
            .flat_map(tokens)
            .any(|t| t.split(|&b| b == b';').next().map(|t| t.trim_ascii()) == Some(b"trailers"));
        headers.remove(TE);
    }
    if upgrade_named {
        out.upgrade = headers.get(UPGRADE).cloned();
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    out
}

/// Why a request's framing is refused (a `400` before anything is sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadFraming {
    /// Both `Content-Length` and `Transfer-Encoding`: two parsers may disagree on where the
    /// body ends (RFC 9112 §6.3 allows rejecting it; a forwarding hop should).
    LengthAndChunked,
    /// More than one `Content-Length` (or a list in one).
    DuplicateLength,
}

/// Checks the framing headers a server parser accepted; an intermediary that forwards
/// ambiguous framing is how requests get smuggled past it.
pub(crate) fn check_framing(headers: &HeaderMap) -> Result<(), BadFraming> {
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    let first = lengths.next();
    if first.is_some() && headers.contains_key(TRANSFER_ENCODING) {
        return Err(BadFraming::LengthAndChunked);
    }
    if lengths.next().is_some() || first.is_some_and(|v| v.as_bytes().contains(&b',')) {
        return Err(BadFraming::DuplicateLength);
    }
    Ok(())
}

/// How the client's hop is described to the target.
#[derive(Debug)]
pub(crate) struct Hop<'a> {
    /// The socket peer, when the server glue told us.
    pub(crate) peer: Option<IpAddr>,
    /// Whether the peer is a trusted proxy, whose forwarding headers may be kept.
    pub(crate) trusted: bool,
    /// The client's address as resolved through trusted proxies (the peer otherwise).
    pub(crate) client: Option<IpAddr>,
    /// `https` or `http`.
    pub(crate) proto: &'static str,
    /// The host the client asked for (`Host`, or the HTTP/2 authority).
    pub(crate) host: Option<&'a HeaderValue>,
}

/// Which forwarding headers to write.
#[derive(Debug, Clone)]
pub(crate) struct Write {
    pub(crate) x_forwarded_for: bool,
    pub(crate) x_forwarded_proto: bool,
    pub(crate) x_forwarded_host: bool,
    pub(crate) x_real_ip: bool,
    pub(crate) forwarded: bool,
    pub(crate) via: Option<HeaderValue>,
}

fn ip_value(ip: IpAddr) -> HeaderValue {
    match ip {
        IpAddr::V4(v4) => {
            // Dotted quad by hand: `to_string` goes through the formatter for each octet.
            let mut buf = [0u8; 15];
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    buf[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    buf[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + octet % 10;
                n += 1;
            }
            HeaderValue::from_bytes(&buf[..n]).unwrap_or(HeaderValue::from_static("unknown"))
        }
        // An IP address's text is always a valid header value.
        IpAddr::V6(_) => {
            HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
        }
    }
}

/// Joins every line of `name` and appends `item`, comma-separated, as one line.
fn append_list(headers: &mut HeaderMap, name: HeaderName, item: &[u8]) {
    if !headers.contains_key(&name) {
        if let Ok(v) = HeaderValue::from_bytes(item) {
            headers.insert(name, v);
        }
        return;
    }
    let mut buf = BytesMut::new();
    for v in headers.get_all(&name) {
        if !buf.is_empty() {
            buf.put_slice(b", ");
        }
        buf.put_slice(v.as_bytes());
    }
    if !buf.is_empty() {
        buf.put_slice(b", ");
    }
    buf.put_slice(item);
    match HeaderValue::from_maybe_shared(buf.freeze()) {
        Ok(v) => {
            headers.insert(name, v);
        }
        // The joined lines were valid header values, so this cannot happen; drop rather
        // than forward something half-checked.
        Err(_) => {
            headers.remove(name);
        }
    }
}

/// An RFC 7239 `forwarded-element` for this hop.
fn forwarded_element(hop: &Hop<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    match hop.peer {
        Some(IpAddr::V4(ip)) => out.extend_from_slice(format!("for={ip}").as_bytes()),
        Some(IpAddr::V6(ip)) => out.extend_from_slice(format!("for=\"[{ip}]\"").as_bytes()),
        None => out.extend_from_slice(b"for=unknown"),
    }
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(hop.proto.as_bytes());
    if let Some(host) = hop.host {
        let h = host.as_bytes();
        // Quoted-string; a host with a quote or backslash is left out rather than escaped.
        if !h
            .iter()
            .any(|&b| b == b'"' || b == b'\\' || b < 0x20 || b == 0x7f)
        {
            out.extend_from_slice(b";host=\"");
            out.extend_from_slice(h);
            out.push(b'"');
        }
    }
    out
}

/// Writes the forwarding headers for `hop`. Client-supplied values are kept (and appended to)
/// only when the peer is trusted; otherwise they are replaced.
pub(crate) fn write_forwarding(
    headers: &mut HeaderMap,
    hop: &Hop<'_>,
    write: &Write,
    version: Version,
) {
    let peer = hop.peer.map(ip_value);
    // Untrusted: `insert` replaces whatever the client sent; a header we do not write is
    // removed. Trusted: kept, and appended to where it is a list.
    let mut set = |name: HeaderName, on: bool, value: Option<HeaderValue>| match value {
        Some(v) if on => {
            headers.insert(name, v);
        }
        _ => {
            if !hop.trusted || !on {
                headers.remove(name);
            }
        }
    };
    if hop.trusted {
        if write.x_forwarded_for {
            if let Some(p) = &peer {
                append_list(headers, X_FORWARDED_FOR, p.as_bytes());
            }
        }
    } else {
        set(X_FORWARDED_FOR, write.x_forwarded_for, peer.clone());
    }
    let keep = |headers: &HeaderMap, name: &HeaderName| hop.trusted && headers.contains_key(name);
    if !keep(headers, &X_FORWARDED_PROTO) {
        let mut set = |name, on, value| {
            if on {
                headers.insert(name, value);
            } else if !hop.trusted {
                headers.remove(name);
            }
        };
        set(
            X_FORWARDED_PROTO,
            write.x_forwarded_proto,
            HeaderValue::from_static(hop.proto),
        );
    }
    if !keep(headers, &X_FORWARDED_HOST) {
        match hop.host {
            Some(host) if write.x_forwarded_host => {
                headers.insert(X_FORWARDED_HOST, host.clone());
            }
            _ => {
                headers.remove(X_FORWARDED_HOST);
            }
        }
    }
    if write.x_real_ip {
        let real = match hop.client {
            Some(c) if Some(c) != hop.peer => Some(ip_value(c)),
            _ => peer,
        };
        match real {
            Some(v) => {
                headers.insert(X_REAL_IP, v);
            }
            None => {
                headers.remove(X_REAL_IP);
            }
        }
    } else if !hop.trusted {
        headers.remove(X_REAL_IP);
    }
    if write.forwarded {
        if !hop.trusted {
            headers.remove(FORWARDED);
        }
        append_list(headers, FORWARDED, &forwarded_element(hop));
    } else if !hop.trusted {
        headers.remove(FORWARDED);
    }
    if let Some(via) = &write.via {
        append_via(headers, version, via);
    }
}

/// Appends `Via: <version> <pseudonym>` for a message received with `version`.
pub(crate) fn append_via(headers: &mut HeaderMap, version: Version, pseudonym: &HeaderValue) {
    let proto: &[u8] = match version {
        Version::HTTP_09 => b"0.9",
        Version::HTTP_10 => b"1.0",
        Version::HTTP_2 => b"2",
        Version::HTTP_3 => b"3",
        _ => b"1.1",
    };
    let mut item = Vec::with_capacity(proto.len() + 1 + pseudonym.len());
    item.extend_from_slice(proto);
    item.push(b' ');
    item.extend_from_slice(pseudonym.as_bytes());
    append_list(headers, VIA, &item);
}

/// The host the client addressed: its `Host`, or the authority of an HTTP/2 request (which
/// then also becomes the `Host` sent on, since HTTP/1.1 targets need one).
pub(crate) fn client_host(headers: &mut HeaderMap, uri: &http::Uri) -> Option<HeaderValue> {
    if let Some(h) = headers.get(HOST) {
        return Some(h.clone());
    }
    let h = HeaderValue::from_str(uri.authority()?.as_str()).ok()?;
    headers.insert(HOST, h.clone());
    Some(h)
}

/// Re-adds what an upgrade needs after stripping: `Connection: upgrade` and `Upgrade`.
pub(crate) fn restore_upgrade(headers: &mut HeaderMap, upgrade: &HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, upgrade.clone());
}

/// Whether a request may ask for an upgrade at all (HTTP/1.1, not `CONNECT`).
pub(crate) fn may_upgrade(version: Version, method: &Method) -> bool {
    version == Version::HTTP_11 && method != Method::CONNECT
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NAMES: [&str; 12] = [
        "connection",
        "keep-alive",
        "te",
        "transfer-encoding",
        "upgrade",
        "trailer",
        "proxy-authorization",
        "x-a",
        "x-b",
        "x-c",
        "authorization",
        "content-type",
    ];

    proptest! {
        #[test]
        fn any_ipv4_is_written_like_display(bits in any::<u32>()) {
            let ip = IpAddr::V4(bits.into());
            let text = ip.to_string();
            prop_assert_eq!(ip_value(ip), text.as_str());
        }

        /// Whatever the mix: no hop-by-hop header and no header named in `Connection` is left,
        /// and every other header keeps all its values in order.
        #[test]
        fn stripping_leaves_exactly_the_end_to_end_headers(
            lines in proptest::collection::vec((0..NAMES.len(), proptest::collection::vec(0..NAMES.len(), 0..3)), 0..12)
        ) {
            let mut h = HeaderMap::new();
            for (name, tokens) in &lines {
                let value = if NAMES[*name] == "connection" {
                    tokens.iter().map(|t| NAMES[*t]).collect::<Vec<_>>().join(" ,")
                } else {
                    format!("v{}", tokens.len())
                };
                h.append(NAMES[*name], HeaderValue::from_str(&value).unwrap());
            }
            let named: Vec<String> = h
                .get_all(CONNECTION)
                .iter()
                .flat_map(|v| v.to_str().unwrap().split(',').map(|t| t.trim().to_owned()).collect::<Vec<_>>())
                .filter(|t| !t.is_empty())
                .collect();
            let before = h.clone();
            strip_hop_by_hop(&mut h);
            for name in NAMES {
                let hop = HOP_BY_HOP.iter().any(|n| n == name) || named.iter().any(|n| n == name);
                if hop {
                    prop_assert!(!h.contains_key(name), "{name} left in {h:?}");
                } else {
                    let a: Vec<_> = before.get_all(name).iter().collect();
                    let b: Vec<_> = h.get_all(name).iter().collect();
                    prop_assert_eq!(a, b);
                }
            }
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret , upgrade"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("upgrade", "websocket"),
            ("te", "trailers, deflate;q=0.5"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("trailer", "grpc-status"),
            ("x-kept", "3"),
        ]);
        let s = strip_hop_by_hop(&mut h);
        assert_eq!(s.upgrade.as_ref().unwrap(), "websocket");
        assert!(s.te_trailers);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-kept"], "3");
    }

    #[test]
    fn upgrade_without_connection_token_is_not_an_upgrade() {
        let mut h = map(&[("upgrade", "websocket"), ("te", "gzip")]);
        let s = strip_hop_by_hop(&mut h);
        assert!(s.upgrade.is_none());
        assert!(!s.te_trailers);
        assert!(h.is_empty());
    }

    #[test]
    fn framing_checks() {
        assert_eq!(check_framing(&map(&[("content-length", "3")])), Ok(()));
        assert_eq!(
            check_framing(&map(&[("transfer-encoding", "chunked")])),
            Ok(())
        );
        assert_eq!(
            check_framing(&map(&[
                ("content-length", "3"),
                ("transfer-encoding", "chunked")
            ])),
            Err(BadFraming::LengthAndChunked)
        );
        assert_eq!(
            check_framing(&map(&[("content-length", "3"), ("content-length", "3")])),
            Err(BadFraming::DuplicateLength)
        );
        assert_eq!(
            check_framing(&map(&[("content-length", "3, 3")])),
            Err(BadFraming::DuplicateLength)
        );
    }

    fn all() -> Write {
        Write {
            x_forwarded_for: true,
            x_forwarded_proto: true,
            x_forwarded_host: true,
            x_real_ip: true,
            forwarded: true,
            via: Some(HeaderValue::from_static("tower-lb")),
        }
    }

    #[test]
    fn untrusted_peer_replaces_client_values() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x-real-ip", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("via", "1.1 upstream"),
        ]);
        let host = HeaderValue::from_static("app.example");
        let hop = Hop {
            peer: Some("192.0.2.1".parse().unwrap()),
            trusted: false,
            client: None,
            proto: "http",
            host: Some(&host),
        };
        write_forwarding(&mut h, &hop, &all(), Version::HTTP_11);
        assert_eq!(h["x-forwarded-for"], "192.0.2.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "app.example");
        assert_eq!(h["x-real-ip"], "192.0.2.1");
        assert_eq!(
            h["forwarded"],
            "for=192.0.2.1;proto=http;host=\"app.example\""
        );
        assert_eq!(h["via"], "1.1 upstream, 1.1 tower-lb");
    }

    #[test]
    fn trusted_peer_appends() {
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "198.51.100.2"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=203.0.113.9"),
        ]);
        let hop = Hop {
            peer: Some("2001:db8::1".parse().unwrap()),
            trusted: true,
            client: Some("203.0.113.9".parse().unwrap()),
            proto: "http",
            host: None,
        };
        write_forwarding(&mut h, &hop, &all(), Version::HTTP_2);
        assert_eq!(
            h["x-forwarded-for"],
            "203.0.113.9, 198.51.100.2, 2001:db8::1"
        );
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-real-ip"], "203.0.113.9");
        assert_eq!(
            h["forwarded"],
            "for=203.0.113.9, for=\"[2001:db8::1]\";proto=http"
        );
        assert_eq!(h["via"], "2 tower-lb");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    }

    #[test]
    fn headers_turned_off_are_still_removed_from_untrusted_clients() {
        let client = [
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x-real-ip", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
        ];
        let none = Write {
            x_forwarded_for: false,
            x_forwarded_proto: false,
            x_forwarded_host: false,
            x_real_ip: false,
            forwarded: false,
            via: None,
        };
        let mut h = map(&client);
        let mut hop = Hop {
            peer: Some("192.0.2.1".parse().unwrap()),
            trusted: false,
            client: None,
            proto: "http",
            host: None,
        };
        write_forwarding(&mut h, &hop, &none, Version::HTTP_11);
        assert!(h.is_empty(), "{h:?}");
        // From a trusted proxy, what it sent passes untouched.
        let mut h = map(&client);
        hop.trusted = true;
        write_forwarding(&mut h, &hop, &none, Version::HTTP_11);
        assert_eq!(h, map(&client));
    }

    #[test]
    fn ipv4_is_written_like_display() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.100.9.255",
            "255.255.255.255",
            "192.0.2.10",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_value(ip), ip.to_string().as_str());
        }
    }

    #[test]
    fn no_peer_known_trusts_nothing_and_adds_no_address() {
        let mut h = map(&[("x-forwarded-for", "6.6.6.6"), ("x-real-ip", "6.6.6.6")]);
        let hop = Hop {
            peer: None,
            trusted: false,
            client: None,
            proto: "https",
            host: None,
        };
        write_forwarding(&mut h, &hop, &all(), Version::HTTP_11);
        assert!(h.get("x-forwarded-for").is_none());
        assert!(h.get("x-real-ip").is_none());
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn quotes_in_host_are_left_out_of_forwarded() {
        let host = HeaderValue::from_static("a\"b");
        let hop = Hop {
            peer: Some("192.0.2.1".parse().unwrap()),
            trusted: false,
            client: None,
            proto: "http",
            host: Some(&host),
        };
        assert_eq!(forwarded_element(&hop), b"for=192.0.2.1;proto=http");
    }

    #[test]
    fn h2_authority_becomes_host() {
        let mut h = HeaderMap::new();
        let uri: http::Uri = "https://app.example:8443/x".parse().unwrap();
        assert_eq!(client_host(&mut h, &uri).unwrap(), "app.example:8443");
        assert_eq!(h[HOST], "app.example:8443");
    }
}
