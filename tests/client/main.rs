//! `TargetClient` on real loopback sockets: connections are pooled per target and reused,
//! upgrades hand back the connection, and request-side faults are the client's.

#[allow(dead_code)]
#[path = "../faults/backend.rs"]
mod backend;

use std::sync::atomic::Ordering;
use std::time::Duration;

use backend::{recorder, silent};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use tower_lb::balance::Balance;
use tower_lb::classify::{Classify, DefaultClassifier, Outcome};
use tower_lb::error::BoxError;
use tower_lb::upstream::TargetClient;
use tower_lb::{Target, TargetGroup};

type Body = UnsyncBoxBody<Bytes, BoxError>;

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// A response's whole body.
async fn text<B>(rsp: http::Response<B>) -> Bytes
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    rsp.into_body().collect().await.unwrap().to_bytes()
}

/// Bound: 30 sequential GETs over two targets, each read whole: every one answered, and each
/// target accepted exactly one connection.
#[tokio::test]
async fn connections_are_pooled_per_target_and_reused() {
    let a = recorder(|_| StatusCode::OK, None).await;
    let b = recorder(|_| StatusCode::OK, None).await;
    let group = TargetGroup::builder("g")
        .target(Target::new("a", a.addr.to_string()).unwrap())
        .target(Target::new("b", b.addr.to_string()).unwrap())
        .build()
        .unwrap();
    let svc = Balance::with_maker(group, TargetClient::<Body>::new());
    for i in 0..30 {
        let rsp = svc
            .clone()
            .oneshot(Request::get(format!("/{i}")).body(empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(rsp.status(), StatusCode::OK);
        let body = text(rsp).await;
        assert_eq!(body, "ok");
    }
    assert_eq!(a.count() + b.count(), 30);
    assert_eq!(a.connections.load(Ordering::SeqCst), 1);
    assert_eq!(b.connections.load(Ordering::SeqCst), 1);
}

/// Bound: one request with `Upgrade`, answered `101` by a raw backend that then echoes; the
/// upgraded connection from `hyper::upgrade::on` carries 5 bytes there and back.
#[tokio::test]
async fn an_upgrade_hands_back_the_connection() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "request head");
            head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        assert!(head.contains("upgrade: echo"), "{head}");
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n",
        )
        .await
        .unwrap();
        let mut got = [0u8; 5];
        s.read_exact(&mut got).await.unwrap();
        s.write_all(&got).await.unwrap();
    });
    let svc = TargetClient::<Body>::new().service(&Target::new("a", addr.to_string()).unwrap());
    let req = Request::get("/ws")
        .header("connection", "upgrade")
        .header("upgrade", "echo")
        .body(empty())
        .unwrap();
    let rsp = svc.oneshot(req).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let upgraded = tokio::time::timeout(Duration::from_secs(5), hyper::upgrade::on(rsp))
        .await
        .expect("upgrade in time")
        .unwrap();
    let mut io = TokioIo::new(upgraded);
    io.write_all(b"hello").await.unwrap();
    let mut back = [0u8; 5];
    io.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"hello");
    server.await.unwrap();
}

