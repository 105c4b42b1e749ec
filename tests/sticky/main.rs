//! Sticky sessions end to end: an axum gateway on loopback (sticky layer over `Balance` over
//! the pooled HTTP client) in front of loopback backends that count what reaches them; plus
//! the health states that need a paused clock, on in-process stubs.
//!
//! The group's algorithm here always picks the first available target, so "balanced as usual"
//! has one deterministic answer (`alpha`) and any request that reaches another target got
//! there by its cookie.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};
use tower_lb::algorithm::{Algorithm, Context, Selector, Targets};
use tower_lb::balance::Balance;
use tower_lb::health::{ActiveCheck, OutlierDetection, check_fn};
use tower_lb::sticky::{StickyLayer, cookie_value};
use tower_lb::upstream::{ErrorResponseLayer, HttpClient};
use tower_lb::{Target, TargetGroup, target::AdminState};

const KEY: [u8; 32] = *b"sticky test key: 32 bytes long!!";
const OLD_KEY: [u8; 32] = *b"the key we used last month......";
const GROUP: &str = "api";
const NAMES: [&str; 3] = ["alpha", "bravo", "charlie"];
/// 2026-01-01T00:00:00Z, the tests' wall clock at start.
const T0: u64 = 1_767_225_600;

/// Picks the first available target (in id order): a deterministic "balanced as usual".
#[derive(Debug)]
struct FirstAvailable;

#[derive(Debug)]
struct FirstSelector(usize);

impl Algorithm for FirstAvailable {
    fn build(&self, targets: &Targets<'_>) -> Box<dyn Selector> {
        Box::new(FirstSelector(targets.len()))
    }
}

impl Selector for FirstSelector {
    fn select(&self, cx: &Context<'_>) -> Option<usize> {
        (0..self.0).find(|&i| cx.is_available(i))
    }
}

/// One loopback backend: answers with its name, counts requests and upgrade requests.
struct Backend {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    upgrades: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn backend(name: &'static str) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let upgrades = Arc::new(AtomicUsize::new(0));
    let (h, u) = (hits.clone(), upgrades.clone());
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let (h, u) = (h.clone(), u.clone());
            conns.spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    h.fetch_add(1, Ordering::SeqCst);
                    let upgrade = req
                        .headers()
                        .get(header::UPGRADE)
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
                    if upgrade {
                        u.fetch_add(1, Ordering::SeqCst);
                    }
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name)))) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Backend {
        addr,
        hits,
        upgrades,
        task,
    }
}

/// The wall clock the sticky layer reads, in seconds, moved by the test.
#[derive(Clone)]
struct Clock(Arc<AtomicU64>);

impl Clock {
    fn new() -> Self {
        Clock(Arc::new(AtomicU64::new(T0)))
    }
    fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
    fn read(&self) -> impl Fn() -> SystemTime + Send + Sync + 'static {
        let c = self.0.clone();
        move || SystemTime::UNIX_EPOCH + Duration::from_secs(c.load(Ordering::SeqCst))
    }
}

struct Setup {
    backends: Vec<Backend>,
    group: TargetGroup,
    clock: Clock,
}

impl Setup {
    async fn new() -> Setup {
        let mut backends = Vec::new();
        for name in NAMES {
            backends.push(backend(name).await);
        }
        let group = TargetGroup::builder(GROUP)
            .algorithm(FirstAvailable)
            .targets(
                NAMES
                    .iter()
                    .zip(&backends)
                    .map(|(n, b)| Target::new(*n, b.addr).unwrap()),
            )
            .build()
            .unwrap();
        Setup {
            backends,
            group,
            clock: Clock::new(),
        }
    }

    fn layer(&self) -> tower_lb::sticky::StickyLayerBuilder {
        StickyLayer::cookie("SERVERID")
            .group(&self.group)
            .key(KEY)
            .clock(self.clock.read())
    }

    fn hits(&self) -> [usize; 3] {
        [0, 1, 2].map(|i| self.backends[i].hits.load(Ordering::SeqCst))
    }

    fn upgrades(&self) -> [usize; 3] {
        [0, 1, 2].map(|i| self.backends[i].upgrades.load(Ordering::SeqCst))
    }
}

