//! Routing: every matcher, precedence, splits (shares, stickiness, users moved by a weight
//! change), atomic rule-set changes under load, normalization bypass attempts and client-IP
//! chains over loopback sockets, access lists, per-rule extras.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_lb::balance::Balance;
use tower_lb::client_ip::{ClientIpLayer, ClientIpResolver, TrustedProxies};
use tower_lb::key::{ClientAddr, ClientIp};
use tower_lb::limit::{LimitKey, RateLimitLayer};
use tower_lb::route::{Access, EscapedSlashes, Routed, Router, Rule, Split};
use tower_lb::upstream::HttpClient;
use tower_lb::{Target, TargetGroup};

#[path = "../support/mod.rs"]
mod support;
use support::PerInstance;

type Dest = BoxCloneSyncService<Request<()>, Response<String>, Infallible>;

/// A destination answering with its name, echoing the path (and query) it received in
/// `x-path` and the `x-added` request header in `x-added`.
fn dest(name: &'static str) -> Dest {
    BoxCloneSyncService::new(service_fn(move |req: Request<()>| async move {
        let mut rsp = Response::new(name.to_string());
        let pq = req
            .uri()
            .path_and_query()
            .map_or("", |p| p.as_str())
            .to_string();
        rsp.headers_mut().insert("x-path", pq.parse().unwrap());
        if let Some(v) = req.headers().get("x-added") {
            rsp.headers_mut().insert("x-added", v.clone());
        }
        Ok::<_, Infallible>(rsp)
    }))
}

fn router(rules: impl IntoIterator<Item = Rule>) -> Router<Dest> {
    Router::builder()
        .destination("a", dest("a"))
        .destination("b", dest("b"))
        .destination("c", dest("c"))
        .rules(rules)
        .record_routed(true)
        .random_seed(7)
        .build()
        .unwrap()
}

struct Answer {
    status: StatusCode,
    body: String,
    headers: HeaderMap,
    routed: Option<Routed>,
}

async fn send(router: &Router<Dest>, req: Request<()>) -> Answer {
    let rsp = router.clone().oneshot(req).await.unwrap();
    let status = rsp.status();
    let headers = rsp.headers().clone();
    let routed = rsp.extensions().get::<Routed>().cloned();
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        body: String::from_utf8(body.to_vec()).unwrap(),
        headers,
        routed,
    }
}

async fn get(router: &Router<Dest>, uri: &str) -> Answer {
    send(router, Request::get(uri).body(()).unwrap()).await
}

fn with_ip(mut req: Request<()>, ip: &str) -> Request<()> {
    req.extensions_mut()
        .insert(ClientAddr(format!("{ip}:1000").parse().unwrap()));
    req
}

// ---- matchers -------------------------------------------------------------------------------

#[tokio::test]
async fn path_matchers() {
    let r = router([
        Rule::new("exact").path("/health").to("a"),
        Rule::new("glob-one").path("/users/*/orders").to("b"),
        Rule::new("glob-rest").path("/api/v2/*").to("c"),
        Rule::new("glob-part").path("/img/*.png").to("a"),
        Rule::new("prefix").prefix("/static/").to("b"),
        Rule::new("regex").path_regex(r"/v[0-9]+/items").to("c"),
    ]);
    let rule = |uri: &str| {
        r.matching_rule(&Request::get(uri).body(()).unwrap())
            .map(|n| n.to_string())
    };
    let cases = [
        ("/health", Some("exact")),
        ("/health/", None),
        ("/healthz", None),
        ("/users/7/orders", Some("glob-one")),
        ("/users/7/orders/1", None),
        ("/users//orders", None), // normalized to /users/orders
        ("/api/v2/", Some("glob-rest")),
        ("/api/v2/users/1", Some("glob-rest")),
        ("/api/v2", None),
        ("/img/cat.png", Some("glob-part")),
        ("/img/cat.gif", None),
        ("/static", Some("prefix")),
        ("/static/app.js", Some("prefix")),
        ("/staticx", None),
        ("/v12/items", Some("regex")),
        ("/v12/items/x", None), // anchored
        ("/x/v12/items", None),
    ];
    for (uri, want) in cases {
        assert_eq!(rule(uri).as_deref(), want, "{uri}");
    }
    // Dispatch agrees with the matcher.
    assert_eq!(get(&r, "/users/7/orders").await.body, "b");
    assert_eq!(get(&r, "/api/v2/x").await.body, "c");
}

