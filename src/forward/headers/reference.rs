//! The header work as it was before [`Scan`](super::Scan): every name looked up or removed by
//! hash, whether present or not. Slow but plainly correct; the property tests hold the fast
//! version to exactly its results, down to the order of the map's entries.

use std::net::IpAddr;

use bytes::{BufMut, BytesMut};
use http::Version;
use http::header::{
    CONNECTION, CONTENT_LENGTH, HOST, HeaderMap, HeaderName, HeaderValue, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE, VIA,
};

use super::{
    BadFraming, FORWARDED, KEEP_ALIVE, PROXY_CONNECTION, Stripped, Write, X_FORWARDED_FOR,
    X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REAL_IP,
};

/// Through `Display`, the plainest rendering there is.
fn ip_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&ip.to_string()).unwrap()
}

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
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) -> Stripped {
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
    out.te_trailers = headers
        .get_all(TE)
        .iter()
        .flat_map(tokens)
        .any(|t| t.split(|&b| b == b';').next().map(|t| t.trim_ascii()) == Some(b"trailers"));
    headers.remove(TE);
    if upgrade_named {
        out.upgrade = headers.get(UPGRADE).cloned();
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    out
}

/// Checks the framing headers a server parser accepted; an intermediary that forwards
/// ambiguous framing is how requests get smuggled past it.
pub(super) fn check_framing(headers: &HeaderMap) -> Result<(), BadFraming> {
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
pub(super) struct Hop<'a> {
    /// The socket peer, when the server glue told us.
    pub(super) peer: Option<IpAddr>,
    /// Whether the peer is a trusted proxy, whose forwarding headers may be kept.
    pub(super) trusted: bool,
    /// The client's address as resolved through trusted proxies (the peer otherwise).
    pub(super) client: Option<IpAddr>,
    /// `https` or `http`.
    pub(super) proto: &'static str,
    /// The host the client asked for (`Host`, or the HTTP/2 authority).
    pub(super) host: Option<&'a HeaderValue>,
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
pub(super) fn write_forwarding(
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
pub(super) fn append_via(headers: &mut HeaderMap, version: Version, pseudonym: &HeaderValue) {
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
pub(super) fn client_host(headers: &mut HeaderMap, uri: &http::Uri) -> Option<HeaderValue> {
    if let Some(h) = headers.get(HOST) {
        return Some(h.clone());
    }
    let h = HeaderValue::from_str(uri.authority()?.as_str()).ok()?;
    headers.insert(HOST, h.clone());
    Some(h)
}
