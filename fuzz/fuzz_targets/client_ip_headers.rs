//! The client-IP header parsers (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`) on arbitrary
//! bytes: never panic; an untrusted peer is always the answer; a trusted peer's answer is the
//! peer or an address written in the header.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_lb::client_ip::{ClientIpResolver, Source, TrustedProxies};

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    // Up to four header lines, split on NUL.
    for line in data.split(|&b| b == 0).take(4) {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append("x-forwarded-for", v.clone());
            headers.append("forwarded", v.clone());
            headers.append("x-real-ip", v);
        }
    }
    let peer = "10.0.0.1:80".parse().unwrap();
    let everyone = TrustedProxies::new(["0.0.0.0/0", "::/0"]).unwrap();
    let some = TrustedProxies::new(["10.0.0.0/8", "fd00::/8"]).unwrap();
    for trusted in [everyone, some] {
        for source in [Source::XForwardedFor, Source::Forwarded, Source::x_real_ip()] {
            let r = ClientIpResolver::new(trusted.clone()).source(source).max_hops(8);
            let c = r.resolve(peer, &headers);
            assert!(c.peer_trusted());
            assert_eq!(c.peer(), peer);
        }
    }
    let c = ClientIpResolver::default().resolve(peer, &headers);
    assert_eq!(c.ip(), peer.ip());
});
