//! HTTP/1.1 from clients with a codec of the server's own, for requests without a body or
//! with a small one of a stated length.
//!
//! Why: hyper's HTTP/1 server (its dispatcher, its buffered I/O and its generic message
//! parsing) cost more per forwarded request than everything else in a bare proxy but the
//! target client (`docs/benchmarks.md`). Most proxied requests carry no body or a small one,
//! and for those the work is small: parse a head, read the body, call the stack, write a head
//! and a body.
//!
//! What it serves itself: an HTTP/1.1 request (parsed by `httparse`, hyper's own parser, with
//! at most [`MAX_HEADERS`] fields within the server's header limit) that is not `CONNECT` and
//! carries no `Transfer-Encoding`, no `Upgrade`, no `Expect`, and at most one `Content-Length`
//! line, of digits only, for a body of at most [`MAX_BODY`] bytes (and within the server's
//! body limit). Such a body is read whole, within the head's deadline, before the stack is
//! called, and handed to it as one data frame of its exact size; a client that closes within
//! it never reaches the stack. Anything else (a chunked or larger body, a second or odd
//! `Content-Length`, an upgrade, `100-continue`, HTTP/1.0) is handed, with the bytes read so
//! far, to hyper's HTTP/1 server, which serves the rest of the connection: the codec frames a
//! body only in the one case RFC 9112 §6.3 leaves no doubt about, and every other framing rule
//! that guards against request smuggling stays hyper's. A head
//! `httparse` refuses (obs-fold, bad tokens, bare `LF` in the wrong place) gets `400`; a head
//! over the limit or with too many fields, `431`; both close the connection.
//!
//! What it writes (RFC 9112): the status line, the response's fields, `Date`, and the body
//! framed by its exact size (`Content-Length`) or else in chunks (trailers only when the
//! request said `TE: trailers`); no body after `HEAD`, `1xx`, `204` or `304`. The head and a
//! body that is ready go out in one write. The connection is kept unless the request or the
//! response says `Connection: close`, the body failed, or the server is shutting down (then
//! the response says `Connection: close`).
//!
//! While the stack works on a request the codec keeps reading: bytes of a next (pipelined)
//! request are kept, up to the header limit, and a client that closes the connection has its
//! request dropped (as hyper does), so that a target is not kept busy for nobody.

use std::future::{Future, poll_fn};
use std::io;
use std::mem::MaybeUninit;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, EXPECT, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::error::BoxError;
use crate::util::h1::{FEW_FIELDS, content_length, decimal, field, places, tokens};

/// The most fields in a request head (hyper's default).
pub(super) const MAX_HEADERS: usize = 100;

/// The largest request body the codec reads itself (when the server's body limit is not
/// lower): a body framed by one `Content-Length` up to this size is read whole before the stack
/// is called; a larger one is hyper's, streamed.
pub(super) const MAX_BODY: usize = 64 * 1024;

/// The size of a new read buffer.
const READ: usize = 8 * 1024;

/// The least room a read is given.
const MIN_READ: usize = 1024;

/// Data frames up to this size are copied behind the head into one write; larger ones are
/// written as they are.
const COPY_MAX: usize = 16 * 1024;

/// A write buffer larger than this is not kept for the connection's next response.
const KEEP_OUT: usize = 64 * 1024;

/// What the head at the start of the read buffer asks for.
// The request is moved once, into the stack; boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A request the codec serves, its head taken out of the buffer.
    Request {
        parts: http::request::Parts,
        /// The length of its body, which follows in the buffer or on the connection (0: none).
        body: usize,
        /// The request's `Connection` says `close`.
        close: bool,
        /// The request's `TE` says `trailers`.
        trailers: bool,
    },
    /// A request the codec leaves to hyper; its head stays in the buffer.
    HandOff,
}

/// Why a head was refused: the status the client gets before the connection closes.
pub(crate) type Refused = StatusCode;

