//! The admin endpoint (issue 14, items 2 and 3) over real loopback sockets: JSON status, the
//! Prometheus text, admin actions (off by default), the `metrics` facade exporter, and the
//! status page in a real headless browser (Debian's `chromium`, installed by
//! `.ci/install-chromium.sh`; the test says why and skips where it cannot be found).
//!
//! Backends count what reaches them; the admin endpoint is served by hyper on `127.0.0.1:0`
//! and counts the requests it serves by path.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;
use tower_lb::Target;
use tower_lb::admin::{ACTION_HEADER, Admin, AdminBuilder};
use tower_lb::key::ClientAddr;
use tower_lb::lb::{LoadBalancer, Registry};
use tower_lb::target::AdminState;

/// A loopback backend answering 200 (`/broken`: 500), counting the requests that reach it.
async fn backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let h = h.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    h.fetch_add(1, Ordering::SeqCst);
                    let status = if req.uri().path() == "/broken" {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    };
                    async move {
                        let mut rsp = Response::new(Full::new(Bytes::from_static(b"x")));
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
    (addr, hits)
}

/// A registry with one load balancer `api` over three loopback backends `a`, `b` and the
/// oddly named `c/1 <x>` (escaping and percent-encoding on every path).
struct Fixture {
    registry: Registry<Body>,
    lb: LoadBalancer<Body>,
    hits: HashMap<String, Arc<AtomicUsize>>,
    addrs: Vec<SocketAddr>,
}

const ODD: &str = "c/1 <x>";
const IDS: [&str; 3] = ["a", "b", ODD];

async fn fixture() -> Fixture {
    let mut targets = Vec::new();
    let mut hits = HashMap::new();
    let mut addrs = Vec::new();
    for id in IDS {
        let (addr, h) = backend().await;
        targets.push(Target::new(id, addr.to_string()).unwrap());
        hits.insert(id.to_string(), h);
        addrs.push(addr);
    }
    let lb = LoadBalancer::builder()
        .with_name("api")
        .with_targets(targets)
        .build::<Body>()
        .unwrap();
    let registry = Registry::new();
    registry.register(lb.clone()).unwrap();
    Fixture {
        registry,
        lb,
        hits,
        addrs,
    }
}

impl Fixture {
    /// Sends `n` requests to `path` through the load balancer; returns their statuses.
    async fn traffic(&self, n: usize, path: &str) -> Vec<u16> {
        let mut out = Vec::new();
        for _ in 0..n {
            let mut req = Request::get(path).body(Body::empty()).unwrap();
            req.extensions_mut()
                .insert(ClientAddr("198.51.100.7:40000".parse().unwrap()));
            let rsp = self.lb.clone().oneshot(req).await.unwrap();
            out.push(rsp.status().as_u16());
            // Read the body to its end: that is when the attempt is recorded.
            let _ = rsp.into_body().collect().await.unwrap();
        }
        out
    }

    fn hits(&self, id: &str) -> usize {
        self.hits[id].load(Ordering::SeqCst)
    }

    fn admin_of(&self, id: &str) -> AdminState {
        self.lb.group().admin(&id.into()).unwrap()
    }
}