#[tokio::test]
async fn method_header_query_host_matchers_all_must_hold() {
    let r = router([
        Rule::new("write")
            .prefix("/doc")
            .methods([Method::POST, Method::PUT])
            .to("a"),
        Rule::new("canary").header("x-canary", "true").to("b"),
        Rule::new("beta")
            .header_regex("user-agent", "^beta/[0-9]+")
            .to("c"),
        Rule::new("debug")
            .query_present("debug")
            .header_absent("x-prod")
            .to("a"),
        Rule::new("tenant").query("tenant", "acme corp").to("b"),
        Rule::new("host")
            .host("*.example.com")
            .header_present("x-h")
            .to("c"),
        Rule::new("apex").host("example.com").to("a"),
    ]);
    let m = |req: Request<()>| r.matching_rule(&req).map(|n| n.to_string());
    let b = || Request::builder();
    assert_eq!(
        m(b().method("POST").uri("/doc/1").body(()).unwrap()).as_deref(),
        Some("write")
    );
    assert_eq!(
        m(b().method("PUT").uri("/doc").body(()).unwrap()).as_deref(),
        Some("write")
    );
    assert_eq!(m(b().method("GET").uri("/doc/1").body(()).unwrap()), None);
    assert_eq!(
        m(b().uri("/").header("x-canary", "true").body(()).unwrap()).as_deref(),
        Some("canary")
    );
    assert_eq!(
        m(b().uri("/").header("x-canary", "TRUE").body(()).unwrap()),
        None
    );
    assert_eq!(
        m(b()
            .uri("/")
            .header("user-agent", "beta/2")
            .body(())
            .unwrap())
        .as_deref(),
        Some("beta")
    );
    assert_eq!(
        m(b()
            .uri("/")
            .header("user-agent", "x beta/2")
            .body(())
            .unwrap()),
        None
    );
    assert_eq!(
        m(b().uri("/?debug").body(()).unwrap()).as_deref(),
        Some("debug")
    );
    assert_eq!(
        m(b().uri("/?debug=1").header("x-prod", "1").body(()).unwrap()),
        None
    );
    assert_eq!(
        m(b().uri("/?tenant=acme%20corp").body(()).unwrap()).as_deref(),
        Some("tenant")
    );
    assert_eq!(m(b().uri("/?tenant=acme").body(()).unwrap()), None);
    let host = |h: &str, x: bool| {
        let mut req = b().uri("/").header("host", h);
        if x {
            req = req.header("x-h", "1");
        }
        m(req.body(()).unwrap())
    };
    assert_eq!(host("api.example.com:8443", true).as_deref(), Some("host"));
    assert_eq!(host("api.example.com", false), None); // header condition fails
    assert_eq!(host("example.com", true).as_deref(), Some("apex"));
    assert_eq!(host("example.org", true), None);
}

#[tokio::test]
async fn precedence_is_priority_then_declaration_order_and_disabled_rules_are_skipped() {
    let r = router([
        Rule::new("broad").prefix("/api").to("a"),
        Rule::new("narrow").prefix("/api/v2").to("b"),
        Rule::new("urgent")
            .prefix("/api/v2/hot")
            .priority(10)
            .to("c"),
        Rule::new("off")
            .prefix("/")
            .priority(100)
            .enabled(false)
            .to("c"),
    ]);
    // Declaration order: the broad rule first shadows the narrow one.
    assert_eq!(get(&r, "/api/v2/x").await.body, "a");
    // Explicit priority beats declaration order.
    assert_eq!(get(&r, "/api/v2/hot/1").await.body, "c");
    // Unindexed (linear) evaluation gives the same answers.
    let linear = Router::builder()
        .destination("a", dest("a"))
        .destination("b", dest("b"))
        .destination("c", dest("c"))
        .rules(r.rules().iter().cloned())
        .index(false)
        .build()
        .unwrap();
    for uri in ["/api/v2/x", "/api/v2/hot/1", "/api", "/", "/other"] {
        let req = Request::get(uri).body(()).unwrap();
        assert_eq!(linear.matching_rule(&req), r.matching_rule(&req), "{uri}");
    }
}

#[tokio::test]
async fn no_match_goes_to_the_fallback_or_404() {
    let r = router([Rule::new("api").prefix("/api").to("a")]);
    let a = get(&r, "/nope").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.routed.is_none());
    let with_fallback = Router::builder()
        .destination("a", dest("a"))
        .destination("web", dest("web"))
        .rule(Rule::new("api").prefix("/api").to("a"))
        .fallback("web")
        .record_routed(true)
        .build()
        .unwrap();
    let a = send(&with_fallback, Request::get("/nope").body(()).unwrap()).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "web"));
    let routed = a.routed.unwrap();
    assert_eq!((routed.rule(), routed.destination()), (None, "web"));
    let a = send(&with_fallback, Request::get("/api/x").body(()).unwrap()).await;
    let routed = a.routed.unwrap();
    assert_eq!((routed.rule(), routed.destination()), (Some("api"), "a"));
}