/// An axum gateway on loopback: errors → responses, sticky sessions, balance, pooled client.
struct Gateway {
    addr: SocketAddr,
    client: HttpClient<Empty<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn gateway(group: &TargetGroup, sticky: StickyLayer) -> Gateway {
    let stack = ServiceBuilder::new()
        .layer(ErrorResponseLayer::new())
        .layer(sticky)
        .service(Balance::with_maker(
            group.clone(),
            HttpClient::<Body>::new(),
        ));
    let app = Router::new().fallback_service(stack);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Gateway {
        addr,
        client: HttpClient::new(),
        task,
    }
}

/// What came back: status, body (the backend's name) and the affinity cookie, if one was set.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: String,
    set_cookie: Option<String>,
}

impl Answer {
    /// The `SERVERID=…` pair a browser would send back.
    fn cookie(&self) -> String {
        let set = self.set_cookie.as_deref().expect("a Set-Cookie");
        set.split(';').next().unwrap().to_string()
    }

    fn token(&self) -> String {
        self.cookie()["SERVERID=".len()..].to_string()
    }
}

impl Gateway {
    async fn send(&self, cookie: Option<&str>) -> Answer {
        self.send_with(cookie, |r| r).await
    }

    async fn send_with(
        &self,
        cookie: Option<&str>,
        edit: impl FnOnce(http::request::Builder) -> http::request::Builder,
    ) -> Answer {
        let mut req = Request::get(format!("http://{}/session", self.addr));
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        let req = edit(req).body(Empty::new()).unwrap();
        let rsp = tokio::time::timeout(Duration::from_secs(10), self.client.clone().oneshot(req))
            .await
            .expect("answer within 10 s")
            .unwrap();
        let status = rsp.status();
        let mut cookies = rsp.headers().get_all(header::SET_COOKIE).iter();
        let set_cookie = cookies.next().map(|v| v.to_str().unwrap().to_string());
        assert!(cookies.next().is_none(), "at most one Set-Cookie");
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            body: String::from_utf8(body.to_vec()).unwrap(),
            set_cookie,
        }
    }
}

/// A cookie for `bravo`, earned the way a browser would: `alpha` draining for one request.
async fn bravo_cookie(s: &Setup, gw: &Gateway) -> String {
    s.group
        .set_admin(&"alpha".into(), AdminState::Draining)
        .unwrap();
    let a = gw.send(None).await;
    s.group
        .set_admin(&"alpha".into(), AdminState::Enabled)
        .unwrap();
    assert_eq!(a.body, "bravo");
    a.cookie()
}

#[tokio::test]
async fn a_cookie_is_set_then_honoured() {
    let s = Setup::new().await;
    let gw = gateway(&s.group, s.layer().build().unwrap()).await;

    let first = gw.send(None).await;
    assert_eq!(
        (first.status, first.body.as_str()),
        (StatusCode::OK, "alpha")
    );
    let set = first
        .set_cookie
        .clone()
        .expect("the first response sets the cookie");
    assert!(
        set.ends_with(
            "; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600; Expires=Thu, 01 Jan 2026 01:00:00 GMT"
        ),
        "{set}"
    );
    let token = first.token();
    assert_eq!(token.len(), 50);
    for secret in NAMES.iter().map(|n| n.to_string()).chain(
        s.backends
            .iter()
            .flat_map(|b| [b.addr.to_string(), b.addr.port().to_string()]),
    ) {
        assert!(!token.contains(&secret), "{token} reveals {secret}");
    }

    let bravo = bravo_cookie(&s, &gw).await;
    assert_eq!(s.hits(), [1, 1, 0]);
    for _ in 0..5 {
        let a = gw.send(Some(&bravo)).await;
        assert_eq!(a.body, "bravo");
        assert!(
            a.set_cookie.is_none(),
            "a fresh, honoured cookie is not set again"
        );
    }
    // Among other cookies, in any order.
    let mixed = format!("theme=dark; {bravo}; lang=en");
    assert_eq!(gw.send(Some(&mixed)).await.body, "bravo");
    // Without it, balanced as usual.
    assert_eq!(gw.send(None).await.body, "alpha");
    assert_eq!(s.hits(), [2, 7, 0], "counted at the backends");
}