/// Where a field of the head lies in the read buffer: name and value, offset and length.
type At = [u32; 4];

/// Parses the request head at the start of `buf` (at most `max_head` bytes of it): `Ok(None)`
/// while it is incomplete. A request the codec serves is taken out of `buf`, its field values
/// sharing the head's bytes; a hand-off leaves `buf` as it was. A body of up to `max_body`
/// bytes, framed by a single `Content-Length`, is the codec's to read; any other body is
/// hyper's.
pub(crate) fn parse(
    buf: &mut BytesMut,
    max_head: usize,
    max_body: usize,
) -> Result<Option<Parsed>, Refused> {
    // Uninitialised: httparse writes the fields it parses (as hyper asks it to).
    let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(len)) if len > max_head => {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_head => {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        Err(httparse::Error::Version) => return Err(StatusCode::HTTP_VERSION_NOT_SUPPORTED),
        Err(_) => return Err(StatusCode::BAD_REQUEST),
    };
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        // HTTP/1.0 (keep-alive rules of its own): hyper's.
        return Ok(Some(Parsed::HandOff));
    };
    if method == "CONNECT" {
        return Ok(Some(Parsed::HandOff));
    }
    let base = buf.as_ptr() as usize;
    // The head is at most `max_head` bytes, which the server's settings bound by `u32::MAX`:
    // every offset and length fits. (One that did not would be caught below as out of range.)
    let fit = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let offset = |s: &[u8]| fit((s.as_ptr() as usize).wrapping_sub(base));
    let (mut close, mut trailers) = (false, false);
    let mut length: Option<usize> = None;
    let n = req.headers.len();
    // Room for the fields there are, not for `MAX_HEADERS` of them.
    let (mut few, mut many) = ([At::default(); FEW_FIELDS], Vec::new());
    let at = places(&mut few, &mut many, n);
    for (slot, f) in at.iter_mut().zip(req.headers.iter()) {
        let name = f.name.as_bytes();
        // The names that decide what the codec does, told apart by length first.
        let is = |known: &HeaderName| name.eq_ignore_ascii_case(known.as_str().as_bytes());
        match name.len() {
            14 if is(&CONTENT_LENGTH) => {
                // One line of digits within the limit, or hyper decides (a second line, a
                // list, a bad value, a body too large for the codec to hold).
                let n = content_length(f.value)
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|&n| n <= max_body);
                match (length, n) {
                    (None, Some(n)) => length = Some(n),
                    _ => return Ok(Some(Parsed::HandOff)),
                }
            }
            17 if is(&TRANSFER_ENCODING) => return Ok(Some(Parsed::HandOff)),
            7 if is(&UPGRADE) => return Ok(Some(Parsed::HandOff)),
            6 if is(&EXPECT) => return Ok(Some(Parsed::HandOff)),
            10 if is(&CONNECTION) => close |= tokens(f.value).0,
            2 if is(&TE) => {
                trailers |= f
                    .value
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"));
            }
            _ => {}
        }
        *slot = [
            offset(name),
            fit(name.len()),
            offset(f.value),
            fit(f.value.len()),
        ];
    }
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| StatusCode::BAD_REQUEST)?;
    let path_at = [offset(path.as_bytes()), fit(path.len())];
    let head = buf.split_to(len).freeze();
    let range = |at: u32, len: u32| {
        let (at, len) = (at as usize, len as usize);
        at.checked_add(len)
            .filter(|&end| end <= head.len())
            .map(|end| at..end)
            .ok_or(StatusCode::BAD_REQUEST)
    };
    let uri = Uri::from_maybe_shared(head.slice(range(path_at[0], path_at[1])?))
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let mut headers = crate::util::spare::header_map(n);
    for &[name_at, name_len, value_at, value_len] in &*at {
        let name = HeaderName::from_bytes(&head[range(name_at, name_len)?])
            .map_err(|_| StatusCode::BAD_REQUEST)?;
        let value = HeaderValue::from_maybe_shared(head.slice(range(value_at, value_len)?))
            .map_err(|_| StatusCode::BAD_REQUEST)?;
        headers.append(name, value);
    }
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.headers = headers;
    Ok(Some(Parsed::Request {
        parts,
        body: length.unwrap_or(0),
        close,
        trailers,
    }))
}

