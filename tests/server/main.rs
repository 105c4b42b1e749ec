//! The server's own HTTP/1.1 codec, through real loopback sockets: a raw client writes bytes
//! (pipelined, with and without bodies, malformed), a scripted service answers, and the test
//! reads back exactly what the server wrote.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_lb::key::ClientAddr;
use tower_lb::server::{RequestBody, Server, ServerBuilder};

#[path = "../support/mod.rs"]
mod support;
use support::PerInstance;

/// Every loop and wait in this file ends within this.
const LIMIT: Duration = Duration::from_secs(10);

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed_unsync()
}

/// A body in frames of unknown total size, ending with `trailers` if any.
fn frames(parts: &[&'static [u8]], trailers: Option<HeaderMap>) -> Body {
    let mut v: Vec<Result<Frame<Bytes>, Infallible>> = parts
        .iter()
        .map(|p| Ok(Frame::data(Bytes::from_static(p))))
        .collect();
    if let Some(t) = trailers {
        v.push(Ok(Frame::trailers(t)));
    }
    StreamBody::new(futures_util::stream::iter(v)).boxed_unsync()
}

/// What the service saw and holds.
#[derive(Default)]
struct Seen {
    /// Requests that reached the service.
    calls: AtomicUsize,
    /// Slow requests dropped before they were answered.
    dropped: AtomicUsize,
}

struct CountDrop(Arc<Seen>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// Answers by path: `/len` (5 bytes, known length), `/chunks` (unknown length), `/trailers`,
/// `/204`, `/dated` (a `Date` of its own), `/close` (says `Connection: close`), `/big`
/// (200 KiB known), `/bigchunks` (3 × 40 KiB unknown), `/slow` (never answers), `/echo` (the
/// body back), `/hint` (the body's exact size hint, its frames and its length, then the body),
/// `/who` (the peer extension, the method and the headers' count).
async fn handle(seen: Arc<Seen>, req: Request<RequestBody>) -> Result<Response<Body>, Infallible> {
    seen.calls.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    let rsp = match path.as_str() {
        "/len" => Response::new(full("hello")),
        "/chunks" => Response::new(frames(&[b"abc", b"", b"def"], None)),
        "/trailers" => {
            let mut t = HeaderMap::new();
            t.insert("x-checksum", HeaderValue::from_static("42"));
            Response::new(frames(&[b"data"], Some(t)))
        }
        "/204" => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Empty::new().boxed_unsync())
            .unwrap(),
        "/dated" => Response::builder()
            .header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
            .body(full("old"))
            .unwrap(),
        "/close" => Response::builder()
            .header("connection", "close")
            .body(full("bye"))
            .unwrap(),
        "/big" => Response::new(full(vec![b'b'; 200 * 1024])),
        "/bigchunks" => {
            static PART: [u8; 40 * 1024] = [b'c'; 40 * 1024];
            Response::new(frames(&[&PART, &PART, &PART], None))
        }
        "/slow" => {
            let _guard = CountDrop(seen.clone());
            std::future::pending::<()>().await;
            unreachable!()
        }
        "/echo" => {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            Response::new(full(body))
        }
        "/hint" => {
            let mut body = req.into_body();
            let hint = http_body::Body::size_hint(&body).exact();
            let (mut frames, mut data) = (0, Vec::new());
            while let Some(frame) = body.frame().await {
                frames += 1;
                data.extend_from_slice(&frame.unwrap().into_data().unwrap());
            }
            let text = format!("{hint:?} {frames} {} ", data.len());
            Response::new(full([text.as_bytes(), &data].concat()))
        }
        _ => {
            let peer = req.extensions().get::<ClientAddr>().map(|c| c.0.ip());
            let text = format!(
                "{} {:?} {} {}",
                req.method(),
                peer,
                req.headers().len(),
                req.uri()
            );
            Response::new(full(text))
        }
    };
    Ok(rsp)
}

struct Running {
    addr: SocketAddr,
    seen: Arc<Seen>,
    stop: Option<oneshot::Sender<()>>,
    done: JoinHandle<()>,
}

impl Running {
    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(LIMIT, self.done)
            .await
            .unwrap()
            .unwrap();
    }
}

/// Serves `svc` on a new loopback listener until the sender is used.
async fn start<S>(
    builder: ServerBuilder,
    svc: S,
) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<()>)
where
    S: tower::Service<Request<RequestBody>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let server = builder.build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        server
            .serve(listener, svc, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (addr, stop, done)
}

