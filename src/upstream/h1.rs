//! HTTP/1.1 towards targets with a codec of this crate's own, for requests without a body or
//! with a small one read whole.
//!
//! Most proxied requests carry no body (`GET`, `HEAD`, `DELETE`, ...) or a small one of known
//! size (the server's own codec reads those whole). For those,
//! [`TargetClient`](super::TargetClient) writes the request head itself and reads the
//! response on the request's own task: no channel to a connection task, no second task per
//! exchange, one write and (usually) one read per request. Measured end to end, hyper's
//! HTTP/1 client (its dispatch channel, the connection task, its body channel) cost several
//! thousand instructions per request more than the parsing itself (`docs/benchmarks.md`).
//! A body goes out right behind the head in the same write, framed by its own length (any
//! `Content-Length` or `Transfer-Encoding` the request carried is dropped). Streamed or larger
//! bodies, upgrades and `CONNECT` still go through hyper's connection.
//!
//! What it reads, per RFC 9112: a response head parsed by `httparse` (at most [`MAX_HEADERS`]
//! fields and [`MAX_HEAD`] bytes); `1xx` heads skipped (a `101` is an error: no upgrade was
//! asked); no body after `HEAD`, `204` and `304`; otherwise `Transfer-Encoding` ending in
//! `chunked` (trailers passed on), else a `Content-Length` (one value, or a list of equal
//! ones), else the body runs to the end of the connection. A connection is used again only
//! when its response was read to its end, with a known length, no `Connection: close` (from
//! either side; HTTP/1.0 needs `keep-alive`) and no byte left over.

use std::io;
use std::pin::pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::util::h1::{FEW_FIELDS, content_length, decimal, field, places, tokens};

/// The largest response head or trailer section read. hyper bounds its whole read buffer at
/// about 400 KiB; nginx reads a response head into 4 or 8 KiB by default.
pub(super) const MAX_HEAD: usize = 64 * 1024;

/// The most fields in a response head or trailer section (hyper's default).
pub(super) const MAX_HEADERS: usize = 100;

/// The size of a new read buffer.
const READ: usize = 8 * 1024;

/// The least room a read is given.
const MIN_READ: usize = 1024;

/// The largest new read buffer (for a long body).
const MAX_READ: usize = 64 * 1024;

/// A request head buffer larger than this is not kept for the connection's next request.
const KEEP_OUT: usize = 16 * 1024;

/// The longest chunk-size line accepted (with its extensions).
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// One connection to a target, between exchanges or serving one.
pub(super) struct H1 {
    io: TcpStream,
    /// Bytes read and not used yet.
    buf: BytesMut,
    /// The request head being written (kept for its allocation).
    out: Vec<u8>,
}

/// What `Host` a request goes with: the target's address, or the client's own with
/// `preserve_host` (the target's when the client sent none; none when the target's address is
/// no valid header value).
#[derive(Clone, Copy, Debug)]
pub(super) struct Host<'a> {
    pub(super) target: Option<&'a HeaderValue>,
    pub(super) preserve: bool,
}

/// An exchange that failed, with what is known of how far it got.
#[derive(Debug)]
pub(super) struct Failed {
    pub(super) error: io::Error,
    /// Some bytes of the request head were written.
    pub(super) written: bool,
    /// Some bytes of a response arrived.
    pub(super) answered: bool,
}

