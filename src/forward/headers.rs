//! The header work of a forwarding hop: hop-by-hop stripping (RFC 9110 §7.6.1), framing checks
//! against request smuggling, and the `X-Forwarded-*`, `Forwarded` (RFC 7239), `X-Real-IP` and
//! `Via` headers.
//!
//! Every message pays for this, and most carry none of the names it acts on: one pass over the
//! map ([`Scan`]) notes which are present, and only those are looked up or removed. A
//! `HeaderMap` lookup hashes the name, so asking for a dozen absent names cost more than the
//! rest of the layer; the pass compares each present name once instead.

use std::cell::RefCell;
use std::net::IpAddr;

use bytes::{BufMut, BytesMut};
use http::header::{
    CONNECTION, HOST, HeaderMap, HeaderName, HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION,
    TE, TRAILER, TRANSFER_ENCODING, UPGRADE, VIA,
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
/// `Proxy-Connection`). Removed in this order; entry `i` is bit `1 << i` of a [`Scan`].
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

// One bit per name a [`Scan`] looks for; the hop-by-hop ones by their place in `HOP_BY_HOP`.
const B_CONNECTION: u32 = 1 << 0;
const B_PROXY_CONNECTION: u32 = 1 << 1;
const B_KEEP_ALIVE: u32 = 1 << 2;
const B_TE: u32 = 1 << 3;
const B_TRANSFER_ENCODING: u32 = 1 << 4;
const B_UPGRADE: u32 = 1 << 5;
const B_TRAILER: u32 = 1 << 6;
const B_PROXY_AUTHENTICATE: u32 = 1 << 7;
const B_PROXY_AUTHORIZATION: u32 = 1 << 8;
const B_HOP_BY_HOP: u32 = (1 << 9) - 1;
const B_X_FORWARDED_FOR: u32 = 1 << 9;
const B_X_FORWARDED_PROTO: u32 = 1 << 10;
const B_X_FORWARDED_HOST: u32 = 1 << 11;
const B_X_REAL_IP: u32 = 1 << 12;
const B_FORWARDED: u32 = 1 << 13;
const B_VIA: u32 = 1 << 14;
const B_HOST: u32 = 1 << 15;
const B_CONTENT_LENGTH: u32 = 1 << 16;

/// The bit of `name`, or 0 for a name this module leaves alone. Header names are lowercase,
/// so this is an exact comparison (a name that merely starts like one of these is not it).
#[inline]
fn bit_of(name: &HeaderName) -> u32 {
    bit_of_bytes(name.as_str().as_bytes())
}

/// [`bit_of`] for a `Connection` token, which may be in any case.
fn bit_of_token(token: &[u8]) -> u32 {
    // The longest name with a bit has 19 bytes; a longer token has none.
    let mut buf = [0u8; 19];
    let Some(lower) = buf.get_mut(..token.len()) else {
        return 0;
    };
    for (l, t) in lower.iter_mut().zip(token) {
        *l = t.to_ascii_lowercase();
    }
    bit_of_bytes(lower)
}

// By length and first byte: most names a message carries are ruled out without comparing
// bytes. Inlined into the per-header loop of `Scan::of`, where a call costs as much as this.
#[inline(always)]
fn bit_of_bytes(s: &[u8]) -> u32 {
    let Some(&first) = s.first() else {
        return 0;
    };
    // Each comparison is against a literal of the arm's length: a few word compares.
    match (s.len(), first) {
        (2, b't') if s == b"te" => B_TE,
        (3, b'v') if s == b"via" => B_VIA,
        (4, b'h') if s == b"host" => B_HOST,
        (7, b'u') if s == b"upgrade" => B_UPGRADE,
        (7, b't') if s == b"trailer" => B_TRAILER,
        (9, b'x') if s == b"x-real-ip" => B_X_REAL_IP,
        (9, b'f') if s == b"forwarded" => B_FORWARDED,
        (10, b'c') if s == b"connection" => B_CONNECTION,
        (10, b'k') if s == b"keep-alive" => B_KEEP_ALIVE,
        (14, b'c') if s == b"content-length" => B_CONTENT_LENGTH,
        (15, b'x') if s == b"x-forwarded-for" => B_X_FORWARDED_FOR,
        (16, b'p') if s == b"proxy-connection" => B_PROXY_CONNECTION,
        (16, b'x') if s == b"x-forwarded-host" => B_X_FORWARDED_HOST,
        (17, b't') if s == b"transfer-encoding" => B_TRANSFER_ENCODING,
        (17, b'x') if s == b"x-forwarded-proto" => B_X_FORWARDED_PROTO,
        (18, b'p') if s == b"proxy-authenticate" => B_PROXY_AUTHENTICATE,
        (19, b'p') if s == b"proxy-authorization" => B_PROXY_AUTHORIZATION,
        _ => 0,
    }
}

/// What one pass over a message's headers found: which of the names this module reads,
/// removes or writes are present, the first `Host` line, and the `Content-Length` lines.
///
/// It describes the map as it was scanned; [`strip_hop_by_hop`] keeps it up to date with what
/// it removes, and [`client_host`] takes the `Host` out of it.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    bits: u32,
    /// The first `Host` line.
    host: Option<HeaderValue>,
    /// How many `Content-Length` lines (counting stops at 2).
    lengths: u8,
    /// A `Content-Length` line holds a list.
    length_list: bool,
}