#[tokio::test]
async fn a_stale_cookie_is_rebalanced_and_reissued() {
    let s = Setup::new().await;
    let layer = s.layer().build().unwrap();
    let gw = gateway(&s.group, layer.clone()).await;
    let bravo = bravo_cookie(&s, &gw).await;
    let id = "bravo".into();

    for stale in [AdminState::Draining, AdminState::Disabled] {
        s.group.set_admin(&id, stale).unwrap();
        let a = gw.send(Some(&bravo)).await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (StatusCode::OK, "alpha"),
            "{stale:?}"
        );
        let fresh = layer.resolve(&a.token()).expect("a valid fresh cookie");
        assert_eq!(
            fresh.target().as_str(),
            "alpha",
            "the fresh cookie names the new target"
        );
        s.group.set_admin(&id, AdminState::Enabled).unwrap();
        assert_eq!(gw.send(Some(&bravo)).await.body, "bravo", "honoured again");
    }

    s.group.remove(&id).unwrap();
    let a = gw.send(Some(&bravo)).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "alpha"));
    assert_eq!(
        layer.resolve(&a.token()).unwrap().target().as_str(),
        "alpha"
    );
    assert!(layer.resolve(&bravo["SERVERID=".len()..]).is_none());
    // The reissued cookie sticks.
    let again = gw.send(Some(&a.cookie())).await;
    assert_eq!(again.body, "alpha");
    assert!(again.set_cookie.is_none());
}

#[tokio::test]
async fn forged_tampered_and_foreign_cookies_are_ignored() {
    let s = Setup::new().await;
    let layer = s.layer().build().unwrap();
    let gw = gateway(&s.group, layer.clone()).await;
    let bravo = bravo_cookie(&s, &gw).await;
    let token = &bravo["SERVERID=".len()..];
    // Verified once, so the forgeries below meet the verified-token cache too.
    assert_eq!(gw.send(Some(&bravo)).await.body, "bravo");
    let before = s.hits();

    let mut forged: Vec<String> = Vec::new();
    // Every single-character change of a genuine token.
    for i in 0..token.len() {
        let mut t = token.as_bytes().to_vec();
        t[i] = if t[i] == b'A' { b'B' } else { b'A' };
        forged.push(String::from_utf8(t).unwrap());
    }
    // Signed with a key the gateway does not have.
    let other_key = StickyLayer::cookie("SERVERID")
        .group(&s.group)
        .key(OLD_KEY)
        .clock(s.clock.read())
        .build()
        .unwrap();
    forged.push(other_key.issue(GROUP, &"bravo".into()).unwrap());
    // Right key, another group of the same target ids.
    let other_group = TargetGroup::builder("other")
        .target(Target::new("bravo", s.backends[1].addr).unwrap())
        .build()
        .unwrap();
    let foreign = StickyLayer::cookie("SERVERID")
        .group(&other_group)
        .key(KEY)
        .clock(s.clock.read())
        .build()
        .unwrap();
    forged.push(foreign.issue("other", &"bravo".into()).unwrap());
    // The plain id, an address, junk, and something long.
    forged.extend(
        [
            "bravo".to_string(),
            s.backends[1].addr.to_string(),
            "\"\"".into(),
            "=;=".into(),
            "x".repeat(4000),
        ]
        .into_iter(),
    );

    for value in &forged {
        let a = gw.send(Some(&format!("SERVERID={value}"))).await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (StatusCode::OK, "alpha"),
            "{value}"
        );
        assert_eq!(
            layer.resolve(&a.token()).unwrap().target().as_str(),
            "alpha"
        );
    }
    let after = s.hits();
    assert_eq!(after[0] - before[0], forged.len());
    assert_eq!(after[1], before[1], "no forged cookie reached bravo");
    // Many cookies of the name: only the first four are checked, the genuine fifth is not.
    let many = format!("{0}; {0}; {0}; {0}; {bravo}", "SERVERID=nope");
    assert_eq!(gw.send(Some(&many)).await.body, "alpha");
    let genuine_first = format!("{bravo}; SERVERID=nope");
    assert_eq!(gw.send(Some(&genuine_first)).await.body, "bravo");
}

