//! The forwarding layer's cost per request: a browser-like request (13 headers, a
//! `Connection` naming one of them, a client `X-Forwarded-For`) through `Forward` over a target
//! that answers at once, against the same request passed straight to the target. Printed:
//! median ns per request and the ratio to the pass-through.
//!
//! `cargo bench --bench forward`

use std::convert::Infallible;
use std::future::Future as _;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};
use tower_lb::forward::ForwardLayer;
use tower_lb::key::ClientAddr;

mod common;

type Case = (&'static str, Box<dyn Fn(u64) + Sync>);

/// A target that answers at once with an empty body.
#[derive(Clone)]
struct Ready200;

impl Service<Request<()>> for Ready200 {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<()>) -> Self::Future {
        black_box(&req);
        let mut rsp = Response::new(String::new());
        let h = rsp.headers_mut();
        h.insert("content-type", HeaderValue::from_static("text/html"));
        h.insert("connection", HeaderValue::from_static("keep-alive"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        ready(Ok(rsp))
    }
}

fn request() -> Request<()> {
    let mut req = Request::get("/api/v1/items?page=2")
        .header("host", "app.example")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/130.0",
        )
        .header(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .header("accept-language", "en-US,en;q=0.5")
        .header("accept-encoding", "gzip, deflate, br")
        .header("connection", "keep-alive, x-session-hint")
        .header("x-session-hint", "abc")
        .header("cookie", "session=0123456789abcdef; theme=dark")
        .header("referer", "https://app.example/")
        .header("sec-fetch-mode", "navigate")
        .header("upgrade-insecure-requests", "1")
        .header("x-forwarded-for", "6.6.6.6")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let peer: SocketAddr = "192.0.2.10:51000".parse().unwrap();
    req.extensions_mut().insert(ClientAddr(peer));
    req
}

fn drive<S>(svc: &mut S, n: u64)
where
    S: Service<Request<()>>,
{
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..n {
        let fut = pin!(svc.call(request()));
        match fut.poll(&mut cx) {
            Poll::Ready(r) => {
                black_box(r.is_ok());
            }
            Poll::Pending => unreachable!("the target answers at once"),
        }
    }
}

fn main() {
    let mut c = common::criterion();
    let mut g = c.benchmark_group("forward");
    let cases: [Case; 3] = [
        ("pass_through", Box::new(|n| drive(&mut Ready200, n))),
        (
            "forward_default",
            Box::new(|n| drive(&mut ForwardLayer::new().layer(Ready200), n)),
        ),
        (
            "forward_all_headers",
            Box::new(|n| {
                let layer = ForwardLayer::new()
                    .forwarded(true)
                    .via(HeaderValue::from_static("tower-lb"));
                drive(&mut layer.layer(Ready200), n)
            }),
        ),
    ];
    for (id, f) in &cases {
        g.bench_function(*id, |b| {
            b.iter_custom(|iters| common::timed(&format!("forward/{id}"), iters, 1, f))
        });
    }
    g.finish();
    common::print_ratios(
        "forwarding cost per request (one thread)",
        &[
            (
                "forward/forward_default".into(),
                "forward/pass_through".into(),
            ),
            (
                "forward/forward_all_headers".into(),
                "forward/pass_through".into(),
            ),
        ],
    );
    c.final_summary();
}
