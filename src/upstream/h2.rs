//! HTTP/2 with prior knowledge (h2c) towards targets, for [`TargetClient`](super::TargetClient)
//! built with [`http2_only`](super::TargetClientBuilder::http2_only).
//!
//! Why one shared connection per target: HTTP/2 multiplexes, so the HTTP/1 pool's reason to
//! exist (one request per connection at a time) is gone, and gRPC servers expect few long-lived
//! connections. The connection is made when the first request needs it (concurrent requests
//! wait for that one connect rather than each opening their own) and made again when it dies
//! or the target says `GOAWAY`.
//!
//! What a failure means for a retry (see `docs/resilience.md`):
//!
//! - a connect or handshake failure, and a request the connection never took (it was closing),
//!   are as in HTTP/1: nothing was sent; a reused connection's refusal goes again on a fresh
//!   connection inside the client, otherwise a [`ConnectFailed`] hands the body back;
//! - a stream the target refused without processing it, with `REFUSED_STREAM` or by a `GOAWAY`
//!   whose last stream id is below it (RFC 9113 §8.7 and §6.8 guarantee it was not processed),
//!   is a [`ConnectFailed`] too: the retry layer sends it elsewhere for any method if its body
//!   can be replayed, and it counts as a connect failure of the target;
//! - anything else after the request went out (a reset, the connection lost mid-response) is
//!   the target's failure and goes again only for idempotent methods.

use std::sync::{Arc, Mutex};

use http::header::HOST;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, Version};
use http_body::Body;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::pool::{Pool, PooledBody, Sendable, connect_failed, is_client_fault};
use crate::error::{BoxError, ClientError, ClientErrorKind, ConnectFailed, find_cause};
use crate::util::lock;

/// A target's shared HTTP/2 connection (see the module docs).
pub(super) struct H2Slot<B> {
    state: Mutex<State<B>>,
    /// Held while connecting, so concurrent requests share one connect.
    connecting: tokio::sync::Mutex<()>,
}

struct State<B> {
    /// The live connection and its number.
    conn: Option<(u64, http2::SendRequest<Sendable<B>>)>,
    /// Connect attempts finished so far (each numbers the connection it made).
    attempts: u64,
    /// Whether the last attempt failed.
    failed: bool,
}

impl<B> H2Slot<B> {
    pub(super) fn new() -> Self {
        H2Slot {
            state: Mutex::new(State {
                conn: None,
                attempts: 0,
                failed: false,
            }),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// The live connection, if there is one.
    fn current(&self) -> Option<(u64, http2::SendRequest<Sendable<B>>)> {
        let mut state = lock(&self.state);
        match &state.conn {
            Some((_, send)) if send.is_closed() => {
                state.conn = None;
                None
            }
            Some((id, send)) => Some((*id, send.clone())),
            None => None,
        }
    }

    /// Drops connection `id` if it is still the live one.
    fn forget(&self, id: u64) {
        let mut state = lock(&self.state);
        if state.conn.as_ref().is_some_and(|(live, _)| *live == id) {
            state.conn = None;
        }
    }

    /// Whether a live connection is up.
    pub(super) fn is_up(&self) -> bool {
        self.current().is_some()
    }
}

impl<B> Pool<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// The live connection, or a new one. Requests that waited while another connected take
    /// that attempt's outcome rather than connecting again, so a dead target costs one connect
    /// timeout, not one per waiting request.
    async fn h2_conn(
        &self,
        slot: &H2Slot<B>,
    ) -> Result<(u64, http2::SendRequest<Sendable<B>>), BoxError> {
        if let Some(live) = slot.current() {
            return Ok(live);
        }
        let seen = lock(&slot.state).attempts;
        let _connecting = slot.connecting.lock().await;
        if let Some(live) = slot.current() {
            return Ok(live);
        }
        {
            let state = lock(&slot.state);
            if state.attempts != seen && state.failed {
                return Err(
                    "connecting to the target failed (attempt shared with other requests)".into(),
                );
            }
        }
        let result = self.h2_connect().await;
        let mut state = lock(&slot.state);
        state.attempts += 1;
        let id = state.attempts;
        match result {
            Ok(send) => {
                state.failed = false;
                state.conn = Some((id, send.clone()));
                Ok((id, send))
            }
            Err(e) => {
                state.failed = true;
                Err(e)
            }
        }
    }

    async fn h2_connect(&self) -> Result<http2::SendRequest<Sendable<B>>, BoxError> {
        let stream = self.tcp_connect().await?;
        let builder = http2::Builder::new(TokioExecutor::new());
        let (send, conn) = builder
            .handshake::<_, Sendable<B>>(TokioIo::new(stream))
            .await?;
        // The connection is shared by every request to the target: it runs as a task of its own.
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "h2c connection to a target ended");
            }
        });
        Ok(send)
    }

    /// Opens the shared connection if it is not up (for `TargetService::warm`).
    pub(super) async fn h2_warm(&self, slot: &H2Slot<B>) -> bool {
        self.h2_conn(slot).await.is_ok()
    }

    /// Absolute URI (`http://authority/path`), `:authority` from the target's address (or the
    /// client's `Host` with `preserve_host`), no `Host` header, version HTTP/2.
    fn prepare_h2(&self, req: Request<B>) -> Request<Sendable<B>> {
        let (mut parts, body) = req.into_parts();
        let host = parts.headers.remove(HOST);
        let authority = match host {
            Some(h) if self.config.preserve_host => {
                Authority::try_from(h.as_bytes()).unwrap_or_else(|_| self.authority.clone())
            }
            _ => self.authority.clone(),
        };
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(authority);
        uri.path_and_query = Some(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        parts.uri = Uri::from_parts(uri).unwrap_or_else(|_| Uri::from_static("/"));
        parts.version = Version::HTTP_2;
        let body = if body.is_end_stream() {
            Sendable::Empty
        } else {
            Sendable::Body(body)
        };
        Request::from_parts(parts, body)
    }
}