/// Serves [`handle`].
async fn serve(builder: ServerBuilder) -> Running {
    let seen = Arc::new(Seen::default());
    let svc = {
        let seen = seen.clone();
        tower::service_fn(move |req| handle(seen.clone(), req))
    };
    let (addr, stop, done) = start(builder, svc).await;
    Running {
        addr,
        seen,
        stop: Some(stop),
        done,
    }
}

/// One response as it came over the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    trailers: Vec<(String, String)>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A raw client connection that reads responses itself.
struct Client {
    s: TcpStream,
    buf: BytesMut,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// Reads more; false at the end of the connection.
    async fn fill(&mut self) -> bool {
        self.buf.reserve(16 * 1024);
        tokio::time::timeout(LIMIT, self.s.read_buf(&mut self.buf))
            .await
            .expect("an answer in time")
            .map(|n| n > 0)
            .unwrap_or(false)
    }

    /// Reads a line (without its CRLF).
    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf.split_to(i + 2);
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            assert!(self.fill().await, "closed within a line");
        }
    }

    async fn exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "closed within a body");
        }
        self.buf.split_to(n).to_vec()
    }

    async fn fields(&mut self) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                return fields;
            }
            let (n, v) = line.split_once(':').expect("a field line");
            fields.push((n.to_owned(), v.trim().to_owned()));
        }
    }

    /// Reads one response; `head_request`: it has no body.
    async fn answer(&mut self, head_request: bool) -> Answer {
        let status_line = self.line().await;
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status: u16 = status_line[9..12].parse().unwrap();
        let headers = self.fields().await;
        let mut a = Answer {
            status,
            headers,
            body: Vec::new(),
            trailers: Vec::new(),
        };
        if head_request || status == 204 || status == 304 {
            return a;
        }
        if a.header("transfer-encoding") == Some("chunked") {
            assert!(a.header("content-length").is_none());
            loop {
                let size = usize::from_str_radix(&self.line().await, 16).unwrap();
                if size == 0 {
                    a.trailers = self.fields().await;
                    return a;
                }
                a.body.extend(self.exact(size).await);
                assert_eq!(self.line().await, "");
            }
        }
        let len: usize = a.header("content-length").expect("framed").parse().unwrap();
        a.body = self.exact(len).await;
        a
    }

    /// Whether the server closes the connection (within the limit), with nothing more sent.
    async fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill().await
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_with_their_framing() {
    let server = serve(Server::builder()).await;
    let mut c = Client::connect(server.addr).await;
    c.send(
        b"GET /who?x=1 HTTP/1.1\r\nhost: a\r\nx-one: 1\r\n\r\n\
          HEAD /len HTTP/1.1\r\nhost: a\r\n\r\n\
          GET /chunks HTTP/1.1\r\nhost: a\r\n\r\n\
          GET /204 HTTP/1.1\r\nhost: a\r\n\r\n\
          GET /len HTTP/1.1\r\nhost: a\r\n\r\n\
          GET /dated HTTP/1.1\r\nhost: a\r\n\r\n",
    )
    .await;
    let who = c.answer(false).await;
    assert_eq!(who.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&who.body),
        "GET Some(127.0.0.1) 2 /who?x=1",
        "method, peer, fields and target as sent"
    );
    let date = httpdate::parse_http_date(who.header("date").unwrap()).unwrap();
    assert!(
        std::time::SystemTime::now()
            .duration_since(date)
            .unwrap_or_default()
            < Duration::from_secs(5)
    );
    let head = c.answer(true).await;
    assert_eq!(head.header("content-length"), Some("5"), "{head:?}");
    let chunks = c.answer(false).await;
    assert_eq!(chunks.body, b"abcdef");
    let no_content = c.answer(false).await;
    assert_eq!(no_content.status, 204);
    assert_eq!(no_content.header("content-length"), None);
    assert_eq!(no_content.header("transfer-encoding"), None);
    let len = c.answer(false).await;
    assert_eq!((len.status, &len.body[..]), (200, &b"hello"[..]));
    assert_eq!(len.header("content-length"), Some("5"));
    assert_eq!(len.header("connection"), None, "kept alive");
    let dated = c.answer(false).await;
    let dates: Vec<_> = dated.headers.iter().filter(|(n, _)| n == "date").collect();
    assert_eq!(
        dates.len(),
        1,
        "the service's own date, not a second: {dated:?}"
    );
    assert_eq!(dates[0].1, "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(server.seen.calls.load(Ordering::SeqCst), 6);
    server.shutdown().await;
}

