//! The admin endpoint's request paths (routing and percent-decoding of action segments) on
//! arbitrary input: never panic; only a well-formed `POST` with the guard header to an
//! existing target changes anything; every answer is one of the documented statuses.
#![no_main]

use http::{HeaderMap, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use tower_lb::admin::{ACTION_HEADER, Admin};
use tower_lb::lb::{LoadBalancer, Registry};
use tower_lb::target::AdminState;
use tower_lb::Target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let registry: Registry<String> = Registry::new();
    let lb = LoadBalancer::builder()
        .with_name("api")
        .with_target(Target::new("a", "127.0.0.1:1").unwrap())
        .build::<String>()
        .unwrap();
    registry.register(lb.clone()).unwrap();
    let mut guarded = HeaderMap::new();
    guarded.insert(ACTION_HEADER, HeaderValue::from_static("1"));
    let off = Admin::new(&registry);
    let on = Admin::builder().registry(&registry).prefix("/admin").actions(true).build();
    for (admin, method, headers) in [
        (&off, Method::GET, HeaderMap::new()),
        (&off, Method::POST, guarded.clone()),
        (&on, Method::POST, guarded.clone()),
        (&on, Method::HEAD, HeaderMap::new()),
    ] {
        let rsp = admin.respond(&method, path, &headers);
        assert!([200, 400, 403, 404, 405].contains(&rsp.status().as_u16()));
    }
    // Actions off, or without the guard: the target is never touched.
    let _ = off.respond(&Method::POST, path, &guarded);
    let _ = on.respond(&Method::POST, path, &HeaderMap::new());
    let state = lb.group().admin(&"a".into()).unwrap();
    if !path.starts_with("/admin/targets/") {
        assert_eq!(state, AdminState::Enabled);
    }
});