/// How a response body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body: after `HEAD`, `1xx`, `204`, `304`.
    None,
    Length(u64),
    Chunked,
}

/// The client side of one connection while the codec serves it.
#[derive(Debug)]
pub(super) struct Conn<I> {
    io: I,
    /// Bytes read and not used yet.
    buf: BytesMut,
    /// The response being written (kept for its allocation).
    out: Vec<u8>,
    max_head: usize,
    /// The largest body the codec reads itself.
    max_body: usize,
}

/// What became of the wait for a request head.
#[allow(clippy::large_enum_variant)]
pub(super) enum Next {
    Request(Parsed),
    /// The client closed, the read failed or timed out, the server is shutting down, or the
    /// head was refused (and answered).
    Closed,
}

impl<I: AsyncRead + AsyncWrite + Unpin> Conn<I> {
    /// `max_body`: the largest request body the codec reads itself (see [`parse`]).
    pub(super) fn new(io: I, max_head: usize, max_body: usize) -> Self {
        Conn {
            io,
            buf: BytesMut::with_capacity(READ),
            out: Vec::new(),
            max_head,
            max_body,
        }
    }

    /// The connection and what was read from it but not used: for hyper to go on with.
    pub(super) fn into_parts(self) -> (I, Bytes) {
        (self.io, self.buf.freeze())
    }

    /// Reads until a whole request head is in the buffer. `stopping` is asked before every
    /// read: once it says yes, the connection is closed (the task is woken for it by the
    /// server's shutdown signal).
    pub(super) async fn next(&mut self, stopping: impl Fn() -> bool) -> Next {
        loop {
            if !self.buf.is_empty() {
                match parse(&mut self.buf, self.max_head, self.max_body) {
                    Ok(Some(parsed)) => return Next::Request(parsed),
                    Ok(None) => {}
                    Err(status) => {
                        self.refuse(status).await;
                        return Next::Closed;
                    }
                }
            }
            self.make_room();
            let read = poll_fn(|cx| {
                if stopping() {
                    return Poll::Ready(Ok(0));
                }
                pin!(self.io.read_buf(&mut self.buf)).poll(cx)
            });
            match read.await {
                Ok(0) | Err(_) => return Next::Closed,
                Ok(_) => {}
            }
        }
    }