// ---- splits ---------------------------------------------------------------------------------

#[tokio::test]
async fn split_shares_within_tolerance_over_10000_requests() {
    let r = router([Rule::new("ab")
        .prefix("/")
        .split(Split::new().to("a", 90).to("b", 10))]);
    let mut counts = HashMap::new();
    for _ in 0..10_000 {
        *counts.entry(get(&r, "/").await.body).or_insert(0u32) += 1;
    }
    let b = counts.get("b").copied().unwrap_or(0);
    assert!(
        (850..=1150).contains(&b),
        "random split: b got {b} of 10 000"
    );

    // Keyed by header: 10 000 users, each counted once.
    r.set_rules([Rule::new("ab").prefix("/").split(
        Split::new()
            .to("a", 70)
            .to("b", 20)
            .to("c", 10)
            .by_header("x-user"),
    )])
    .unwrap();
    let mut counts = HashMap::new();
    for u in 0..10_000 {
        let req = Request::get("/")
            .header("x-user", format!("user-{u}"))
            .body(())
            .unwrap();
        *counts.entry(send(&r, req).await.body).or_insert(0u32) += 1;
    }
    for (d, want) in [("a", 7000), ("b", 2000), ("c", 1000)] {
        let got = counts[d];
        assert!(got.abs_diff(want) <= 200, "{d}: {got}, want about {want}");
    }
}

#[tokio::test]
async fn keyed_split_is_sticky_and_a_weight_change_moves_about_10_percent_of_users() {
    let split = |canary| {
        Rule::new("canary").prefix("/").split(
            Split::new()
                .to("b", canary)
                .to("a", 100 - canary)
                .by_cookie("uid"),
        )
    };
    let r = router([split(10)]);
    let user = |u: u32| {
        Request::get("/")
            .header("cookie", format!("theme=dark; uid={u}"))
            .body(())
            .unwrap()
    };
    let mut before = Vec::new();
    for u in 0..10_000 {
        before.push(send(&r, user(u)).await.body);
    }
    // Sticky: the same users again, in another order, land on the same side.
    for u in (0..10_000).rev().step_by(7) {
        assert_eq!(send(&r, user(u)).await.body, before[u as usize]);
    }
    r.set_rules([split(20)]).unwrap();
    let mut moved = 0;
    for u in 0..10_000 {
        let now = send(&r, user(u)).await.body;
        if now != before[u as usize] {
            // Only towards the canary, whose range grew.
            assert_eq!((before[u as usize].as_str(), now.as_str()), ("a", "b"));
            moved += 1;
        }
    }
    assert!(
        (850..=1150).contains(&moved),
        "moved {moved} of 10 000 users"
    );
}

#[tokio::test]
async fn split_by_client_ip_uses_the_resolved_address() {
    let r = router([Rule::new("ip")
        .prefix("/")
        .split(Split::new().to("a", 50).to("b", 50).by_client_ip())]);
    // Behind a trusted proxy, the resolved client decides, not the proxy's address.
    let via = |client: &str| {
        let mut req = with_ip(Request::get("/").body(()).unwrap(), "10.0.0.1");
        req.extensions_mut().insert(ClientIp::new(
            client.parse().unwrap(),
            "10.0.0.1:1".parse().unwrap(),
            true,
        ));
        req
    };
    let mut sides = HashMap::new();
    for i in 0..200 {
        let client = format!("198.51.100.{i}");
        let side = send(&r, via(&client)).await.body;
        assert_eq!(
            send(&r, with_ip(Request::get("/").body(()).unwrap(), &client))
                .await
                .body,
            side
        );
        *sides.entry(side).or_insert(0) += 1;
    }
    assert_eq!(
        sides.len(),
        2,
        "200 clients behind one proxy spread over both sides: {sides:?}"
    );
}

// ---- run-time changes -----------------------------------------------------------------------