/// A response head: the response without its body, how its body is framed, and whether the
/// connection can serve again after it.
pub(super) struct Head {
    pub(super) response: Response<()>,
    pub(super) state: State,
    pub(super) reusable: bool,
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl H1 {
    /// A connection over `io`, boxed: it moves with every response body and through the
    /// pool, as one pointer rather than its fields.
    pub(super) fn new(io: TcpStream) -> Box<H1> {
        Box::new(H1 {
            io,
            buf: BytesMut::new(),
            out: Vec::new(),
        })
    }

    /// Whether an idle connection can take a request: nothing unread, and the socket not
    /// reported readable (a close, or bytes nobody asked for). Costs no system call unless the
    /// socket was reported readable, and takes no lock: `try_read` looks at the readiness the
    /// runtime recorded and reads only if it says readable (readiness left over from the last
    /// read is cleared by the read's `WouldBlock`), where `poll_read_ready` would also file a
    /// waker under the socket's lock when it is not.
    pub(super) fn usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        matches!(
            self.io.try_read(&mut [0u8; 1]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }

    /// Writes the head of `parts` and its `body` (read whole; `None`: a request without one)
    /// and reads the response head.
    pub(super) async fn exchange(
        &mut self,
        parts: &http::request::Parts,
        body: Option<&[u8]>,
        host: Host<'_>,
        head_request: bool,
    ) -> Result<Head, Failed> {
        let close = encode(parts, body, host, &mut self.out);
        let mut written = 0;
        while written < self.out.len() {
            match self.io.try_write(&self.out[written..]) {
                Ok(0) => return Err(self.failed(io::ErrorKind::WriteZero.into(), written > 0)),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = self.io.writable().await {
                        return Err(self.failed(e, written > 0));
                    }
                }
                Err(e) => return Err(self.failed(e, written > 0)),
            }
        }
        if self.out.capacity() > KEEP_OUT {
            // An unusually large head: not kept for the connection's next request.
            self.out = Vec::new();
        }
        loop {
            if !self.buf.is_empty() {
                match parse_head(&mut self.buf, head_request) {
                    Ok(Some(Parsed::Final(mut head))) => {
                        head.reusable &= !close;
                        return Ok(head);
                    }
                    Ok(Some(Parsed::Informational)) => continue,
                    Ok(None) if self.buf.len() >= MAX_HEAD => {
                        return Err(self.failed(invalid("response head too large"), true));
                    }
                    Ok(None) => {}
                    Err(e) => return Err(self.failed(e, true)),
                }
            }
            self.make_room();
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) if self.buf.is_empty() => {
                    let closed = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before a response",
                    );
                    return Err(self.failed(closed, true));
                }
                Ok(0) => {
                    let cut = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed within a response head",
                    );
                    return Err(self.failed(cut, true));
                }
                Ok(_) => {}
                Err(e) => return Err(self.failed(e, true)),
            }
        }
    }

    fn failed(&self, error: io::Error, written: bool) -> Failed {
        Failed {
            error,
            written,
            answered: !self.buf.is_empty(),
        }
    }

    /// Room to read into: what is left of the buffer while that is at least [`MIN_READ`],
    /// else a new buffer of [`READ`] bytes. (The heads and bodies handed out share the buffer
    /// they were read into, so it is not reused in place; most reads fit in what is left.)
    fn make_room(&mut self) {
        self.make_room_for(READ);
    }

    /// [`make_room`](Self::make_room), with a new buffer of up to `want` bytes (at least
    /// [`READ`], at most [`MAX_READ`]): a long body is read in fewer, larger reads.
    fn make_room_for(&mut self, want: usize) {
        if self.buf.capacity() - self.buf.len() < MIN_READ {
            self.buf.reserve(want.clamp(READ, MAX_READ));
        }
    }

    /// Reads more into the buffer, up to `want` bytes (see
    /// [`make_room_for`](Self::make_room_for)): `Ok(0)` at the end of the connection.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        self.make_room_for(want);
        let read = pin!(self.io.read_buf(&mut self.buf));
        read.poll(cx)
    }
}

