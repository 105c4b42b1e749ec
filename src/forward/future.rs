//! The future of [`Forward`](super::Forward).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, UPGRADE};
use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use super::headers;
use super::upgrade::{self, ClientSide};
use crate::upstream::ResponseBody;

pin_project! {
    /// The response future of [`Forward`](super::Forward).
    pub struct ResponseFuture<F, RB> {
        #[pin]
        kind: Kind<F, RB>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, RB> {
        // The answer is built when polled: an inline response would make every request's
        // future (and each layer's above it) larger.
        Rejected { status: StatusCode, text: &'static str, _body: std::marker::PhantomData<fn() -> RB> },
        Forwarding {
            #[pin]
            fut: F,
            upgrade: Option<ClientSide>,
            via: Option<HeaderValue>,
        },
    }
}

impl<F, RB> std::fmt::Debug for ResponseFuture<F, RB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

fn short<RB>(status: StatusCode, text: &'static str) -> Response<ResponseBody<RB>> {
    let mut rsp = Response::new(ResponseBody::full(Bytes::from_static(text.as_bytes())));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    rsp
}

impl<F, RB> ResponseFuture<F, RB> {
    pub(crate) fn rejected(status: StatusCode, text: &'static str) -> Self {
        ResponseFuture {
            kind: Kind::Rejected {
                status,
                text,
                _body: std::marker::PhantomData,
            },
        }
    }

    pub(crate) fn forwarding(
        fut: F,
        upgrade: Option<ClientSide>,
        via: Option<HeaderValue>,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Forwarding { fut, upgrade, via },
        }
    }
}

impl<F, RB, E> Future for ResponseFuture<F, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: Send + 'static,
{
    type Output = Result<Response<ResponseBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Rejected { status, text, .. } => Poll::Ready(Ok(short(*status, text))),
            KindProj::Forwarding { fut, upgrade, via } => {
                let mut rsp = ready!(fut.poll(cx))?;
                let switching = rsp.status() == StatusCode::SWITCHING_PROTOCOLS;
                let mut scan = headers::Scan::of(rsp.headers());
                let proto = if switching {
                    rsp.headers().get(UPGRADE).cloned()
                } else {
                    None
                };
                headers::strip_hop_by_hop(rsp.headers_mut(), &mut scan);
                if let Some(via) = via.as_ref() {
                    let version = rsp.version();
                    headers::append_via(rsp.headers_mut(), scan.has_via(), version, via);
                }
                if !switching {
                    return Poll::Ready(Ok(rsp.map(ResponseBody::new)));
                }
                // A 101 is relayed only for a request that asked for an upgrade and that we
                // can relay; anything else is a target misbehaving.
                let (Some(client), Some(proto)) = (upgrade.take(), proto) else {
                    tracing::debug!("unexpected 101 from the target");
                    return Poll::Ready(Ok(short(StatusCode::BAD_GATEWAY, "bad gateway\n")));
                };
                headers::restore_upgrade(rsp.headers_mut(), &proto);
                // The body (with the balancer's in-flight count) is held by the relay.
                let (parts, body) = rsp.into_parts();
                let mut head = Response::from_parts(parts, ());
                match upgrade::relay(client, &mut head, body) {
                    Ok(()) => Poll::Ready(Ok(head.map(|()| ResponseBody::full(Bytes::new())))),
                    Err(_body) => {
                        tracing::debug!("no upgrade to relay on the target's 101");
                        Poll::Ready(Ok(short(StatusCode::BAD_GATEWAY, "bad gateway\n")))
                    }
                }
            }
        }
    }
}
