//! `TargetClient` with `http2_only` (h2c towards targets) on real loopback sockets, counted at
//! the backends: one shared connection per target, gRPC-style trailers both ways, a new
//! connection when the old one is gone, and streams a target refused unprocessed
//! (`REFUSED_STREAM`, `GOAWAY`) sent elsewhere for any method, exactly once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};
use tower_lb::algorithm::RoundRobin;
use tower_lb::balance::Balance;
use tower_lb::error::{BoxError, ConnectFailed, is_caused_by};
use tower_lb::retry::{Jitter, ReplayBody, RetryLayer, RetryPolicy};
use tower_lb::upstream::TargetClient;
use tower_lb::{Target, TargetGroup};

/// Every wait in this file ends within this.
const LIMIT: Duration = Duration::from_secs(10);

type Body = UnsyncBoxBody<Bytes, BoxError>;

fn body(bytes: &'static [u8]) -> Body {
    Full::new(Bytes::from_static(bytes))
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// What an h2c backend saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    version: Version,
    authority: Option<String>,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

#[derive(Debug, Clone, Default)]
struct Log {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections accepted, and closed.
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

impl Log {
    fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

type TrailerBody =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// A cleartext HTTP/2 backend answering like a gRPC server (a body, then trailers). With
/// `close_after`, it shuts each connection down gracefully (`GOAWAY`) once it has answered that
/// many requests.
async fn grpc_backend(log: Log, close_after: Option<usize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            log.accepted.fetch_add(1, Ordering::SeqCst);
            let log = log.clone();
            tokio::spawn(async move {
                let done = Arc::new(tokio::sync::Notify::new());
                let answered = Arc::new(AtomicUsize::new(0));
                let svc = {
                    let (log, done, answered) = (log.clone(), done.clone(), answered.clone());
                    hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (log, done, answered) = (log.clone(), done.clone(), answered.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let collected = body.collect().await.ok();
                            let trailers = collected.as_ref().and_then(|c| c.trailers().cloned());
                            log.seen.lock().unwrap().push(Seen {
                                version: parts.version,
                                authority: parts.uri.authority().map(|a| a.to_string()),
                                headers: parts.headers,
                                body: collected.map(|c| c.to_bytes()).unwrap_or_default(),
                                trailers,
                            });
                            if close_after
                                .is_some_and(|n| answered.fetch_add(1, Ordering::SeqCst) + 1 >= n)
                            {
                                done.notify_one();
                            }
                            let mut trailers = HeaderMap::new();
                            trailers.insert("grpc-status", HeaderValue::from_static("0"));
                            let frames = vec![
                                Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x02hi"))),
                                Ok(Frame::trailers(trailers)),
                            ];
                            let mut rsp: Response<TrailerBody> =
                                Response::new(StreamBody::new(futures_util::stream::iter(frames)));
                            rsp.headers_mut().insert(
                                "content-type",
                                HeaderValue::from_static("application/grpc"),
                            );
                            Ok::<_, Infallible>(rsp)
                        }
                    })
                };
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc);
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = done.notified() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(LIMIT, conn).await;
                    }
                }
                log.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    addr
}

/// How the hand-written HTTP/2 backend turns every stream down.
#[derive(Debug, Clone, Copy)]
enum Refuse {
    /// `RST_STREAM` with `REFUSED_STREAM` on the stream.
    Stream,
    /// `GOAWAY` with last stream id 0: every stream the client opened is above it.
    GoAway,
}

