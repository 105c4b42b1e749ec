//! Loopback backends that record what reached them.
#![allow(unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// One request as the backend received it: head, and the body or `None` if it broke off.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
}

impl Seen {
    /// How the body was framed: `Content-Length` value, `chunked`, or none.
    pub fn framing(&self) -> String {
        match (
            self.headers.get("content-length"),
            self.headers.get("transfer-encoding"),
        ) {
            (Some(n), _) => format!("content-length: {}", n.to_str().unwrap()),
            (None, Some(te)) => format!("transfer-encoding: {}", te.to_str().unwrap()),
            (None, None) => "none".to_owned(),
        }
    }
}

/// A recording HTTP/1 backend; stops when dropped.
pub struct Recorder {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// A backend that answers request number `n` (0-based) with `status(n)`, closing connections
/// idle for longer than `idle_close` if given.
pub async fn recorder(
    status: impl Fn(usize) -> StatusCode + Send + Sync + 'static,
    idle_close: Option<Duration>,
) -> Recorder {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let status = Arc::new(status);
    let log = seen.clone();
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    let task = tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let (log, status) = (log.clone(), status.clone());
            tasks.spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (log, status) = (log.clone(), status.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.ok().map(|b| b.to_bytes());
                        let n = {
                            let mut log = log.lock().unwrap();
                            log.push(Seen {
                                method: parts.method,
                                uri: parts.uri,
                                headers: parts.headers,
                                body,
                            });
                            log.len() - 1
                        };
                        let mut rsp = Response::new(Full::new(Bytes::from_static(b"ok")));
                        *rsp.status_mut() = status(n);
                        Ok::<_, Infallible>(rsp)
                    }
                });
                let mut b = http1::Builder::new();
                if let Some(idle) = idle_close {
                    // hyper applies this to the wait for each next request's head: a
                    // keep-alive connection idle this long is closed by the server.
                    b.timer(TokioTimer::new()).header_read_timeout(idle);
                }
                let _ = b.serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Recorder {
        addr,
        seen,
        connections,
        task,
    }
}

/// A backend that accepts connections and never answers (nor reads); counts connections.
pub struct Silent {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn silent() -> Silent {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let c = connections.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    Silent {
        addr,
        connections,
        task,
    }
}