/// Writes the head of a request without a body: the request line in origin form (where the
/// request goes is the target's business, not the request's: a scheme or authority in its URI
/// is not written), `Host` as [`Host`] says, then its other fields as they are (names in lower
/// case, as `http` keeps them), minus `Transfer-Encoding` (there is no body to encode; hyper
/// drops it too). Returns whether the request's `Connection` says `close`.
fn encode(
    parts: &http::request::Parts,
    body: Option<&[u8]>,
    host: Host<'_>,
    out: &mut Vec<u8>,
) -> bool {
    let mut close = false;
    out.clear();
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let keep_host = host.preserve && parts.headers.contains_key(HOST);
    if !keep_host {
        if let Some(value) = host.target {
            field(out, HOST.as_str(), value);
        }
    }
    for (name, value) in &parts.headers {
        if name == TRANSFER_ENCODING
            || (name == HOST && !keep_host)
            || (body.is_some() && name == CONTENT_LENGTH)
        {
            continue;
        }
        if name == CONNECTION {
            close |= tokens(value.as_bytes()).0;
        }
        field(out, name.as_str(), value);
    }
    if let Some(body) = body {
        // The body's own length frames it, whatever the request's fields said.
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(decimal(body.len() as u64, &mut [0; 20]));
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
    } else {
        out.push(b'\r');
        out.push(b'\n');
    }
    close
}

enum Parsed {
    /// A `1xx` head, consumed.
    Informational,
    Final(Head),
}