#[test]
fn invalid_rule_sets_are_refused_with_rule_and_field_and_change_nothing() {
    let r = router([Rule::new("keep").prefix("/").to("a")]);
    let cases: Vec<(Rule, &str, &str)> = vec![
        (Rule::new("x").path_regex("(unclosed").to("a"), "x", "path"),
        (
            Rule::new("x").path_regex("a".repeat(2000)).to("a"),
            "x",
            "path",
        ),
        (Rule::new("x").header_regex("h", "[").to("a"), "x", "header"),
        (Rule::new("x").prefix("/").to("nowhere"), "x", "destination"),
        (Rule::new("x").prefix("/"), "x", "destination"),
        (
            Rule::new("x").split(Split::new().to("a", 0).to("b", 0)),
            "x",
            "split",
        ),
        (Rule::new("x").split(Split::new()), "x", "split"),
        (Rule::new("x").path("").to("a"), "x", "path"),
        (Rule::new("x").path("/a/**").to("a"), "x", "path"),
        (Rule::new("x").path("no-slash").to("a"), "x", "path"),
        (
            Rule::new("x").header("bad header", "v").to("a"),
            "x",
            "header",
        ),
        (Rule::new("x").host("bad host!").to("a"), "x", "host"),
        (
            Rule::new("x").response_header("x", "bad\nvalue").to("a"),
            "x",
            "response_header",
        ),
        (
            Rule::new("x")
                .access(Access::new().allow("10.0.0.0/99"))
                .to("a"),
            "x",
            "access",
        ),
        (
            Rule::new("x").timeout(Duration::ZERO).to("a"),
            "x",
            "timeout",
        ),
    ];
    for (bad, rule, field) in cases {
        let err = r
            .set_rules([Rule::new("fine").prefix("/f").to("b"), bad])
            .unwrap_err();
        assert_eq!((err.rule(), err.field()), (Some(rule), field), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("rule `{rule}`: {field}: ")),
            "{err}"
        );
    }
    let err = r
        .set_rules([Rule::new("d").to("a"), Rule::new("d").to("b")])
        .unwrap_err();
    assert_eq!((err.rule(), err.field()), (Some("d"), "name"));
    // Nothing changed.
    assert_eq!(r.rules().len(), 1);
    assert_eq!(r.rules()[0].name(), "keep");
    let err = Router::builder()
        .destination("a", dest("a"))
        .fallback("zz")
        .build()
        .unwrap_err();
    assert_eq!((err.rule(), err.field()), (None, "fallback"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_rules_is_atomic_under_concurrent_load() {
    // Set A sends everything to `a` and tags responses `A`; set B to `b` with `B`. A response
    // from one set with the other's tag would be a mix.
    let set = |tag: &str, to: &str| {
        vec![
            Rule::new("guard").header("x-never", "1").to("c"),
            Rule::new("all")
                .prefix("/")
                .to(to)
                .response_header("x-set", tag),
        ]
    };
    let r = router(set("A", "a"));
    let seen = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (r, seen) = (r.clone(), seen.clone());
        tasks.spawn(async move {
            let mut tags = HashMap::new();
            for _ in 0..2_000 {
                let a = get(&r, "/x").await;
                let tag = a.headers["x-set"].to_str().unwrap().to_string();
                let expected = if tag == "A" { "a" } else { "b" };
                assert_eq!(a.body, expected, "a mixed rule set");
                *tags.entry(tag).or_insert(0) += 1;
                seen.fetch_add(1, Ordering::Relaxed);
            }
            tags
        });
    }
    for i in 0..200 {
        let (tag, to) = if i % 2 == 0 { ("B", "b") } else { ("A", "a") };
        r.set_rules(set(tag, to)).unwrap();
        // An invalid set in between changes nothing.
        assert!(r.set_rules([Rule::new("bad").to("missing")]).is_err());
        assert_eq!(r.rules()[1].name(), "all");
        tokio::task::yield_now().await;
    }
    while let Some(tags) = tasks.join_next().await {
        tags.unwrap();
    }
    assert_eq!(seen.load(Ordering::Relaxed), 8_000);
}

#[tokio::test]
async fn requests_in_flight_finish_on_the_rules_they_started_with() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let slow: Dest = BoxCloneSyncService::new(service_fn(move |_r: Request<()>| {
        let g = g.clone();
        async move {
            g.notified().await;
            Ok::<_, Infallible>(Response::new("slow".to_string()))
        }
    }));
    let r = Router::builder()
        .destination("slow", slow)
        .rule(
            Rule::new("old")
                .prefix("/")
                .to("slow")
                .response_header("x-set", "old"),
        )
        .build()
        .unwrap();
    let pending = tokio::spawn(r.clone().oneshot(Request::get("/").body(()).unwrap()));
    tokio::task::yield_now().await;
    r.set_rules([Rule::new("new")
        .prefix("/")
        .to("slow")
        .response_header("x-set", "new")])
        .unwrap();
    gate.notify_one();
    let rsp = pending.await.unwrap().unwrap();
    assert_eq!(rsp.headers()["x-set"], "old");
}

