//! The sticky-session parsers on untrusted input: `Cookie` header values and affinity tokens.
//!
//! ```text
//! cargo +nightly fuzz run sticky_cookie
//! ```
//!
//! Checks: nothing panics; a value found is a sub-slice of the header; no input but a token
//! the layer issued resolves to a target, with that token in the verified-token cache (and a
//! copy of it with one byte changed never does).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tower_lb::sticky::{StickyLayer, cookie_value};
use tower_lb::{Target, TargetGroup};

fn layer() -> &'static (StickyLayer, String) {
    static LAYER: OnceLock<(StickyLayer, String)> = OnceLock::new();
    LAYER.get_or_init(|| {
        let group = TargetGroup::builder("g")
            .target(Target::new("a", "127.0.0.1:1").unwrap())
            .target(Target::new("b", "127.0.0.1:2").unwrap())
            .build()
            .unwrap();
        let layer = StickyLayer::cookie("SERVERID")
            .group(&group)
            .key([7; 32])
            .build()
            .unwrap();
        let genuine = layer.issue("g", &"b".into()).unwrap();
        // Verified once, so the inputs below meet it in the verified-token cache.
        assert!(layer.resolve(&genuine).is_some());
        (layer, genuine)
    })
}

fuzz_target!(|data: &[u8]| {
    let (layer, genuine) = layer();
    if let Some(v) = cookie_value(data, "SERVERID") {
        let start = v.as_ptr() as usize - data.as_ptr() as usize;
        assert!(start + v.len() <= data.len());
        if let Ok(token) = std::str::from_utf8(v) {
            if layer.resolve(token).is_some() {
                assert_eq!(token, genuine, "only the issued token resolves");
            }
        }
    }
    if let Ok(token) = std::str::from_utf8(data) {
        if layer.resolve(token).is_some() {
            assert_eq!(token, genuine);
        }
    }
    // The genuine token with one byte changed (the cache holds the genuine one): refused.
    if let [at, to, ..] = *data {
        let mut near = genuine.clone().into_bytes();
        let at = usize::from(at) % near.len();
        if near[at] != to {
            near[at] = to;
            if let Ok(token) = std::str::from_utf8(&near) {
                assert!(layer.resolve(token).is_none(), "one byte off the genuine token");
            }
        }
    }
    // Header values the way the layer sees them.
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        let _ = cookie_value(value.as_bytes(), "SERVERID");
    }
});
