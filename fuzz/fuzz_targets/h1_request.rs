//! The server's own HTTP/1.1 request reader on arbitrary client bytes, request after request:
//! it must never panic, whatever the head, and refuse or hand off what it cannot serve.
//! The first byte picks the header limit (tiny, or the default 64 KiB).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let max_head = if pick & 1 == 0 { 64 } else { 64 * 1024 };
    tower_lb::server::fuzz_request(rest, max_head);
});
