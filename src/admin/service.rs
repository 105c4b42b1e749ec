//! The [`Admin`] tower service and its builder.

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response};
use tower_service::Service;

use super::body::AdminBody;
use super::error::AdminError;
use super::source::Sources;
use super::{ACTION_HEADER, families, status};
use crate::balance::Balance;
use crate::lb::Registry;
use crate::target::{AdminState, TargetId};

const PAGE: &str = include_str!("page.html");
const MIN_REFRESH: Duration = Duration::from_secs(1);
const MAX_REFRESH: Duration = Duration::from_secs(3600);

/// The admin endpoint: a tower service over `http::Request<B>` (any body; it is never read)
/// that serves, under its [prefix](AdminBuilder::prefix):
///
/// | path | method | what |
/// |---|---|---|
/// | `/` (or the bare prefix) | `GET`, `HEAD` | the HTML status page |
/// | `/status.json` | `GET`, `HEAD` | every registered load balancer as JSON |
/// | `/metrics` | `GET`, `HEAD` | the Prometheus text format |
/// | `/targets/{load balancer}/{group}/{target}/{drain,disable,enable}` | `POST` | an admin action (off unless [enabled](AdminBuilder::actions)) |
///
/// Its errors are responses ([`AdminError`]), so `Error = Infallible` and it mounts in
/// `axum::Router::nest_service` as is. It has no authentication of its own: mount it behind
/// your own auth layer or an access rule. See the [module docs](super).
///
/// # Examples
///
/// ```
/// use http::{Request, StatusCode};
/// use tower::ServiceExt;
/// use tower_lb::admin::Admin;
/// use tower_lb::lb::{LoadBalancer, Registry};
/// use tower_lb::Target;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let registry = Registry::new();
/// registry.register(
///     LoadBalancer::builder().with_name("api").with_target(Target::new("a", "127.0.0.1:1")?).build::<String>()?,
/// )?;
/// let admin = Admin::builder().registry(&registry).actions(true).build();
///
/// let rsp = admin.clone().oneshot(Request::get("/status.json").body(())?).await?;
/// assert_eq!(rsp.status(), StatusCode::OK);
///
/// let drain = Request::post("/targets/api/api/a/drain").header("x-tower-lb-admin", "1").body(())?;
/// assert_eq!(admin.oneshot(drain).await?.status(), StatusCode::OK);
/// assert_eq!(registry.get("api").unwrap().group().admin(&"a".into())?, tower_lb::target::AdminState::Draining);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Admin {
    inner: Arc<Inner>,
}

struct Inner {
    sources: Sources,
    prefix: String,
    actions: bool,
    addresses: bool,
    refresh: Duration,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("prefix", &self.inner.prefix)
            .field("actions", &self.inner.actions)
            .field("addresses", &self.inner.addresses)
            .field("refresh", &self.inner.refresh)
            .finish()
    }
}

impl Admin {
    /// An admin endpoint over every load balancer of `registry` (those registered later too),
    /// with the defaults: no prefix, actions off, no addresses, the page refreshing every 5 s.
    pub fn new<B, C>(registry: &Registry<B, C>) -> Admin
    where
        B: 'static,
        C: Clone + Send + Sync + 'static,
    {
        Admin::builder().registry(registry).build()
    }

    /// A builder showing nothing yet: add [registries](AdminBuilder::registry) and
    /// [balancers](AdminBuilder::balance).
    pub fn builder() -> AdminBuilder {
        AdminBuilder {
            sources: Sources::default(),
            prefix: String::new(),
            actions: false,
            addresses: false,
            refresh: Duration::from_secs(5),
        }
    }

    /// Answers one request (what [`call`](Service::call) does, without the future).
    pub fn respond(&self, method: &Method, path: &str, headers: &HeaderMap) -> Response<AdminBody> {
        match self.route(method, path, headers) {
            Ok(rsp) => rsp,
            Err(e) => error_response(e),
        }
    }

