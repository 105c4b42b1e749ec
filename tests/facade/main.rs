//! The seeds' scenarios end to end through the `LoadBalancer` facade, against loopback
//! backends that count what reaches them: build in the seeds' words, register, route, add and
//! remove targets, health events, the circuit breaker, a per-client rate limit, sticky
//! sessions, axum with no glue, deregistration.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_lb::algorithm::RoundRobin;
use tower_lb::health::HealthEventKind;
use tower_lb::key::ClientAddr;
use tower_lb::lb::{CircuitBreaker, HealthCheck, LoadBalancer, RateLimit, Registry, StickySession};
use tower_lb::target::Target;
use tower_lb::upstream::HttpClient;

/// A loopback backend answering with its name; `/health` answers 503 while `down` is set.
/// Counts requests by path.
struct Backend {
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    down: Arc<AtomicBool>,
    fail: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

async fn backend(name: &'static str) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(Mutex::new(HashMap::new()));
    let down = Arc::new(AtomicBool::new(false));
    let fail = Arc::new(AtomicBool::new(false));
    let (h, d, f) = (hits.clone(), down.clone(), fail.clone());
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let (h, d, f) = (h.clone(), d.clone(), f.clone());
            conns.spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let path = req.uri().path().to_string();
                    *h.lock().unwrap().entry(path.clone()).or_default() += 1;
                    let status = if path == "/health" && d.load(Ordering::SeqCst) {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else if path != "/health" && f.load(Ordering::SeqCst) {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    };
                    async move {
                        let mut rsp = Response::new(Full::new(Bytes::from(name)));
                        *rsp.status_mut() = status;
                        Ok::<_, Infallible>(rsp)
                    }
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
        down,
        fail,
        task,
    }
}

async fn body_of(rsp: Response<tower_lb::lb::ResponseBody>) -> String {
    let bytes = rsp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// Waits (bounded) until `f` holds.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("not within 5 s: {what}");
}

/// The seeds' sketch, almost word for word: build, register, route, add, remove.
#[tokio::test]
async fn the_seed_sketch_end_to_end() {
    let (b1, b2, b3) = (
        backend("api-1").await,
        backend("api-2").await,
        backend("api-3").await,
    );
    let lb = LoadBalancer::builder()
        .with_name("api-lb")
        .with_algorithm(RoundRobin::new())
        .with_targets(vec![
            Target::builder("api-1", b1.addr)
                .weight(100)
                .build()
                .unwrap(),
            Target::builder("api-2", b2.addr)
                .weight(100)
                .build()
                .unwrap(),
        ])
        .with_health_check(
            HealthCheck::http("/health")
                .interval(Duration::from_secs(10))
                .timeout(Duration::from_secs(2))
                .healthy_threshold(2)
                .unhealthy_threshold(3),
        )
        .with_circuit_breaker(
            CircuitBreaker::new()
                .threshold(0.5)
                .min_requests(100)
                .interval(Duration::from_secs(60))
                .half_open_timeout(Duration::from_secs(30)),
        )
        .build::<Body>()
        .unwrap();

    let lb_manager = Registry::new();
    lb_manager.register(lb.clone()).unwrap();
    assert!(
        lb_manager.register(lb.clone()).is_err(),
        "a name registers once"
    );

    let mut bodies = Vec::new();
    for _ in 0..4 {
        let response = lb.route(get("/users")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        bodies.push(body_of(response).await);
    }
    bodies.sort();
    assert_eq!(bodies, ["api-1", "api-1", "api-2", "api-2"]);

    lb.add_target(
        Target::builder("api-3", b3.addr)
            .weight(100)
            .build()
            .unwrap(),
    )
    .unwrap();
    let again = Target::new("api-3", b3.addr).unwrap();
    assert_eq!(
        lb.add_target(again.clone()).unwrap_err().id().as_str(),
        "api-3",
        "add fails on an existing id"
    );
    lb.upsert_target(again);
    lb.remove_target("api-1").unwrap();
    assert!(lb.remove_target("api-1").is_err());
    let before = b1.hits("/users");
    for _ in 0..6 {
        let response = lb.route(get("/users")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(b1.hits("/users"), before, "a removed target gets nothing");
    assert_eq!((b2.hits("/users"), b3.hits("/users")), (2 + 3, 3));

    let stats = lb.stats();
    assert_eq!(stats.name(), "api-lb");
    let mut ids: Vec<_> = stats.targets().iter().map(|t| t.id().to_string()).collect();
    ids.sort();
    assert_eq!(ids, ["api-2", "api-3"]);
    assert_eq!(stats.retries().requests, 10);
    assert!(stats.breaker().is_some());
}

#[tokio::test]
async fn health_events_arrive_as_they_happen() {
    let (b1, b2) = (backend("api-1").await, backend("api-2").await);
    let lb = LoadBalancer::builder()
        .with_name("api-lb")
        .with_targets(vec![
            Target::new("api-1", b1.addr).unwrap(),
            Target::new("api-2", b2.addr).unwrap(),
        ])
        .with_health_check(
            HealthCheck::http("/health")
                .interval(Duration::from_millis(50))
                .timeout(Duration::from_secs(1))
                .healthy_threshold(1)
                .unhealthy_threshold(2),
        )
        .build::<Body>()
        .unwrap();
    let mut events = lb.health_events();
    b2.down.store(true, Ordering::SeqCst);
    let event = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let e = events
                .next()
                .await
                .expect("the stream lives with the group");
            if matches!(e.kind(), HealthEventKind::Unhealthy { .. }) {
                return e;
            }
        }
    })
    .await
    .expect("an unhealthy event within 5 s");
    assert_eq!(event.target().unwrap().as_str(), "api-2");
    assert_eq!(event.group(), "api-lb");
    // Traffic avoids it from then on.
    let before = b2.hits("/");
    for _ in 0..4 {
        assert_eq!(body_of(lb.route(get("/")).await.unwrap()).await, "api-1");
    }
    assert_eq!(b2.hits("/"), before);
    b2.down.store(false, Ordering::SeqCst);
    let back = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let e = events.next().await.unwrap();
            if matches!(e.kind(), HealthEventKind::Healthy) {
                return e;
            }
        }
    })
    .await
    .expect("healthy again within 5 s");
    assert_eq!(back.target().unwrap().as_str(), "api-2");
}

