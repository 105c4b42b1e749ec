//! Configuration (issue 14): every example file loads and builds; bad values are refused with
//! the path of the value; 100 reloads under concurrent loopback traffic lose no request,
//! invalid ones change nothing and targets that stay keep their live state; any `Config`
//! writes to TOML and YAML and reads back equal.

mod roundtrip;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_lb::config::{Config, ConfigError, ConfigErrorKind};
use tower_lb::target::AdminState;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config");

fn example_files() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(EXAMPLES)
        .expect("examples/config")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn every_example_config_loads_validates_builds_and_round_trips() {
    let files = example_files();
    assert!(files.len() >= 4, "one example per seed shape: {files:?}");
    for file in files {
        let config = Config::from_path(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        config
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let runtime = config
            .build::<String>()
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!runtime.registry().list().is_empty(), "{}", file.display());
        let toml = config.to_toml_string().unwrap();
        assert_eq!(
            Config::from_toml_str(&toml).unwrap(),
            config,
            "{}",
            file.display()
        );
        let yaml = config.to_yaml_string().unwrap();
        assert_eq!(
            Config::from_yaml_str(&yaml).unwrap(),
            config,
            "{}",
            file.display()
        );
    }
}

/// The seeds' `load_balancer:` block and its `rules:` (seed 003), key for key: the rules
/// that name targets get pools of their own, the canary's `weight: 10` is a 10/90 split with
/// the load balancer's own pool, and the rule's `sticky_session` cookie is the one in force.
#[tokio::test]
async fn the_seed_api_blocks_load_as_written() {
    let config = Config::from_path(format!("{EXAMPLES}/seed_api.yaml")).unwrap();
    let runtime = config.build::<String>().unwrap();
    let lb = runtime.registry().get("api-lb").unwrap();
    let pools: BTreeMap<String, Vec<String>> = lb
        .pools()
        .iter()
        .map(|g| {
            let ids = g.targets().iter().map(|t| t.id().to_string()).collect();
            (g.name().to_owned(), ids)
        })
        .collect();
    assert_eq!(pools["api-lb"], ["api-1", "api-2"]);
    assert_eq!(pools["api_v2"], ["api-v2-1", "api-v2-2"]);
    assert_eq!(pools["api_canary"], ["api-canary-1"]);
    let rules = lb.rules();
    assert_eq!(rules.len(), 2);
    let split = match rules[1].action() {
        Some(tower_lb::route::Action::Split(s)) => s.destinations().to_vec(),
        other => panic!("canary is a split: {other:?}"),
    };
    assert_eq!(
        split,
        [("api_canary".to_owned(), 10), ("api-lb".to_owned(), 90)]
    );
    let sticky = lb.sticky().expect("sticky sessions on");
    let token = sticky.issue("api_v2", &"api-v2-1".into()).unwrap();
    assert!(sticky.resolve(&token).is_some());
    let listeners = &config.load_balancer.as_ref().unwrap().listeners;
    assert_eq!(listeners.len(), 2);
    assert!(listeners[0].ssl.is_none());
    assert_eq!(
        listeners[1].ssl.as_ref().unwrap().certificate,
        "/etc/ssl/cert.pem"
    );
}

fn refused(yaml: &str) -> ConfigError {
    match Config::from_yaml_str(yaml) {
        Err(e) => e,
        Ok(c) => c.validate().expect_err("must be refused"),
    }
}

const TWO: &str = r#"
load_balancers:
  - name: one
    targets: [{ id: a, address: "127.0.0.1:1" }]
"#;

#[test]
fn a_zero_weight_is_refused_at_its_path() {
    let e = refused(&format!(
        "{TWO}  - name: two\n    targets:\n      - {{ id: a, address: '127.0.0.1:1' }}\n      - {{ id: b, address: '127.0.0.1:2', weight: 0 }}\n"
    ));
    assert_eq!(e.kind(), ConfigErrorKind::Invalid);
    assert_eq!(e.path(), "load_balancers[1].targets[1].weight");
    assert!(
        e.to_string()
            .starts_with("load_balancers[1].targets[1].weight: "),
        "{e}"
    );
}

