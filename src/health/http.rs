use std::future::Future;
use std::ops::RangeInclusive;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use super::error::{BodyMismatch, UnexpectedStatus};
use super::{CheckFuture, HealthCheck, InvalidHealthConfig};
use crate::error::{BoxError, ConnectFailed};
use crate::target::Target;

/// How much of a response body a body match looks at.
const BODY_MATCH_LIMIT: usize = 1024;

/// An HTTP/1.1 health check (feature `hyper`): sends one request on a fresh connection and
/// passes when the status is in the expected set and, if asked, the body's first KiB contains
/// some bytes. Redirects are never followed (a `3xx` is just a status).
///
/// Defaults (HAProxy's `option httpchk`): `GET /`, `Host` set to the target's address, any
/// `2xx` or `3xx` status passes, no body match. Each check sends `Connection: close`.
///
/// # Examples
///
/// ```
/// use http::Method;
/// use tower_lb::health::{ActiveCheck, HttpCheck};
///
/// let probe = HttpCheck::builder("/healthz")
///     .method(Method::HEAD)
///     .host("api.internal")
///     .header("x-probe", "tower-lb")
///     .expect_status(200..=200)
///     .build()?;
/// let check = ActiveCheck::builder(probe).build()?;
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Debug, Clone)]
pub struct HttpCheck {
    method: Method,
    path: http::uri::PathAndQuery,
    host: Option<HeaderValue>,
    headers: HeaderMap,
    expect: Vec<RangeInclusive<u16>>,
    body: Option<Bytes>,
}

impl HttpCheck {
    /// `GET path` with the defaults.
    pub fn get(path: &str) -> Result<HttpCheck, InvalidHealthConfig> {
        HttpCheck::builder(path).build()
    }

    /// Starts configuring a check of `path` (with an optional query).
    pub fn builder(path: &str) -> HttpCheckBuilder {
        HttpCheckBuilder {
            method: Method::GET,
            path: path.to_owned(),
            host: None,
            headers: Vec::new(),
            expect: Vec::new(),
            body: None,
        }
    }

    fn passes(&self, status: StatusCode) -> bool {
        let s = status.as_u16();
        if self.expect.is_empty() {
            (200..400).contains(&s)
        } else {
            self.expect.iter().any(|r| r.contains(&s))
        }
    }

    async fn run(&self, target: &Target) -> Result<(), BoxError> {
        let stream = tokio::net::TcpStream::connect(super::tcp::socket_authority(target))
            .await
            .map_err(ConnectFailed::new)?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(self.path.clone())
            .body(Empty::<Bytes>::new())?;
        let headers = req.headers_mut();
        for (k, v) in &self.headers {
            headers.append(k, v.clone());
        }
        let host = match &self.host {
            Some(h) => h.clone(),
            None => HeaderValue::from_str(target.address().as_str())?,
        };
        headers.insert(HOST, host);
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        let exchange = async {
            let rsp = sender.send_request(req).await?;
            if !self.passes(rsp.status()) {
                return Err(Box::new(UnexpectedStatus::new(rsp.status())) as BoxError);
            }
            let Some(needle) = &self.body else {
                return Ok(());
            };
            let mut body = rsp.into_body();
            let mut seen = Vec::with_capacity(BODY_MATCH_LIMIT);
            while seen.len() < BODY_MATCH_LIMIT {
                let Some(frame) = body.frame().await else {
                    break;
                };
                if let Ok(data) = frame?.into_data() {
                    let room = BODY_MATCH_LIMIT - seen.len();
                    seen.extend_from_slice(&data[..data.len().min(room)]);
                    if contains(&seen, needle) {
                        return Ok(());
                    }
                }
            }
            if contains(&seen, needle) {
                Ok(())
            } else {
                Err(Box::new(BodyMismatch::new()) as BoxError)
            }
        };
        // Drive the connection and the exchange together; dropping both on return closes it.
        let mut conn = std::pin::pin!(conn);
        let mut exchange = std::pin::pin!(exchange);
        std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(r) = exchange.as_mut().poll(cx) {
                return std::task::Poll::Ready(r);
            }
            if let std::task::Poll::Ready(Err(e)) = conn.as_mut().poll(cx) {
                return std::task::Poll::Ready(Err(Box::new(e) as BoxError));
            }
            std::task::Poll::Pending
        })
        .await
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