#[tokio::test]
async fn the_breaker_opens_and_errors_are_responses() {
    let b1 = backend("api-1").await;
    b1.fail.store(true, Ordering::SeqCst);
    let lb = LoadBalancer::builder()
        .with_name("flaky")
        .with_target(Target::new("api-1", b1.addr).unwrap())
        .with_circuit_breaker(CircuitBreaker::new().threshold(0.5).min_requests(4))
        .build::<Body>()
        .unwrap();
    for _ in 0..4 {
        let rsp = lb.route(get("/")).await.unwrap();
        assert_eq!(rsp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    let sent = b1.hits("/");
    let rsp = lb.route(get("/")).await.unwrap();
    assert_eq!(
        rsp.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "open: refused locally"
    );
    let body = body_of(rsp).await;
    assert!(!body.contains("127.0.0.1"), "{body}");
    assert_eq!(b1.hits("/"), sent, "nothing sent while open");
    assert_eq!(
        lb.stats().breaker(),
        Some(tower_lb::breaker::BreakerState::Open)
    );
}

/// `1000 per 60 s` per client IP means: each client may send its 1000 at once, the next one is
/// refused with a `Retry-After`, and other clients are not affected.
#[tokio::test]
async fn a_rate_limit_of_n_per_interval_means_n_per_client() {
    let b1 = backend("api-1").await;
    let lb = LoadBalancer::builder()
        .with_name("limited")
        .with_target(Target::new("api-1", b1.addr).unwrap())
        .with_rate_limit(
            RateLimit::new()
                .with_limit(1000)
                .with_interval(Duration::from_secs(60)),
        )
        .build::<Body>()
        .unwrap();
    let from = |ip: &str| {
        let mut req = get("/");
        req.extensions_mut()
            .insert(ClientAddr(format!("{ip}:40000").parse().unwrap()));
        req
    };
    let start = tokio::time::Instant::now();
    let mut ok = 0;
    for _ in 0..1000 {
        ok += (lb.route(from("198.51.100.1")).await.unwrap().status() == StatusCode::OK) as usize;
    }
    assert_eq!(ok, 1000, "all 1000 at once");
    // Then the allowance refills at one per 60 ms: the client is refused as soon as it sends
    // faster than that.
    let mut extra = 0;
    let refused = loop {
        let rsp = lb.route(from("198.51.100.1")).await.unwrap();
        if rsp.status() != StatusCode::OK {
            break rsp;
        }
        extra += 1;
        assert!(extra < 1000, "never refused");
    };
    let refills = start.elapsed().as_millis() as usize / 60 + 1;
    assert!(extra <= refills, "{extra} extra passed, {refills} refills");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        lb.route(from("198.51.100.2")).await.unwrap().status(),
        StatusCode::OK,
        "another client has its own 1000"
    );
    assert_eq!(
        b1.hits("/"),
        1001 + extra,
        "refusals never reached the backend"
    );
}

#[tokio::test]
async fn sticky_sessions_through_the_facade() {
    let (b1, b2) = (backend("api-1").await, backend("api-2").await);
    let lb = LoadBalancer::builder()
        .with_name("api-v2")
        .with_targets(vec![
            Target::new("api-v2-1", b1.addr).unwrap(),
            Target::new("api-v2-2", b2.addr).unwrap(),
        ])
        .with_sticky_session(
            StickySession::cookie("session_id")
                .ttl(Duration::from_secs(3600))
                .key(*b"facade test key, 32 bytes long!!"),
        )
        .build::<Body>()
        .unwrap();
    let first = lb.route(get("/")).await.unwrap();
    let set = first.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        set.starts_with("session_id=") && set.contains("Max-Age=3600"),
        "{set}"
    );
    let pair = set.split(';').next().unwrap().to_string();
    let name = body_of(first).await;
    for _ in 0..5 {
        let req = Request::get("/")
            .header(header::COOKIE, &pair)
            .body(Body::empty())
            .unwrap();
        assert_eq!(body_of(lb.route(req).await.unwrap()).await, name);
    }
    let (h1, h2) = (b1.hits("/"), b2.hits("/"));
    assert_eq!(h1.max(h2), 6, "the whole session on one backend");
    assert_eq!(h1.min(h2), 0);
}