#[tokio::test]
async fn a_request_with_a_body_hands_the_connection_to_hyper_without_losing_a_byte() {
    let server = serve(Server::builder()).await;
    let mut c = Client::connect(server.addr).await;
    // Sent in one write: the codec has read the chunked POST (and what follows) before it
    // sees that hyper must read its body. (The POST by length is the codec's own.)
    c.send(
        b"GET /len HTTP/1.1\r\nhost: a\r\n\r\n\
          POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 11\r\n\r\nhello world\
          POST /echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
          GET /who HTTP/1.1\r\nhost: a\r\n\r\n",
    )
    .await;
    assert_eq!(c.answer(false).await.body, b"hello");
    assert_eq!(c.answer(false).await.body, b"hello world");
    assert_eq!(c.answer(false).await.body, b"abc");
    let who = c.answer(false).await;
    assert_eq!(
        String::from_utf8_lossy(&who.body),
        "GET Some(127.0.0.1) 1 /who"
    );
    assert_eq!(server.seen.calls.load(Ordering::SeqCst), 4);
    server.shutdown().await;
}

/// Where `connection` stands among an answer's fields relative to `content-length`: the one
/// thing that tells the two writers apart on the wire (the codec writes the framing field
/// first, hyper the `Connection` field). Asks with `Connection: close`.
async fn connection_first(c: &mut Client) -> bool {
    c.send(b"GET /len HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        .await;
    let a = c.answer(false).await;
    assert_eq!(a.body, b"hello");
    let at = |name: &str| a.headers.iter().position(|(n, _)| n == name).unwrap();
    at("connection") < at("content-length")
}

#[tokio::test]
async fn a_small_body_by_length_is_the_codec_s_and_the_connection_stays_with_it() {
    let server = serve(Server::builder()).await;
    let mut c = Client::connect(server.addr).await;
    // The head and the start of the body, then the rest a moment later: the codec waits for
    // all of it and hands the stack one frame of the exact size.
    c.send(b"POST /hint HTTP/1.1\r\nhost: a\r\ncontent-length: 11\r\n\r\nhello")
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(b" worldGET /len HTTP/1.1\r\nhost: a\r\n\r\n").await;
    let a = c.answer(false).await;
    assert_eq!(
        String::from_utf8_lossy(&a.body),
        "Some(11) 1 11 hello world"
    );
    assert_eq!(
        c.answer(false).await.body,
        b"hello",
        "what followed the body"
    );
    // The largest body the codec reads itself, then one byte more (hyper's, streamed).
    let limit = 64 * 1024;
    for (len, codec) in [(limit, true), (limit + 1, false)] {
        let mut c = Client::connect(server.addr).await;
        c.send(
            format!("PUT /hint HTTP/1.1\r\nhost: a\r\ncontent-length: {len}\r\n\r\n").as_bytes(),
        )
        .await;
        c.send(&vec![b'x'; len]).await;
        let a = c.answer(false).await;
        let at = a.body.iter().position(|&b| b == b'x').unwrap();
        let text = String::from_utf8_lossy(&a.body[..at]).into_owned();
        let frames = if codec { "1" } else { "" };
        assert!(text.starts_with(&format!("Some({len}) {frames}")), "{text}");
        assert!(text.ends_with(&format!(" {len} ")), "{text}");
        assert_eq!(a.body.len() - at, len, "the whole body");
        assert_eq!(
            connection_first(&mut c).await,
            !codec,
            "the codec serves on after a body of {len}"
        );
        assert!(c.closed().await);
    }
    assert_eq!(server.seen.calls.load(Ordering::SeqCst), 6);
    server.shutdown().await;
}

#[tokio::test]
async fn an_upload_cut_short_never_reaches_the_service() {
    let server =
        serve(Server::builder().header_read_timeout(Some(Duration::from_millis(300)))).await;
    // The client closes within the body.
    let mut c = Client::connect(server.addr).await;
    c.send(b"POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\nonly ten..")
        .await;
    c.s.shutdown().await.unwrap();
    assert!(c.closed().await);
    // The client stalls within the body: the head's deadline covers it.
    let mut c = Client::connect(server.addr).await;
    c.send(b"POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\nonly ten..")
        .await;
    let started = tokio::time::Instant::now();
    assert!(c.closed().await);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.seen.calls.load(Ordering::SeqCst), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_body_over_the_server_s_limit_is_refused_with_413() {
    let server = serve(Server::builder().max_body_bytes(Some(10))).await;
    let mut c = Client::connect(server.addr).await;
    c.send(b"POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\n0123456789")
        .await;
    assert_eq!(c.answer(false).await.body, b"0123456789");
    let mut c = Client::connect(server.addr).await;
    c.send(b"POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 11\r\n\r\n0123456789A")
        .await;
    assert_eq!(c.answer(false).await.status, 413);
    assert_eq!(server.seen.calls.load(Ordering::SeqCst), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn trailers_go_only_to_a_client_that_takes_them() {
    let server = serve(Server::builder()).await;
    let mut c = Client::connect(server.addr).await;
    c.send(b"GET /trailers HTTP/1.1\r\nhost: a\r\nte: trailers\r\n\r\nGET /trailers HTTP/1.1\r\nhost: a\r\n\r\n")
        .await;
    let with = c.answer(false).await;
    assert_eq!(with.body, b"data");
    assert_eq!(with.trailers, [("x-checksum".to_owned(), "42".to_owned())]);
    let without = c.answer(false).await;
    assert_eq!(without.body, b"data");
    assert!(without.trailers.is_empty(), "{without:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn long_bodies_arrive_whole() {
    let server = serve(Server::builder()).await;
    let mut c = Client::connect(server.addr).await;
    c.send(b"GET /big HTTP/1.1\r\nhost: a\r\n\r\nGET /bigchunks HTTP/1.1\r\nhost: a\r\n\r\n")
        .await;
    let big = c.answer(false).await;
    assert_eq!(big.body.len(), 200 * 1024);
    assert!(big.body.iter().all(|&b| b == b'b'));
    let chunks = c.answer(false).await;
    assert_eq!(chunks.body.len(), 120 * 1024);
    assert!(chunks.body.iter().all(|&b| b == b'c'));
    server.shutdown().await;
}

#[tokio::test]
async fn connection_close_from_either_side_ends_the_connection_after_the_answer() {
    let server = serve(Server::builder()).await;
    let mut c = Client::connect(server.addr).await;
    c.send(b"GET /len HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\nGET /len HTTP/1.1\r\nhost: a\r\n\r\n")
        .await;
    let a = c.answer(false).await;
    assert_eq!(a.header("connection"), Some("close"));
    assert!(c.closed().await, "closed; the second request was not read");

    let mut c = Client::connect(server.addr).await;
    c.send(b"GET /close HTTP/1.1\r\nhost: a\r\n\r\n").await;
    let a = c.answer(false).await;
    assert_eq!(
        (a.header("connection"), &a.body[..]),
        (Some("close"), &b"bye"[..])
    );
    assert!(c.closed().await);
    assert_eq!(server.seen.calls.load(Ordering::SeqCst), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_heads_are_answered_and_closed_before_the_service() {
    let server = serve(Server::builder().max_header_bytes(8 * 1024)).await;
    let many: String = (0..=100).map(|i| format!("x-{i}: v\r\n")).collect();
    let long = format!("GET / HTTP/1.1\r\nx-long: {}\r\n\r\n", "a".repeat(9 * 1024));
    let cases: [(Vec<u8>, u16); 5] = [
        (b"GET / HTTP/1.1\r\nx-folded: a\r\n b\r\n\r\n".to_vec(), 400),
        (b"\x01GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/2.0\r\n\r\n".to_vec(), 505),
        (format!("GET / HTTP/1.1\r\n{many}\r\n").into_bytes(), 431),
        (long.into_bytes(), 431),
    ];
    for (bytes, status) in cases {
        let mut c = Client::connect(server.addr).await;
        c.send(&bytes).await;
        let a = c.answer(false).await;
        assert_eq!(a.status, status, "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(a.header("connection"), Some("close"));
        assert!(c.closed().await);
    }
    assert_eq!(server.seen.calls.load(Ordering::SeqCst), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_goes_away_has_its_request_dropped() {
    let server = serve(Server::builder()).await;
    let mut c = Client::connect(server.addr).await;
    c.send(b"GET /slow HTTP/1.1\r\nhost: a\r\n\r\n").await;
    let start = tokio::time::Instant::now();
    while server.seen.calls.load(Ordering::SeqCst) == 0 {
        assert!(start.elapsed() < LIMIT);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(server.seen.dropped.load(Ordering::SeqCst), 0);
    drop(c);
    while server.seen.dropped.load(Ordering::SeqCst) == 0 {
        assert!(start.elapsed() < LIMIT, "the request outlived its client");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_says_close_on_the_last_answer() {
    let server = serve(Server::builder().drain_timeout(Duration::from_secs(5))).await;
    let mut idle = Client::connect(server.addr).await;
    idle.send(b"GET /len HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert_eq!(idle.answer(false).await.header("connection"), None);
    // A request in flight when shutdown begins, on a second connection.
    let mut busy = Client::connect(server.addr).await;
    busy.send(b"GET /slow HTTP/1.1\r\nhost: a\r\n\r\n").await;
    let start = tokio::time::Instant::now();
    while server.seen.calls.load(Ordering::SeqCst) < 2 {
        assert!(start.elapsed() < LIMIT);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let Running {
        stop, done, seen, ..
    } = server;
    let _ = stop.unwrap().send(());
    assert!(idle.closed().await, "the idle connection is closed at once");
    // The slow request never ends on its own; its client leaving drops it, and with it the
    // last connection the drain waits for.
    assert_eq!(seen.dropped.load(Ordering::SeqCst), 0);
    drop(busy);
    tokio::time::timeout(LIMIT, done).await.unwrap().unwrap();
    assert_eq!(seen.dropped.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_request_in_flight_at_shutdown_is_answered_with_connection_close() {
    // A service that answers once told to.
    let (go, wait) = oneshot::channel::<()>();
    let wait = Arc::new(tokio::sync::Mutex::new(Some(wait)));
    let svc = tower::service_fn(move |_req: Request<RequestBody>| {
        let wait = wait.clone();
        async move {
            if let Some(w) = wait.lock().await.take() {
                let _ = w.await;
            }
            Ok::<_, Infallible>(Response::new(full("done")))
        }
    });
    let (addr, stop, done) = start(Server::builder(), svc).await;
    let mut c = Client::connect(addr).await;
    c.send(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = go.send(());
    let a = c.answer(false).await;
    assert_eq!((a.status, &a.body[..]), (200, &b"done"[..]));
    assert_eq!(a.header("connection"), Some("close"));
    assert!(c.closed().await);
    tokio::time::timeout(LIMIT, done).await.unwrap().unwrap();
}

#[tokio::test]
async fn hyper_http1_serves_the_same_requests_through_hyper() {
    let server = serve(Server::builder().hyper_http1(true)).await;
    let mut c = Client::connect(server.addr).await;
    c.send(
        b"GET /len HTTP/1.1\r\nhost: a\r\n\r\n\
          POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\nhi\
          GET /chunks HTTP/1.1\r\nhost: a\r\n\r\n",
    )
    .await;
    assert_eq!(c.answer(false).await.body, b"hello");
    assert_eq!(c.answer(false).await.body, b"hi");
    assert_eq!(c.answer(false).await.body, b"abcdef");
    // A fresh connection (after the POST above, hyper serves that one in any case).
    let mut c = Client::connect(server.addr).await;
    assert!(connection_first(&mut c).await, "hyper wrote the answer");
    assert!(c.closed().await);
    let mut c = Client::connect(server.addr).await;
    c.send(b"GET / HTTP/1.1\r\nx-folded: a\r\n b\r\n\r\n").await;
    assert_eq!(c.answer(false).await.status, 400);
    assert!(c.closed().await);
    server.shutdown().await;

    let server = serve(Server::builder()).await;
    let mut c = Client::connect(server.addr).await;
    assert!(
        !connection_first(&mut c).await,
        "the codec wrote the answer"
    );
    server.shutdown().await;
}

/// The codec calls one instance of the stack for all the requests of a connection, in turn:
/// the stack is not cloned per request (a clone per request takes and drops a reference on
/// every shared part of every layer).
#[tokio::test]
async fn a_connection_s_requests_go_through_one_instance_of_the_stack() {
    let clones = Arc::new(AtomicUsize::new(0));
    let svc = PerInstance::new("", clones.clone(), |_, n: usize| {
        Response::new(full(n.to_string()))
    });
    let (addr, stop, done) = start(Server::builder(), svc).await;
    let mut c = Client::connect(addr).await;
    for _ in 0..5 {
        c.send(b"GET / HTTP/1.1\r\nhost: a\r\n\r\nGET / HTTP/1.1\r\nhost: a\r\n\r\n")
            .await;
        c.answer(false).await;
        c.answer(false).await;
    }
    c.send(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    let last = c.answer(false).await;
    assert_eq!(
        String::from_utf8_lossy(&last.body),
        "11",
        "the 11th request on the connection met the instance that served the other 10"
    );
    let made = clones.load(Ordering::SeqCst);
    assert!(made <= 3, "{made} clones for one connection of 11 requests");
    let _ = stop.send(());
    tokio::time::timeout(LIMIT, done).await.unwrap().unwrap();
}