impl Scan {
    /// Scans `headers` once.
    pub(crate) fn of(headers: &HeaderMap) -> Scan {
        let mut scan = Scan::default();
        for (name, value) in headers {
            let bit = bit_of(name);
            if bit == 0 {
                continue;
            }
            if bit == B_HOST && scan.host.is_none() {
                scan.host = Some(value.clone());
            } else if bit == B_CONTENT_LENGTH {
                scan.lengths = scan.lengths.saturating_add(1).min(2);
                scan.length_list |= value.as_bytes().contains(&b',');
            }
            scan.bits |= bit;
        }
        scan
    }

    fn has(&self, bit: u32) -> bool {
        self.bits & bit != 0
    }

    /// Whether the map holds a `Via` line.
    pub(crate) fn has_via(&self) -> bool {
        self.has(B_VIA)
    }
}

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

/// Removes the headers `value` (a `Connection` line) names, noting `upgrade`; whether it
/// removed one that a [`Scan`] tracks.
fn remove_named(headers: &mut HeaderMap, value: &HeaderValue, upgrade_named: &mut bool) -> bool {
    let mut tracked = false;
    for token in tokens(value) {
        if token.eq_ignore_ascii_case(b"upgrade") {
            *upgrade_named = true;
        }
        let bit = bit_of_token(token);
        // Hop-by-hop headers are removed at the end, after `TE` and `Upgrade` are read.
        if bit & B_HOP_BY_HOP != 0 {
            continue;
        }
        // By `&str`: no allocation, and a token that is no header name finds nothing.
        if let Ok(name) = std::str::from_utf8(token) {
            tracked |= headers.remove(name).is_some() && bit != 0;
        }
    }
    tracked
}