/// The facade mounts in axum with no glue, and a rate limit there keys on axum's
/// `ConnectInfo` peer.
#[tokio::test]
async fn it_mounts_in_axum_as_is() {
    let (b1, b2) = (backend("api-1").await, backend("api-2").await);
    let lb = LoadBalancer::builder()
        .with_name("api-lb")
        .with_targets(vec![
            Target::new("api-1", b1.addr).unwrap(),
            Target::new("api-2", b2.addr).unwrap(),
        ])
        .with_rate_limit(
            RateLimit::new()
                .with_limit(6)
                .with_interval(Duration::from_secs(60)),
        )
        .build::<Body>()
        .unwrap();
    let app = axum::Router::new().fallback_service(lb);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    let client = HttpClient::<Empty<Bytes>>::new();
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let req = Request::get(format!("http://{addr}/x"))
            .body(Empty::new())
            .unwrap();
        let rsp = tokio::time::timeout(Duration::from_secs(10), client.clone().oneshot(req))
            .await
            .unwrap()
            .unwrap();
        statuses.push(rsp.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 429]);
    assert_eq!((b1.hits("/x"), b2.hits("/x")), (3, 3));
    server.abort();
}

#[tokio::test]
async fn deregister_drains_and_stops_health_checks() {
    let b1 = backend("api-1").await;
    let registry = Registry::new();
    let lb = LoadBalancer::builder()
        .with_name("old")
        .with_target(Target::new("api-1", b1.addr).unwrap())
        .with_health_check(HealthCheck::http("/health").interval(Duration::from_millis(20)))
        .build::<Body>()
        .unwrap();
    registry.register(lb.clone()).unwrap();
    let other = LoadBalancer::builder()
        .with_name("new")
        .build::<Body>()
        .unwrap();
    registry.register(other).unwrap();
    assert_eq!(registry.list(), ["new", "old"]);
    eventually("health checks run", || b1.hits("/health") >= 2).await;

    registry.deregister("old").unwrap().await;
    assert!(registry.get("old").is_none());
    assert_eq!(registry.list(), ["new"]);
    assert!(registry.deregister("old").is_err());
    let checks = b1.hits("/health");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(b1.hits("/health") <= checks + 1, "health checks stopped");
    // A clone still held elsewhere sends nothing more: every target is draining.
    let rsp = lb.route(get("/")).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(b1.hits("/"), 0);
}

