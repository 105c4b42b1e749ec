//! Any `Config` value writes to TOML and to YAML and reads back equal.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use tower_lb::config::*;

fn name() -> impl Strategy<Value = String> {
    "\\PC{1,12}"
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,16}"
}

fn duration() -> impl Strategy<Value = Duration> {
    (0u64..10_000_000_000, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n))
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(0.5),
        (0u32..=1000).prop_map(|x| f64::from(x) / 1000.0),
        proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::SUBNORMAL,
    ]
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(name(), text(), 0..3)
}

fn target() -> impl Strategy<Value = TargetConfig> {
    (
        name(),
        text(),
        any::<u32>(),
        any::<Option<u32>>(),
        any::<bool>(),
        labels(),
    )
        .prop_map(|(id, address, weight, max_conns, backup, labels)| {
            let mut t = TargetConfig::default();
            t.id = id;
            t.address = address;
            t.weight = weight;
            t.max_conns = max_conns;
            t.backup = backup;
            t.labels = labels;
            t
        })
}

fn algorithm() -> impl Strategy<Value = AlgorithmConfig> {
    let kinds = prop_oneof![
        Just(AlgorithmKind::RoundRobin),
        Just(AlgorithmKind::WeightedRoundRobin),
        Just(AlgorithmKind::Random),
        Just(AlgorithmKind::LeastConn),
        Just(AlgorithmKind::P2c),
        Just(AlgorithmKind::LeastTime),
        Just(AlgorithmKind::Ring),
        Just(AlgorithmKind::Maglev),
    ];
    (
        kinds,
        any::<Option<u32>>(),
        proptest::option::of(float()),
        any::<Option<u32>>(),
        proptest::option::of(float()),
        any::<Option<u32>>(),
        proptest::option::of(duration()),
        proptest::option::of(duration()),
        proptest::option::of(text()),
    )
        .prop_map(
            |(kind, seed, bias, vnodes, bounded_load, table_size, decay, rtt, key)| {
                let mut a = AlgorithmConfig::new(kind);
                a.seed = seed;
                a.bias = bias;
                a.vnodes = vnodes;
                a.bounded_load = bounded_load;
                a.table_size = table_size;
                a.decay = decay;
                a.default_rtt = rtt;
                a.failure_penalty = decay;
                a.key = key;
                a
            },
        )
}

fn sticky() -> impl Strategy<Value = StickyConfig> {
    (
        any::<bool>(),
        name(),
        proptest::option::of(duration()),
        proptest::option::of(text()),
        proptest::collection::vec(text(), 0..2),
        any::<bool>(),
        prop_oneof![
            Just(None),
            Just(Some(SameSiteConfig::Strict)),
            Just(Some(SameSiteConfig::Lax)),
            Just(Some(SameSiteConfig::None)),
        ],
        proptest::option::of(text()),
        proptest::option::of(text()),
    )
        .prop_map(
            |(enabled, cookie, ttl, key, old_keys, secure, same_site, path, domain)| {
                let mut s = StickyConfig::from(enabled);
                s.cookie = cookie;
                s.ttl = ttl;
                s.key = key;
                s.old_keys = old_keys;
                s.secure = secure;
                s.same_site = same_site;
                s.path = path;
                s.domain = domain;
                s
            },
        )
}