/// Removes every hop-by-hop header and every header that `Connection` names; `scan` (of
/// `headers`) says which are there, and afterwards describes what is left.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, scan: &mut Scan) -> Stripped {
    let mut out = Stripped::default();
    if !scan.has(B_HOP_BY_HOP) {
        // The common case: nothing to strip, and nothing to look up.
        return out;
    }
    let mut upgrade_named = false;
    // Whether `Connection` named a header the scan tracks that was there (and is gone now).
    let mut tracked_removed = false;
    if scan.has(B_CONNECTION) {
        // Take the `Connection` lines out first (the map cannot be borrowed while removing);
        // one line is the common case and needs no list.
        let mut values = headers.get_all(CONNECTION).iter();
        if values.nth(1).is_none() {
            if let Some(value) = headers.remove(CONNECTION) {
                tracked_removed = remove_named(headers, &value, &mut upgrade_named);
            }
        } else {
            let values: Vec<HeaderValue> = headers.get_all(CONNECTION).iter().cloned().collect();
            headers.remove(CONNECTION);
            for value in &values {
                tracked_removed |= remove_named(headers, value, &mut upgrade_named);
            }
        }
    }
    if scan.has(B_TE) {
        // Any line may list `trailers` (`remove` drops them all, so read them first).
        out.te_trailers =
            headers.get_all(TE).iter().flat_map(tokens).any(|t| {
                t.split(|&b| b == b';').next().map(|t| t.trim_ascii()) == Some(b"trailers")
            });
        headers.remove(TE);
    }
    if upgrade_named {
        out.upgrade = headers.get(UPGRADE).cloned();
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        let bit = 1 << i;
        if bit & (B_CONNECTION | B_TE) == 0 && scan.has(bit) {
            headers.remove(name);
        }
    }
    if tracked_removed {
        // `Connection` named `Host`, `Content-Length` or a forwarding header. Rare; look
        // again.
        *scan = Scan::of(headers);
    } else {
        // What `Connection` usually names (`keep-alive`, `close`, a private header) leaves
        // the rest of the scan true.
        scan.bits &= !B_HOP_BY_HOP;
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

/// Checks the framing headers a server parser accepted (as `scan` found them); an
/// intermediary that forwards ambiguous framing is how requests get smuggled past it.
pub(crate) fn check_framing(scan: &Scan) -> Result<(), BadFraming> {
    if scan.lengths == 0 {
        return Ok(());
    }
    if scan.has(B_TRANSFER_ENCODING) {
        return Err(BadFraming::LengthAndChunked);
    }
    if scan.lengths > 1 || scan.length_list {
        return Err(BadFraming::DuplicateLength);
    }
    Ok(())
}

/// How the client's hop is described to the target.
#[derive(Debug, Clone)]
pub(crate) struct Hop {
    /// The socket peer, when the server glue told us.
    pub(crate) peer: Option<IpAddr>,
    /// Whether the peer is a trusted proxy, whose forwarding headers may be kept.
    pub(crate) trusted: bool,
    /// The client's address as resolved through trusted proxies (the peer otherwise).
    pub(crate) client: Option<IpAddr>,
    /// Whether the client's connection is TLS (`https`, else `http`).
    pub(crate) tls: bool,
    /// The host the client asked for (`Host`, or the HTTP/2 authority).
    pub(crate) host: Option<HeaderValue>,
}

impl Hop {
    fn proto(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    fn proto_value(&self) -> HeaderValue {
        // Constants: checked at compile time, not per request.
        const HTTPS: HeaderValue = HeaderValue::from_static("https");
        const HTTP: HeaderValue = HeaderValue::from_static("http");
        if self.tls { HTTPS } else { HTTP }
    }
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

thread_local! {
    /// The last peer address rendered on this thread: a connection's requests come from one
    /// peer, and a clone of its value shares the bytes instead of allocating them again.
    static LAST_PEER: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
}

/// [`ip_value`] of the socket peer, remembered per thread.
fn peer_value(ip: IpAddr) -> HeaderValue {
    let cached = LAST_PEER.try_with(|last| {
        let mut last = last.try_borrow_mut().ok()?;
        match &*last {
            Some((seen, value)) if *seen == ip => Some(value.clone()),
            _ => {
                let value = ip_value(ip);
                *last = Some((ip, value.clone()));
                Some(value)
            }
        }
    });
    // Only while the thread's locals are torn down.
    cached.ok().flatten().unwrap_or_else(|| ip_value(ip))
}

/// Joins every line of `name` (`present`: there are any) and appends `item`,
/// comma-separated, as one line.
fn append_list(headers: &mut HeaderMap, name: HeaderName, present: bool, item: &[u8]) {
    if !present {
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
fn forwarded_element(hop: &Hop) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    match hop.peer {
        Some(IpAddr::V4(ip)) => out.extend_from_slice(format!("for={ip}").as_bytes()),
        Some(IpAddr::V6(ip)) => out.extend_from_slice(format!("for=\"[{ip}]\"").as_bytes()),
        None => out.extend_from_slice(b"for=unknown"),
    }
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(hop.proto().as_bytes());
    if let Some(host) = &hop.host {
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

/// Writes the forwarding headers for `hop` (`scan` says which the client sent). Client-supplied
/// values are kept (and appended to) only when the peer is trusted; otherwise they are
/// replaced, and a header we do not write is removed.
pub(crate) fn write_forwarding(
    headers: &mut HeaderMap,
    hop: Hop,
    write: &Write,
    version: Version,
    scan: &Scan,
) {
    let remove = |headers: &mut HeaderMap, bit: u32, name: HeaderName| {
        if scan.has(bit) {
            headers.remove(name);
        }
    };
    // Room for every name written below, asked for once: the map grows at most once instead
    // of at each insert that finds it full (a map from hyper's parser is sized to the
    // request's own headers).
    headers.reserve(
        usize::from(write.x_forwarded_for)
            + usize::from(write.x_forwarded_proto)
            + usize::from(write.x_forwarded_host)
            + usize::from(write.x_real_ip)
            + usize::from(write.forwarded)
            + usize::from(write.via.is_some()),
    );
    // Built first: it reads the host, which `X-Forwarded-Host` then takes.
    let forwarded = write.forwarded.then(|| forwarded_element(&hop));
    let peer = match hop.peer {
        Some(ip) if write.x_forwarded_for || write.x_real_ip => Some(peer_value(ip)),
        _ => None,
    };
    if write.x_forwarded_for && hop.trusted {
        if let Some(p) = &peer {
            append_list(
                headers,
                X_FORWARDED_FOR,
                scan.has(B_X_FORWARDED_FOR),
                p.as_bytes(),
            );
        }
    } else if !hop.trusted {
        match &peer {
            Some(p) if write.x_forwarded_for => {
                headers.insert(X_FORWARDED_FOR, p.clone());
            }
            _ => remove(headers, B_X_FORWARDED_FOR, X_FORWARDED_FOR),
        }
    }
    // A trusted proxy's own value is kept.
    let keep = |bit| hop.trusted && scan.has(bit);
    if !keep(B_X_FORWARDED_PROTO) {
        if write.x_forwarded_proto {
            headers.insert(X_FORWARDED_PROTO, hop.proto_value());
        } else if !hop.trusted {
            remove(headers, B_X_FORWARDED_PROTO, X_FORWARDED_PROTO);
        }
    }
    if !keep(B_X_FORWARDED_HOST) {
        match hop.host {
            Some(host) if write.x_forwarded_host => {
                headers.insert(X_FORWARDED_HOST, host);
            }
            _ => remove(headers, B_X_FORWARDED_HOST, X_FORWARDED_HOST),
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
            None => remove(headers, B_X_REAL_IP, X_REAL_IP),
        }
    } else if !hop.trusted {
        remove(headers, B_X_REAL_IP, X_REAL_IP);
    }
    if let Some(item) = forwarded {
        if !hop.trusted {
            remove(headers, B_FORWARDED, FORWARDED);
        }
        append_list(
            headers,
            FORWARDED,
            hop.trusted && scan.has(B_FORWARDED),
            &item,
        );
    } else if !hop.trusted {
        remove(headers, B_FORWARDED, FORWARDED);
    }
    if let Some(via) = &write.via {
        append_via(headers, scan.has(B_VIA), version, via);
    }
}

/// Appends `Via: <version> <pseudonym>` for a message received with `version` (`present`:
/// it has a `Via` line already).
pub(crate) fn append_via(
    headers: &mut HeaderMap,
    present: bool,
    version: Version,
    pseudonym: &HeaderValue,
) {
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
    append_list(headers, VIA, present, &item);
}

/// The host the client addressed: its `Host` (the first line, which `scan` hands over), or
/// the authority of an HTTP/2 request (which then also becomes the `Host` sent on, since
/// HTTP/1.1 targets need one).
pub(crate) fn client_host(
    headers: &mut HeaderMap,
    uri: &http::Uri,
    scan: &mut Scan,
) -> Option<HeaderValue> {
    if let Some(h) = scan.host.take() {
        return Some(h);
    }
    let h = HeaderValue::from_str(uri.authority()?.as_str()).ok()?;
    headers.insert(HOST, h.clone());
    scan.bits |= B_HOST;
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
mod reference;

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
        #![proptest_config(ProptestConfig {
            cases: 256,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x6877_6470),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

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
            strip(&mut h);
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

    fn strip(h: &mut HeaderMap) -> Stripped {
        let mut scan = Scan::of(h);
        strip_hop_by_hop(h, &mut scan)
    }

    fn framing(h: &HeaderMap) -> Result<(), BadFraming> {
        check_framing(&Scan::of(h))
    }

    fn forward(h: &mut HeaderMap, hop: Hop, write: &Write, version: Version) {
        let scan = Scan::of(h);
        write_forwarding(h, hop, write, version, &scan);
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
        let s = strip(&mut h);
        assert_eq!(s.upgrade.as_ref().unwrap(), "websocket");
        assert!(s.te_trailers);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-kept"], "3");
    }

    #[test]
    fn names_are_matched_whole_and_in_any_case() {
        // Names arrive lowercased whatever the client wrote; a name that only starts (or
        // ends) like a hop-by-hop one is an ordinary header.
        let mut h = map(&[
            ("Keep-Alive", "timeout=5"),
            ("PROXY-Connection", "keep-alive"),
            ("keep-alive-x", "1"),
            ("upgrade-insecure-requests", "1"),
            ("tes", "2"),
            ("x-connection", "3"),
            ("proxy-authorization2", "4"),
        ]);
        strip(&mut h);
        assert!(h.get("keep-alive").is_none());
        assert!(h.get("proxy-connection").is_none());
        assert_eq!(h.len(), 5, "{h:?}");
        for name in [
            "keep-alive-x",
            "upgrade-insecure-requests",
            "tes",
            "x-connection",
            "proxy-authorization2",
        ] {
            assert!(h.contains_key(name), "{name} lost");
        }
    }

    #[test]
    fn every_connection_line_counts_and_close_is_just_a_token() {
        let mut h = map(&[
            ("connection", "close, X-Foo"),
            ("x-foo", "1"),
            ("Connection", "x-bar,,  "),
            ("x-bar", "2"),
            ("x-baz", "3"),
        ]);
        let s = strip(&mut h);
        assert!(s.upgrade.is_none());
        assert_eq!(lines(&h), lines(&map(&[("x-baz", "3")])));
    }

    #[test]
    fn te_alone_is_noted_and_removed() {
        // A gRPC request: `TE: trailers` is its only hop-by-hop header; the layer adds a
        // fresh `TE: trailers` afterwards, nothing else of the client's `TE` goes on.
        let mut h = map(&[("te", "trailers"), ("content-type", "application/grpc")]);
        let s = strip(&mut h);
        assert!(s.te_trailers);
        assert_eq!(
            lines(&h),
            lines(&map(&[("content-type", "application/grpc")]))
        );
    }

    #[test]
    fn a_connection_token_can_remove_what_is_written_next() {
        // From a trusted proxy, `X-Forwarded-For` is appended to; once `Connection` has
        // named it, there is nothing to append to and it is written fresh.
        let mut h = map(&[
            ("connection", "x-forwarded-for, host"),
            ("x-forwarded-for", "203.0.113.9"),
            ("host", "app.example"),
        ]);
        let mut scan = Scan::of(&h);
        strip_hop_by_hop(&mut h, &mut scan);
        let uri: http::Uri = "/".parse().unwrap();
        let host = client_host(&mut h, &uri, &mut scan);
        assert!(host.is_none());
        let hop = Hop {
            peer: Some("192.0.2.1".parse().unwrap()),
            trusted: true,
            client: None,
            tls: false,
            host,
        };
        write_forwarding(&mut h, hop, &all(), Version::HTTP_11, &scan);
        assert_eq!(h["x-forwarded-for"], "192.0.2.1");
        assert!(h.get("x-forwarded-host").is_none());
        assert!(h.get(HOST).is_none());
    }

    #[test]
    fn connection_tokens_find_their_bit_in_any_case() {
        for name in POOL {
            let bit = bit_of(&HeaderName::from_static(name));
            assert_eq!(bit_of_token(name.as_bytes()), bit, "{name}");
            assert_eq!(
                bit_of_token(name.to_ascii_uppercase().as_bytes()),
                bit,
                "{name}"
            );
        }
        assert_eq!(bit_of_token(b"Proxy-Authorization"), B_PROXY_AUTHORIZATION);
        assert_eq!(bit_of_token(b"proxy-authorizationX"), 0);
        assert_eq!(bit_of_token(b""), 0);
        assert_eq!(bit_of_token("h\u{f6}st".as_bytes()), 0);
    }

    #[test]
    fn the_peer_cache_follows_the_peer() {
        for ip in [
            "192.0.2.1",
            "192.0.2.2",
            "192.0.2.1",
            "2001:db8::7",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(peer_value(ip), ip.to_string().as_str());
        }
    }

    #[test]
    fn upgrade_without_connection_token_is_not_an_upgrade() {
        let mut h = map(&[("upgrade", "websocket"), ("te", "gzip")]);
        let s = strip(&mut h);
        assert!(s.upgrade.is_none());
        assert!(!s.te_trailers);
        assert!(h.is_empty());
    }

    #[test]
    fn framing_checks() {
        assert_eq!(framing(&map(&[("content-length", "3")])), Ok(()));
        assert_eq!(framing(&map(&[("transfer-encoding", "chunked")])), Ok(()));
        assert_eq!(
            framing(&map(&[
                ("content-length", "3"),
                ("transfer-encoding", "chunked")
            ])),
            Err(BadFraming::LengthAndChunked)
        );
        assert_eq!(
            framing(&map(&[("content-length", "3"), ("content-length", "3")])),
            Err(BadFraming::DuplicateLength)
        );
        assert_eq!(
            framing(&map(&[("content-length", "3, 3")])),
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
            tls: false,
            host: Some(host),
        };
        forward(&mut h, hop, &all(), Version::HTTP_11);
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
            tls: false,
            host: None,
        };
        forward(&mut h, hop, &all(), Version::HTTP_2);
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
            tls: false,
            host: None,
        };
        forward(&mut h, hop.clone(), &none, Version::HTTP_11);
        assert!(h.is_empty(), "{h:?}");
        // From a trusted proxy, what it sent passes untouched.
        let mut h = map(&client);
        hop.trusted = true;
        forward(&mut h, hop, &none, Version::HTTP_11);
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
            tls: true,
            host: None,
        };
        forward(&mut h, hop, &all(), Version::HTTP_11);
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
            tls: false,
            host: Some(host),
        };
        assert_eq!(forwarded_element(&hop), b"for=192.0.2.1;proto=http");
    }

    #[test]
    fn h2_authority_becomes_host() {
        let mut h = HeaderMap::new();
        let uri: http::Uri = "https://app.example:8443/x".parse().unwrap();
        assert_eq!(
            client_host(&mut h, &uri, &mut Scan::of(&HeaderMap::new())).unwrap(),
            "app.example:8443"
        );
        assert_eq!(h[HOST], "app.example:8443");
    }

    // ---------------------------------------------------------------------------------------
    // The one-pass version against the plain one (`reference`): same map, entry for entry and
    // in the same order, same findings, for messages drawn from the names either acts on.

    /// Names the header work acts on, names that merely look like them (a prefix, a suffix,
    /// a standard header starting with `upgrade`), and ordinary ones.
    const POOL: [&str; 28] = [
        "connection",
        "proxy-connection",
        "keep-alive",
        "te",
        "transfer-encoding",
        "upgrade",
        "trailer",
        "proxy-authenticate",
        "proxy-authorization",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-real-ip",
        "forwarded",
        "via",
        "host",
        "content-length",
        "keep-alive-x",
        "x-connection",
        "tes",
        "upgrade-insecure-requests",
        "proxy-authorization2",
        "x-forwarded-fo",
        "vias",
        "hosts",
        "accept",
        "content-type",
        "x-a",
    ];

    /// A `Connection` token: a pool name in any case, or another token, padded or empty.
    fn token() -> impl Strategy<Value = String> {
        (0..POOL.len() + 3, 0..3u8, any::<bool>()).prop_map(|(i, case, pad)| {
            let t = match i.checked_sub(POOL.len()) {
                None => POOL[i].to_owned(),
                Some(0) => "close".to_owned(),
                Some(1) => "Upgrade".to_owned(),
                _ => String::new(),
            };
            let t = match case {
                0 => t,
                1 => t.to_ascii_uppercase(),
                _ => t
                    .char_indices()
                    .map(|(i, c)| if i == 0 { c.to_ascii_uppercase() } else { c })
                    .collect(),
            };
            if pad { format!(" {t} ") } else { t }
        })
    }

    /// A value fit for `name`: lists for `Connection`, `TE` variants, hosts with and without
    /// quotes, `Content-Length` single or listed.
    fn value(name: &'static str) -> BoxedStrategy<String> {
        match name {
            "connection" => proptest::collection::vec(token(), 0..4)
                .prop_map(|t| t.join(","))
                .boxed(),
            "te" => proptest::sample::select(vec![
                "trailers",
                "Trailers",
                "trailers;q=0.5",
                "gzip",
                "gzip, trailers",
                "",
            ])
            .prop_map(str::to_owned)
            .boxed(),
            "host" => proptest::sample::select(vec!["app.example", "a\"b", "app.example:8080"])
                .prop_map(str::to_owned)
                .boxed(),
            "content-length" => proptest::sample::select(vec!["3", "3, 3", "0"])
                .prop_map(str::to_owned)
                .boxed(),
            "upgrade" => Just("websocket".to_owned()).boxed(),
            _ => proptest::sample::select(vec!["v", "6.6.6.6", "1.1.1.1, 2.2.2.2", "for=6.6.6.6"])
                .prop_map(str::to_owned)
                .boxed(),
        }
    }

    fn headers() -> impl Strategy<Value = HeaderMap> {
        proptest::collection::vec(
            proptest::sample::select(POOL.to_vec()).prop_flat_map(|n| (Just(n), value(n))),
            0..10,
        )
        .prop_map(|lines| {
            let mut h = HeaderMap::new();
            for (name, value) in lines {
                h.append(name, HeaderValue::from_str(&value).unwrap());
            }
            h
        })
    }

    fn ip() -> impl Strategy<Value = Option<IpAddr>> {
        proptest::sample::select(vec![
            None,
            Some("192.0.2.1".parse().unwrap()),
            Some("192.0.2.2".parse().unwrap()),
            Some("2001:db8::1".parse().unwrap()),
        ])
    }

    fn write() -> impl Strategy<Value = Write> {
        (any::<[bool; 6]>()).prop_map(|b| Write {
            x_forwarded_for: b[0],
            x_forwarded_proto: b[1],
            x_forwarded_host: b[2],
            x_real_ip: b[3],
            forwarded: b[4],
            via: b[5].then(|| HeaderValue::from_static("edge")),
        })
    }

    fn version() -> impl Strategy<Value = Version> {
        proptest::sample::select(vec![Version::HTTP_10, Version::HTTP_11, Version::HTTP_2])
    }

    /// Entries in order, every line.
    fn lines(h: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
        h.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    #[derive(Debug, Clone)]
    struct Case {
        peer: Option<IpAddr>,
        client: Option<IpAddr>,
        trusted: bool,
        tls: bool,
        h2_authority: bool,
        relay_upgrade: bool,
    }

    fn case() -> impl Strategy<Value = Case> {
        (ip(), ip(), any::<[bool; 4]>()).prop_map(|(peer, client, b)| Case {
            peer,
            client,
            trusted: b[0],
            tls: b[1],
            h2_authority: b[2],
            relay_upgrade: b[3],
        })
    }

    /// The request side as `Forward::call` runs it, with the plain functions.
    fn request_by_reference(
        h: &mut HeaderMap,
        c: &Case,
        write: &Write,
        version: Version,
    ) -> Result<(bool, Option<HeaderValue>), BadFraming> {
        reference::check_framing(h)?;
        let stripped = reference::strip_hop_by_hop(h);
        if stripped.te_trailers {
            h.insert(TE, HeaderValue::from_static("trailers"));
        }
        if let Some(proto) = stripped.upgrade.as_ref().filter(|_| c.relay_upgrade) {
            restore_upgrade(h, proto);
        }
        let uri = uri(c);
        let host = reference::client_host(h, &uri);
        let hop = reference::Hop {
            peer: c.peer,
            trusted: c.trusted,
            client: c.client,
            proto: if c.tls { "https" } else { "http" },
            host: host.as_ref(),
        };
        reference::write_forwarding(h, &hop, write, version);
        Ok((stripped.te_trailers, stripped.upgrade))
    }

    /// The request side as `Forward::call` runs it.
    fn request(
        h: &mut HeaderMap,
        c: &Case,
        write: &Write,
        version: Version,
    ) -> Result<(bool, Option<HeaderValue>), BadFraming> {
        let mut scan = Scan::of(h);
        check_framing(&scan)?;
        let stripped = strip_hop_by_hop(h, &mut scan);
        if stripped.te_trailers {
            h.insert(TE, HeaderValue::from_static("trailers"));
        }
        if let Some(proto) = stripped.upgrade.as_ref().filter(|_| c.relay_upgrade) {
            restore_upgrade(h, proto);
        }
        let uri = uri(c);
        let host = client_host(h, &uri, &mut scan);
        let hop = Hop {
            peer: c.peer,
            trusted: c.trusted,
            client: c.client,
            tls: c.tls,
            host,
        };
        write_forwarding(h, hop, write, version, &scan);
        Ok((stripped.te_trailers, stripped.upgrade))
    }

    fn uri(c: &Case) -> http::Uri {
        if c.h2_authority {
            "https://auth.example:8443/x".parse().unwrap()
        } else {
            "/x".parse().unwrap()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 2048,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x7363_616e),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// A request comes out of the one-pass header work exactly as out of the plain one:
        /// same refusal, same `TE`/`Upgrade` findings, same lines in the same order.
        #[test]
        fn request_headers_match_the_plain_version(
            h in headers(),
            c in case(),
            write in write(),
            version in version(),
        ) {
            let mut expected = h.clone();
            let want = request_by_reference(&mut expected, &c, &write, version);
            let mut got = h.clone();
            let have = request(&mut got, &c, &write, version);
            prop_assert_eq!(&have, &want);
            if want.is_ok() {
                prop_assert_eq!(lines(&got), lines(&expected), "from {:?}", h);
            }
        }

        /// A response likewise (stripped, then `Via` appended).
        #[test]
        fn response_headers_match_the_plain_version(
            h in headers(),
            via in any::<bool>(),
            version in version(),
        ) {
            let pseudonym = HeaderValue::from_static("edge");
            let mut expected = h.clone();
            let want = reference::strip_hop_by_hop(&mut expected);
            if via {
                reference::append_via(&mut expected, version, &pseudonym);
            }
            let mut got = h.clone();
            let mut scan = Scan::of(&got);
            let have = strip_hop_by_hop(&mut got, &mut scan);
            if via {
                append_via(&mut got, scan.has_via(), version, &pseudonym);
            }
            prop_assert_eq!(have.te_trailers, want.te_trailers);
            prop_assert_eq!(have.upgrade, want.upgrade);
            prop_assert_eq!(lines(&got), lines(&expected), "from {:?}", h);
        }

        /// The pass finds exactly the names a lookup finds, whatever else the map holds.
        #[test]
        fn the_pass_sees_what_lookups_see(h in headers()) {
            let scan = Scan::of(&h);
            for name in POOL {
                let bit = bit_of(&HeaderName::from_static(name));
                if bit != 0 {
                    prop_assert_eq!(scan.has(bit), h.contains_key(name), "{}", name);
                }
            }
            prop_assert_eq!(scan.host.as_ref(), h.get(HOST));
        }
    }
}