#[test]
fn an_unknown_target_in_a_rule_is_refused_at_its_path() {
    let e = refused(
        r#"
load_balancers:
  - name: api
    targets: [{ id: a, address: "127.0.0.1:1" }, { id: b, address: "127.0.0.1:2" }]
    rules:
      - { name: ok, prefix: /ok, pool: api }
      - { name: v2, path: /v2/*, targets: [b, nope] }
"#,
    );
    assert_eq!(e.path(), "load_balancers[0].rules[1].targets[1]");
    assert!(e.message().contains("unknown target `nope`"), "{e}");

    // The seeds' shape: rules keyed by name at the top level.
    let e = refused(
        r#"
load_balancer:
  targets: [{ id: a, address: "127.0.0.1:1" }]
rules:
  api_v2: { path: /api/v2/*, targets: [api-v2-1] }
"#,
    );
    assert_eq!(e.path(), "rules.api_v2.targets[0]");
}

#[test]
fn a_bad_duration_is_refused_at_its_path() {
    let e = refused(&format!(
        "{TWO}    health_check: {{ interval: 10 parsecs }}\n"
    ));
    assert_eq!(e.path(), "load_balancers[0].health_check.interval");
    assert!(e.message().contains("invalid duration"), "{e}");
    let e = refused(&format!("{TWO}    health_check: {{ interval: 10 }}\n"));
    assert_eq!(e.path(), "load_balancers[0].health_check.interval");
    assert!(e.message().contains("a unit is needed"), "{e}");
    // TOML the same way, with the line of the value.
    let e = Config::from_toml_str(
        "[[load_balancers]]\nname = \"x\"\n[load_balancers.circuit_breaker]\ninterval = \"soon\"\n",
    )
    .unwrap_err();
    assert_eq!(e.path(), "load_balancers[0].circuit_breaker.interval");
    assert_eq!(e.location().map(|l| l.0), Some(4), "{e}");
}

#[test]
fn an_unknown_field_is_refused_at_its_path() {
    let e = refused(&format!("{TWO}    health_check: {{ intervall: 10s }}\n"));
    assert_eq!(e.kind(), ConfigErrorKind::Invalid);
    assert!(
        e.path().starts_with("load_balancers[0].health_check"),
        "{}",
        e.path()
    );
    assert!(e.message().contains("unknown field `intervall`"), "{e}");
    let e = Config::from_toml_str("[[load_balancers]]\nname = \"x\"\nalgoritm = \"p2c\"\n")
        .unwrap_err();
    assert!(e.path().starts_with("load_balancers[0]"), "{}", e.path());
    assert!(e.message().contains("unknown field `algoritm`"), "{e}");
}

#[test]
fn a_bad_address_is_refused_at_its_path() {
    let e = refused(
        "load_balancers:\n  - name: x\n    targets:\n      - { id: a, address: 'http://10.0.0.1/x' }\n",
    );
    assert_eq!(e.path(), "load_balancers[0].targets[0].address");
    // No backend address echoed back beyond the value itself: the message names the target.
    assert!(e.message().contains('a'), "{e}");
}

#[test]
fn more_values_are_refused_at_their_paths() {
    let cases = [
        (
            format!(
                "{TWO}  - name: two\n    rules:\n      - {{ name: r, path: 'api/*', pool: two }}\n"
            ),
            "load_balancers[1].rules[0].path",
        ),
        (
            format!("{TWO}    rules:\n      - {{ name: r, prefix: /x, pool: nowhere }}\n"),
            "load_balancers[0].rules[0].pool",
        ),
        (
            format!("{TWO}    algorithm: {{ kind: round_robin, bias: 2.0 }}\n"),
            "load_balancers[0].algorithm.bias",
        ),
        (
            format!("{TWO}    algorithm: {{ kind: ring, key: 'header:bad header' }}\n"),
            "load_balancers[0].algorithm.key",
        ),
        (
            format!("{TWO}    sticky_sessions: {{ cookie: s, key: short }}\n"),
            "load_balancers[0].sticky_sessions.key",
        ),
        (
            format!("{TWO}    trusted_proxies: [10.0.0.0/8, not-an-ip]\n"),
            "load_balancers[0].trusted_proxies[1]",
        ),
        (format!("{TWO}  - name: one\n"), "load_balancers[1].name"),
        (
            format!("{TWO}    circuit_breaker: {{ threshold: 1.5 }}\n"),
            "load_balancers[0].circuit_breaker",
        ),
        (
            format!("{TWO}    retry: {{ statuses: [200, 999] }}\n"),
            "load_balancers[0].retry.statuses[1]",
        ),
        (
            format!("{TWO}admin: {{ enabled: true, path: admin }}\n"),
            "admin.path",
        ),
        (
            format!("{TWO}    health_check: {{ path: /h, expected_status: [2xx, 7xx] }}\n"),
            "load_balancers[0].health_check.expected_status",
        ),
        (
            format!("{TWO}    health_check: {{ method: HEAD }}\n"),
            "load_balancers[0].health_check.method",
        ),
    ];
    for (yaml, path) in cases {
        let e = refused(&yaml);
        assert_eq!(e.path(), path, "{e}\n{yaml}");
    }
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let e = Config::from_toml_str("[[load_balancers]]\nname = \"x\"\ntargets = [\n").unwrap_err();
    assert_eq!(e.kind(), ConfigErrorKind::Syntax);
    assert!(e.location().is_some(), "{e}");
    let e = Config::from_yaml_str("load_balancers:\n  - name: x\n   bad: [\n").unwrap_err();
    assert!(e.location().is_some_and(|(line, _)| line >= 2), "{e}");
}

// ---------------------------------------------------------------------------------------
// 100 reloads under load.

/// A backend that answers with its name after a short pause; counts what reaches it.
async fn backend(name: &'static str, hits: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let hits = hits.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                        hits.fetch_add(1, Ordering::SeqCst);
                        async move {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name))))
                        }
                    });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Configuration number `i` of the churn: `a` and `d` always, `b` and `c` in turn, weights
/// and timeouts changing (in place and rebuilt), a rule on and off, a second load balancer
/// coming and going; every 10th is invalid in one of several ways.
fn churn_config(i: usize, addr: &BTreeMap<&str, SocketAddr>) -> String {
    let mut targets = vec![
        format!(
            "{{ id = \"a\", address = \"{}\", weight = {} }}",
            addr["a"],
            1 + i % 3
        ),
        format!("{{ id = \"d\", address = \"{}\" }}", addr["d"]),
    ];
    if i % 2 == 0 {
        targets.push(format!("{{ id = \"b\", address = \"{}\" }}", addr["b"]));
    } else {
        targets.push(format!("{{ id = \"c\", address = \"{}\" }}", addr["c"]));
    }
    if i % 10 == 9 {
        match i / 10 % 4 {
            0 => targets.push(format!(
                "{{ id = \"z\", address = \"{}\", weight = 0 }}",
                addr["a"]
            )),
            1 => targets.push("{ id = \"z\", address = \"http://nope/\" }".into()),
            2 => targets.push(format!("{{ id = \"a\", address = \"{}\" }}", addr["a"])),
            _ => targets.push(format!(
                "{{ id = \"z\", address = \"{}\", wieght = 2 }}",
                addr["a"]
            )),
        }
    }
    let mut text = format!(
        "[[load_balancers]]\nname = \"api\"\ntargets = [{}]\ntimeout = \"{}s\"\n",
        targets.join(", "),
        20 + i % 4 / 3 * 10,
    );
    if i % 3 == 0 {
        text.push_str("rules = [{ name = \"p\", prefix = \"/p\", pool = \"api\" }]\n");
    }
    text.push_str("[load_balancers.retry]\nmax_attempts = 3\njitter = false\n");
    if i % 5 < 2 {
        text.push_str(&format!(
            "[[load_balancers]]\nname = \"side\"\ntargets = [{{ id = \"s\", address = \"{}\" }}]\n",
            addr["c"]
        ));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_reloads_under_load_lose_nothing_and_keep_state() {
    tokio::time::timeout(Duration::from_secs(120), reloads_under_load())
        .await
        .expect("bounded in time");
}

async fn reloads_under_load() {
    let mut hits = BTreeMap::new();
    let mut addr = BTreeMap::new();
    for name in ["a", "b", "c", "d"] {
        let h = Arc::new(AtomicUsize::new(0));
        addr.insert(name, backend(name, h.clone()).await);
        hits.insert(name, h);
    }
    let first = Config::from_toml_str(&churn_config(0, &addr)).unwrap();
    let runtime = first.build::<String>().unwrap();
    let api = runtime.service("api");
    let group = runtime.registry().get("api").unwrap().group().clone();
    // `d` is disabled by an admin: a state only kept state can remember.
    group.set_admin(&"d".into(), AdminState::Disabled).unwrap();

    // Clients: each request ends in exactly one response, counted by status.
    let stop = Arc::new(AtomicBool::new(false));
    let statuses = Arc::new(std::sync::Mutex::new(BTreeMap::<u16, usize>::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (api, stop, statuses, sent) =
            (api.clone(), stop.clone(), statuses.clone(), sent.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) && n < 100_000 {
                n += 1;
                sent.fetch_add(1, Ordering::SeqCst);
                let req = Request::get(format!("/p/{c}/{n}"))
                    .body(String::new())
                    .unwrap();
                let rsp = api.clone().oneshot(req).await.unwrap();
                let status = rsp.status().as_u16();
                rsp.into_body().collect().await.expect("whole body");
                *statuses.lock().unwrap().entry(status).or_default() += 1;
            }
        }));
    }

    let mut last_a = 0;
    let mut in_force = runtime.config();
    let dir = std::env::temp_dir().join(format!("tower-lb-config-churn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lb.toml");
    for i in 1..=100 {
        std::fs::write(&file, churn_config(i, &addr)).unwrap();
        let result = runtime.reload_from_path(&file);
        let lb = runtime.registry().get("api").unwrap();
        let ids: Vec<String> = lb
            .group()
            .targets()
            .iter()
            .map(|t| t.id().to_string())
            .collect();
        if i % 10 == 9 {
            let e = result.expect_err("every 10th is invalid");
            assert!(e.path().starts_with("load_balancers[0].targets["), "{e}");
            assert!(
                Arc::ptr_eq(&in_force, &runtime.config()),
                "refused: nothing changed"
            );
            let expected = if (i - 1) % 2 == 0 {
                ["a", "b", "d"]
            } else {
                ["a", "c", "d"]
            };
            assert_eq!(ids, expected, "reload {i}: targets unchanged");
            assert_eq!(
                runtime.registry().list().contains(&"side".to_owned()),
                (i - 1) % 5 < 2
            );
        } else {
            let report = result.unwrap_or_else(|e| panic!("reload {i}: {e}"));
            assert!(
                report.unchanged.is_empty() || report.unchanged == ["side"],
                "{report:?}"
            );
            in_force = runtime.config();
            let expected = if i % 2 == 0 {
                ["a", "b", "d"]
            } else {
                ["a", "c", "d"]
            };
            assert_eq!(ids, expected, "reload {i}");
            assert_eq!(
                runtime.registry().list().contains(&"side".to_owned()),
                i % 5 < 2
            );
        }
        // The same group, the same live state for the targets that stay.
        assert_eq!(lb.group().stats().len(), 3);
        let stats: BTreeMap<String, _> = lb
            .group()
            .stats()
            .into_iter()
            .map(|s| (s.id().to_string(), s))
            .collect();
        assert_eq!(stats["d"].admin(), AdminState::Disabled, "reload {i}");
        assert!(
            stats["a"].requests() >= last_a,
            "reload {i}: a's counters went back"
        );
        last_a = stats["a"].requests();
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }

    let stats = runtime.stats();
    assert_eq!((stats.applied, stats.rejected), (91, 10));
    let statuses = statuses.lock().unwrap().clone();
    let answered: usize = statuses.values().sum();
    let reached: usize = hits.values().map(|h| h.load(Ordering::SeqCst)).sum();
    println!(
        "sent {}, statuses {statuses:?}, backends {:?}",
        sent.load(Ordering::SeqCst),
        hits
    );
    assert_eq!(
        answered,
        sent.load(Ordering::SeqCst),
        "one outcome per request"
    );
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        [200],
        "no request lost"
    );
    assert_eq!(
        reached, answered,
        "each request reached exactly one backend once"
    );
    assert_eq!(hits["d"].load(Ordering::SeqCst), 0, "disabled all along");
    assert!(
        answered > 100,
        "traffic flowed during the reloads: {answered}"
    );
    // `a` stayed through all 100 reloads: its counter saw every request it served.
    let a = runtime.registry().get("api").unwrap().group().stats();
    let a = a.iter().find(|s| s.id().as_str() == "a").unwrap();
    assert_eq!(a.requests() as usize, hits["a"].load(Ordering::SeqCst));
    assert_eq!(a.in_flight(), 0);
}

#[tokio::test]
async fn a_watched_file_is_reloaded_on_change_and_a_broken_one_is_refused() {
    let dir = std::env::temp_dir().join(format!("tower-lb-config-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lb.toml");
    let one =
        "[[load_balancers]]\nname = \"w\"\ntargets = [{ id = \"a\", address = \"127.0.0.1:1\" }]\n";
    std::fs::write(&file, one).unwrap();
    let runtime = Config::from_path(&file).unwrap().build::<String>().unwrap();
    let _watcher = runtime.watch(&file, Duration::from_millis(50)).unwrap();
    let two = "[[load_balancers]]\nname = \"w\"\ntargets = [{ id = \"a\", address = \"127.0.0.1:1\" }, { id = \"b\", address = \"127.0.0.1:2\" }]\n";
    std::fs::write(&file, two).unwrap();
    let len = || runtime.registry().get("w").unwrap().group().len();
    for _ in 0..200 {
        if len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(len(), 2, "the change was applied");
    std::fs::write(
        &file,
        "[[load_balancers]]\nname = \"w\"\ntargets = [{ id = \"a\" }]\n",
    )
    .unwrap();
    for _ in 0..200 {
        if runtime.stats().rejected == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(runtime.stats().rejected, 1, "the broken file was refused");
    assert_eq!(len(), 2, "and the configuration in force stayed");
    assert!(
        runtime
            .last_error()
            .unwrap()
            .path()
            .starts_with("load_balancers[0].targets[0]")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A reload that changes the breaker rebuilds the layers over the same groups; one that
/// changes outlier detection starts the groups afresh, and says so.
#[tokio::test]
async fn the_report_says_what_changed_and_how() {
    let base =
        "[[load_balancers]]\nname = \"x\"\ntargets = [{ id = \"a\", address = \"127.0.0.1:1\" }]\n";
    let runtime = Config::from_toml_str(base)
        .unwrap()
        .build::<String>()
        .unwrap();
    let group = runtime.registry().get("x").unwrap().group().clone();
    group.set_admin(&"a".into(), AdminState::Disabled).unwrap();

    let r = runtime
        .reload(Config::from_toml_str(&format!("{base}algorithm = \"p2c\"\n")).unwrap())
        .unwrap();
    assert_eq!(r.updated, ["x"]);
    let r = runtime
        .reload(
            Config::from_toml_str(&format!(
                "{base}algorithm = \"p2c\"\n[load_balancers.circuit_breaker]\nthreshold = 0.3\n"
            ))
            .unwrap(),
        )
        .unwrap();
    assert_eq!(r.rebuilt, ["x"]);
    let now = runtime.registry().get("x").unwrap();
    assert_eq!(
        now.group().admin(&"a".into()).unwrap(),
        AdminState::Disabled
    );
    assert!(now.stats().breaker().is_some());
    let r = runtime
        .reload(
            Config::from_toml_str(&format!(
                "{base}[load_balancers.outlier_detection]\nconsecutive_failures = 2\n"
            ))
            .unwrap(),
        )
        .unwrap();
    assert_eq!(r.reset, ["x"]);
    let now = runtime.registry().get("x").unwrap();
    assert_eq!(now.group().admin(&"a".into()).unwrap(), AdminState::Enabled);
    // The old group drains: a stale handle to it sends nothing new.
    assert_eq!(group.admin(&"a".into()).unwrap(), AdminState::Draining);
    let r = runtime.reload(Config::default()).unwrap();
    assert_eq!(r.removed, ["x"]);
    assert!(runtime.registry().list().is_empty());
    let rsp = runtime
        .service("x")
        .oneshot(Request::get("/").body(String::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// A sticky cookie issued before a reload still names its target after one that rebuilds the
/// layers (same groups, same signing key) and after one that changes the targets in place.
#[tokio::test]
async fn sticky_cookies_stay_valid_across_reloads() {
    let v = |timeout: &str, extra: &str| {
        format!(
            "[[load_balancers]]\nname = \"s\"\nsticky_sessions = true\ntimeout = \"{timeout}\"\ntargets = [{{ id = \"a\", address = \"127.0.0.1:1\" }}{extra}]\n"
        )
    };
    let runtime = Config::from_toml_str(&v("5s", ""))
        .unwrap()
        .build::<String>()
        .unwrap();
    let lb = runtime.registry().get("s").unwrap();
    let token = lb.sticky().unwrap().issue("s", &"a".into()).unwrap();

    let r = runtime
        .reload(Config::from_toml_str(&v("6s", "")).unwrap())
        .unwrap();
    assert_eq!(r.rebuilt, ["s"]);
    let after = runtime.registry().get("s").unwrap();
    let affinity = after
        .sticky()
        .unwrap()
        .resolve(&token)
        .expect("still valid");
    assert_eq!(affinity.target().as_str(), "a");

    let r = runtime
        .reload(
            Config::from_toml_str(&v("6s", ", { id = \"b\", address = \"127.0.0.1:2\" }")).unwrap(),
        )
        .unwrap();
    assert_eq!(r.updated, ["s"]);
    let after = runtime.registry().get("s").unwrap();
    assert!(after.sticky().unwrap().resolve(&token).is_some());
}

/// A backend whose `/health` answers `health`, everything else `200` with its name.
async fn checked_backend(name: &'static str, health: StatusCode) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let mut rsp = Response::new(Full::new(Bytes::from(name)));
                    if req.uri().path() == "/health" {
                        *rsp.status_mut() = health;
                    }
                    async move { Ok::<_, Infallible>(rsp) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// The configured HTTP check runs against the targets: the one whose `/health` fails stops
/// taking traffic.
#[tokio::test]
async fn the_configured_health_check_takes_a_failing_target_out() {
    let up = checked_backend("up", StatusCode::OK).await;
    let down = checked_backend("down", StatusCode::SERVICE_UNAVAILABLE).await;
    let yaml = format!(
        "load_balancers:\n  - name: h\n    targets:\n      - {{ id: up, address: '{up}' }}\n      - {{ id: down, address: '{down}' }}\n    health_check: {{ path: /health, method: GET, expected_status: [2xx], interval: 50ms, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 1, jitter: 0.0 }}\n"
    );
    let runtime = Config::load_yaml(&yaml).unwrap().build::<String>().unwrap();
    let group = runtime.registry().get("h").unwrap().group().clone();
    for _ in 0..200 {
        if !group.health(&"down".into()).unwrap().is_healthy() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!group.health(&"down".into()).unwrap().is_healthy());
    assert!(group.health(&"up".into()).unwrap().is_healthy());
    for _ in 0..10 {
        let rsp = runtime
            .service("h")
            .oneshot(Request::get("/x").body(String::new()).unwrap())
            .await
            .unwrap();
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "up");
    }
}