/// Bound: an upload that breaks off mid-body is a client fault (`Outcome::Client`), counts
/// no failure against the target, and the target still serves on the next request.
#[tokio::test]
async fn an_aborted_upload_is_the_clients_fault() {
    let a = recorder(|_| StatusCode::OK, None).await;
    let group = TargetGroup::builder("g")
        .target(Target::new("a", a.addr.to_string()).unwrap())
        .build()
        .unwrap();
    let svc = Balance::with_maker(group.clone(), TargetClient::<Body>::new());
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
        Ok(Frame::data(Bytes::from_static(b"part"))),
        Err("client went away".into()),
    ];
    let body = StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
    let err = svc
        .clone()
        .oneshot(Request::put("/up").body(body).unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        DefaultClassifier::new().classify_error(&*err),
        Outcome::Client
    );
    let failures: u64 = group.stats().iter().map(|s| s.failures()).sum();
    assert_eq!(failures, 0);
    let rsp = svc
        .oneshot(Request::get("/").body(empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(rsp.status(), StatusCode::OK);
}

/// Bound: a target that accepts and never answers is a plain target failure when the caller's
/// deadline fires; the client holds one connection for it and no more.
#[tokio::test]
async fn a_silent_target_holds_one_connection_per_request() {
    let s = silent().await;
    let svc = TargetClient::<Body>::new().service(&Target::new("s", s.addr.to_string()).unwrap());
    let r = tokio::time::timeout(
        Duration::from_millis(100),
        svc.clone()
            .oneshot(Request::get("/").body(empty()).unwrap()),
    )
    .await;
    assert!(r.is_err(), "no answer");
    assert_eq!(s.connections.load(Ordering::SeqCst), 1);
    assert_eq!(
        svc.idle_connections(),
        0,
        "a cancelled request's connection is closed"
    );
}

/// Bound: a pool warmed with 3 connections serves 3 concurrent requests without opening any
/// other; the backend accepted exactly 3 connections.
#[tokio::test]
async fn a_warmed_pool_serves_without_connecting() {
    let a = recorder(|_| StatusCode::OK, None).await;
    let svc = TargetClient::<Body>::new().service(&Target::new("a", a.addr.to_string()).unwrap());
    assert_eq!(svc.warm(3).await, 3);
    // The backend's accept loop may lag the client's connect: wait for it (bounded).
    for _ in 0..200 {
        if a.connections.load(Ordering::SeqCst) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(a.connections.load(Ordering::SeqCst), 3);
    let get = || {
        svc.clone()
            .oneshot(Request::get("/").body(empty()).unwrap())
    };
    let (r1, r2, r3) = tokio::join!(get(), get(), get());
    for r in [r1, r2, r3] {
        let rsp = r.unwrap();
        assert_eq!(rsp.status(), StatusCode::OK);
        rsp.into_body().collect().await.unwrap();
    }
    assert_eq!(a.count(), 3);
    assert_eq!(
        a.connections.load(Ordering::SeqCst),
        3,
        "no connection opened"
    );
    assert_eq!(svc.idle_connections(), 3);
}

/// A backend that answers each request head it reads with the next of `answers` (in the
/// order requests arrive, whatever the connection), closing the connection after an answer
/// marked so; it records every request head and counts connections.
struct Scripted {
    addr: std::net::SocketAddr,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    heads: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

async fn scripted(answers: Vec<(&'static [u8], bool)>) -> Scripted {
    use std::sync::{Arc, Mutex, atomic::AtomicUsize};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(Mutex::new(std::collections::VecDeque::from(answers)));
    let (c, h) = (connections.clone(), heads.clone());
    tokio::spawn(async move {
        while let Ok((mut io, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let (h, answers) = (h.clone(), answers.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                // Bounded: at most 64 requests per connection, heads under 64 KiB.
                for _ in 0..64 {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match io.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        if buf.len() > 65536 {
                            return;
                        }
                    };
                    h.lock().unwrap().push(buf.drain(..end).collect());
                    let Some((answer, close)) = answers.lock().unwrap().pop_front() else {
                        return;
                    };
                    if io.write_all(answer).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    Scripted {
        addr,
        connections,
        heads,
    }
}

/// A request without a body goes through the client's own HTTP/1 codec. Bound: 8 requests
/// in turn to a scripted backend, one answer per framing: a length, chunks with an extension
/// and trailers, a `HEAD` whose answer declares a length it does not send, a `204`, a `103`
/// before the final answer, `Connection: close`, a body that runs to the end of the
/// connection, and a length again. Each body and the trailers arrive whole; the connection is
/// used again after the first five and never after the two that end it (3 connections in
/// all); the request head is written as expected.
#[tokio::test]
async fn the_own_codec_reads_every_framing_and_reuses_only_what_it_may() {
    let s = scripted(vec![
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=1\r\n world\r\n0\r\nx-sum: 11\r\n\r\n",
            false,
        ),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n", false),
        (b"HTTP/1.1 204 No Content\r\n\r\n", false),
        (
            b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi",
            false,
        ),
        (b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbye", true),
        (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", true),
        (b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n", false),
    ])
    .await;
    let svc = TargetClient::<Body>::new().service(&Target::new("s", s.addr.to_string()).unwrap());
    let send = |req: Request<Body>| svc.clone().oneshot(req);
    let get = |path: &str| Request::get(path).body(empty()).unwrap();

    let rsp = send(get("/a?b=c")).await.unwrap();
    assert_eq!(text(rsp).await, "hello");

    let collected = send(get("/chunks"))
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    assert_eq!(collected.trailers().unwrap()["x-sum"], "11");
    assert_eq!(collected.to_bytes(), "hello world");

    let head = Request::head("/h").body(empty()).unwrap();
    let rsp = send(head).await.unwrap();
    assert_eq!(rsp.headers()["content-length"], "100");
    assert!(text(rsp).await.is_empty());

    let rsp = send(get("/none")).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::NO_CONTENT);
    assert!(text(rsp).await.is_empty());

    let rsp = send(get("/hint")).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(text(rsp).await, "hi");
    assert_eq!(
        s.connections.load(Ordering::SeqCst),
        1,
        "five answers, one connection"
    );

    let rsp = send(get("/close")).await.unwrap();
    assert_eq!(text(rsp).await, "bye");
    let rsp = send(get("/eof")).await.unwrap();
    assert_eq!(text(rsp).await, "until the end");
    let rsp = send(get("/last")).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::CREATED);
    rsp.into_body().collect().await.unwrap();
    assert_eq!(s.connections.load(Ordering::SeqCst), 3);

    let heads = s.heads.lock().unwrap();
    assert_eq!(heads.len(), 8);
    let first = String::from_utf8(heads[0].clone()).unwrap();
    assert_eq!(
        first,
        format!("GET /a?b=c HTTP/1.1\r\nhost: {}\r\n\r\n", s.addr)
    );
    assert!(String::from_utf8_lossy(&heads[2]).starts_with("HEAD /h HTTP/1.1\r\n"));
}

/// Bound: three scripted answers: a head with conflicting lengths is an error counted against
/// the target; a body cut short by a close fails the body; bytes beyond a response's length
/// keep its connection out of the pool (the next request opens a new one).
#[tokio::test]
async fn a_malformed_or_cut_response_is_the_targets_failure_and_never_reused() {
    let s = scripted(vec![
        (b"HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\nx", true),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", true),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA",
            false,
        ),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false),
    ])
    .await;
    let svc = TargetClient::<Body>::new().service(&Target::new("s", s.addr.to_string()).unwrap());
    let get = || {
        svc.clone()
            .oneshot(Request::get("/").body(empty()).unwrap())
    };

    let err = get().await.unwrap_err();
    assert!(matches!(
        DefaultClassifier::new().classify_error(&*err),
        Outcome::Failure(_)
    ));

    let rsp = get().await.unwrap();
    assert!(rsp.into_body().collect().await.is_err(), "cut short");

    let rsp = get().await.unwrap();
    assert_eq!(text(rsp).await, "ok");
    let rsp = get().await.unwrap();
    assert_eq!(text(rsp).await, "ok");
    assert_eq!(
        s.connections.load(Ordering::SeqCst),
        4,
        "no connection was used after a bad, cut or overlong answer"
    );
    assert_eq!(svc.idle_connections(), 1);
}

/// Bound: a backend that closes each connection right after answering (without saying so);
/// 5 GETs in turn, 10 ms apart, each answered: the closed idle connection is noticed when it
/// is taken, or the request goes again on a fresh one; never an error.
#[tokio::test]
async fn an_idle_connection_the_target_closed_is_replaced_without_an_error() {
    let s = scripted(vec![
        (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n1", true),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n2", true),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n3", true),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n4", true),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n5", true),
    ])
    .await;
    let svc = TargetClient::<Body>::new().service(&Target::new("s", s.addr.to_string()).unwrap());
    for i in 1..=5 {
        let rsp = svc
            .clone()
            .oneshot(Request::get("/").body(empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(text(rsp).await, i.to_string());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.connections.load(Ordering::SeqCst), 5);
}

/// Bound: two answers on one connection, a 1 MiB body with a length and a 300 KiB body in three
/// chunks: each arrives byte for byte, and the connection is used for both.
#[tokio::test]
async fn long_bodies_arrive_whole_through_the_own_codec() {
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let mut first =
        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", big.len()).into_bytes();
    first.extend_from_slice(&big);
    let chunk: Vec<u8> = (0..100 * 1024).map(|i| (i % 241) as u8).collect();
    let mut second = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        second.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        second.extend_from_slice(&chunk);
        second.extend_from_slice(b"\r\n");
    }
    second.extend_from_slice(b"0\r\n\r\n");
    let s = scripted(vec![(Vec::leak(first), false), (Vec::leak(second), false)]).await;
    let svc = TargetClient::<Body>::new().service(&Target::new("s", s.addr.to_string()).unwrap());
    let get = || {
        svc.clone()
            .oneshot(Request::get("/").body(empty()).unwrap())
    };
    let body = text(get().await.unwrap()).await;
    assert_eq!(body.len(), big.len());
    assert!(body == big, "the long body arrived byte for byte");
    let body = text(get().await.unwrap()).await;
    assert_eq!(body.len(), 3 * chunk.len());
    assert!(body.chunks(chunk.len()).all(|c| c == chunk));
    assert_eq!(s.connections.load(Ordering::SeqCst), 1);
}

/// Bound: the same GET (one field of its own, no `Host`) sent twice, once by default and once
/// with `hyper_http1(true)`: both answered on one connection each, and the heads show which path
/// wrote them (the own codec writes the target's `Host` first; hyper's, where the map puts it,
/// last).
#[tokio::test]
async fn hyper_http1_sends_requests_without_a_body_through_hyper() {
    let s = scripted(vec![
        (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na", false),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb", false),
    ])
    .await;
    let target = Target::new("s", s.addr.to_string()).unwrap();
    let req = || Request::get("/x").header("x-a", "1").body(empty()).unwrap();
    let own = TargetClient::<Body>::new().service(&target);
    assert_eq!(text(own.oneshot(req()).await.unwrap()).await, "a");
    let hyper = TargetClient::<Body>::builder()
        .hyper_http1(true)
        .build::<Body>()
        .service(&target);
    assert_eq!(text(hyper.oneshot(req()).await.unwrap()).await, "b");
    let heads = s.heads.lock().unwrap();
    let host = format!("host: {}\r\n", s.addr);
    assert_eq!(
        String::from_utf8_lossy(&heads[0]),
        format!("GET /x HTTP/1.1\r\n{host}x-a: 1\r\n\r\n")
    );
    assert_eq!(
        String::from_utf8_lossy(&heads[1]),
        format!("GET /x HTTP/1.1\r\nx-a: 1\r\n{host}\r\n")
    );
    assert_eq!(s.connections.load(Ordering::SeqCst), 2);
}
