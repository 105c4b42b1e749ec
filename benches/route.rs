//! Route matching cost per request at 10, 100 and 1 000 rules: our indexed `Router` against
//! axum's path router (`matchit`) on path-only rules and against a linear scan of the same
//! rules (`Router::builder().index(false)`), on path-only and on mixed rules (prefix, glob,
//! header, method, host, query, a few regexes). Path normalization is included in ours.
//! Also counts allocations per match.
//!
//! ```text
//! cargo bench --bench route --features regex
//! ```
#![allow(unsafe_code)] // the counting allocator

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{Request, Response};
use tower::service_fn;
use tower_lb::route::{Router, Rule, Split};

mod common;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

type Svc = tower::util::BoxCloneSyncService<Request<()>, Response<()>, Infallible>;

fn svc() -> Svc {
    Svc::new(service_fn(|_r: Request<()>| async {
        Ok::<_, Infallible>(Response::new(()))
    }))
}

/// Path-only rules in three shapes, with their matchit equivalents.
fn path_rules(n: usize) -> (Vec<Rule>, Vec<String>) {
    let mut rules = Vec::new();
    let mut routes = Vec::new();
    for i in 0..n {
        let (rule, route) = match i % 3 {
            0 => (
                Rule::new(format!("r{i}")).path(format!("/svc{i}/items")),
                format!("/svc{i}/items"),
            ),
            1 => (
                Rule::new(format!("r{i}")).path(format!("/svc{i}/users/*/orders")),
                format!("/svc{i}/users/{{id}}/orders"),
            ),
            _ => (
                Rule::new(format!("r{i}")).path(format!("/svc{i}/static/*")),
                format!("/svc{i}/static/{{*rest}}"),
            ),
        };
        rules.push(rule.to("a"));
        routes.push(route);
    }
    (rules, routes)
}

/// Mixed rules: most keyed by a path prefix or glob, some by header, method, host or query
/// too, a few header-only and (feature `regex`) regex rules.
fn mixed_rules(n: usize) -> Vec<Rule> {
    (0..n)
        .map(|i| {
            let r = Rule::new(format!("m{i}"));
            match i % 10 {
                0..=3 => r.prefix(format!("/svc{i}")).to("a"),
                4 => r
                    .path(format!("/api/v{i}/*"))
                    .method(http::Method::GET)
                    .to("b"),
                5 => r
                    .path(format!("/users/*/orders{i}"))
                    .header("x-tenant", format!("t{i}"))
                    .to("a"),
                6 => r
                    .prefix(format!("/split{i}"))
                    .split(Split::new().to("a", 90).to("b", 10).by_header("x-user")),
                7 => r
                    .prefix(format!("/q{i}"))
                    .query("v", "2")
                    .host("*.example.com")
                    .to("b"),
                8 if i % 50 == 8 => r.header("x-canary", format!("c{i}")).to("b"),
                8 => r
                    .prefix(format!("/h{i}"))
                    .header_present("authorization")
                    .to("a"),
                _ if i % 50 == 9 => r.path_regex(format!("/re{i}/[0-9]+")).to("a"),
                _ => r.path(format!("/img{i}/*.png")).to("b"),
            }
        })
        .collect()
}

fn router(rules: Vec<Rule>, indexed: bool) -> Router<Svc> {
    Router::builder()
        .destination("a", svc())
        .destination("b", svc())
        .rules(rules)
        .index(indexed)
        .build()
        .expect("valid rules")
}

fn request(path: &str) -> Request<()> {
    Request::get(path)
        .header("host", "api.example.com")
        .header("user-agent", "bench/1")
        .header("x-user", "u42")
        .header("accept", "*/*")
        .body(())
        .expect("request")
}

/// 64 request paths spread over the rule set (a few miss).
fn path_requests(n: usize) -> Vec<Request<()>> {
    (0..64)
        .map(|k| {
            let i = (k * 7919) % n;
            let p = match (k % 8, i % 3) {
                (7, _) => format!("/nothing/{k}"),
                (_, 0) => format!("/svc{i}/items"),
                (_, 1) => format!("/svc{i}/users/{k}/orders"),
                _ => format!("/svc{i}/static/css/app{k}.css"),
            };
            request(&p)
        })
        .collect()
}

