//! Shared helpers for the integration tests: loopback HTTP backends and small service doubles.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A loopback HTTP/1 backend answering every request with `status` and body `name`.
/// The returned handle stops it when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn backend(name: &'static str) -> Backend {
    backend_with_status(name, StatusCode::OK).await
}

pub async fn backend_with_status(name: &'static str, status: StatusCode) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            conns.spawn(async move {
                let svc = service_fn(move |_req: Request<hyper::body::Incoming>| async move {
                    let mut rsp = Response::new(Full::new(Bytes::from(name)));
                    *rsp.status_mut() = status;
                    Ok::<_, Infallible>(rsp)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Backend { addr, task }
}

/// An address on loopback where nothing listens (connections are refused).
pub async fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    addr
}

/// A service whose answer (`answer(name, served)`) tells how many requests this instance, not
/// its clones, has served; every clone made of it is counted in `clones`. For tests of who
/// keeps one instance across requests and who clones per request.
pub struct PerInstance<F> {
    name: &'static str,
    clones: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    served: usize,
    answer: F,
}

impl<F> PerInstance<F> {
    pub fn new(
        name: &'static str,
        clones: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        answer: F,
    ) -> Self {
        PerInstance {
            name,
            clones,
            served: 0,
            answer,
        }
    }
}

impl<F: Clone> Clone for PerInstance<F> {
    fn clone(&self) -> Self {
        self.clones
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        PerInstance {
            name: self.name,
            clones: self.clones.clone(),
            served: self.served,
            answer: self.answer.clone(),
        }
    }
}

impl<R, T, F> tower::Service<R> for PerInstance<F>
where
    F: Fn(&'static str, usize) -> T,
{
    type Response = T;
    type Error = Infallible;
    type Future = std::future::Ready<Result<T, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: R) -> Self::Future {
        self.served += 1;
        std::future::ready(Ok((self.answer)(self.name, self.served)))
    }
}
