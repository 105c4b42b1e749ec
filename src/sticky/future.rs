//! The response future of [`Sticky`](super::Sticky).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use super::layer::{Hit, Shared};
use crate::balance::ServedBy;

pin_project! {
    /// Response future of [`Sticky`](super::Sticky): the inner future's response, with a fresh
    /// affinity token when it needs one.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        shared: Option<Arc<Shared>>,
        hit: Option<Hit>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("hit", &self.hit.is_some())
            .finish()
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn new(inner: F, shared: Arc<Shared>, hit: Option<Hit>) -> Self {
        ResponseFuture {
            inner,
            shared: Some(shared),
            hit,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The inner poll's answer is returned as it is (a response is large: it is edited in
        // place rather than moved out and back).
        let mut out = this.inner.poll(cx);
        if let Poll::Ready(Ok(rsp)) = &mut out {
            let Some(shared) = this.shared.take() else {
                return out;
            };
            let hit = this.hit.take();
            // The hit path: the token named the target that served it (`Balance` tagged
            // nothing) and needs no renewal.
            let kept = hit.as_ref().is_some_and(|hit| keep(&shared, hit))
                && rsp.extensions().get::<ServedBy>().is_none();
            if !kept {
                renew(&shared, hit, rsp);
            }
        }
        out
    }
}

/// Whether the token of `hit` may stay: signed with the current key and with at least half of
/// its lifetime left.
#[inline]
fn keep(shared: &Shared, hit: &Hit) -> bool {
    hit.current_key && hit.expiry.saturating_sub(hit.now) >= shared.ttl_secs.div_ceil(2)
}

/// Sets a fresh token on `rsp` unless the request's token already names the target that
/// served it, has at least half of its lifetime left and is signed with the current key. A
/// server error never gets one: a client is not pinned to a target that just failed it.
#[inline(never)]
fn renew<B>(shared: &Shared, hit: Option<Hit>, rsp: &mut Response<B>) {
    if rsp.status().is_server_error() {
        return;
    }
    let keep = |hit: &Hit| keep(shared, hit);
    let (g, target, now) = match (rsp.extensions().get::<ServedBy>(), hit) {
        // `Balance` tags a request with an affinity only if it went elsewhere: untagged, it
        // was served by the target its token names.
        (None, Some(hit)) if keep(&hit) => return,
        (None, Some(hit)) => match shared.target_of(&hit) {
            Some(target) => (hit.group, target, hit.now),
            None => return,
        },
        (None, None) => return,
        (Some(served), hit) => {
            let Some(g) = shared.group_index(served.group()) else {
                return;
            };
            match hit {
                Some(hit) if keep(&hit) && shared.names(&hit, g, served.target()) => {
                    return;
                }
                Some(hit) => (g, served.target().clone(), hit.now),
                None => (g, served.target().clone(), shared.now()),
            }
        }
    };
    let token = shared.issue(g, &target, now);
    if let Some((name, value)) = shared.header(&token, now) {
        if name == http::header::SET_COOKIE {
            rsp.headers_mut().append(name, value);
        } else {
            rsp.headers_mut().insert(name, value);
        }
    }
}
