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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut rsp = match this.inner.poll(cx) {
            Poll::Ready(Ok(rsp)) => rsp,
            other => return other,
        };
        if let Some(shared) = this.shared.take() {
            renew(&shared, this.hit.take(), &mut rsp);
        }
        Poll::Ready(Ok(rsp))
    }
}

/// Sets a fresh token on `rsp` unless the request's token already names the target that
/// served it, has at least half of its lifetime left and is signed with the current key. A
/// server error never gets one: a client is not pinned to a target that just failed it.
fn renew<B>(shared: &Shared, hit: Option<Hit>, rsp: &mut Response<B>) {
    if rsp.status().is_server_error() {
        return;
    }
    let keep = |hit: &Hit| {
        hit.current_key && hit.expiry.saturating_sub(hit.now) >= shared.ttl_secs.div_ceil(2)
    };
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