fn mixed_requests(n: usize) -> Vec<Request<()>> {
    (0..64)
        .map(|k| {
            let i = (k * 7919) % n;
            let p = match (k % 8, i % 10) {
                (7, _) => format!("/nothing/{k}"),
                (_, 0..=3) => format!("/svc{i}/x/{k}"),
                (_, 4) => format!("/api/v{i}/items/{k}"),
                (_, 5) => format!("/users/{k}/orders{i}"),
                (_, 6) => format!("/split{i}/a"),
                (_, 7) => format!("/q{i}?v=2"),
                (_, 8) => format!("/h{i}/x"),
                _ => format!("/img{i}/a{k}.png"),
            };
            request(&p)
        })
        .collect()
}

fn allocations_per_match(router: &Router<Svc>, reqs: &[Request<()>]) -> f64 {
    for r in reqs {
        black_box(router.matching_rule(r));
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..100 {
        for r in reqs {
            black_box(router.matching_rule(r));
        }
    }
    (ALLOCS.load(Ordering::Relaxed) - before) as f64 / (100 * reqs.len()) as f64
}

fn main() {
    let mut c = common::criterion();
    let mut rows = Vec::new();
    let mut allocs = Vec::new();
    for n in [10usize, 100, 1000] {
        // Path-only: ours, matchit, linear.
        let (rules, routes) = path_rules(n);
        let ours = router(rules.clone(), true);
        let linear = router(rules, false);
        let mut mr = matchit::Router::new();
        for (i, route) in routes.iter().enumerate() {
            mr.insert(route.as_str(), i).expect("matchit route");
        }
        let reqs = path_requests(n);
        // Same answers (on hits) as a sanity check.
        for r in &reqs {
            let hit = ours.matching_rule(r);
            assert_eq!(hit, linear.matching_rule(r));
            assert_eq!(hit.is_some(), mr.at(r.uri().path()).is_ok(), "{}", r.uri());
        }
        let mut g = c.benchmark_group(format!("route/path/n{n}"));
        let id = |s: &str| format!("route/path/n{n}/{s}");
        let (ours_id, matchit_id, linear_id) = (id("ours"), id("matchit"), id("linear"));
        g.bench_function("ours", |b| {
            b.iter_custom(|iters| {
                common::timed(&ours_id, iters, 1, |iters| {
                    for i in 0..iters {
                        black_box(ours.matching_rule(&reqs[(i & 63) as usize]));
                    }
                })
            })
        });
        g.bench_function("matchit", |b| {
            b.iter_custom(|iters| {
                common::timed(&matchit_id, iters, 1, |iters| {
                    for i in 0..iters {
                        let r = &reqs[(i & 63) as usize];
                        black_box(mr.at(r.uri().path()).ok().map(|m| *m.value));
                    }
                })
            })
        });
        g.bench_function("linear", |b| {
            b.iter_custom(|iters| {
                common::timed(&linear_id, iters, 1, |iters| {
                    for i in 0..iters {
                        black_box(linear.matching_rule(&reqs[(i & 63) as usize]));
                    }
                })
            })
        });
        g.finish();
        rows.push((ours_id.clone(), matchit_id));
        rows.push((ours_id, linear_id));
        allocs.push((format!("path/n{n}"), allocations_per_match(&ours, &reqs)));

        // Mixed: ours, linear.
        let rules = mixed_rules(n);
        let ours = router(rules.clone(), true);
        let linear = router(rules, false);
        let reqs = mixed_requests(n);
        for r in &reqs {
            assert_eq!(ours.matching_rule(r), linear.matching_rule(r));
        }
        let mut g = c.benchmark_group(format!("route/mixed/n{n}"));
        let id = |s: &str| format!("route/mixed/n{n}/{s}");
        let (ours_id, linear_id) = (id("ours"), id("linear"));
        g.bench_function("ours", |b| {
            b.iter_custom(|iters| {
                common::timed(&ours_id, iters, 1, |iters| {
                    for i in 0..iters {
                        black_box(ours.matching_rule(&reqs[(i & 63) as usize]));
                    }
                })
            })
        });
        g.bench_function("linear", |b| {
            b.iter_custom(|iters| {
                common::timed(&linear_id, iters, 1, |iters| {
                    for i in 0..iters {
                        black_box(linear.matching_rule(&reqs[(i & 63) as usize]));
                    }
                })
            })
        });
        g.finish();
        rows.push((ours_id, linear_id));
        allocs.push((format!("mixed/n{n}"), allocations_per_match(&ours, &reqs)));
    }
    c.final_summary();
    common::print_ratios("Route matching (normalization included)", &rows);
    println!("\n| rules | allocations per match |\n|---|---:|");
    for (name, a) in allocs {
        println!("| {name} | {a} |");
    }
}
