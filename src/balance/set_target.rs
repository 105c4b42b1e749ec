use std::task::{Context, Poll};

use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Uri};
use tower_service::Service;

use crate::target::Target;

/// Points each request at one target: sets the URI's scheme and authority to the target's
/// (`http`, or the [`scheme`](Self::scheme) configured here), keeps path and query, and sets
/// `Host` to the target's address unless told to [preserve](Self::preserve_host) the client's.
///
/// What a client wrote in an absolute-form request-target (`GET https://elsewhere/…`,
/// `GET ftp://x/`) never changes where or how the request goes: scheme and authority always
/// come from the target.
///
/// This is what lets one shared client serve every target; see
/// [`BalanceLayer`](crate::balance::BalanceLayer).
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use http::Request;
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::upstream::SetTarget;
/// use tower_lb::target::Target;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let target = Target::new("a", "10.0.0.7:8080")?;
/// let echo = service_fn(|req: Request<()>| async move {
///     Ok::<_, Infallible>((req.uri().to_string(), req.headers()["host"].clone()))
/// });
/// let (uri, host) = SetTarget::new(echo, &target)
///     .oneshot(Request::get("https://public.example/a?b=1").body(())?)
///     .await?;
/// assert_eq!(uri, "http://10.0.0.7:8080/a?b=1");
/// assert_eq!(host, "10.0.0.7:8080");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SetTarget<S> {
    inner: S,
    authority: Authority,
    host: Option<HeaderValue>,
    scheme: Option<Scheme>,
    preserve_host: bool,
}

impl<S> SetTarget<S> {
    /// Sends requests through `inner` to `target`.
    pub fn new(inner: S, target: &Target) -> Self {
        let authority = target.address().clone();
        SetTarget {
            inner,
            host: HeaderValue::from_str(authority.as_str()).ok(),
            authority,
            scheme: None,
            preserve_host: false,
        }
    }

    /// The scheme the target speaks (default `http`); every request is sent with it, whatever
    /// the request's own URI says.
    pub fn scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = Some(scheme);
        self
    }

    /// Keeps the request's `Host` header instead of setting it to the target's address
    /// (for backends that serve virtual hosts).
    pub fn preserve_host(mut self, preserve: bool) -> Self {
        self.preserve_host = preserve;
        self
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn rewrite<B>(&self, req: &mut Request<B>) {
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = Some(self.scheme.clone().unwrap_or(Scheme::HTTP));
        parts.authority = Some(self.authority.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        // Scheme, authority and path are all set, so this cannot fail.
        *req.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
        if !self.preserve_host || !req.headers().contains_key(HOST) {
            match &self.host {
                Some(h) => req.headers_mut().insert(HOST, h.clone()),
                None => req.headers_mut().remove(HOST),
            };
        }
    }
}

impl<S, B> Service<Request<B>> for SetTarget<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        self.rewrite(&mut req);
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_form_gets_scheme_authority_and_host() {
        let t = Target::new("a", "127.0.0.1:9").unwrap();
        let s = SetTarget::new((), &t);
        let mut req = Request::get("/x?y=1")
            .header(HOST, "client.example")
            .body(())
            .unwrap();
        s.rewrite(&mut req);
        assert_eq!(req.uri(), "http://127.0.0.1:9/x?y=1");
        assert_eq!(req.headers()[HOST], "127.0.0.1:9");

        let s = SetTarget::new((), &t)
            .preserve_host(true)
            .scheme(Scheme::HTTPS);
        let mut req = Request::get("/")
            .header(HOST, "client.example")
            .body(())
            .unwrap();
        s.rewrite(&mut req);
        assert_eq!(req.uri(), "https://127.0.0.1:9/");
        assert_eq!(req.headers()[HOST], "client.example");
    }

    #[test]
    fn the_client_cannot_choose_scheme_or_authority() {
        let t = Target::new("a", "127.0.0.1:9").unwrap();
        let s = SetTarget::new((), &t);
        for uri in [
            "https://evil.example/x",
            "ftp://x/x",
            "http://user@other:1/x",
        ] {
            let mut req = Request::get(uri).body(()).unwrap();
            s.rewrite(&mut req);
            assert_eq!(req.uri(), "http://127.0.0.1:9/x", "{uri}");
        }
        let s = SetTarget::new((), &t).scheme(Scheme::HTTPS);
        let mut req = Request::get("http://x/y").body(()).unwrap();
        s.rewrite(&mut req);
        assert_eq!(req.uri(), "https://127.0.0.1:9/y");
    }
}