/// Parses a response head at the start of `buf`; a whole one is taken out of it.
fn parse_head(buf: &mut BytesMut, head_request: bool) -> io::Result<Option<Parsed>> {
    // Where each field's name and value lie in `buf`, so that the values can share the head's
    // bytes once it is split off (as hyper's do).
    // Uninitialised: httparse writes the fields it parses (as hyper asks it to).
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let len = match config.parse_response_with_uninit_headers(&mut parsed, buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) if len >= MAX_HEAD => {
            return Err(invalid("response head too large"));
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(invalid("too many response headers")),
        Err(_) => return Err(invalid("malformed response head")),
    };
    let code = parsed
        .code
        .ok_or_else(|| invalid("malformed response head"))?;
    if (100..200).contains(&code) {
        if code == 101 {
            return Err(invalid("101 to a request that asked for no upgrade"));
        }
        buf.advance(len);
        return Ok(Some(Parsed::Informational));
    }
    let status = StatusCode::from_u16(code).map_err(|_| invalid("bad status code"))?;
    let version = if parsed.version == Some(1) {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let base = buf.as_ptr() as usize;
    let n = parsed.headers.len();
    // Room for the fields there are, not for `MAX_HEADERS` of them.
    let (mut few, mut many) = ([[0u16; 4]; FEW_FIELDS], Vec::new());
    let at = places(&mut few, &mut many, n);
    for (slot, field) in at.iter_mut().zip(parsed.headers.iter()) {
        // httparse hands out slices of `buf` itself, within the head, which is shorter than
        // `MAX_HEAD` (64 KiB): every offset and length fits. (One that did not would be
        // caught below as out of the head's range.)
        let fit = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        let offset = |s: &[u8]| fit((s.as_ptr() as usize).wrapping_sub(base));
        *slot = [
            offset(field.name.as_bytes()),
            fit(field.name.len()),
            offset(field.value),
            fit(field.value.len()),
        ];
    }
    let head = buf.split_to(len).freeze();
    let mut headers = crate::util::spare::header_map(n);
    let mut meta = Meta::default();
    for [name_at, name_len, value_at, value_len] in &*at {
        let (name_at, value_at) = (*name_at as usize, *value_at as usize);
        let name = head
            .get(name_at..name_at + *name_len as usize)
            .ok_or_else(|| invalid("malformed response head"))?;
        let name = HeaderName::from_bytes(name).map_err(|_| invalid("bad response header name"))?;
        let value_end = value_at + *value_len as usize;
        if value_end > head.len() {
            return Err(invalid("malformed response head"));
        }
        let value = HeaderValue::from_maybe_shared(head.slice(value_at..value_end))
            .map_err(|_| invalid("bad response header value"))?;
        meta.see(&name, value.as_bytes());
        headers.append(name, value);
    }
    let (state, framed) = framing(status, head_request, &meta)?;
    let reusable = framed && !meta.close && (version == Version::HTTP_11 || meta.keep_alive);
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    Ok(Some(Parsed::Final(Head {
        response,
        state,
        reusable,
    })))
}

/// What a response head says of its framing and its connection, gathered as its fields are
/// read (one pass, no lookups afterwards).
#[derive(Default)]
struct Meta {
    /// The `Content-Length`, once every value agreed.
    length: Option<u64>,
    /// A `Content-Length` value that is no number, or two that differ.
    bad_length: bool,
    /// A `Transfer-Encoding` line, and whether the last one ends in `chunked`.
    transfer_encoding: bool,
    chunked: bool,
    close: bool,
    keep_alive: bool,
}

impl Meta {
    fn see(&mut self, name: &HeaderName, value: &[u8]) {
        if name == CONTENT_LENGTH {
            for item in value.split(|&b| b == b',') {
                let n = content_length(item.trim_ascii());
                match (n, self.length) {
                    (Some(n), None) => self.length = Some(n),
                    (Some(n), Some(l)) if n == l => {}
                    _ => self.bad_length = true,
                }
            }
        } else if name == TRANSFER_ENCODING {
            self.transfer_encoding = true;
            self.chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == CONNECTION {
            let (close, keep_alive) = tokens(value);
            self.close |= close;
            self.keep_alive |= keep_alive;
        }
    }
}

/// How the body after a head is framed (RFC 9112 §6.3), and whether that framing lets the
/// connection serve again.
fn framing(status: StatusCode, head_request: bool, meta: &Meta) -> io::Result<(State, bool)> {
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((State::Done, true));
    }
    if meta.transfer_encoding {
        // With a `Content-Length` too, the message is suspect: read it, never reuse.
        let clean = meta.length.is_none() && !meta.bad_length;
        return Ok(if meta.chunked {
            (State::Chunked(Chunk::Size), clean)
        } else {
            (State::Close, false)
        });
    }
    if meta.bad_length {
        return Err(invalid("bad or conflicting content-length"));
    }
    Ok(match meta.length {
        Some(0) => (State::Done, true),
        Some(n) => (State::Length(n), true),
        None => (State::Close, false),
    })
}

/// Where the reading of a response body stands.
#[derive(Debug)]
pub(super) enum State {
    /// This many bytes to go.
    Length(u64),
    Chunked(Chunk),
    /// To the end of the connection.
    Close,
    Done,
}

#[derive(Debug)]
pub(super) enum Chunk {
    /// A chunk-size line.
    Size,
    /// This many bytes of chunk data to go.
    Data(u64),
    /// The CRLF after chunk data.
    DataEnd,
    /// The trailer section after the last chunk.
    Trailers,
}

/// The body of a response read by this codec. It holds the connection while it is read.
pub(super) struct H1Body {
    conn: Option<Box<H1>>,
    state: State,
    reusable: bool,
}

impl H1Body {
    pub(super) fn new(conn: Box<H1>, state: State, reusable: bool) -> H1Body {
        H1Body {
            conn: Some(conn),
            state,
            reusable,
        }
    }

    /// The connection, once the body was read to its end and the connection can serve again.
    pub(super) fn take_reusable(&mut self) -> Option<Box<H1>> {
        let done = matches!(self.state, State::Done) && self.reusable;
        self.conn.take_if(|c| done && c.buf.is_empty())
    }

    pub(super) fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    pub(super) fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }

    /// The next frame; after an error the connection is gone and the body ends.
    pub(super) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        match self.step(cx) {
            Poll::Ready(Some(Err(e))) => {
                self.conn = None;
                self.state = State::Done;
                self.reusable = false;
                Poll::Ready(Some(Err(e)))
            }
            other => other,
        }
    }

    fn step(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match decode(&mut self.state, &mut conn.buf) {
                Decoded::Frame(frame) => return Poll::Ready(Some(Ok(frame))),
                Decoded::End => return Poll::Ready(None),
                Decoded::Failed(e) => return Poll::Ready(Some(Err(e))),
                Decoded::More => {}
            }
            // More bytes needed.
            let want = match self.state {
                State::Length(left) => usize::try_from(left).unwrap_or(MAX_READ),
                State::Chunked(Chunk::Data(left)) => usize::try_from(left).unwrap_or(MAX_READ),
                _ => READ,
            };
            match ready!(conn.poll_fill(cx, want)) {
                Ok(0) if matches!(self.state, State::Close) => {
                    self.state = State::Done;
                    self.reusable = false;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed within a response body",
                    ))));
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }
}