/// Sends one request over the target's shared HTTP/2 connection (see the module docs).
pub(super) async fn send<B>(
    pool: Arc<Pool<B>>,
    slot: &H2Slot<B>,
    req: Request<B>,
) -> Result<Response<PooledBody<B>>, BoxError>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut req = pool.prepare_h2(req);
    // Set once the request goes again after a live connection did not take it.
    let mut fresh = false;
    loop {
        let (id, mut send) = match pool.h2_conn(slot).await {
            Ok(conn) => conn,
            Err(e) => return Err(connect_failed(e, req)),
        };
        if let Err(e) = send.ready().await {
            // The connection died before taking the request: as below, not taken.
            slot.forget(id);
            if fresh {
                return Err(connect_failed(e.into(), req));
            }
            fresh = true;
            continue;
        }
        let mut failed = match send.try_send_request(req).await {
            Ok(rsp) => return Ok(PooledBody::unpooled(pool, rsp)),
            Err(failed) => failed,
        };
        match failed.take_message() {
            // The connection never took it (it was closing): on a fresh one, once.
            Some(back) => {
                slot.forget(id);
                if fresh {
                    return Err(connect_failed(failed.into_error().into(), back));
                }
                req = back;
                fresh = true;
            }
            None => {
                let err = failed.into_error();
                if is_client_fault(&err) {
                    return Err(Box::new(ClientError::new(
                        ClientErrorKind::BodyAborted,
                        err,
                    )));
                }
                let refused = unprocessed(&err);
                if refused || find_cause::<h2::Error>(&err).is_some_and(h2::Error::is_go_away) {
                    // No new stream goes on a connection that is going away.
                    slot.forget(id);
                }
                if refused {
                    return Err(Box::new(ConnectFailed::new(err)));
                }
                return Err(Box::new(err));
            }
        }
    }
}

/// The target refused the stream without processing it: `REFUSED_STREAM`, or a stream above
/// the last stream id of the target's `GOAWAY` (RFC 9113 §8.7).
fn unprocessed(err: &hyper::Error) -> bool {
    find_cause::<h2::Error>(err).is_some_and(|e| {
        e.is_remote()
            && (e.is_go_away() || (e.is_reset() && e.reason() == Some(h2::Reason::REFUSED_STREAM)))
    })
}