/// An HTTP/2 backend written frame by frame that processes nothing: it reads the client's
/// preface, settles settings, and answers each request's `HEADERS` as `refuse` says. Counts the
/// streams it was offered.
async fn refusing_backend(refuse: Refuse, streams: Arc<AtomicUsize>) -> SocketAddr {
    const SETTINGS: u8 = 0x4;
    const HEADERS: u8 = 0x1;
    const RST_STREAM: u8 = 0x3;
    const GOAWAY: u8 = 0x7;
    const ACK: u8 = 0x1;
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let streams = streams.clone();
            tokio::spawn(async move {
                let mut preface = [0u8; 24];
                if s.read_exact(&mut preface).await.is_err() {
                    return;
                }
                assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
                let _ = s.write_all(&frame(SETTINGS, 0, 0, &[])).await;
                // Bounded: a client sends a handful of frames per stream.
                for _ in 0..1000 {
                    let mut head = [0u8; 9];
                    if s.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    let len = (usize::from(head[0]) << 16)
                        | (usize::from(head[1]) << 8)
                        | usize::from(head[2]);
                    let (kind, flags) = (head[3], head[4]);
                    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                    let mut payload = vec![0u8; len];
                    if s.read_exact(&mut payload).await.is_err() {
                        return;
                    }
                    let reply = match (kind, refuse) {
                        (SETTINGS, _) if flags & ACK == 0 => frame(SETTINGS, ACK, 0, &[]),
                        (HEADERS, Refuse::Stream) => {
                            streams.fetch_add(1, Ordering::SeqCst);
                            frame(RST_STREAM, 0, id, &7u32.to_be_bytes())
                        }
                        (HEADERS, Refuse::GoAway) => {
                            streams.fetch_add(1, Ordering::SeqCst);
                            // Last stream id 0, NO_ERROR.
                            frame(GOAWAY, 0, 0, &[0; 8])
                        }
                        _ => continue,
                    };
                    if s.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn client<B>() -> TargetClient<B> {
    TargetClient::<B>::builder().http2_only(true).build()
}

fn group(addrs: &[SocketAddr]) -> TargetGroup {
    let mut g = TargetGroup::builder("grpc").algorithm(RoundRobin::new());
    for (i, a) in addrs.iter().enumerate() {
        g = g.target(Target::new(format!("t{i}"), a.to_string()).unwrap());
    }
    g.build().unwrap()
}

/// Bound: 20 concurrent gRPC-style calls to one target, each read whole with its trailers.
#[tokio::test]
async fn concurrent_requests_share_one_connection_and_trailers_pass_both_ways() {
    let log = Log::default();
    let addr = grpc_backend(log.clone(), None).await;
    let balance = Balance::with_maker(group(&[addr]), client::<Body>());
    let calls = (0..20).map(|_| {
        let balance = balance.clone();
        async move {
            let frames = vec![
                Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"\0\0\0\0\x02yo"))),
                Ok(Frame::trailers({
                    let mut t = HeaderMap::new();
                    t.insert("x-client-trailer", HeaderValue::from_static("done"));
                    t
                })),
            ];
            let req = Request::post("http://grpc.example/pkg.Svc/Call")
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync())
                .unwrap();
            let rsp = balance.oneshot(req).await.unwrap();
            assert_eq!(rsp.status(), StatusCode::OK);
            assert_eq!(rsp.version(), Version::HTTP_2);
            let collected = rsp.into_body().collect().await.unwrap();
            let trailers = collected.trailers().cloned().expect("response trailers");
            assert_eq!(trailers["grpc-status"], "0");
            assert_eq!(collected.to_bytes(), &b"\0\0\0\0\x02hi"[..]);
        }
    });
    tokio::time::timeout(LIMIT, futures_util::future::join_all(calls))
        .await
        .unwrap();

    let seen = log.all();
    assert_eq!(seen.len(), 20, "every call arrived once");
    assert_eq!(
        log.accepted.load(Ordering::SeqCst),
        1,
        "one shared connection"
    );
    for s in &seen {
        assert_eq!(s.version, Version::HTTP_2);
        assert_eq!(s.authority.as_deref(), Some(addr.to_string().as_str()));
        assert!(s.headers.get("host").is_none(), "`:authority`, no `Host`");
        assert_eq!(s.headers["te"], "trailers");
        assert_eq!(s.body, &b"\0\0\0\0\x02yo"[..]);
        let trailers = s.trailers.as_ref().expect("request trailers");
        assert_eq!(trailers["x-client-trailer"], "done");
    }
}

