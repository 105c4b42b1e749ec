use std::sync::Arc;

use http::HeaderValue;
use tower_layer::Layer;

use super::Forward;
use super::headers::Write;

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) write: Write,
    pub(crate) host: Option<HeaderValue>,
    pub(crate) upgrades: bool,
}

/// Makes requests and responses fit to forward: see the [module docs](super) for what it
/// does to headers and why.
///
/// Defaults: `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Real-IP`
/// written; `Forwarded` and `Via` not; the client's `Host` kept (the target client decides
/// whether to send it, see `HttpClientBuilder::preserve_host`); upgrades relayed.
///
/// # Examples
///
/// ```
/// use http::HeaderValue;
/// use tower::ServiceBuilder;
/// use tower_lb::forward::ForwardLayer;
///
/// let layer = ForwardLayer::new()
///     .forwarded(true)
///     .via(HeaderValue::from_static("edge-1"));
/// let svc = ServiceBuilder::new()
///     .layer(layer)
///     .service(tower::service_fn(|_req: http::Request<String>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
///     }));
/// # let _ = svc;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ForwardLayer {
    config: Arc<Config>,
}

impl Default for ForwardLayer {
    fn default() -> Self {
        ForwardLayer::new()
    }
}

impl ForwardLayer {
    /// The layer with the defaults above.
    pub fn new() -> Self {
        ForwardLayer {
            config: Arc::new(Config {
                write: Write {
                    x_forwarded_for: true,
                    x_forwarded_proto: true,
                    x_forwarded_host: true,
                    x_real_ip: true,
                    forwarded: false,
                    via: None,
                },
                host: None,
                upgrades: true,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Whether to write `X-Forwarded-For` (on by default).
    pub fn x_forwarded_for(self, on: bool) -> Self {
        self.edit(|c| c.write.x_forwarded_for = on)
    }

    /// Whether to write `X-Forwarded-Proto` (on by default).
    pub fn x_forwarded_proto(self, on: bool) -> Self {
        self.edit(|c| c.write.x_forwarded_proto = on)
    }

    /// Whether to write `X-Forwarded-Host` (on by default).
    pub fn x_forwarded_host(self, on: bool) -> Self {
        self.edit(|c| c.write.x_forwarded_host = on)
    }

    /// Whether to write `X-Real-IP` (on by default).
    pub fn x_real_ip(self, on: bool) -> Self {
        self.edit(|c| c.write.x_real_ip = on)
    }

    /// Whether to write the standard `Forwarded` header (RFC 7239; off by default).
    pub fn forwarded(self, on: bool) -> Self {
        self.edit(|c| c.write.forwarded = on)
    }

    /// Appends `Via: <version> <pseudonym>` to requests and responses (off by default).
    pub fn via(self, pseudonym: HeaderValue) -> Self {
        self.edit(|c| c.write.via = Some(pseudonym))
    }

    /// Sends this `Host` to targets instead of the client's (takes effect with a target
    /// client that preserves `Host`).
    pub fn host(self, host: HeaderValue) -> Self {
        self.edit(|c| c.host = Some(host))
    }

    /// Whether to relay `Upgrade`s (WebSocket and others; on by default, needs the `hyper`
    /// feature and a server built with upgrades). Off: `Upgrade` is stripped like any other
    /// hop-by-hop header.
    pub fn upgrades(self, on: bool) -> Self {
        self.edit(|c| c.upgrades = on)
    }
}

impl<S> Layer<S> for ForwardLayer {
    type Service = Forward<S>;

    fn layer(&self, inner: S) -> Forward<S> {
        Forward::from_config(inner, self.config.clone())
    }
}