impl HealthCheck for HttpCheck {
    fn check<'a>(&'a self, target: &'a Target) -> CheckFuture<'a> {
        Box::pin(self.run(target))
    }
}

/// Builds an [`HttpCheck`]; see [`HttpCheck::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct HttpCheckBuilder {
    method: Method,
    path: String,
    host: Option<String>,
    headers: Vec<(String, String)>,
    expect: Vec<RangeInclusive<u16>>,
    body: Option<Bytes>,
}

impl HttpCheckBuilder {
    /// The request method (default `GET`).
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }
    /// The `Host` header (default: the target's address).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }
    /// Adds a request header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// Adds a range of statuses that pass (default, when none is added: `200..=399`).
    pub fn expect_status(mut self, statuses: RangeInclusive<u16>) -> Self {
        self.expect.push(statuses);
        self
    }
    /// Requires the first KiB of the body to contain these bytes.
    pub fn expect_body(mut self, needle: impl Into<Bytes>) -> Self {
        self.body = Some(needle.into());
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<HttpCheck, InvalidHealthConfig> {
        if !self.path.starts_with('/') {
            return Err(InvalidHealthConfig::new("http.path", "must start with `/`"));
        }
        let path = self
            .path
            .parse()
            .map_err(|_| InvalidHealthConfig::new("http.path", "is not a valid path and query"))?;
        let host = match self.host {
            None => None,
            Some(h) => Some(HeaderValue::from_str(&h).map_err(|_| {
                InvalidHealthConfig::new("http.host", "is not a valid header value")
            })?),
        };
        let mut headers = HeaderMap::new();
        for (k, v) in self.headers {
            let k = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| InvalidHealthConfig::new("http.header", "invalid header name"))?;
            let v = HeaderValue::from_str(&v)
                .map_err(|_| InvalidHealthConfig::new("http.header", "invalid header value"))?;
            headers.append(k, v);
        }
        if self
            .expect
            .iter()
            .any(|r| r.is_empty() || *r.start() < 100 || *r.end() > 999)
        {
            return Err(InvalidHealthConfig::new(
                "http.expect_status",
                "ranges must be non-empty and within 100..=999",
            ));
        }
        if self
            .body
            .as_ref()
            .is_some_and(|b| b.len() > BODY_MATCH_LIMIT)
        {
            return Err(InvalidHealthConfig::new(
                "http.expect_body",
                "must be at most 1024 bytes",
            ));
        }
        Ok(HttpCheck {
            method: self.method,
            path,
            host,
            headers,
            expect: self.expect,
            body: self.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_sets_and_validation() {
        let c = HttpCheck::get("/").unwrap();
        assert!(c.passes(StatusCode::OK));
        assert!(c.passes(StatusCode::FOUND));
        assert!(!c.passes(StatusCode::NOT_FOUND));
        let c = HttpCheck::builder("/h")
            .expect_status(200..=200)
            .expect_status(404..=404)
            .build()
            .unwrap();
        assert!(c.passes(StatusCode::NOT_FOUND));
        assert!(!c.passes(StatusCode::FOUND));
        assert!(HttpCheck::get("nope").is_err());
        assert!(
            HttpCheck::builder("/")
                .header("bad name", "x")
                .build()
                .is_err()
        );
        assert!(
            HttpCheck::builder("/")
                .expect_status(600..=1000)
                .build()
                .is_err()
        );
        assert!(HttpCheck::builder("/").host("bad\nhost").build().is_err());
        assert!(contains(b"hello world", b"o w"));
        assert!(!contains(b"hello", b"world"));
    }
}
