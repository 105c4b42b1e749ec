//! The route path normalizer on arbitrary input: never panics; its output starts with `/`,
//! holds no `.`/`..` or empty inner segments, and normalizes to itself without allocating.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use tower_lb::route::{EscapedSlashes, normalize_path};

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    for slashes in [EscapedSlashes::Reject, EscapedSlashes::Keep, EscapedSlashes::Decode] {
        if let Ok(once) = normalize_path(path, slashes) {
            assert!(once.starts_with('/'));
            assert!(!once.contains("//"));
            assert!(once[1..].split('/').all(|s| s != "." && s != ".."));
            let twice = normalize_path(&once, slashes).expect("a normal path stays valid");
            assert!(matches!(twice, Cow::Borrowed(_)));
            assert_eq!(twice, once);
        }
    }
});