/// Serves `admin` on a loopback port; counts the requests it serves by path.
async fn serve(admin: Admin) -> (SocketAddr, Arc<Mutex<HashMap<String, usize>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (admin, s) = (admin.clone(), s.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    *s.lock()
                        .unwrap()
                        .entry(req.uri().path().to_string())
                        .or_default() += 1;
                    admin.clone().oneshot(req)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One request over a fresh loopback connection.
async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let rsp = tx
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let (parts, body) = rsp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn action_path(prefix: &str, target: &str, action: &str) -> String {
    format!("{prefix}/targets/api/api/{}/{action}", enc(target))
}

fn targets_of(status: &serde_json::Value) -> Vec<serde_json::Value> {
    status["load_balancers"][0]["groups"][0]["targets"]
        .as_array()
        .unwrap()
        .clone()
}

fn target_of(status: &serde_json::Value, id: &str) -> serde_json::Value {
    targets_of(status)
        .into_iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no target {id} in {status}"))
}

/// The JSON status lists every target with its figures, matching what the backends counted,
/// and names no backend address unless asked.
#[tokio::test]
async fn status_json_lists_every_target_with_figures_and_no_address() {
    let f = fixture().await;
    assert!(f.traffic(30, "/ok").await.iter().all(|s| *s == 200));
    assert!(f.traffic(3, "/broken").await.iter().all(|s| *s == 500));
    let (addr, _) = serve(Admin::new(&f.registry)).await;

    let rsp = send(addr, "GET", "/status.json", &[]).await;
    assert_eq!(rsp.status, 200);
    assert_eq!(rsp.headers["content-type"], "application/json");
    assert_eq!(rsp.headers["cache-control"], "no-store");
    let status = rsp.json();
    assert_eq!(status["actions"], false);
    let lb = &status["load_balancers"][0];
    assert_eq!(lb["name"], "api");
    assert_eq!(lb["groups"][0]["name"], "api");
    assert_eq!(targets_of(&status).len(), 3);
    let mut total = 0;
    for id in IDS {
        let t = target_of(&status, id);
        let n = t["requests"].as_u64().unwrap();
        assert_eq!(
            n as usize,
            f.hits(id),
            "{id}: requests as the backend counted them"
        );
        assert_eq!(t["state"], "up");
        assert_eq!(t["admin"], "enabled");
        assert_eq!(t["in_flight"], 0);
        assert_eq!(
            t["responses"]["2xx"].as_u64().unwrap() + t["responses"]["5xx"].as_u64().unwrap(),
            n
        );
        assert_eq!(t["latency_ms"]["count"].as_u64().unwrap(), n);
        assert!(t["latency_ms"]["max"].as_f64().unwrap() > 0.0);
        assert!(t.get("address").is_none());
        total += n;
    }
    assert_eq!(total, 33);
    assert_eq!(lb["groups"][0]["responses"]["5xx"], 3);
    assert_eq!(lb["groups"][0]["failures"]["status"], 3);
    for a in &f.addrs {
        assert!(!rsp.body.contains(&a.to_string()), "address {a} leaked");
    }

    // Asked for: addresses shown.
    let (addr, _) = serve(
        Admin::builder()
            .registry(&f.registry)
            .show_addresses(true)
            .build(),
    )
    .await;
    let status = send(addr, "GET", "/status.json", &[]).await.json();
    assert_eq!(target_of(&status, "a")["address"], f.addrs[0].to_string());

    // HEAD: the headers, no body.
    let head = send(addr, "HEAD", "/status.json", &[]).await;
    assert_eq!((head.status.as_u16(), head.body.as_str()), (200, ""));
}

/// Actions are off by default: `403`, nothing changes; wrong methods and paths get `405` and
/// `404`, each with a typed JSON error.
#[tokio::test]
async fn actions_are_off_by_default() {
    let f = fixture().await;
    let (addr, _) = serve(Admin::new(&f.registry)).await;
    let rsp = send(
        addr,
        "POST",
        &action_path("", "a", "drain"),
        &[(ACTION_HEADER, "1")],
    )
    .await;
    assert_eq!(rsp.status, 403);
    assert_eq!(rsp.json()["error"], "actions_disabled");
    assert_eq!(f.admin_of("a"), AdminState::Enabled);

    let rsp = send(addr, "GET", &action_path("", "a", "drain"), &[]).await;
    assert_eq!(rsp.status, 405);
    assert_eq!(rsp.headers["allow"], "POST");
    let rsp = send(addr, "POST", "/status.json", &[]).await;
    assert_eq!(rsp.status, 405);
    assert_eq!(rsp.headers["allow"], "GET, HEAD");
    let rsp = send(addr, "GET", "/nothing-here", &[]).await;
    assert_eq!(
        (rsp.status.as_u16(), rsp.json()["error"].clone()),
        (404, "not_found".into())
    );

    // Traffic still reaches every target.
    f.traffic(9, "/ok").await;
    assert!(IDS.iter().all(|id| f.hits(id) == 3));
}

/// With actions on: drain, disable and enable change the target's state in the group, and
/// the balancer's picks follow (counted at the backends); a missing guard header, unknown
/// names and bad encodings change nothing.
#[tokio::test]
async fn actions_change_the_target_state_when_enabled() {
    let f = fixture().await;
    let admin = Admin::builder()
        .registry(&f.registry)
        .prefix("/admin")
        .actions(true)
        .build();
    let (addr, _) = serve(admin).await;
    let guard = [(ACTION_HEADER, "1")];

    // No guard header: refused.
    let rsp = send(addr, "POST", &action_path("/admin", "b", "drain"), &[]).await;
    assert_eq!(
        (rsp.status.as_u16(), rsp.json()["error"].clone()),
        (403, "missing_action_header".into())
    );
    assert_eq!(f.admin_of("b"), AdminState::Enabled);

    // Unknown names, actions and encodings: typed errors, nothing changes.
    for (path, status, code) in [
        (
            "/admin/targets/nope/api/b/drain".to_string(),
            404,
            "unknown_load_balancer",
        ),
        (
            "/admin/targets/api/nope/b/drain".to_string(),
            404,
            "unknown_group",
        ),
        (
            "/admin/targets/api/api/nope/drain".to_string(),
            404,
            "unknown_target",
        ),
        (action_path("/admin", "b", "explode"), 404, "unknown_action"),
        (
            "/admin/targets/api/api/%FF/drain".to_string(),
            400,
            "bad_path",
        ),
        ("/admin/targets/api/api/b".to_string(), 404, "not_found"),
        (action_path("", "b", "drain"), 404, "not_found"),
    ] {
        let rsp = send(addr, "POST", &path, &guard).await;
        assert_eq!(rsp.status.as_u16(), status, "{path}");
        assert_eq!(rsp.json()["error"], code, "{path}");
        assert!(
            !rsp.body.contains("nope"),
            "the error echoes the client's input: {}",
            rsp.body
        );
    }
    assert!(IDS.iter().all(|id| f.admin_of(id) == AdminState::Enabled));

    // Drain `b`: no new request reaches it.
    let rsp = send(addr, "POST", &action_path("/admin", "b", "drain"), &guard).await;
    assert_eq!(rsp.status, 200);
    assert_eq!(rsp.json()["admin"], "draining");
    assert_eq!(f.admin_of("b"), AdminState::Draining);
    f.traffic(10, "/ok").await;
    assert_eq!(f.hits("b"), 0);
    assert_eq!(f.hits("a") + f.hits(ODD), 10);

    // Disable the oddly named one (percent-encoded id with a slash, a space and brackets).
    let rsp = send(addr, "POST", &action_path("/admin", ODD, "disable"), &guard).await;
    assert_eq!(rsp.status, 200, "{}", rsp.body);
    assert_eq!(rsp.json()["target"], ODD);
    assert_eq!(f.admin_of(ODD), AdminState::Disabled);
    let before = f.hits("a");
    f.traffic(4, "/ok").await;
    assert_eq!(f.hits("a"), before + 4);

    // Enable both again: traffic reaches them.
    for id in ["b", ODD] {
        let rsp = send(addr, "POST", &action_path("/admin", id, "enable"), &guard).await;
        assert_eq!(rsp.status, 200);
        assert_eq!(f.admin_of(id), AdminState::Enabled);
    }
    f.traffic(6, "/ok").await;
    assert!(f.hits("b") >= 1 && f.hits(ODD) >= 1);

    // The JSON agrees.
    let status = send(addr, "GET", "/admin/status.json", &[]).await.json();
    assert_eq!(status["actions"], true);
    assert!(targets_of(&status).iter().all(|t| t["state"] == "up"));
}

/// The Prometheus text: per-target counters that match the backends' counts, a real
/// histogram (cumulative buckets up to `+Inf` = count), bounded labels and no address.
#[tokio::test]
async fn prometheus_text_has_counters_and_a_real_histogram() {
    let f = fixture().await;
    f.traffic(12, "/ok").await;
    f.traffic(3, "/broken").await;
    let (addr, _) = serve(Admin::new(&f.registry)).await;
    let rsp = send(addr, "GET", "/metrics", &[]).await;
    assert_eq!(rsp.status, 200);
    assert!(
        rsp.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = rsp.body;
    let value = |series: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
        line[series.len() + 1..].parse().unwrap()
    };
    for id in ["a", "b"] {
        let l = format!("load_balancer=\"api\",group=\"api\",target=\"{id}\"");
        assert_eq!(
            value(&format!("tower_lb_requests_total{{{l}}}")) as usize,
            f.hits(id)
        );
        assert_eq!(value(&format!("tower_lb_target_up{{{l}}}")), 1.0);
        assert_eq!(
            value(&format!(
                "tower_lb_target_admin_state{{{l},state=\"enabled\"}}"
            )),
            1.0
        );
        let count = value(&format!("tower_lb_request_duration_seconds_count{{{l}}}"));
        assert_eq!(count as usize, f.hits(id));
        assert_eq!(
            value(&format!(
                "tower_lb_request_duration_seconds_bucket{{{l},le=\"+Inf\"}}"
            )),
            count
        );
        // Cumulative: never decreasing along the bounds.
        let mut last = 0.0;
        for le in ["0.001", "0.0025", "0.005", "0.01", "0.1", "1", "10", "+Inf"] {
            let v = value(&format!(
                "tower_lb_request_duration_seconds_bucket{{{l},le=\"{le}\"}}"
            ));
            assert!(v >= last, "bucket {le} below the previous one");
            last = v;
        }
    }
    // The odd id, escaped as a label value.
    assert!(text.contains("target=\"c/1 <x>\""));
    let five = text
        .lines()
        .filter(|l| l.starts_with("tower_lb_responses_total{") && l.contains("class=\"5xx\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum::<u64>();
    assert_eq!(five, 3);
    assert_eq!(
        value("tower_lb_group_healthy_targets{load_balancer=\"api\",group=\"api\"}"),
        3.0
    );
    assert!(text.contains("# TYPE tower_lb_request_duration_seconds histogram"));
    assert!(!text.contains("quantile="), "a summary, not a histogram");
    for a in &f.addrs {
        assert!(!text.contains(&a.to_string()));
    }
}

/// The page is one self-contained document: no external asset, a restrictive CSP, and names
/// escaped so that a target id cannot close the data's `<script>`.
#[tokio::test]
async fn page_is_self_contained_and_escapes_names() {
    let f = fixture().await;
    let (addr, _) = serve(Admin::new(&f.registry)).await;
    let rsp = send(addr, "GET", "/", &[]).await;
    assert_eq!(rsp.status, 200);
    assert_eq!(rsp.headers["content-type"], "text/html; charset=utf-8");
    let csp = rsp.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    let page = rsp.body;
    assert!(!page.contains("c/1 <x>"), "raw name in the page");
    assert!(page.contains("c/1 \\u003cx\\u003e"));
    assert_eq!(
        page.matches("</script>").count(),
        2,
        "the data closed its script element"
    );
    for external in ["src=\"http", "href=\"http", "@import", "url("] {
        assert!(!page.contains(external), "external asset: {external}");
    }
}

/// The `metrics` facade exporter into `metrics-exporter-prometheus`: a real histogram with
/// our bounds, counters that follow the traffic, and a departed target's series dropped by
/// the exporter's idle timeout.
#[cfg(feature = "metrics")]
#[tokio::test]
async fn metrics_exporter_feeds_prometheus_and_drops_departed_targets() {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    use metrics_util::MetricKindMask;
    use tower_lb::admin::MetricsExporter;
    use tower_lb::stats::LatencyHistogram;

    let f = fixture().await;
    let bounds: Vec<f64> = LatencyHistogram::bounds()
        .iter()
        .map(|b| b.as_secs_f64())
        .collect();
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("tower_lb_request_duration_seconds".into()),
            &bounds,
        )
        .unwrap()
        .idle_timeout(MetricKindMask::ALL, Some(Duration::from_millis(300)))
        .build_recorder();
    let handle = recorder.handle();
    let exporter = MetricsExporter::new(&f.registry);
    let export = || metrics::with_local_recorder(&recorder, || exporter.export());
    let value = |text: &str, series: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .map(|l| l[series.len() + 1..].parse().unwrap())
    };
    let la = "load_balancer=\"api\",group=\"api\",target=\"a\"";
    let lc = "load_balancer=\"api\",group=\"api\",target=\"c/1 <x>\"";

    f.traffic(9, "/ok").await;
    export();
    let text = handle.render();
    assert_eq!(
        value(&text, &format!("tower_lb_requests_total{{{la}}}")),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            &format!("tower_lb_request_duration_seconds_count{{{la}}}")
        ),
        Some(3.0)
    );
    assert!(text.contains("# TYPE tower_lb_request_duration_seconds histogram"));
    assert!(text.contains(&format!(
        "tower_lb_request_duration_seconds_bucket{{{la},le=\"0.001\"}}"
    )));
    assert!(!text.contains("quantile="));

    // Increments, not totals: a second export after 6 more requests adds 2 per target.
    f.traffic(6, "/ok").await;
    export();
    let text = handle.render();
    assert_eq!(
        value(&text, &format!("tower_lb_requests_total{{{la}}}")),
        Some(5.0)
    );
    assert_eq!(
        value(
            &text,
            &format!("tower_lb_request_duration_seconds_count{{{la}}}")
        ),
        Some(5.0)
    );
    let inf = value(
        &text,
        &format!("tower_lb_request_duration_seconds_bucket{{{la},le=\"+Inf\"}}"),
    );
    assert_eq!(inf, Some(5.0));

    // `c` leaves: its gauges go to 0 at the next export, and its series go once idle.
    f.lb.remove_target(ODD).unwrap();
    export();
    let text = handle.render();
    assert_eq!(
        value(&text, &format!("tower_lb_target_up{{{lc}}}")),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "tower_lb_group_targets{load_balancer=\"api\",group=\"api\"}"
        ),
        Some(2.0)
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    export();
    let text = handle.render();
    assert!(
        !text.contains("c/1 <x>"),
        "departed target still exported:\n{text}"
    );
    assert_eq!(
        value(&text, &format!("tower_lb_requests_total{{{la}}}")),
        Some(5.0)
    );
    assert_eq!(
        value(&text, &format!("tower_lb_target_up{{{la}}}")),
        Some(1.0)
    );
}

/// A standalone `Balance` (the layers, no `LoadBalancer`) is shown under the name it is given,
/// and actions reach its group.
#[tokio::test]
async fn standalone_balancers_are_shown_and_take_actions() {
    use tower_lb::TargetGroup;
    use tower_lb::balance::Balance;

    let group = |name: &str| {
        TargetGroup::builder(name)
            .target(Target::new("x", "127.0.0.1:1").unwrap())
            .target(Target::new("y", "127.0.0.1:2").unwrap())
            .build()
            .unwrap()
    };
    let ok = |_t: &Target| {
        tower::service_fn(|_r: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        })
    };
    let web = Balance::new(group("web"), ok);
    let grpc = Balance::new(group("grpc"), ok);
    for _ in 0..4 {
        drop(web.clone().oneshot(Request::new(())).await.unwrap());
    }
    let admin = Admin::builder()
        .balance("proxy", &web)
        .balance("proxy", &grpc)
        .actions(true)
        .build();
    let (addr, _) = serve(admin).await;
    let status = send(addr, "GET", "/status.json", &[]).await.json();
    let lbs = status["load_balancers"].as_array().unwrap();
    assert_eq!(lbs.len(), 1);
    assert_eq!(lbs[0]["name"], "proxy");
    assert!(
        lbs[0].get("retries").is_none(),
        "a standalone balancer has no stack figures"
    );
    let groups = lbs[0]["groups"].as_array().unwrap();
    assert_eq!(
        (groups[0]["name"].clone(), groups[1]["name"].clone()),
        ("web".into(), "grpc".into())
    );
    assert_eq!(groups[0]["requests"], 4);
    assert_eq!(groups[0]["responses"]["2xx"], 4);

    let rsp = send(
        addr,
        "POST",
        "/targets/proxy/grpc/y/disable",
        &[(ACTION_HEADER, "1")],
    )
    .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(
        grpc.group().admin(&"y".into()).unwrap(),
        AdminState::Disabled
    );
    assert_eq!(web.group().admin(&"y".into()).unwrap(), AdminState::Enabled);
    let rsp = send(
        addr,
        "POST",
        "/targets/proxy/nope/y/disable",
        &[(ACTION_HEADER, "1")],
    )
    .await;
    assert_eq!(rsp.json()["error"], "unknown_group");
}