#[tokio::test]
async fn keys_rotate_old_tokens_verify_and_are_replaced() {
    let s = Setup::new().await;
    let old = StickyLayer::cookie("SERVERID")
        .group(&s.group)
        .key(OLD_KEY)
        .clock(s.clock.read())
        .build()
        .unwrap();
    let old_token = old.issue(GROUP, &"bravo".into()).unwrap();

    // The new key signs, the old one still verifies.
    let rotated = s.layer().old_key(OLD_KEY).build().unwrap();
    let gw = gateway(&s.group, rotated).await;
    let a = gw.send(Some(&format!("SERVERID={old_token}"))).await;
    assert_eq!(a.body, "bravo", "an old key's token is honoured");
    let new_token = a.token();
    assert!(
        old.resolve(&new_token).is_none(),
        "reissued under the new key"
    );
    let new_only = s.layer().build().unwrap();
    assert_eq!(
        new_only.resolve(&new_token).unwrap().target().as_str(),
        "bravo"
    );
    let b = gw.send(Some(&a.cookie())).await;
    assert_eq!(b.body, "bravo");
    assert!(b.set_cookie.is_none());

    // Once the old key is retired, its tokens are ignored.
    let gw = gateway(&s.group, new_only).await;
    let c = gw.send(Some(&format!("SERVERID={old_token}"))).await;
    assert_eq!(c.body, "alpha");
    assert_eq!(s.hits(), [1, 2, 0]);
}

#[tokio::test]
async fn tokens_expire_and_are_renewed_in_their_second_half() {
    let s = Setup::new().await;
    let gw = gateway(
        &s.group,
        s.layer().ttl(Duration::from_secs(100)).build().unwrap(),
    )
    .await;
    let bravo = bravo_cookie(&s, &gw).await;
    s.clock.advance(40);
    let a = gw.send(Some(&bravo)).await;
    assert_eq!(a.body, "bravo");
    assert!(a.set_cookie.is_none(), "60 s of 100 left: not renewed");
    s.clock.advance(20);
    let b = gw.send(Some(&bravo)).await;
    assert_eq!(b.body, "bravo");
    let renewed = b.cookie();
    assert!(b.set_cookie.unwrap().contains("Max-Age=100"), "renewed");
    s.clock.advance(41); // the first token is past its expiry, the renewed one is not
    assert_eq!(
        gw.send(Some(&bravo)).await.body,
        "alpha",
        "expired: ignored"
    );
    assert_eq!(gw.send(Some(&renewed)).await.body, "bravo");
}

#[tokio::test]
async fn header_affinity_for_clients_without_cookies() {
    let s = Setup::new().await;
    let layer = StickyLayer::header("x-affinity")
        .group(&s.group)
        .key(KEY)
        .clock(s.clock.read())
        .build()
        .unwrap();
    let token = layer.issue(GROUP, &"charlie".into()).unwrap();
    let gw = gateway(&s.group, layer).await;
    let first = gw.send(None).await;
    assert_eq!(first.body, "alpha");
    assert!(first.set_cookie.is_none(), "no cookie in header mode");
    for _ in 0..3 {
        let a = gw
            .send_with(None, |r| r.header("x-affinity", token.as_str()))
            .await;
        assert_eq!(a.body, "charlie");
    }
    // A cookie of that name means nothing in header mode.
    let cookie = format!("x-affinity={token}");
    assert_eq!(gw.send(Some(&cookie)).await.body, "alpha");
    assert_eq!(s.hits(), [2, 0, 3]);
}

/// A WebSocket handshake is an ordinary request until the backend answers `101`: it carries
/// the cookie and must reach the session's target like any other (the relay of the upgraded
/// connection is the forwarding layer's job).
#[tokio::test]
async fn upgrade_requests_keep_their_target() {
    let s = Setup::new().await;
    let gw = gateway(&s.group, s.layer().build().unwrap()).await;
    let bravo = bravo_cookie(&s, &gw).await;
    for _ in 0..3 {
        let a = gw
            .send_with(Some(&bravo), |r| {
                r.header(header::CONNECTION, "upgrade")
                    .header(header::UPGRADE, "websocket")
                    .header("sec-websocket-version", "13")
                    .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            })
            .await;
        assert_eq!(a.body, "bravo");
    }
    assert_eq!(s.upgrades(), [0, 3, 0], "every handshake reached bravo");
}

#[test]
fn cookie_value_finds_the_pair() {
    assert_eq!(
        cookie_value(b"a=1; SERVERID=tok; b=2", "SERVERID"),
        Some(&b"tok"[..])
    );
}

// ---- Health states, on stubs with a paused clock ----------------------------------------

/// A target stub: answers with its id, or 503 for `bravo` while `fail` is set.
#[derive(Clone)]
struct StubTarget {
    id: String,
    fail: Arc<AtomicBool>,
}