    /// Reads the `len` bytes of a request's body (`Parsed::Request::body`) and takes them out
    /// of the buffer; `None` if the client closes or the read fails (or times out) first.
    /// What follows the body stays for the next request.
    pub(super) async fn body(&mut self, len: usize) -> Option<Bytes> {
        // Bounded: each read adds at least one byte, and there is room for all of the body.
        while self.buf.len() < len {
            self.buf.reserve(len - self.buf.len());
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
        Some(self.buf.split_to(len).freeze())
    }

    fn make_room(&mut self) {
        if self.buf.capacity() - self.buf.len() < MIN_READ {
            self.buf.reserve(READ);
        }
    }

    /// Waits for the stack's response while watching the client: bytes of a pipelined next
    /// request are kept (up to the header limit); a client that closes or fails gets its
    /// request dropped (`None`).
    pub(super) async fn response<F, T>(&mut self, mut fut: Pin<&mut F>) -> Option<T>
    where
        F: Future<Output = Result<T, std::convert::Infallible>>,
    {
        poll_fn(|cx| {
            if let Poll::Ready(Ok(rsp)) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(rsp));
            }
            // Bounded: each turn reads at least one byte of at most `max_head`.
            while self.buf.len() < self.max_head {
                self.make_room();
                match pin!(self.io.read_buf(&mut self.buf)).poll(cx) {
                    Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(None),
                    Poll::Ready(Ok(_)) => {}
                    Poll::Pending => break,
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Answers a refused head and closes.
    async fn refuse(&mut self, status: StatusCode) {
        self.out.clear();
        status_line(&mut self.out, status);
        self.out
            .extend_from_slice(b"content-length: 0\r\nconnection: close\r\n");
        date(&mut self.out);
        self.out.extend_from_slice(b"\r\n");
        let _ = self.flush().await;
        let _ = self.io.shutdown().await;
    }

    /// Writes `rsp` (to a `HEAD` request when `head_request`); `close`: the connection closes
    /// after it, and the response says so; `trailers`: the client takes trailers. Returns
    /// whether the connection can serve another request.
    pub(super) async fn respond<B>(
        &mut self,
        rsp: Response<B>,
        head_request: bool,
        mut close: bool,
        trailers: bool,
    ) -> bool
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = rsp.into_parts();
        let status = parts.status;
        close |= status == StatusCode::SWITCHING_PROTOCOLS
            || parts
                .headers
                .get_all(CONNECTION)
                .iter()
                .any(|v| tokens(v.as_bytes()).0);
        let mut body = pin!(body);
        let no_body = head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let framing = if no_body {
            // A `HEAD` answer made here rather than relayed (no length field) tells the
            // length of its body, as hyper's does.
            match body.size_hint().exact() {
                Some(n) if head_request && n > 0 && !parts.headers.contains_key(CONTENT_LENGTH) => {
                    Framing::Length(n)
                }
                _ => Framing::None,
            }
        } else {
            match body.size_hint().exact() {
                Some(n) => Framing::Length(n),
                None => Framing::Chunked,
            }
        };
        // A `HEAD` or `304` response describes the body it does not carry: its length fields
        // stay. Elsewhere the codec frames the body itself.
        let keep_length = no_body
            && (head_request || status == StatusCode::NOT_MODIFIED)
            && status != StatusCode::NO_CONTENT;
        self.out.clear();
        status_line(&mut self.out, status);
        let mut dated = false;
        for (name, value) in &parts.headers {
            if (!keep_length && (name == CONTENT_LENGTH || name == TRANSFER_ENCODING))
                || (close && name == CONNECTION)
            {
                continue;
            }
            dated |= name == DATE;
            field(&mut self.out, name.as_str(), value);
        }
        if !dated {
            date(&mut self.out);
        }
        // Written: the map serves the next head read on this thread (`util::spare`).
        crate::util::spare::give_back_headers(parts.headers);
        match framing {
            Framing::None => {}
            Framing::Length(n) => {
                self.out.extend_from_slice(b"content-length: ");
                self.out.extend_from_slice(decimal(n, &mut [0; 20]));
                self.out.extend_from_slice(b"\r\n");
            }
            Framing::Chunked => self
                .out
                .extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
        if close {
            self.out.extend_from_slice(b"connection: close\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        let whole = match framing {
            Framing::None => true,
            Framing::Length(_) if no_body => true,
            Framing::Length(n) => self.length_body(body.as_mut(), n).await.is_ok(),
            Framing::Chunked => self.chunked_body(body.as_mut(), trailers).await.is_ok(),
        };
        let sent = whole && self.flush().await.is_ok();
        if self.out.capacity() > KEEP_OUT {
            self.out = Vec::new();
        }
        sent && !close
    }

    /// Closes the connection (a `FIN` after what was written).
    pub(super) async fn close(mut self) {
        let _ = self.io.shutdown().await;
    }

    /// Writes a body of exactly `len` bytes; anything else is an error (the connection then
    /// closes, so the client sees the response cut short).
    async fn length_body<B>(&mut self, mut body: Pin<&mut B>, len: u64) -> io::Result<()>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let mut left = len;
        while left != 0 && !body.is_end_stream() {
            let Some(frame) = self.frame(body.as_mut()).await? else {
                break;
            };
            if let Ok(data) = frame.into_data() {
                let n = data.len() as u64;
                if n > left {
                    return Err(io::Error::other("response body longer than its length"));
                }
                left -= n;
                self.data(data).await?;
            }
        }
        if left != 0 {
            return Err(io::Error::other("response body shorter than its length"));
        }
        Ok(())
    }

    /// Writes a body in chunks, then its trailers if the client takes them.
    async fn chunked_body<B>(&mut self, mut body: Pin<&mut B>, trailers: bool) -> io::Result<()>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let mut last = None;
        while !body.is_end_stream() {
            let Some(frame) = self.frame(body.as_mut()).await? else {
                break;
            };
            match frame.into_data() {
                Ok(data) if data.is_empty() => {}
                Ok(data) => {
                    let mut size = [0u8; 16];
                    self.out.extend_from_slice(hex(data.len(), &mut size));
                    self.out.extend_from_slice(b"\r\n");
                    self.data(data).await?;
                    self.out.extend_from_slice(b"\r\n");
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        last = Some(t);
                    }
                    break;
                }
            }
        }
        self.out.extend_from_slice(b"0\r\n");
        if let (true, Some(t)) = (trailers, last) {
            for (name, value) in &t {
                field(&mut self.out, name.as_str(), value);
            }
        }
        self.out.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// The body's next frame: taken at once when it is ready; otherwise what is buffered is
    /// written first, then the frame is waited for.
    async fn frame<B>(&mut self, mut body: Pin<&mut B>) -> io::Result<Option<Frame<Bytes>>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let ready = {
            let mut cx = Context::from_waker(Waker::noop());
            match body.as_mut().poll_frame(&mut cx) {
                Poll::Ready(polled) => Some(polled.transpose().map_err(io_error)),
                Poll::Pending => None,
            }
        };
        if let Some(frame) = ready {
            return frame;
        }
        self.flush().await?;
        poll_fn(|cx| body.as_mut().poll_frame(cx))
            .await
            .transpose()
            .map_err(io_error)
    }

    /// Queues `data` behind what is buffered, or writes both when it is large.
    async fn data(&mut self, data: Bytes) -> io::Result<()> {
        if data.len() <= COPY_MAX {
            self.out.extend_from_slice(&data);
            return Ok(());
        }
        self.flush().await?;
        self.io.write_all(&data).await
    }

    /// Writes what is buffered.
    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.out.clear();
        }
        self.io.flush().await
    }
}