/// Bound: 3 sequential calls, each after the target closed the previous connection.
#[tokio::test]
async fn a_connection_the_target_closed_is_made_again() {
    let log = Log::default();
    let addr = grpc_backend(log.clone(), Some(1)).await;
    let svc = client::<Body>().service(&Target::new("t", addr.to_string()).unwrap());
    for n in 1..=3 {
        let rsp = svc
            .clone()
            .oneshot(Request::get("/ping").body(body(b"")).unwrap())
            .await
            .unwrap();
        assert_eq!(rsp.status(), StatusCode::OK);
        rsp.into_body().collect().await.unwrap();
        // The target shuts the connection down after each answer; wait until it is gone.
        tokio::time::timeout(LIMIT, async {
            while log.closed.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .unwrap();
    }
    assert_eq!(log.all().len(), 3);
    assert_eq!(
        log.accepted.load(Ordering::SeqCst),
        3,
        "one connection per call"
    );
}

/// A warmed target answers its first call on the connection made beforehand.
#[tokio::test]
async fn warming_opens_the_shared_connection() {
    let log = Log::default();
    let addr = grpc_backend(log.clone(), None).await;
    let svc = client::<Body>().service(&Target::new("t", addr.to_string()).unwrap());
    assert_eq!(svc.idle_connections(), 0);
    assert_eq!(
        svc.warm(4).await,
        1,
        "one shared connection, however many asked for"
    );
    let rsp = svc
        .clone()
        .oneshot(Request::get("/").body(body(b"")).unwrap())
        .await
        .unwrap();
    rsp.into_body().collect().await.unwrap();
    assert_eq!(log.accepted.load(Ordering::SeqCst), 1);
}

/// Bound: 6 sequential POSTs over a refusing target and a good one, round robin: every POST
/// reaches the good target exactly once, and each refused stream cost one retry.
async fn refused_streams_go_elsewhere(refuse: Refuse) {
    let log = Log::default();
    let good = grpc_backend(log.clone(), None).await;
    let offered = Arc::new(AtomicUsize::new(0));
    let bad = refusing_backend(refuse, offered.clone()).await;
    let policy = RetryPolicy::builder().jitter(Jitter::None).build().unwrap();
    let svc = RetryLayer::new(policy.clone()).layer(Balance::with_maker(
        group(&[bad, good]),
        client::<ReplayBody<Body>>(),
    ));
    let bodies: [&'static [u8]; 6] = [b"p0", b"p1", b"p2", b"p3", b"p4", b"p5"];
    for b in bodies {
        let req = Request::post("/pkg.Svc/Create")
            .header("content-type", "application/grpc")
            .body(body(b))
            .unwrap();
        let rsp = tokio::time::timeout(LIMIT, svc.clone().oneshot(req))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{refuse:?}: {e}"));
        assert_eq!(rsp.status(), StatusCode::OK);
        rsp.into_body().collect().await.unwrap();
    }
    let mut got: Vec<Bytes> = log.all().into_iter().map(|s| s.body).collect();
    got.sort();
    assert_eq!(
        got,
        bodies.map(Bytes::from_static),
        "{refuse:?}: each POST once"
    );
    let refused = offered.load(Ordering::SeqCst);
    assert!(
        refused >= 3,
        "{refuse:?}: round robin offered the refusing target {refused}"
    );
    assert_eq!(
        policy.stats().retries,
        refused as u64,
        "{refuse:?}: one retry per refused stream"
    );
}

#[tokio::test]
async fn refused_streams_go_elsewhere_for_any_method() {
    refused_streams_go_elsewhere(Refuse::Stream).await;
}

#[tokio::test]
async fn streams_above_a_goaway_go_elsewhere_for_any_method() {
    refused_streams_go_elsewhere(Refuse::GoAway).await;
}

/// A listening socket whose accept queue is full and never drained: a connect to it hangs (the
/// kernel drops the SYN), as to a target that does not answer. Returns the address and what
/// must stay alive.
async fn unanswering() -> (SocketAddr, impl Sized) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let listener = socket.listen(1).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(50),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    (addr, (listener, fillers))
}

/// Bound: 10 concurrent calls to a target that never answers a connect, in paused time: they
/// wait for one connect and share its failure (one connect timeout in all), each a
/// `ConnectFailed`.
#[tokio::test(start_paused = true)]
async fn requests_waiting_for_one_connect_share_its_failure() {
    let (addr, _keep) = unanswering().await;
    let svc = TargetClient::<Body>::builder()
        .http2_only(true)
        .connect_timeout(Some(Duration::from_millis(200)))
        .build()
        .service(&Target::new("t", addr.to_string()).unwrap());
    let start = tokio::time::Instant::now();
    let calls = (0..10).map(|_| {
        svc.clone()
            .oneshot(Request::get("/").body(body(b"")).unwrap())
    });
    let results = futures_util::future::join_all(calls).await;
    let waited = start.elapsed();
    for r in results {
        let e = r.expect_err("nothing answers");
        assert!(is_caused_by::<ConnectFailed>(&*e), "{e}");
    }
    assert!(
        waited < Duration::from_millis(400),
        "one connect timeout for all ten, not one each: {waited:?}"
    );
}