impl<B> tower::Service<Request<B>> for StubTarget {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<B>) -> Self::Future {
        let mut rsp = Response::new(self.id.clone());
        if self.id == "bravo" && self.fail.load(Ordering::SeqCst) {
            *rsp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        std::future::ready(Ok(rsp))
    }
}

fn stubs(group: &TargetGroup, fail: Arc<AtomicBool>) -> Balance<StubTarget> {
    Balance::new(group.clone(), move |t: &Target| StubTarget {
        id: t.id().to_string(),
        fail: fail.clone(),
    })
}

fn stub_group(b: tower_lb::group::TargetGroupBuilder) -> TargetGroup {
    b.algorithm(FirstAvailable)
        .targets(NAMES.map(|n| Target::new(n, "127.0.0.1:9").unwrap()))
        .build()
        .unwrap()
}

async fn served<S>(svc: &S, token: &str) -> (String, Option<String>)
where
    S: tower::Service<
            Request<()>,
            Response = Response<tower_lb::balance::body::TrackedBody<String>>,
        > + Clone,
    S::Error: std::fmt::Debug,
{
    let req = Request::builder()
        .header(header::COOKIE, format!("SERVERID={token}"))
        .body(())
        .unwrap();
    let rsp = svc.clone().oneshot(req).await.unwrap();
    let set = rsp
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_string());
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    (String::from_utf8(body.to_vec()).unwrap(), set)
}

fn sticky_over<S>(group: &TargetGroup, inner: S) -> (StickyLayer, tower_lb::sticky::Sticky<S>) {
    let layer = StickyLayer::cookie("SERVERID")
        .group(group)
        .key(KEY)
        .build()
        .unwrap();
    (layer.clone(), tower_lb::sticky::Sticky::new(inner, layer))
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_target_loses_its_sessions() {
    let group = stub_group(TargetGroup::builder(GROUP));
    let down = Arc::new(AtomicBool::new(false));
    let d = down.clone();
    let check = check_fn(move |t: &Target| {
        let bad = t.id().as_str() == "bravo" && d.load(Ordering::SeqCst);
        async move { if bad { Err("down") } else { Ok(()) } }
    });
    group
        .health_check(
            ActiveCheck::builder(check)
                .interval(Duration::from_secs(1))
                .fall(1)
                .rise(1)
                .jitter(0.0)
                .wait_for_first_check(false)
                .build()
                .unwrap(),
        )
        .unwrap();
    let (layer, svc) = sticky_over(&group, stubs(&group, Arc::new(AtomicBool::new(false))));
    let token = layer.issue(GROUP, &"bravo".into()).unwrap();
    assert_eq!(served(&svc, &token).await.0, "bravo");

    down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!group.health(&"bravo".into()).unwrap().is_routable());
    let (by, set) = served(&svc, &token).await;
    assert_eq!(by, "alpha");
    let fresh = cookie_value(set.as_deref().unwrap().as_bytes(), "SERVERID").unwrap();
    let fresh = std::str::from_utf8(fresh).unwrap();
    assert_eq!(layer.resolve(fresh).unwrap().target().as_str(), "alpha");
}

#[tokio::test(start_paused = true)]
async fn an_ejected_target_loses_its_sessions_and_a_5xx_sets_no_cookie() {
    let outliers = OutlierDetection::builder()
        .consecutive_failures(1)
        .max_ejection_share(1.0)
        .build()
        .unwrap();
    let group = stub_group(TargetGroup::builder(GROUP).outlier_detection(outliers));
    let fail = Arc::new(AtomicBool::new(true));
    let (layer, svc) = sticky_over(&group, stubs(&group, fail.clone()));
    let token = layer.issue(GROUP, &"bravo".into()).unwrap();

    let (by, set) = served(&svc, &token).await;
    assert_eq!(by, "bravo", "honoured while bravo is routable");
    assert!(set.is_none(), "no cookie on a server error");
    assert!(
        !group.health(&"bravo".into()).unwrap().is_routable(),
        "ejected"
    );
    let (by, set) = served(&svc, &token).await;
    assert_eq!(by, "alpha");
    assert!(set.is_some(), "reissued");
}