fn rule() -> impl Strategy<Value = RuleConfig> {
    let conditions = (
        any::<Option<i32>>(),
        any::<Option<bool>>(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(proptest::collection::vec(name(), 1..3)),
        proptest::option::of((name(), proptest::option::of(text()), any::<Option<bool>>())),
        proptest::collection::btree_map(name(), text(), 0..2),
        proptest::option::of(text()),
    );
    let actions = (
        proptest::option::of(name()),
        proptest::collection::vec(name(), 0..3),
        any::<Option<u32>>(),
        proptest::collection::vec((name(), any::<u32>()), 0..3),
        proptest::option::of(text()),
        proptest::option::of(sticky()),
        proptest::option::of(duration()),
        proptest::option::of(text()),
    );
    (name(), conditions, actions).prop_map(|(n, c, a)| {
        let mut r = RuleConfig::default();
        r.name = n;
        (r.priority, r.enabled, r.path, r.prefix, r.method) = (c.0, c.1, c.2, c.3, c.4);
        r.header = c.5.map(|(name, value, present)| {
            let mut h = HeaderCondition::default();
            h.name = name;
            h.value = value;
            h.present = present;
            h
        });
        r.query = c.6;
        r.host = c.7;
        r.pool = a.0;
        r.targets = a.1;
        r.weight = a.2;
        r.split =
            a.3.into_iter()
                .map(|(pool, weight)| {
                    let mut s = SplitConfig::default();
                    s.pool = pool;
                    s.weight = weight;
                    s
                })
                .collect();
        r.split_by = a.4;
        r.sticky_session = a.5;
        r.timeout = a.6;
        r.access = a.7;
        r
    })
}

fn rules() -> impl Strategy<Value = Rules> {
    (proptest::collection::vec(rule(), 0..3), any::<bool>()).prop_map(|(mut rules, by_name)| {
        if by_name {
            // Keyed by name: names are unique.
            let mut seen = std::collections::BTreeSet::new();
            rules.retain(|r| seen.insert(r.name.clone()));
        }
        let mut r = Rules::list(rules);
        r.by_name = by_name;
        r
    })
}

fn load_balancer() -> impl Strategy<Value = LoadBalancerConfig> {
    let a = (
        name(),
        algorithm(),
        proptest::collection::vec(target(), 0..3),
        proptest::collection::vec((name(), proptest::collection::vec(target(), 0..2)), 0..2),
        proptest::option::of((
            any::<bool>(),
            proptest::option::of(text()),
            proptest::option::of(duration()),
            any::<Option<u32>>(),
        )),
        proptest::option::of((
            any::<Option<u32>>(),
            proptest::option::of((float(), duration(), any::<u32>())),
            proptest::option::of(duration()),
            proptest::option::of(float()),
        )),
        proptest::option::of((proptest::option::of(float()), any::<bool>(), any::<bool>())),
        proptest::option::of((duration(), proptest::option::of(float()))),
    );
    let b = (
        proptest::option::of((
            any::<bool>(),
            proptest::option::of(float()),
            any::<Option<u32>>(),
            proptest::option::of(duration()),
        )),
        proptest::option::of((
            any::<Option<u32>>(),
            proptest::option::of(proptest::collection::vec(any::<u16>(), 0..3)),
            proptest::option::of(proptest::collection::vec(name(), 0..2)),
            any::<Option<bool>>(),
            proptest::option::of((duration(), duration())),
            proptest::option::of((duration(), any::<u32>(), float())),
        )),
        proptest::option::of(duration()),
        proptest::option::of((
            any::<bool>(),
            any::<u32>(),
            duration(),
            proptest::option::of(text()),
        )),
        proptest::option::of(sticky()),
        proptest::collection::vec(text(), 0..2),
        rules(),
        proptest::collection::vec(
            (
                any::<u16>(),
                proptest::option::of(text()),
                proptest::option::of((text(), text())),
                any::<bool>(),
            ),
            0..2,
        ),
    );
    (a, b).prop_map(|(a, b)| {
        let mut lb = LoadBalancerConfig::default();
        lb.name = a.0;
        lb.algorithm = a.1;
        lb.targets = a.2;
        lb.pools =
            a.3.into_iter()
                .map(|(name, targets)| {
                    let mut p = PoolConfig::default();
                    p.name = name;
                    p.targets = targets;
                    p
                })
                .collect();
        lb.health_check = a.4.map(|(enabled, path, interval, rise)| {
            let mut h = HealthCheckConfig::default();
            h.enabled = enabled;
            h.path = path;
            h.interval = interval;
            h.timeout = interval;
            h.healthy_threshold = rise;
            h.unhealthy_threshold = rise;
            h.method = h.path.clone();
            h.expected_status = h.path.iter().cloned().collect();
            h.headers = h.path.iter().map(|p| (p.clone(), p.clone())).collect();
            h
        });
        lb.outlier_detection = a.5.map(|(n, rate, base, share)| {
            let mut o = OutlierConfig::default();
            o.consecutive_failures = n;
            o.failure_rate = rate.map(|(share, window, min_requests)| {
                let mut f = FailureRateConfig::default();
                f.share = share;
                f.window = window;
                f.min_requests = min_requests;
                f
            });
            o.base_ejection_time = base;
            o.max_ejection_time = base;
            o.max_ejection_share = share;
            o
        });
        lb.panic = a.6.map(|(threshold, fail_fast, disabled)| {
            let mut p = PanicConfig::default();
            p.threshold = threshold;
            p.fail_fast = fail_fast;
            p.disabled = disabled;
            p
        });
        lb.slow_start = a.7.map(|(window, aggression)| {
            let mut s = SlowStartConfig::default();
            s.window = window;
            s.aggression = aggression;
            s.min_weight_share = aggression;
            s
        });
        lb.circuit_breaker = b.0.map(|(enabled, threshold, min, interval)| {
            let mut c = BreakerConfig::default();
            c.enabled = enabled;
            c.threshold = threshold;
            c.min_requests = min;
            c.interval = interval;
            c.half_open_timeout = interval;
            c
        });
        lb.retry =
            b.1.map(|(max, statuses, methods, errors, backoff, budget)| {
                let mut r = RetryConfig::default();
                r.max_attempts = max;
                r.statuses = statuses;
                r.idempotent_methods = methods;
                r.retry_errors = errors;
                r.jitter = errors;
                r.body_limit = max;
                r.backoff = backoff.map(|(base, cap)| {
                    let mut x = BackoffConfig::default();
                    x.base = base;
                    x.cap = cap;
                    x
                });
                r.retry_after_cap = backoff.map(|b| b.0);
                r.budget = budget.map(|(ttl, min_per_sec, share)| {
                    let mut x = BudgetConfig::default();
                    x.ttl = ttl;
                    x.min_per_sec = min_per_sec;
                    x.share = share;
                    x
                });
                r
            });
        lb.timeout = b.2;
        lb.attempt_timeout = b.2;
        lb.rate_limit = b.3.map(|(enabled, limit, interval, key)| {
            let mut r = RateLimitConfig::default();
            r.enabled = enabled;
            r.limit = limit;
            r.interval = interval;
            r.key = key;
            r
        });
        lb.sticky_sessions = b.4;
        lb.trusted_proxies = b.5;
        lb.rules = b.6;
        lb.listeners =
            b.7.into_iter()
                .map(|(port, address, tls, https)| {
                    let mut l = ListenerConfig::default();
                    l.port = port;
                    l.address = address;
                    l.protocol = if https {
                        Protocol::Https
                    } else {
                        Protocol::Http
                    };
                    l.ssl = tls.map(|(certificate, private_key)| {
                        let mut t = TlsConfig::default();
                        t.certificate = certificate;
                        t.private_key = private_key;
                        t
                    });
                    l
                })
                .collect();
        lb
    })
}

fn config() -> impl Strategy<Value = Config> {
    (
        proptest::collection::vec(load_balancer(), 0..3),
        proptest::option::of(load_balancer()),
        rules(),
        proptest::option::of((any::<bool>(), any::<bool>(), text())),
    )
        .prop_map(|(lbs, lb, rules, admin)| {
            let mut c = Config::default();
            c.load_balancers = lbs;
            c.load_balancer = lb;
            c.rules = rules;
            c.admin = admin.map(|(enabled, actions, path)| {
                let mut a = AdminConfig::default();
                a.enabled = enabled;
                a.actions = actions;
                a.path = path;
                a
            });
            c
        })
}

/// Run on a thread with a large stack: the strategy for a whole `Config` is deep.
#[test]
fn any_config_round_trips_through_toml_and_yaml() {
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(|| {
            let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
                cases: 128,
                rng_seed: proptest::test_runner::RngSeed::Fixed(0x636f_6e66),
                failure_persistence: None,
                ..ProptestConfig::default()
            });
            runner
                .run(&config(), |config| {
                    let toml = config.to_toml_string().unwrap();
                    let back = Config::from_toml_str(&toml).map_err(|e| format!("{e}\n{toml}"));
                    prop_assert_eq!(back.as_ref(), Ok(&config));
                    let yaml = config.to_yaml_string().unwrap();
                    let back = Config::from_yaml_str(&yaml).map_err(|e| format!("{e}\n{yaml}"));
                    prop_assert_eq!(back.as_ref(), Ok(&config));
                    Ok(())
                })
                .unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x6675_7a7a),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// What the fuzz target checks, on a fixed set of inputs: the example files with bytes
    /// cut, changed and inserted never make the loader panic, and what loads validates or
    /// is refused with an error.
    #[test]
    fn mangled_example_files_never_panic(
        file in 0usize..4,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..8),
    ) {
        let mut files: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let path = &files[file % files.len()];
        let mut bytes = std::fs::read(path).unwrap();
        for (at, op, byte) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match op {
                0 => { bytes.remove(i); }
                1 => bytes[i] = byte,
                _ => bytes.insert(i, byte),
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        let yaml = path.extension().is_some_and(|e| e == "yaml");
        let parsed = if yaml { Config::from_yaml_str(&text) } else { Config::from_toml_str(&text) };
        if let Ok(config) = parsed {
            let _ = config.validate();
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        for config in [Config::from_toml_str(&text), Config::from_yaml_str(&text)].into_iter().flatten() {
            let _ = config.validate();
        }
    }
}