#[test]
fn invalid_settings_are_typed_errors() {
    let err = LoadBalancer::builder()
        .with_name("bad")
        .with_circuit_breaker(CircuitBreaker::new().threshold(7.0))
        .build::<Body>()
        .unwrap_err();
    assert_eq!(err.setting(), "circuit_breaker");
    let dup = LoadBalancer::builder()
        .with_targets(vec![
            Target::new("a", "127.0.0.1:1").unwrap(),
            Target::new("a", "127.0.0.1:2").unwrap(),
        ])
        .build::<Body>()
        .unwrap_err();
    assert_eq!(dup.setting(), "targets");
    let limit = LoadBalancer::builder()
        .with_rate_limit(RateLimit::new().with_limit(0))
        .build::<Body>()
        .unwrap_err();
    assert_eq!(limit.setting(), "rate_limit");
    let sticky = LoadBalancer::builder()
        .with_sticky_session(StickySession::cookie("session id").key([1; 32]))
        .build::<Body>()
        .unwrap_err();
    assert_eq!(sticky.setting(), "sticky_session");
    assert!(std::error::Error::source(&sticky).is_some());
}

/// The seeds' traffic rules: `/api/v2/*` to the v2 pool (sticky there), `X-Canary: true` to
/// the canary pool, a 10 % split by user; replaced at run time, an invalid set refused whole.
#[tokio::test]
async fn rules_route_to_pools_and_are_replaced_at_run_time() {
    use tower_lb::lb::{Rule, Split};
    let api1 = backend("api-1").await;
    let (v2a, v2b) = (backend("api-v2-1").await, backend("api-v2-2").await);
    let canary = backend("api-canary-1").await;
    let lb = LoadBalancer::builder()
        .with_name("api-lb")
        .with_target(Target::new("api-1", api1.addr).unwrap())
        .with_pool(
            "api-v2",
            vec![
                Target::new("api-v2-1", v2a.addr).unwrap(),
                Target::new("api-v2-2", v2b.addr).unwrap(),
            ],
        )
        .with_pool(
            "api-canary",
            vec![Target::new("api-canary-1", canary.addr).unwrap()],
        )
        .with_rules(vec![
            Rule::new("api-v2").path("/api/v2/*").to("api-v2"),
            Rule::new("api-canary")
                .header("x-canary", "true")
                .to("api-canary"),
        ])
        .with_sticky_session(
            StickySession::cookie("session_id")
                .ttl(Duration::from_secs(3600))
                .key(*b"facade test key, 32 bytes long!!"),
        )
        .build::<Body>()
        .unwrap();
    assert_eq!(lb.rules().len(), 2);

    let send = |req: Request<Body>| {
        let lb = lb.clone();
        async move {
            let rsp = lb.route(req).await.unwrap();
            let set = rsp
                .headers()
                .get(header::SET_COOKIE)
                .map(|v| v.to_str().unwrap().to_string());
            (body_of(rsp).await, set)
        }
    };
    assert_eq!(
        send(get("/users")).await.0,
        "api-1",
        "no rule: the default pool"
    );
    let (first, set) = send(get("/api/v2/cart")).await;
    assert!(first.starts_with("api-v2-"), "{first}");
    let pair = set.unwrap().split(';').next().unwrap().to_string();
    for _ in 0..4 {
        let req = Request::get("/api/v2/cart")
            .header(header::COOKIE, &pair)
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(req).await.0, first, "sticky within the pool");
    }
    let req = Request::get("/users")
        .header("x-canary", "true")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(req).await.0, "api-canary-1");

    // A 10 % canary for a tenth of the users, each user always on the same side.
    lb.set_rules(vec![
        Rule::new("canary-10").prefix("/").split(
            Split::new()
                .to("api-canary", 10)
                .to("api-lb", 90)
                .by_header("x-user"),
        ),
    ])
    .unwrap();
    let mut on_canary = 0;
    for user in 0..200 {
        let req = |u: i32| {
            Request::get("/")
                .header("x-user", u.to_string())
                .body(Body::empty())
                .unwrap()
        };
        let side = send(req(user)).await.0;
        assert_eq!(
            send(req(user)).await.0,
            side,
            "user {user} stays on its side"
        );
        on_canary += (side == "api-canary-1") as usize;
    }
    assert!(
        (8..=40).contains(&on_canary),
        "{on_canary} of 200 users on the canary"
    );

    // An invalid set (unknown pool) is refused whole; the split stays in force.
    let err = lb
        .set_rules(vec![
            Rule::new("ok").prefix("/a").to("api-v2"),
            Rule::new("bad").prefix("/b").to("nowhere"),
        ])
        .unwrap_err();
    assert!(err.to_string().contains("bad"), "{err}");
    assert_eq!(lb.rules().len(), 1);
    assert_eq!(lb.rules()[0].name(), "canary-10");
    assert!(lb.pool("api-v2").is_some() && lb.pool("nowhere").is_none());
}

