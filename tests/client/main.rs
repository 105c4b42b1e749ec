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
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
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