// ---- per-rule extras ------------------------------------------------------------------------

#[tokio::test]
async fn rewrite_and_header_additions() {
    let r = router([
        Rule::new("v2")
            .prefix("/api/v2")
            .strip_prefix("/api/v2")
            .request_header("x-added", "yes")
            .to("a"),
        Rule::new("legacy")
            .prefix("/old")
            .rewrite_prefix("/old", "/new/base")
            .to("b"),
        Rule::new("secure")
            .host("secure.example.com")
            .response_header("strict-transport-security", "max-age=63072000")
            .to("c"),
    ]);
    let a = send(
        &r,
        Request::get("/api/v2/users/7?x=1")
            .header("x-added", "client")
            .body(())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (a.body.as_str(), a.headers["x-path"].to_str().unwrap()),
        ("a", "/users/7?x=1")
    );
    assert_eq!(a.headers["x-added"], "yes"); // replaced, not the client's
    assert_eq!(get(&r, "/api/v2").await.headers["x-path"], "/");
    assert_eq!(get(&r, "/old/x").await.headers["x-path"], "/new/base/x");
    let a = send(
        &r,
        Request::get("/")
            .header("host", "secure.example.com")
            .body(())
            .unwrap(),
    )
    .await;
    assert_eq!(a.headers["strict-transport-security"], "max-age=63072000");
    assert!(
        get(&r, "/api/v2/x")
            .await
            .headers
            .get("strict-transport-security")
            .is_none()
    );
    // The backend receives the normalized path.
    assert_eq!(
        get(&r, "/old/../api/v2/./a//b").await.headers["x-path"],
        "/a/b"
    );
}

#[tokio::test(start_paused = true)]
async fn per_rule_rate_limits_and_timeouts() {
    let auth_limit = RateLimitLayer::builder(LimitKey::client_ip())
        .rate(5, Duration::from_secs(1))
        .burst(4) // 5 at once, then one per 200 ms
        .build()
        .unwrap();
    let slow: Dest = BoxCloneSyncService::new(service_fn(|_r: Request<()>| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, Infallible>(Response::new("slow".to_string()))
    }));
    let r = Router::builder()
        .destination("a", dest("a"))
        .destination("slow", slow)
        .rules([
            Rule::new("auth")
                .prefix("/auth")
                .rate_limit(auth_limit)
                .to("a"),
            Rule::new("ai")
                .prefix("/ai")
                .timeout(Duration::from_secs(60))
                .to("slow"),
            Rule::new("api")
                .prefix("/api")
                .timeout(Duration::from_secs(10))
                .to("slow"),
            Rule::new("rest").prefix("/").to("a"),
        ])
        .build()
        .unwrap();
    let call = |uri: &str, ip: &str| {
        r.clone()
            .oneshot(with_ip(Request::get(uri).body(()).unwrap(), ip))
    };
    for _ in 0..5 {
        assert_eq!(
            call("/auth/login", "192.0.2.1").await.unwrap().status(),
            200
        );
    }
    let refused = call("/auth/login", "192.0.2.1").await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "1");
    // Another client, and another rule, are not limited.
    assert_eq!(
        call("/auth/login", "192.0.2.2").await.unwrap().status(),
        200
    );
    for _ in 0..20 {
        assert_eq!(call("/other", "192.0.2.1").await.unwrap().status(), 200);
    }
    // 10 s deadline on /api: 504; 60 s on /ai: the 30 s answer arrives.
    let start = tokio::time::Instant::now();
    assert_eq!(
        call("/api/x", "192.0.2.1").await.unwrap().status(),
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!(call("/ai/chat", "192.0.2.1").await.unwrap().status(), 200);
}

// ---- access control -------------------------------------------------------------------------