    fn route(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Response<AdminBody>, AdminError> {
        let inner = &*self.inner;
        let rest = path
            .strip_prefix(inner.prefix.as_str())
            .filter(|r| r.is_empty() || r.starts_with('/'))
            .ok_or(AdminError::NotFound)?;
        let head = method == Method::HEAD;
        let get = |page: fn(&Inner) -> (&'static str, AdminBody)| {
            if method != Method::GET && !head {
                return Err(AdminError::MethodNotAllowed { allow: "GET, HEAD" });
            }
            let (content_type, body) = page(inner);
            let mut rsp = ok(content_type, if head { AdminBody::empty() } else { body });
            if content_type.starts_with("text/html") {
                rsp.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CSP),
                );
            }
            Ok(rsp)
        };
        match rest {
            "" | "/" => get(|i| ("text/html; charset=utf-8", i.page().into())),
            "/status.json" => get(|i| ("application/json", i.status_json().into())),
            "/metrics" => get(|i| {
                let views = i.sources.views();
                (PROMETHEUS, families::prometheus_text(&views).into())
            }),
            _ => {
                let action = rest.strip_prefix("/targets/").ok_or(AdminError::NotFound)?;
                let mut parts = action.split('/');
                let (Some(lb), Some(group), Some(target), Some(action), None) = (
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                ) else {
                    return Err(AdminError::NotFound);
                };
                if method != Method::POST {
                    return Err(AdminError::MethodNotAllowed { allow: "POST" });
                }
                if !inner.actions {
                    return Err(AdminError::ActionsDisabled);
                }
                if !headers.contains_key(ACTION_HEADER) {
                    return Err(AdminError::MissingActionHeader);
                }
                let (lb, group, target) = (decode(lb)?, decode(group)?, decode(target)?);
                let admin = match action {
                    "drain" => AdminState::Draining,
                    "disable" => AdminState::Disabled,
                    "enable" => AdminState::Enabled,
                    _ => return Err(AdminError::UnknownAction),
                };
                let pool = inner.sources.pool(&lb, &group)?;
                let id = TargetId::from(target.as_str());
                match admin {
                    // Draining through `drain` (the waiter is not needed: the state is set now).
                    AdminState::Draining => {
                        drop(pool.drain(&id).map_err(|_| AdminError::UnknownTarget)?)
                    }
                    other => pool
                        .set_admin(&id, other)
                        .map_err(|_| AdminError::UnknownTarget)?,
                }
                tracing::info!(load_balancer = %lb, group = %group, target = %target, action, "admin action");
                let body = serde_json::json!({
                    "load_balancer": lb,
                    "group": group,
                    "target": target,
                    "admin": families::admin_name(admin),
                });
                Ok(ok("application/json", body.to_string().into()))
            }
        }
    }
}

const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The page's own inline style and script, requests to its own origin, nothing else.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

impl Inner {
    fn status_json(&self) -> String {
        let views = self.sources.views();
        status::status(&views, self.addresses, self.actions).to_string()
    }

    fn page(&self) -> String {
        let json = self.status_json();
        // `<`, `>` and `&` appear in JSON only inside strings, where `\u` escapes mean the
        // same: the data can never close its `<script>` element.
        let mut data = String::with_capacity(json.len() + 64);
        for c in json.chars() {
            match c {
                '<' => data.push_str("\\u003c"),
                '>' => data.push_str("\\u003e"),
                '&' => data.push_str("\\u0026"),
                c => data.push(c),
            }
        }
        // The refresh first: the data, inserted last, is never searched for a marker.
        PAGE.replacen(
            "__TOWER_LB_REFRESH_MS__",
            &self.refresh.as_millis().to_string(),
            1,
        )
        .replacen("__TOWER_LB_DATA__", &data, 1)
    }
}

fn ok(content_type: &'static str, body: AdminBody) -> Response<AdminBody> {
    let mut rsp = Response::new(body);
    let h = rsp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    rsp
}

fn error_response(e: AdminError) -> Response<AdminBody> {
    let body = serde_json::json!({ "error": e.code(), "message": e.to_string() });
    let mut rsp = ok("application/json", body.to_string().into());
    *rsp.status_mut() = e.status();
    if let AdminError::MethodNotAllowed { allow } = e {
        rsp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    rsp
}

/// Percent-decodes one path segment; `None` for a bad escape or bytes that are not UTF-8.
fn decode(segment: &str) -> Result<String, AdminError> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let h = bytes.get(i + 1).copied().and_then(hex);
            let l = bytes.get(i + 2).copied().and_then(hex);
            let (Some(h), Some(l)) = (h, l) else {
                return Err(AdminError::BadPath);
            };
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| AdminError::BadPath)
}