/// What [`decode`] made of the bytes read so far.
enum Decoded {
    Frame(Frame<Bytes>),
    /// The body has ended.
    End,
    /// More bytes are needed (or, for a body that runs to the close, the close).
    More,
    Failed(io::Error),
}

/// The next step of reading a body framed as `state` from `buf` (the socket's bytes read so
/// far), with no I/O: the body type reads more when told [`Decoded::More`].
fn decode(state: &mut State, buf: &mut BytesMut) -> Decoded {
    loop {
        match state {
            State::Done => return Decoded::End,
            _ if buf.is_empty() => return Decoded::More,
            State::Length(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                let data = buf.split_to(n).freeze();
                *left -= n as u64;
                if *left == 0 {
                    *state = State::Done;
                }
                return Decoded::Frame(Frame::data(data));
            }
            State::Close => return Decoded::Frame(Frame::data(buf.split().freeze())),
            State::Chunked(chunk) => match chunk {
                Chunk::Size => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        *chunk = if size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE => {
                        return Decoded::Failed(invalid("chunk-size line too long"));
                    }
                    Ok(httparse::Status::Partial) => return Decoded::More,
                    Err(_) => return Decoded::Failed(invalid("bad chunk size")),
                },
                Chunk::Data(left) => {
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(n).freeze();
                    *left -= n as u64;
                    if *left == 0 {
                        *chunk = Chunk::DataEnd;
                    }
                    return Decoded::Frame(Frame::data(data));
                }
                Chunk::DataEnd if buf.len() < 2 => return Decoded::More,
                Chunk::DataEnd => {
                    if &buf[..2] != b"\r\n" {
                        return Decoded::Failed(invalid("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    *chunk = Chunk::Size;
                }
                Chunk::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        *state = State::Done;
                        return Decoded::End;
                    }
                    return match trailers(buf) {
                        Ok(Some(map)) => {
                            *state = State::Done;
                            Decoded::Frame(Frame::trailers(map))
                        }
                        Ok(None) if buf.len() >= MAX_HEAD => {
                            Decoded::Failed(invalid("trailer section too large"))
                        }
                        Ok(None) => Decoded::More,
                        Err(e) => Decoded::Failed(e),
                    };
                }
            },
        }
    }
}

/// A whole trailer section at the start of `buf` (not empty), taken out of it.
fn trailers(buf: &mut BytesMut) -> io::Result<Option<HeaderMap>> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (len, map) = match httparse::parse_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete((len, fields))) => {
            let mut map = HeaderMap::with_capacity(fields.len());
            for field in fields {
                let name = HeaderName::from_bytes(field.name.as_bytes())
                    .map_err(|_| invalid("bad trailer name"))?;
                let value = HeaderValue::from_bytes(field.value)
                    .map_err(|_| invalid("bad trailer value"))?;
                map.append(name, value);
            }
            (len, map)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(invalid("malformed trailer section")),
    };
    buf.advance(len);
    Ok(Some(map))
}