#[tokio::test]
async fn access_lists_first_match_wins_per_rule_and_router_wide() {
    let r = router([
        Rule::new("metrics")
            .prefix("/metrics")
            .to("a")
            .access(Access::parse("allow 127.0.0.1; deny all;").unwrap()),
        Rule::new("internal").prefix("/internal").to("b").access(
            Access::new()
                .allow("10.1.0.0/16")
                .deny("10.0.0.0/8")
                .allow("2001:db8::/32")
                .deny("all")
                .status(StatusCode::NOT_FOUND),
        ),
        Rule::new("open").prefix("/").to("c"),
    ]);
    let at = |uri: &str, ip: &str| with_ip(Request::get(uri).body(()).unwrap(), ip);
    assert_eq!(send(&r, at("/metrics", "127.0.0.1")).await.status, 200);
    assert_eq!(
        send(&r, at("/metrics", "[::ffff:127.0.0.1]")).await.status,
        200
    );
    assert_eq!(
        send(&r, at("/metrics", "192.0.2.1")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&r, Request::get("/metrics").body(()).unwrap())
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(send(&r, at("/internal", "10.1.2.3")).await.status, 200); // allowed before the deny
    assert_eq!(
        send(&r, at("/internal", "10.2.2.3")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(send(&r, at("/internal", "[2001:db8::5]")).await.status, 200);
    assert_eq!(
        send(&r, at("/internal", "192.0.2.1")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(send(&r, at("/anything", "192.0.2.1")).await.status, 200);
    // The resolved client IP counts, not the proxy's.
    let mut via_proxy = at("/metrics", "127.0.0.1");
    via_proxy.extensions_mut().insert(ClientIp::new(
        "192.0.2.9".parse().unwrap(),
        "127.0.0.1:1".parse().unwrap(),
        true,
    ));
    assert_eq!(send(&r, via_proxy).await.status, StatusCode::FORBIDDEN);

    let whole = Router::builder()
        .destination("a", dest("a"))
        .rule(Rule::new("all").prefix("/").to("a"))
        .access(Access::new().deny("192.0.2.0/24"))
        .build()
        .unwrap();
    assert_eq!(
        send(&whole, at("/", "192.0.2.1")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(send(&whole, at("/", "198.51.100.1")).await.status, 200);
}

// ---- over loopback sockets ------------------------------------------------------------------

/// A loopback backend that counts requests and echoes the path it received.
async fn echo_backend(name: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let c = c.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    c.fetch_add(1, Ordering::SeqCst);
                    let path = req.uri().path().to_string();
                    async move {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                            "{name} {path}"
                        )))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, count)
}

/// A gateway on loopback: hyper server → ClientIpLayer (peer from the accepted connection) →
/// Router → Balance over HttpClient.
async fn gateway(
    trusted: TrustedProxies,
    rules: Vec<Rule>,
    admin: SocketAddr,
    public: SocketAddr,
) -> SocketAddr {
    let group = |name: &str, addr: SocketAddr| {
        TargetGroup::builder(name)
            .target(Target::new(format!("{name}-1"), addr.to_string()).unwrap())
            .build()
            .unwrap()
    };
    let client = HttpClient::<hyper::body::Incoming>::new();
    let router = Router::builder()
        .destination(
            "admin",
            Balance::with_maker(group("admin", admin), client.clone()),
        )
        .destination(
            "public",
            Balance::with_maker(group("public", public), client),
        )
        .rules(rules)
        .fallback("public")
        .build()
        .unwrap();
    let layer = ClientIpLayer::new(ClientIpResolver::new(trusted));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let svc = layer.clone().peer(peer).layer(router.clone());
            tokio::spawn(async move {
                let svc = hyper_util::service::TowerToHyperService::new(svc);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Sends a raw request line (so paths reach the server byte for byte); returns status and body.
async fn raw(addr: SocketAddr, target: &str, headers: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n{headers}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test]
async fn normalization_bypass_attempts_over_loopback() {
    let (admin, admin_hits) = echo_backend("admin").await;
    let (public, public_hits) = echo_backend("public").await;
    let rules = vec![
        Rule::new("admin")
            .prefix("/admin")
            .to("admin")
            .access(Access::parse("allow 10.0.0.0/8; deny all").unwrap()),
    ];
    let gw = gateway(TrustedProxies::none(), rules, admin, public).await;
    for attempt in [
        "/admin",
        "/x/../admin",
        "/%61dmin",
        "//admin",
        "/./admin/",
        "/%2e%2e/admin/x",
        "/admin/./users",
    ] {
        let (status, _) = raw(gw, attempt, "").await;
        assert_eq!(status, 403, "{attempt}");
    }
    // Encoded slashes, backslashes and bad escapes are the client's fault: 400.
    for malformed in ["/x%2F..%2Fadmin", "/x%5C..%5Cadmin", "/%zz", "/a%4"] {
        let (status, _) = raw(gw, malformed, "").await;
        assert_eq!(status, 400, "{malformed}");
    }
    assert_eq!(admin_hits.load(Ordering::SeqCst), 0);
    assert_eq!(public_hits.load(Ordering::SeqCst), 0);
    // The public backend receives the normalized path.
    let (status, body) = raw(gw, "/a/./b/../%63//d", "").await;
    assert_eq!((status, body.as_str()), (200, "public /a/c/d"));
    assert_eq!(public_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn trusted_and_untrusted_forwarded_chains_over_loopback() {
    let (admin, admin_hits) = echo_backend("admin").await;
    let (public, _) = echo_backend("public").await;
    let rules = || {
        vec![
            Rule::new("admin")
                .prefix("/admin")
                .to("admin")
                .access(Access::parse("allow 203.0.113.0/24; deny all").unwrap()),
        ]
    };
    // The gateway trusts its loopback peer (our client here plays the proxy).
    let gw = gateway(TrustedProxies::loopback(), rules(), admin, public).await;
    let xff = |v: &str| format!("x-forwarded-for: {v}\r\n");
    assert_eq!(raw(gw, "/admin", &xff("203.0.113.5")).await.0, 200);
    assert_eq!(
        raw(gw, "/admin", &xff("198.51.100.1, 203.0.113.5")).await.0,
        200
    ); // forged left part ignored
    assert_eq!(
        raw(gw, "/admin", &xff("203.0.113.5, 198.51.100.1")).await.0,
        403
    ); // the first untrusted hop is the client
    assert_eq!(
        raw(gw, "/admin", &xff("203.0.113.5, 127.0.0.1")).await.0,
        200
    ); // trusted hops are skipped
    assert_eq!(raw(gw, "/admin", &xff("203.0.113.5, unknown")).await.0, 403); // unparsable: the peer
    assert_eq!(raw(gw, "/admin", "").await.0, 403);
    assert_eq!(admin_hits.load(Ordering::SeqCst), 3);
    // Trusting nobody: the header is the client's own word and is ignored.
    let gw = gateway(TrustedProxies::none(), rules(), admin, public).await;
    assert_eq!(raw(gw, "/admin", &xff("203.0.113.5")).await.0, 403);
    assert_eq!(admin_hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn escaped_slash_policy_keep_and_decode() {
    let keep = Router::builder()
        .destination("a", dest("a"))
        .rule(Rule::new("all").prefix("/").to("a"))
        .escaped_slashes(EscapedSlashes::Keep)
        .build()
        .unwrap();
    let rsp = keep
        .clone()
        .oneshot(Request::get("/a%2fb").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(rsp.headers()["x-path"], "/a%2Fb");
    let decode = Router::builder()
        .destination("a", dest("a"))
        .rule(Rule::new("all").prefix("/").to("a"))
        .escaped_slashes(EscapedSlashes::Decode)
        .build()
        .unwrap();
    let rsp = decode
        .oneshot(Request::get("/x%2F..%2Fb").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(rsp.headers()["x-path"], "/b");
}

/// The router over real balancers is `Clone + Send + Sync` and its future is `Send`, so it goes
/// into axum and multi-threaded servers as it is.
#[test]
fn router_over_balance_is_clone_send_sync() {
    fn clone_send_sync<T: Clone + Send + Sync + 'static>(_: &T) {}
    fn send_future<S: tower::Service<Request<hyper::body::Incoming>>>(_: &S)
    where
        S::Future: Send,
    {
    }
    let group = TargetGroup::builder("g")
        .target(Target::new("t", "127.0.0.1:1").unwrap())
        .build()
        .unwrap();
    let router = Router::builder()
        .destination(
            "g",
            Balance::with_maker(group, HttpClient::<hyper::body::Incoming>::new()),
        )
        .build()
        .unwrap();
    clone_send_sync(&router);
    send_future(&router);
    clone_send_sync(&ClientIpLayer::default());
}

/// A destination that answers `poll_ready` with `Pending` on its first call (waking the task),
/// and with `Err` instead of `Ok` if it is built to fail.
#[derive(Clone)]
struct Hesitant {
    polls: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
    fail: bool,
}

impl tower::Service<Request<()>> for Hesitant {
    type Response = Response<String>;
    type Error = &'static str;
    type Future = std::future::Ready<Result<Response<String>, &'static str>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), &'static str>> {
        if self.polls.fetch_add(1, Ordering::Relaxed) == 0 {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        std::task::Poll::Ready(if self.fail { Err("not ready") } else { Ok(()) })
    }

    fn call(&mut self, _req: Request<()>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Ok(Response::new("hesitant".to_string())))
    }
}

/// The router calls a destination that is ready at once right away; one that is not is
/// driven ready by the router's future (with the task's waker) and called then; a readiness
/// error comes back as the router's error, and nothing is called.
#[tokio::test]
async fn a_destination_not_ready_at_once_is_driven_ready_then_called() {
    for fail in [false, true] {
        let polls = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let router = Router::builder()
            .destination(
                "h",
                Hesitant {
                    polls: polls.clone(),
                    calls: calls.clone(),
                    fail,
                },
            )
            .fallback("h")
            .build()
            .unwrap();
        let fut = router.clone().oneshot(Request::get("/x").body(()).unwrap());
        let out = tokio::time::timeout(Duration::from_secs(5), fut)
            .await
            .expect("answers");
        assert_eq!(
            polls.load(Ordering::Relaxed),
            2,
            "polled twice (fail: {fail})"
        );
        match out {
            Ok(rsp) => {
                assert!(!fail);
                assert_eq!(
                    rsp.into_body().collect().await.unwrap().to_bytes(),
                    "hesitant"
                );
                assert_eq!(calls.load(Ordering::Relaxed), 1);
            }
            Err(e) => {
                assert!(fail);
                assert_eq!(e, "not ready");
                assert_eq!(calls.load(Ordering::Relaxed), 0);
            }
        }
    }
    // Ready at once, failing at once: the error is the router's answer.
    let polls = Arc::new(AtomicUsize::new(1));
    let router = Router::builder()
        .destination(
            "h",
            Hesitant {
                polls,
                calls: Arc::new(AtomicUsize::new(0)),
                fail: true,
            },
        )
        .fallback("h")
        .build()
        .unwrap();
    let out = router.oneshot(Request::get("/").body(()).unwrap()).await;
    assert_eq!(out.err(), Some("not ready"));
}

/// With no rules at all (a load balancer's router before any are set), paths are still
/// normalized before they are sent on, and malformed ones still refused.
#[tokio::test]
async fn without_rules_paths_are_still_normalized() {
    let router = Router::builder()
        .destination("a", dest("a"))
        .fallback("a")
        .build()
        .unwrap();
    assert!(router.rules().is_empty());
    let rsp = router
        .clone()
        .oneshot(Request::get("/x/../y/./z?q=1").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(rsp.headers()["x-path"], "/y/z?q=1");
    let rsp = router
        .oneshot(Request::get("/a%2Fb").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
}

/// Rule sets replaced from several threads at once: once they are done, requests are routed
/// by whichever set is in force (`rules()`), never by a mix (the router's "no rules" fast
/// path and the rule table are switched together).
#[tokio::test]
async fn concurrent_rule_set_changes_leave_a_consistent_router() {
    let router = Router::builder()
        .destination("a", dest("a"))
        .destination("b", dest("b"))
        .fallback("a")
        .build()
        .unwrap();
    for round in 0..50 {
        std::thread::scope(|s| {
            for t in 0..4 {
                let router = &router;
                s.spawn(move || {
                    for i in 0..20 {
                        let rules = match (t + i + round) % 2 {
                            0 => Vec::new(),
                            _ => vec![Rule::new("to-b").prefix("/x").to("b")],
                        };
                        router.set_rules(rules).unwrap();
                    }
                });
            }
        });
        let expect = if router.rules().is_empty() { "a" } else { "b" };
        let rsp = router
            .clone()
            .oneshot(Request::get("/x").body(()).unwrap())
            .await
            .unwrap();
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, expect, "round {round}: the rules in force decide");
    }
}

/// A router used for many requests (as the server keeps one per connection) calls its own
/// clone of the destination again while requests go there, and each request still reaches
/// the destination its rule names.
#[tokio::test]
async fn a_router_kept_for_many_requests_does_not_clone_its_destination_per_request() {
    let clones = Arc::new(AtomicUsize::new(0));
    let one = |name| {
        PerInstance::new(name, clones.clone(), |name, n| {
            Response::new(format!("{name} {n}"))
        })
    };
    let mut router = Router::builder()
        .destination("a", one("a"))
        .destination("b", one("b"))
        .rule(Rule::new("b").prefix("/b").to("b"))
        .rule(Rule::new("a").prefix("/").to("a"))
        .build()
        .unwrap();
    let mut answers = Vec::new();
    for path in ["/", "/", "/", "/b", "/b", "/"] {
        let rsp = ServiceExt::<Request<()>>::ready(&mut router)
            .await
            .unwrap()
            .call(Request::get(path).body(()).unwrap())
            .await
            .unwrap();
        answers.push(rsp.into_body().collect().await.unwrap().to_bytes());
    }
    let answers: Vec<_> = answers
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(answers, ["a 1", "a 2", "a 3", "b 1", "b 2", "a 1"]);
    assert_eq!(
        clones.load(Ordering::SeqCst),
        3,
        "one clone each time the destination changes"
    );
}
