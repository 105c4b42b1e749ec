//! Real loopback backends (127.0.0.1:0) with scripted misbehaviour, written on raw TCP so each
//! failure mode is exact.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Behavior {
    /// `200 OK`, body `ok`, keep-alive.
    Ok,
    /// `500`, keep-alive.
    Status500,
    /// Accepts connections and never answers.
    Silent,
    /// Sends the head of a 100-byte response, then closes the connection.
    CloseAfterHeaders,
}

pub(crate) struct Backend {
    pub(crate) addr: SocketAddr,
    behavior: Arc<Mutex<Behavior>>,
    /// When each request for `/health` arrived.
    pub(crate) health_hits: Arc<Mutex<Vec<tokio::time::Instant>>>,
    /// Other requests.
    pub(crate) requests: Arc<AtomicUsize>,
    tasks: JoinSet<()>,
}

impl Backend {
    pub(crate) async fn start(behavior: Behavior) -> Backend {
        Backend::start_on("127.0.0.1:0".parse().unwrap(), behavior).await
    }

    /// Binds `addr` (with `SO_REUSEADDR`, so a killed backend can come back on its port).
    pub(crate) async fn start_on(addr: SocketAddr, behavior: Behavior) -> Backend {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).unwrap();
        let listener = socket.listen(128).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut b = Backend {
            addr,
            behavior: Arc::new(Mutex::new(behavior)),
            health_hits: Arc::default(),
            requests: Arc::default(),
            tasks: JoinSet::new(),
        };
        let (beh, hits, reqs) = (
            b.behavior.clone(),
            b.health_hits.clone(),
            b.requests.clone(),
        );
        b.tasks.spawn(accept(listener, beh, hits, reqs));
        b
    }

    pub(crate) fn set(&self, behavior: Behavior) {
        *self.behavior.lock().unwrap() = behavior;
    }

    /// Health checks that arrived before `at`.
    pub(crate) fn hits_before(&self, at: tokio::time::Instant) -> usize {
        self.health_hits
            .lock()
            .unwrap()
            .iter()
            .filter(|t| **t < at)
            .count()
    }

    pub(crate) fn served(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Stops listening and drops every connection.
    pub(crate) async fn kill(mut self) -> SocketAddr {
        self.tasks.shutdown().await;
        self.addr
    }
}

/// An address nothing listens on.
pub(crate) async fn refusing_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

async fn accept(
    listener: TcpListener,
    behavior: Arc<Mutex<Behavior>>,
    hits: Arc<Mutex<Vec<tokio::time::Instant>>>,
    requests: Arc<AtomicUsize>,
) {
    let mut conns = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        conns.spawn(serve(
            stream,
            behavior.clone(),
            hits.clone(),
            requests.clone(),
        ));
        while conns.try_join_next().is_some() {}
    }
}

async fn serve(
    mut stream: TcpStream,
    behavior: Arc<Mutex<Behavior>>,
    hits: Arc<Mutex<Vec<tokio::time::Instant>>>,
    requests: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // One request head (no request bodies in these tests).
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end);
        if head.split_whitespace().nth(1) == Some("/health") {
            hits.lock().unwrap().push(tokio::time::Instant::now());
        } else {
            requests.fetch_add(1, Ordering::SeqCst);
        }
        let b = *behavior.lock().unwrap();
        let reply: &[u8] = match b {
            Behavior::Ok => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            Behavior::Status500 => {
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nfail"
            }
            Behavior::Silent => {
                // Hold the connection open without a word.
                std::future::pending::<()>().await;
                return;
            }
            Behavior::CloseAfterHeaders => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
                    .await;
                return;
            }
        };
        if stream.write_all(reply).await.is_err() {
            return;
        }
    }
}
