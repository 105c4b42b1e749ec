//! The target client's own HTTP/1 response reading (head, framing, chunk sizes, trailers) on
//! arbitrary bytes from a target, after a `GET` and after a `HEAD`: never panics, never loops
//! without end. (`cfg(fuzzing)`, set by cargo-fuzz, exposes the parser.)
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tower_lb::upstream::fuzz_response(data, false);
    tower_lb::upstream::fuzz_response(data, true);
});