#[tokio::test]
async fn a_target_at_its_connection_limit_loses_new_requests_not_its_session() {
    let group = TargetGroup::builder(GROUP)
        .algorithm(FirstAvailable)
        .target(Target::new("alpha", "127.0.0.1:9").unwrap())
        .target(
            Target::builder("bravo", "127.0.0.1:9")
                .max_conns(1)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let (layer, svc) = sticky_over(&group, stubs(&group, Arc::new(AtomicBool::new(false))));
    let token = layer.issue(GROUP, &"bravo".into()).unwrap();
    let req = Request::builder()
        .header(header::COOKIE, format!("SERVERID={token}"))
        .body(())
        .unwrap();
    // Its body is not consumed: the request stays in flight at bravo.
    let held = svc.clone().oneshot(req).await.unwrap();
    let (by, set) = served(&svc, &token).await;
    assert_eq!(by, "alpha", "bravo is full");
    assert!(set.is_some());
    drop(held);
    assert_eq!(served(&svc, &token).await.0, "bravo", "room again");
}

/// A retry after the sticky target failed goes elsewhere (the retry's `AvoidTargets` beats the
/// affinity), and the cookie follows the target that finally answered.
#[tokio::test(start_paused = true)]
async fn a_retry_leaves_the_sticky_target_and_the_cookie_follows() {
    use tower_lb::retry::{RetryLayer, RetryPolicy};
    let group = stub_group(TargetGroup::builder(GROUP));
    let fail = Arc::new(AtomicBool::new(true));
    let layer = StickyLayer::cookie("SERVERID")
        .group(&group)
        .key(KEY)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(RetryLayer::new(RetryPolicy::new()))
        .service(stubs(&group, fail.clone()));
    let token = layer.issue(GROUP, &"bravo".into()).unwrap();
    let req = Request::builder()
        .header(header::COOKIE, format!("SERVERID={token}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let rsp = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::OK);
    let set = rsp.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"alpha");
    let fresh = cookie_value(set.as_bytes(), "SERVERID").unwrap();
    let fresh = std::str::from_utf8(fresh).unwrap();
    assert_eq!(layer.resolve(fresh).unwrap().target().as_str(), "alpha");
}

/// An affinity for another group, or to a target a retry avoids, is not honoured by `Balance`,
/// and such a response is tagged with the target that served it.
#[tokio::test]
async fn balance_honours_an_affinity_only_for_its_group_and_not_against_avoid() {
    use tower_lb::balance::{Affinity, AvoidTargets, ServedBy};
    let group = stub_group(TargetGroup::builder(GROUP));
    let balance = stubs(&group, Arc::new(AtomicBool::new(false)));
    let send = |affinity: Affinity, avoid: Option<&str>| {
        let balance = balance.clone();
        let mut req = Request::new(());
        req.extensions_mut().insert(affinity);
        if let Some(a) = avoid {
            req.extensions_mut()
                .insert(AvoidTargets::from_iter([a.into()]));
        }
        async move {
            let rsp = balance.oneshot(req).await.unwrap();
            let tagged = rsp.extensions().get::<ServedBy>().is_some();
            let body = rsp.into_body().collect().await.unwrap().to_bytes();
            (String::from_utf8(body.to_vec()).unwrap(), tagged)
        }
    };
    let charlie = || "charlie".into();
    let honoured = ("charlie".to_string(), false);
    let balanced = ("alpha".to_string(), true);
    assert_eq!(
        send(Affinity::in_group(GROUP, charlie()), None).await,
        honoured
    );
    assert_eq!(send(Affinity::new(charlie()), None).await, honoured);
    assert_eq!(
        send(Affinity::in_group("other", charlie()), None).await,
        balanced
    );
    assert_eq!(
        send(Affinity::in_group(GROUP, "nobody".into()), None).await,
        balanced
    );
    let avoided = send(Affinity::in_group(GROUP, charlie()), Some("charlie")).await;
    assert_eq!(avoided, balanced);

    // A backup serves only while no primary can: an affinity to it is left to the pick.
    let with_backup = TargetGroup::builder(GROUP)
        .algorithm(FirstAvailable)
        .target(Target::new("alpha", "127.0.0.1:9").unwrap())
        .target(
            Target::builder("zulu", "127.0.0.1:9")
                .backup(true)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let balance = stubs(&with_backup, Arc::new(AtomicBool::new(false)));
    let mut req = Request::new(());
    req.extensions_mut()
        .insert(Affinity::in_group(GROUP, "zulu".into()));
    let rsp = balance.oneshot(req).await.unwrap();
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"alpha");
}