// ---------------------------------------------------------------------------------------
// The page in a real browser.

/// Debian's chromium (or `$CHROMIUM`), if there is one.
fn chromium() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(p.into());
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// The DOM of `url` after its scripts ran for `budget_ms` of virtual time.
async fn dump_dom(browser: &std::path::Path, url: &str, budget_ms: u32) -> String {
    let profile = tempdir();
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                &format!("--user-data-dir={}", profile.display()),
                &format!("--virtual-time-budget={budget_ms}"),
                "--dump-dom",
                url,
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium did not finish in 90 s")
    .expect("chromium could not be started");
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed ({}): {}\n{dom}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

fn tempdir() -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tower-lb-chromium-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The class of the row of `target` in a dumped DOM (`<tr class="…" data-target="…">`, as
/// the page's script builds it).
fn row_class(dom: &str, target: &str) -> Option<String> {
    let attr = format!(
        "data-target=\"{}\"",
        target.replace('<', "&lt;").replace('>', "&gt;")
    );
    let at = dom.find(&attr)?;
    let row = &dom[dom[..at].rfind("<tr")?..at];
    let class = row.split("class=\"").nth(1)?;
    Some(class[..class.find('"')?].to_string())
}

/// The status page in headless chromium: it renders, shows every target as `up` (green),
/// refreshes itself from `status.json`, and after a drain action the drained target's row
/// turns `draining` (blue) while the others stay green.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_renders_in_a_real_browser_and_a_drained_target_changes_colour() {
    let Some(browser) = chromium() else {
        println!(
            "SKIPPED page_renders_in_a_real_browser…: no chromium on PATH (run .ci/install-chromium.sh, or set CHROMIUM)"
        );
        return;
    };
    let f = fixture().await;
    f.traffic(6, "/ok").await;
    let admin: AdminBuilder = Admin::builder()
        .registry(&f.registry)
        .prefix("/admin")
        .actions(true)
        .refresh(Duration::from_secs(1));
    let (addr, seen) = serve(admin.build()).await;
    let url = format!("http://{addr}/admin/");

    let dom = dump_dom(&browser, &url, 2500).await;
    assert!(
        dom.contains("<h2>api</h2>"),
        "no load balancer heading:\n{dom}"
    );
    assert!(dom.contains("<caption>api — 3/3 up</caption>"), "{dom}");
    for id in IDS {
        assert_eq!(
            row_class(&dom, id).as_deref(),
            Some("up"),
            "row of {id}:\n{dom}"
        );
    }
    // The script refreshed the figures from status.json (the endpoint saw it ask).
    let refreshes: usize = dom
        .split("data-refreshes=\"")
        .nth(1)
        .and_then(|s| s[..s.find('"')?].parse().ok())
        .unwrap_or(0);
    assert!(refreshes >= 1, "the page did not refresh itself:\n{dom}");
    assert!(
        seen.lock()
            .unwrap()
            .get("/admin/status.json")
            .copied()
            .unwrap_or(0)
            >= 1
    );
    // Colours: the stylesheet paints `up` and `draining` rows differently.
    assert!(dom.contains("tr.up td { background: #c6efc6; }"));
    assert!(dom.contains("tr.draining td { background: #a9c8f2; }"));

    let rsp = send(
        addr,
        "POST",
        &action_path("/admin", "b", "drain"),
        &[(ACTION_HEADER, "1")],
    )
    .await;
    assert_eq!(rsp.status, 200);
    let dom = dump_dom(&browser, &url, 1500).await;
    assert_eq!(row_class(&dom, "b").as_deref(), Some("draining"), "{dom}");
    assert_eq!(row_class(&dom, "a").as_deref(), Some("up"));
    assert_eq!(row_class(&dom, ODD).as_deref(), Some("up"));
    assert!(dom.contains("<caption>api — 2/3 up</caption>"), "{dom}");
}
