//! The forwarding layer's header handling (`Connection` tokens, `TE`, framing checks,
//! `X-Forwarded-*`, `Forwarded`) on arbitrary request headers: never panics; what reaches the
//! target has no hop-by-hop header, no `TE` but `trailers`, and the peer alone in
//! `X-Forwarded-For` (the peer is not trusted).
#![no_main]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::pin;
use std::future::Future as _;
use std::task::{Context, Poll, Waker};

use http::{HeaderName, HeaderValue, Request, Response};
use libfuzzer_sys::fuzz_target;
use tower_lb::forward::Forward;
use tower_lb::key::ClientAddr;
use tower_service::Service;

#[derive(Clone)]
struct Check;

impl Service<Request<()>> for Check {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<()>) -> Self::Future {
        let h = req.headers();
        for name in ["keep-alive", "transfer-encoding", "proxy-authorization", "trailer"] {
            assert!(!h.contains_key(name), "{name} forwarded");
        }
        if let Some(te) = h.get("te") {
            assert_eq!(te, "trailers");
        }
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "192.0.2.1");
        ready(Ok(Response::new(String::new())))
    }
}

fuzz_target!(|data: &[u8]| {
    let mut req = Request::get("/").body(()).unwrap();
    // Lines split on NUL, each `name:value`.
    for line in data.split(|&b| b == 0).take(16) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&line[colon + 1..]),
        ) else {
            continue;
        };
        req.headers_mut().append(name, value);
    }
    req.extensions_mut().insert(ClientAddr("192.0.2.1:9".parse().unwrap()));
    let mut fwd = Forward::new(Check);
    let mut cx = Context::from_waker(Waker::noop());
    let fut = pin!(fwd.call(req));
    let Poll::Ready(Ok(rsp)) = fut.poll(&mut cx) else {
        panic!("a ready target answers at once");
    };
    assert!(rsp.status().is_success() || rsp.status() == 400);
});