/// A sticky session holds across a random weighted split: the client stays on the side, and
/// the target, it was given.
#[tokio::test]
async fn sticky_sessions_hold_across_a_weighted_split() {
    use tower_lb::lb::{Rule, Split};
    let (a1, a2) = (backend("stable-1").await, backend("stable-2").await);
    let (c1, c2) = (backend("canary-1").await, backend("canary-2").await);
    let lb = LoadBalancer::builder()
        .with_name("stable")
        .with_targets(vec![
            Target::new("stable-1", a1.addr).unwrap(),
            Target::new("stable-2", a2.addr).unwrap(),
        ])
        .with_pool(
            "canary",
            vec![
                Target::new("canary-1", c1.addr).unwrap(),
                Target::new("canary-2", c2.addr).unwrap(),
            ],
        )
        .with_rules(vec![
            Rule::new("ab")
                .prefix("/")
                .split(Split::new().to("canary", 50).to("stable", 50).random()),
        ])
        .with_sticky_session(StickySession::cookie("SERVERID").key([3; 32]))
        .build::<Body>()
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let rsp = lb.route(get("/")).await.unwrap();
        let pair = rsp.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let first = body_of(rsp).await;
        seen.insert(first.clone());
        for _ in 0..6 {
            let req = Request::get("/")
                .header(header::COOKIE, &pair)
                .body(Body::empty())
                .unwrap();
            assert_eq!(body_of(lb.route(req).await.unwrap()).await, first);
        }
    }
    assert!(seen.len() >= 2, "the split spreads new clients: {seen:?}");
}

/// A load balancer built without rules still normalizes or refuses paths, takes rules set at
/// run time, and goes back to its own pool when they are cleared (what any fast path that
/// skips the router while no rule is set must keep).
#[tokio::test]
async fn rules_set_at_run_time_on_a_load_balancer_built_without_any() {
    use tower_lb::lb::Rule;
    let own = backend("own-1").await;
    let other = backend("other-1").await;
    let lb = LoadBalancer::builder()
        .with_name("plain")
        .with_target(Target::new("own-1", own.addr).unwrap())
        .with_pool("other", vec![Target::new("other-1", other.addr).unwrap()])
        .build::<Body>()
        .unwrap();
    assert!(lb.rules().is_empty());
    let send = |path: &str| {
        let (lb, req) = (lb.clone(), get(path));
        async move {
            let rsp = lb.route(req).await.unwrap();
            let status = rsp.status();
            (status, body_of(rsp).await)
        }
    };

    assert_eq!(send("/x").await.1, "own-1");
    assert_eq!(own.hits("/x"), 1);
    // Paths are normalized (or refused) without rules too.
    assert_eq!(send("/a/../y//z").await.1, "own-1");
    assert_eq!(own.hits("/y/z"), 1, "the backend got the normalized path");
    assert_eq!(send("/a%2Fb").await.0, 400, "an encoded slash is refused");
    assert_eq!(own.hits("/a%2Fb") + other.hits("/a%2Fb"), 0);

    lb.set_rules(vec![Rule::new("to-other").prefix("/x").to("other")])
        .unwrap();
    assert_eq!(
        send("/x").await.1,
        "other-1",
        "a rule set at run time applies"
    );
    assert_eq!(other.hits("/x"), 1);
    assert_eq!(send("/w").await.1, "own-1", "unmatched: the default pool");

    lb.set_rules(Vec::new()).unwrap();
    assert!(lb.rules().is_empty());
    assert_eq!(
        send("/x").await.1,
        "own-1",
        "cleared: back to the default pool"
    );
    assert_eq!((own.hits("/x"), other.hits("/x")), (2, 1));
}
