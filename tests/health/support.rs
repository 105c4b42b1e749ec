//! Test doubles for the health tests: switchable probes and stub targets.

use std::collections::HashMap;
use std::future::Ready;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use http::{Request, Response, StatusCode};
use tower::{Service, ServiceExt};
use tower_lb::BoxError;
use tower_lb::balance::{Balance, ServedBy};
use tower_lb::health::{ActiveCheck, HealthCheck, HealthEventKind, HealthEvents, check_fn};
use tower_lb::{Target, TargetGroup};

/// Per-target switches: whether its probe passes and whether it answers requests well.
#[derive(Clone, Default)]
pub(crate) struct Switches {
    probe_down: Arc<Mutex<HashMap<String, bool>>>,
    failing: Arc<Mutex<HashMap<String, Mode>>>,
    pub(crate) probes: Arc<Mutex<HashMap<String, usize>>>,
}

/// How a stub target answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Ok,
    Status500,
    /// A local rejection (as a rate limiter or breaker would produce).
    Rejected,
}

impl Switches {
    pub(crate) fn probe(&self, id: &str, passes: bool) {
        self.probe_down
            .lock()
            .unwrap()
            .insert(id.to_owned(), !passes);
    }
    pub(crate) fn serve(&self, id: &str, mode: Mode) {
        self.failing.lock().unwrap().insert(id.to_owned(), mode);
    }
    pub(crate) fn probes_of(&self, id: &str) -> usize {
        self.probes.lock().unwrap().get(id).copied().unwrap_or(0)
    }
    pub(crate) fn check(&self) -> impl HealthCheck {
        let sw = self.clone();
        check_fn(move |t: &Target| {
            let id = t.id().to_string();
            *sw.probes.lock().unwrap().entry(id.clone()).or_default() += 1;
            let down = sw
                .probe_down
                .lock()
                .unwrap()
                .get(&id)
                .copied()
                .unwrap_or(false);
            async move { if down { Err("switched off") } else { Ok(()) } }
        })
    }
    pub(crate) fn active(&self, interval_ms: u64, rise: u32, fall: u32) -> ActiveCheck {
        ActiveCheck::builder(self.check())
            .interval(Duration::from_millis(interval_ms))
            .timeout(Duration::from_millis(interval_ms / 2))
            .rise(rise)
            .fall(fall)
            .jitter(0.0)
            .build()
            .unwrap()
    }
    pub(crate) fn stub(&self, t: &Target) -> Stub {
        Stub {
            id: t.id().to_string(),
            sw: self.clone(),
        }
    }
}

/// A target service that answers according to its switch.
#[derive(Clone)]
pub(crate) struct Stub {
    id: String,
    sw: Switches,
}

impl Service<Request<()>> for Stub {
    type Response = Response<String>;
    type Error = BoxError;
    type Future = Ready<Result<Response<String>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<()>) -> Self::Future {
        let mode = self
            .sw
            .failing
            .lock()
            .unwrap()
            .get(&self.id)
            .copied()
            .unwrap_or(Mode::Ok);
        std::future::ready(match mode {
            Mode::Ok => Ok(Response::new(self.id.clone())),
            Mode::Status500 => {
                let mut r = Response::new(self.id.clone());
                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                Ok(r)
            }
            Mode::Rejected => Err(Box::new(tower_lb::balance::error::NoAvailableTarget::new(
                "downstream",
            ))),
        })
    }
}

pub(crate) fn targets(ids: &[&str]) -> Vec<Target> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| Target::new(*id, format!("127.0.0.1:{}", 10_000 + i)).unwrap())
        .collect()
}

pub(crate) fn balance(group: &TargetGroup, sw: &Switches) -> Balance<Stub> {
    let sw = sw.clone();
    Balance::new(group.clone(), move |t: &Target| sw.stub(t)).served_by(true)
}

/// Sends one request; returns the serving target and the status, or the error.
pub(crate) async fn send(b: &Balance<Stub>) -> Result<(String, StatusCode), BoxError> {
    let rsp = b.clone().oneshot(Request::new(())).await?;
    let served = rsp
        .extensions()
        .get::<ServedBy>()
        .unwrap()
        .target()
        .to_string();
    Ok((served, rsp.status()))
}

/// Every event already emitted, as `(target, kind)`.
pub(crate) fn drain(events: &mut HealthEvents) -> Vec<(String, HealthEventKind)> {
    let mut out = Vec::new();
    while let Some(Some(e)) = events.next().now_or_never() {
        out.push((
            e.target().map(|t| t.to_string()).unwrap_or_default(),
            e.kind().clone(),
        ));
    }
    out
}

/// Lets background tasks run (paused time: no clock movement).
pub(crate) async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// Advances paused time by `ms`, in steps so every timer on the way fires in order.
pub(crate) async fn advance(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    settle().await;
}

#[allow(dead_code)]
pub(crate) fn count(c: &AtomicUsize) -> usize {
    c.load(Ordering::SeqCst)
}