impl<B> Service<Request<B>> for Admin {
    type Response = Response<AdminBody>;
    type Error = Infallible;
    type Future = Ready<Result<Response<AdminBody>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ready(Ok(self.respond(
            request.method(),
            request.uri().path(),
            request.headers(),
        )))
    }
}

/// Builds an [`Admin`]; from [`Admin::builder`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::admin::Admin;
/// use tower_lb::lb::Registry;
///
/// let registry: Registry<String> = Registry::new();
/// let admin = Admin::builder()
///     .registry(&registry)
///     .prefix("/admin")
///     .actions(true)
///     .show_addresses(false)
///     .refresh(Duration::from_secs(2))
///     .build();
/// # let _ = admin;
/// ```
pub struct AdminBuilder {
    sources: Sources,
    prefix: String,
    actions: bool,
    addresses: bool,
    refresh: Duration,
}

impl fmt::Debug for AdminBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminBuilder")
            .field("prefix", &self.prefix)
            .field("actions", &self.actions)
            .field("addresses", &self.addresses)
            .field("refresh", &self.refresh)
            .finish()
    }
}

impl AdminBuilder {
    /// Shows every load balancer of `registry`, those registered later too.
    pub fn registry<B, C>(mut self, registry: &Registry<B, C>) -> Self
    where
        B: 'static,
        C: Clone + Send + Sync + 'static,
    {
        self.sources.registry(registry);
        self
    }

    /// Shows a standalone [`Balance`] (one built from the layers, not a `LoadBalancer`) as a
    /// group of the load balancer named `load_balancer`; several balancers may share a name.
    /// The endpoint reads its statistics and acts on its group; it does not keep its services.
    pub fn balance<S: Clone + 'static>(
        mut self,
        load_balancer: &str,
        balance: &Balance<S>,
    ) -> Self {
        self.sources.balance(load_balancer, balance);
        self
    }

    /// The path the endpoint is mounted at, as the service sees it (default: none). With
    /// axum's `nest_service`, which strips the prefix, leave it empty. A trailing `/` is
    /// dropped and a leading one added.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        let p = prefix.into();
        let p = p.trim_end_matches('/');
        self.prefix = match p {
            "" => String::new(),
            p if p.starts_with('/') => p.to_string(),
            p => format!("/{p}"),
        };
        self
    }

    /// Turns the admin actions (drain, disable, enable) on; off by default, when they answer
    /// `403` ([`AdminError::ActionsDisabled`]). Each action must come as a `POST` with the
    /// header [`ACTION_HEADER`] (any value).
    pub fn actions(mut self, on: bool) -> Self {
        self.actions = on;
        self
    }

    /// Shows target addresses in the JSON and on the page (default: no; the ids only).
    pub fn show_addresses(mut self, on: bool) -> Self {
        self.addresses = on;
        self
    }

    /// How often the page refreshes its figures, clamped to 1 s ..= 1 h (default 5 s).
    pub fn refresh(mut self, every: Duration) -> Self {
        self.refresh = every.clamp(MIN_REFRESH, MAX_REFRESH);
        self
    }

    /// The endpoint.
    pub fn build(self) -> Admin {
        Admin {
            inner: Arc::new(Inner {
                sources: self.sources,
                prefix: self.prefix,
                actions: self.actions,
                addresses: self.addresses,
                refresh: self.refresh,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_segments() {
        assert_eq!(decode("a%2Fb%20c").unwrap(), "a/b c");
        assert_eq!(decode("plain").unwrap(), "plain");
        assert_eq!(decode("%").unwrap_err(), AdminError::BadPath);
        assert_eq!(decode("%4").unwrap_err(), AdminError::BadPath);
        assert_eq!(decode("%zz").unwrap_err(), AdminError::BadPath);
        assert_eq!(decode("%FF").unwrap_err(), AdminError::BadPath);
    }

    #[test]
    fn prefixes_are_normalized() {
        let r: Registry<String> = Registry::new();
        for (given, want) in [
            ("", ""),
            ("/", ""),
            ("admin", "/admin"),
            ("/admin/", "/admin"),
        ] {
            assert_eq!(
                Admin::builder()
                    .registry(&r)
                    .prefix(given)
                    .build()
                    .inner
                    .prefix,
                want
            );
        }
        assert_eq!(
            Admin::builder()
                .registry(&r)
                .refresh(Duration::ZERO)
                .build()
                .inner
                .refresh,
            MIN_REFRESH
        );
    }
}