/// A response body's error, as the I/O error that ends the connection.
fn io_error(e: impl Into<BoxError>) -> io::Error {
    io::Error::other(e.into())
}

/// `HTTP/1.1 200 OK`: the reason phrase is the canonical one, or none.
fn status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `n` in hexadecimal (a chunk size), written into `buf`.
fn hex(mut n: usize, buf: &mut [u8; 16]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

thread_local! {
    /// The `Date` field of this second, formatted once per second per thread.
    static DATE_LINE: std::cell::RefCell<(u64, [u8; 29])> =
        const { std::cell::RefCell::new((u64::MAX, [0; 29])) };
}

/// Writes a `Date` field for now.
fn date(out: &mut Vec<u8>) {
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let written = DATE_LINE.try_with(|line| {
        let Ok(mut line) = line.try_borrow_mut() else {
            return false;
        };
        if line.0 != secs {
            let text = httpdate::fmt_http_date(now);
            if text.len() != line.1.len() {
                return false;
            }
            line.1.copy_from_slice(text.as_bytes());
            line.0 = secs;
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(&line.1);
        out.extend_from_slice(b"\r\n");
        true
    });
    if written != Ok(true) {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(httpdate::fmt_http_date(now).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// A connection handed to hyper: what the codec read but did not use comes first.
#[derive(Debug)]
pub(super) struct Rewind<I> {
    pre: Bytes,
    inner: I,
}

impl<I> Rewind<I> {
    pub(super) fn new(inner: I, pre: Bytes) -> Self {
        Rewind { pre, inner }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pre.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.pre.len().min(buf.remaining());
        buf.put_slice(&self.pre[..n]);
        self.pre.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The largest body [`fuzz_request`] lets the codec read.
#[cfg(any(test, fuzzing))]
const FUZZ_MAX_BODY: usize = 1024;

/// Parses `data` as the bytes a client sent, request after request, as the connection does
/// (bodies of up to [`FUZZ_MAX_BODY`] bytes read by the codec): for the fuzz target
/// `h1_request` and the property test below. Never panics.
#[cfg(any(test, fuzzing))]
#[allow(unreachable_pub)]
pub fn fuzz_request(data: &[u8], max_head: usize) {
    let mut buf = BytesMut::from(data);
    // Each request taken shortens the buffer: `data.len() + 1` turns are enough.
    for _ in 0..=data.len() {
        match parse(&mut buf, max_head, FUZZ_MAX_BODY) {
            Ok(Some(Parsed::Request { parts, body, .. })) => {
                // What the forwarding layer reads of every request.
                let _ = (parts.uri.path(), parts.uri.query(), parts.headers.len());
                assert!(body <= FUZZ_MAX_BODY, "a body past the limit");
                // The body, as the connection takes it; what follows is the next request.
                if buf.len() < body {
                    return;
                }
                buf.advance(body);
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 8 * 1024;
    const BODY: usize = 64;

    fn parsed(bytes: &[u8]) -> (Result<Option<Parsed>, Refused>, BytesMut) {
        let mut buf = BytesMut::from(bytes);
        let r = parse(&mut buf, MAX, BODY);
        (r, buf)
    }

    fn request(bytes: &[u8]) -> (http::request::Parts, bool, bool) {
        match parsed(bytes).0 {
            Ok(Some(Parsed::Request {
                parts,
                body: 0,
                close,
                trailers,
            })) => (parts, close, trailers),
            other => panic!("{other:?}"),
        }
    }

    /// A head with fewer fields than the codec records on the stack, exactly as many, and
    /// more: every field arrives, in order, with its value.
    #[test]
    fn heads_of_any_field_count_arrive_whole() {
        for count in [0, FEW_FIELDS - 1, FEW_FIELDS, FEW_FIELDS + 1, 60] {
            let mut raw = b"GET / HTTP/1.1\r\nhost: a\r\n".to_vec();
            for i in 0..count {
                raw.extend_from_slice(format!("x-f{i}: v{i}\r\n").as_bytes());
            }
            raw.extend_from_slice(b"\r\n");
            let (parts, _, _) = request(&raw);
            assert_eq!(parts.headers.len(), count + 1, "{count} fields");
            let names: Vec<_> = parts.headers.keys().skip(1).map(|n| n.as_str()).collect();
            let want: Vec<_> = (0..count).map(|i| format!("x-f{i}")).collect();
            assert_eq!(names, want);
            for i in 0..count {
                assert_eq!(parts.headers[format!("x-f{i}").as_str()], format!("v{i}"));
            }
        }
    }

    #[test]
    fn a_request_without_a_body_is_read_and_taken_out_of_the_buffer() {
        let mut buf = BytesMut::from(
            &b"GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nX-Two: 1\r\nx-two: 2\r\n\r\nGET /next"
                [..],
        );
        let Ok(Some(Parsed::Request {
            parts,
            body: 0,
            close,
            trailers,
        })) = parse(&mut buf, MAX, BODY)
        else {
            panic!()
        };
        assert_eq!(parts.method, Method::GET);
        assert_eq!(parts.uri, "/a/b?c=d");
        assert_eq!(parts.version, http::Version::HTTP_11);
        assert_eq!(parts.headers["host"], "example.com");
        let two: Vec<_> = parts.headers.get_all("x-two").iter().collect();
        assert_eq!(two, ["1", "2"]);
        assert!(!close && !trailers);
        assert_eq!(&buf[..], b"GET /next", "the pipelined rest stays");
        assert!(matches!(parse(&mut buf, MAX, BODY), Ok(None)), "incomplete");
    }

    #[test]
    fn connection_close_te_trailers_and_a_zero_length_are_understood() {
        let (_, close, trailers) = request(
            b"GET / HTTP/1.1\r\nconnection: keep-alive, Close\r\nTE: gzip, trailers\r\n\r\n",
        );
        assert!(close && trailers);
        let (parts, ..) = request(b"DELETE /x HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(parts.method, Method::DELETE);
        assert_eq!(parts.headers["content-length"], "0");
        let (parts, ..) = request(b"DELETE /x HTTP/1.1\r\ncontent-length: 00\r\n\r\n");
        assert_eq!(parts.headers["content-length"], "00");
        let (parts, ..) = request(b"OPTIONS * HTTP/1.1\r\n\r\n");
        assert_eq!(parts.uri, "*");
        let (parts, ..) = request(b"GET http://a.example/p HTTP/1.1\r\n\r\n");
        assert_eq!(parts.uri.authority().map(|a| a.as_str()), Some("a.example"));
    }

    #[test]
    fn a_body_by_one_length_within_the_limit_is_the_codec_s() {
        let mut buf = BytesMut::from(
            &b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /next"[..],
        );
        let Ok(Some(Parsed::Request { parts, body, .. })) = parse(&mut buf, MAX, BODY) else {
            panic!()
        };
        assert_eq!((parts.method, body), (Method::POST, 5));
        assert_eq!(&buf[..], b"helloGET /next", "the body follows the head");
        let limit = format!("PUT / HTTP/1.1\r\ncontent-length: {BODY}\r\n\r\n");
        let mut buf = BytesMut::from(limit.as_bytes());
        let Ok(Some(Parsed::Request { body, .. })) = parse(&mut buf, MAX, BODY) else {
            panic!()
        };
        assert_eq!(body, BODY);
    }

    #[test]
    fn bodies_upgrades_expectations_connect_and_http_1_0_are_left_to_hyper() {
        let over = format!("POST / HTTP/1.1\r\ncontent-length: {}\r\n\r\n", BODY + 1);
        for head in [
            over.as_bytes(),
            b"POST / HTTP/1.1\r\ncontent-length: 18446744073709551616\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: 0\r\ncontent-length: 0\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\ncontent-length: 5, 5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\ncontent-length: +5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
            b"GET / HTTP/1.1\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nexpect: 100-continue\r\n\r\n",
            b"CONNECT a.example:443 HTTP/1.1\r\nhost: a.example:443\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
        ] {
            let (r, buf) = parsed(head);
            assert!(
                matches!(r, Ok(Some(Parsed::HandOff))),
                "{}: {r:?}",
                String::from_utf8_lossy(head)
            );
            assert_eq!(&buf[..], head, "the head stays for hyper");
        }
    }

    #[test]
    fn bad_heads_are_refused_with_the_right_status() {
        let cases: [(&[u8], StatusCode); 6] = [
            (
                b"GET / HTTP/1.1\r\nx-folded: a\r\n b\r\n\r\n",
                StatusCode::BAD_REQUEST,
            ),
            (
                b"GET / HTTP/1.1\r\nbad name: a\r\n\r\n",
                StatusCode::BAD_REQUEST,
            ),
            (b"G\x00T / HTTP/1.1\r\n\r\n", StatusCode::BAD_REQUEST),
            (b"GET /\x7f HTTP/1.1\r\n\r\n", StatusCode::BAD_REQUEST),
            (
                b"GET / HTTP/2.0\r\n\r\n",
                StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            ),
            (b"GET  / HTTP/1.1\r\n\r\n", StatusCode::BAD_REQUEST),
        ];
        for (head, status) in cases {
            assert_eq!(
                parsed(head).0.unwrap_err(),
                status,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            parsed(many.as_bytes()).0.unwrap_err(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }

    #[test]
    fn a_head_over_the_limit_is_refused_whole_or_in_part() {
        let long = format!("GET / HTTP/1.1\r\nx-long: {}\r\n\r\n", "a".repeat(MAX));
        assert_eq!(
            parsed(long.as_bytes()).0.unwrap_err(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        // Still incomplete at the limit.
        let cut = &long.as_bytes()[..MAX];
        assert_eq!(
            parsed(cut).0.unwrap_err(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        assert!(matches!(parsed(&cut[..MAX - 1]).0, Ok(None)));
    }

    #[test]
    fn chunk_sizes_are_written_in_hexadecimal() {
        assert_eq!(hex(0, &mut [0; 16]), b"0");
        assert_eq!(hex(0x1a2f, &mut [0; 16]), b"1a2f");
        assert_eq!(
            hex(usize::MAX, &mut [0; 16]),
            format!("{:x}", usize::MAX).as_bytes()
        );
    }

    #[test]
    fn the_date_field_is_an_http_date_of_now() {
        let mut out = Vec::new();
        date(&mut out);
        date(&mut out);
        let text = std::str::from_utf8(&out).unwrap();
        let lines: Vec<_> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 2);
        for line in lines {
            let value = line.strip_prefix("date: ").unwrap();
            let when = httpdate::parse_http_date(value).unwrap();
            let age = std::time::SystemTime::now()
                .duration_since(when)
                .unwrap_or_default();
            assert!(age < std::time::Duration::from_secs(5), "{value}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 2000,
            rng_seed: proptest::test_runner::RngSeed::Fixed(16),
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// Arbitrary bytes, and valid requests with one byte changed, never panic the reader.
        #[test]
        fn no_input_panics_the_request_reader(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            at in 0usize..200,
            byte in proptest::prelude::any::<u8>(),
        ) {
            fuzz_request(&raw, 64);
            fuzz_request(&raw, MAX);
            let mut valid = b"GET /a?b HTTP/1.1\r\nhost: x\r\nte: trailers\r\ncontent-length: 0\r\n\r\nGET / HTTP/1.1\r\n\r\n".to_vec();
            let i = at % valid.len();
            valid[i] = byte;
            fuzz_request(&valid, MAX);
            let mut posted = b"POST /a HTTP/1.1\r\ncontent-length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n".to_vec();
            let i = at % posted.len();
            posted[i] = byte;
            fuzz_request(&posted, MAX);
        }

        /// However the bytes of a request arrive, the parse once it is whole is the same.
        #[test]
        fn a_request_split_anywhere_parses_the_same(cut in 0usize..80) {
            let whole = b"GET /p?q=1 HTTP/1.1\r\nhost: h\r\nconnection: close\r\nx-a: 1\r\n\r\n";
            let cut = cut % whole.len();
            let mut buf = BytesMut::from(&whole[..cut]);
            proptest::prop_assert!(matches!(parse(&mut buf, MAX, BODY), Ok(None)));
            buf.extend_from_slice(&whole[cut..]);
            let Ok(Some(Parsed::Request { parts, close, .. })) = parse(&mut buf, MAX, BODY) else {
                return Err(proptest::test_runner::TestCaseError::fail("not parsed"));
            };
            proptest::prop_assert!(close);
            proptest::prop_assert_eq!(parts.uri, "/p?q=1");
            proptest::prop_assert_eq!(parts.headers.len(), 3);
            proptest::prop_assert!(buf.is_empty());
        }
    }
}