/// Parses `data` as what a target sent in answer to a request without a body (`HEAD` when
/// `head_request`), reading the whole body; for the fuzz target `h1_response` and the
/// property test below. Never panics.
#[cfg(any(test, fuzzing))]
#[allow(unreachable_pub)]
pub fn fuzz_response(data: &[u8], head_request: bool) {
    let mut buf = BytesMut::from(data);
    let Ok(Some(Parsed::Final(head))) = parse_head(&mut buf, head_request) else {
        return;
    };
    let mut state = head.state;
    // The body from what is left, through the body type's own decoder (without a socket):
    // each step takes bytes or ends, so `data.len() + 2` steps are enough.
    for _ in 0..data.len() + 2 {
        if !matches!(decode(&mut state, &mut buf), Decoded::Frame(_)) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &[u8], head_request: bool) -> io::Result<Option<Head>> {
        let mut buf = BytesMut::from(bytes);
        Ok(match parse_head(&mut buf, head_request)? {
            Some(Parsed::Final(h)) => Some(h),
            Some(Parsed::Informational) => None,
            None => None,
        })
    }

    #[test]
    fn a_body_is_framed_by_its_own_length_whatever_the_fields_said() {
        let req = http::Request::post("/up")
            .header("host", "t")
            .header("content-length", "999")
            .header("transfer-encoding", "chunked")
            .header("x-one", "1")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let keep = Host {
            target: None,
            preserve: true,
        };
        let mut out = Vec::new();
        encode(&parts, Some(b"hello"), keep, &mut out);
        assert_eq!(
            out,
            b"POST /up HTTP/1.1\r\nhost: t\r\nx-one: 1\r\ncontent-length: 5\r\n\r\nhello"
        );
        encode(&parts, Some(b""), keep, &mut out);
        assert!(
            out.ends_with(b"x-one: 1\r\ncontent-length: 0\r\n\r\n"),
            "{out:?}"
        );
    }

    #[test]
    fn a_request_head_is_written_in_origin_form_without_transfer_encoding() {
        let req = http::Request::get("/a/b?c=d")
            .header("host", "t:80")
            .header("x-one", "1")
            .header("transfer-encoding", "chunked")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let mut out = Vec::new();
        let keep = Host {
            target: None,
            preserve: true,
        };
        assert!(!encode(&parts, None, keep, &mut out));
        assert_eq!(
            out,
            b"GET /a/b?c=d HTTP/1.1\r\nhost: t:80\r\nx-one: 1\r\n\r\n"
        );
        let target = HeaderValue::from_static("10.0.0.1:8080");
        let set = Host {
            target: Some(&target),
            preserve: false,
        };
        encode(&parts, None, set, &mut out);
        assert_eq!(
            out,
            b"GET /a/b?c=d HTTP/1.1\r\nhost: 10.0.0.1:8080\r\nx-one: 1\r\n\r\n"
        );
        // Absolute form: only the path and query are written; preserving a `Host` the client
        // did not send writes the target's.
        let req = http::Request::get("http://elsewhere.example/x?y")
            .header("connection", "Close")
            .body(())
            .unwrap();
        let preserve = Host {
            target: Some(&target),
            preserve: true,
        };
        assert!(
            encode(&req.into_parts().0, None, preserve, &mut out),
            "asks to close"
        );
        assert_eq!(
            out,
            b"GET /x?y HTTP/1.1\r\nhost: 10.0.0.1:8080\r\nconnection: Close\r\n\r\n"
        );
    }

    #[test]
    fn a_partial_head_waits_and_a_whole_one_shares_its_bytes() {
        assert!(
            head(b"HTTP/1.1 200 OK\r\ncontent-len", false)
                .unwrap()
                .is_none()
        );
        let mut buf =
            BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabcNEXT"[..]);
        let Some(Parsed::Final(h)) = parse_head(&mut buf, false).unwrap() else {
            panic!("a whole head");
        };
        assert_eq!(h.response.status(), 200);
        assert_eq!(h.response.headers()["x-a"], "b");
        assert!(matches!(h.state, State::Length(3)));
        assert!(h.reusable);
        assert_eq!(&buf[..], b"abcNEXT");
    }

    /// A head with fewer fields than the codec records on the stack, exactly as many, and
    /// more: every field arrives, in order, with its value.
    #[test]
    fn heads_of_any_field_count_arrive_whole() {
        for count in [0, FEW_FIELDS - 1, FEW_FIELDS, FEW_FIELDS + 1, 60] {
            let mut raw = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n".to_vec();
            for i in 0..count {
                raw.extend_from_slice(format!("x-f{i}: v{i}\r\n").as_bytes());
            }
            raw.extend_from_slice(b"\r\n");
            let h = head(&raw, false).unwrap().unwrap();
            assert_eq!(h.response.headers().len(), count + 1, "{count} fields");
            for i in 0..count {
                assert_eq!(
                    h.response.headers()[format!("x-f{i}").as_str()],
                    format!("v{i}")
                );
            }
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let state = |raw: &[u8], head_request| head(raw, head_request).unwrap().unwrap();
        let h = state(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true);
        assert!(
            matches!(h.state, State::Done) && h.reusable,
            "HEAD has no body"
        );
        let h = state(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
            false,
        );
        assert!(matches!(h.state, State::Done) && h.reusable);
        let h = state(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
        );
        assert!(matches!(h.state, State::Chunked(Chunk::Size)) && h.reusable);
        let h = state(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            false,
        );
        assert!(
            matches!(h.state, State::Chunked(_)) && !h.reusable,
            "never reused"
        );
        let h = state(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false);
        assert!(matches!(h.state, State::Close) && !h.reusable);
        let h = state(b"HTTP/1.1 200 OK\r\n\r\n", false);
        assert!(matches!(h.state, State::Close) && !h.reusable);
        let h = state(b"HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\n\r\n", false);
        assert!(matches!(h.state, State::Length(4)));
        let h = state(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false);
        assert!(matches!(h.state, State::Done) && h.reusable);
        let h = state(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
            false,
        );
        assert!(!h.reusable);
        let h = state(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false);
        assert!(!h.reusable, "HTTP/1.0 without keep-alive");
        let h = state(
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: Keep-Alive\r\n\r\n",
            false,
        );
        assert!(h.reusable);
    }

    #[test]
    fn bad_heads_are_errors() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 4, 5\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"NOT HTTP\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        ] {
            assert!(
                head(raw, false).is_err(),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 2000,
            rng_seed: proptest::test_runner::RngSeed::Fixed(15),
            ..Default::default()
        })]

        /// Arbitrary bytes, and valid answers with bytes changed, never panic the reader.
        #[test]
        fn no_answer_panics_the_reader(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            at in 0usize..120,
            byte in proptest::prelude::any::<u8>(),
        ) {
            fuzz_response(&raw, false);
            let mut valid = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-a: b\r\n\r\n".to_vec();
            let i = at % valid.len();
            valid[i] = byte;
            fuzz_response(&valid, false);
            fuzz_response(&valid, true);
        }
    }

    #[test]
    fn an_informational_head_is_skipped() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n"[..],
        );
        assert!(matches!(
            parse_head(&mut buf, false),
            Ok(Some(Parsed::Informational))
        ));
        assert_eq!(&buf[..], b"HTTP/1.1 200 OK\r\n");
    }

    /// `usable` through real loopback sockets: an idle connection is usable until the
    /// target sends something nobody asked for or closes it, and readiness left over from an
    /// earlier read does not make it unusable.
    #[tokio::test]
    async fn an_idle_connection_is_usable_until_the_target_speaks_or_closes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::time::{Duration, timeout};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pair = || async {
            let client = TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            (H1::new(client), server)
        };
        let bound = Duration::from_secs(5);

        // Nothing said: usable, as often as asked.
        let (mut conn, mut server) = pair().await;
        assert!(conn.usable());
        assert!(conn.usable());
        // A byte read away: the readiness it left behind costs a read, not the connection.
        server.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        timeout(bound, conn.io.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert!(conn.usable());
        // A byte nobody asked for: not usable.
        server.write_all(b"y").await.unwrap();
        timeout(bound, conn.io.readable()).await.unwrap().unwrap();
        assert!(!conn.usable());

        // Closed by the target: not usable.
        let (mut conn, server) = pair().await;
        drop(server);
        timeout(bound, conn.io.readable()).await.unwrap().unwrap();
        assert!(!conn.usable());

        // Bytes in the buffer: not usable.
        let (mut conn, _server) = pair().await;
        conn.buf.extend_from_slice(b"HTTP/1.1");
        assert!(!conn.usable());
    }
}
