//! The small cookie codec sticky sessions need: find one cookie in `Cookie` headers (RFC 6265
//! §4.2, leniently), and write one `Set-Cookie` header (§4.1, strictly).

use std::time::{Duration, SystemTime};

use http::HeaderValue;

/// The `SameSite` attribute of the affinity cookie.
///
/// # Examples
///
/// ```
/// use tower_lb::sticky::{SameSite, StickyLayer};
///
/// let builder = StickyLayer::cookie("SERVERID").same_site(SameSite::Strict);
/// # let _ = builder;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SameSite {
    /// Sent on same-site requests only.
    Strict,
    /// Also sent on top-level navigations from other sites (browsers' default).
    #[default]
    Lax,
    /// Sent on every request; browsers require `Secure` with it.
    None,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// The value of the first cookie named `name` in one `Cookie` header value, if any.
///
/// Pairs are separated by `;` (with optional spaces); a value in double quotes is returned
/// without them; pairs without `=` are skipped. Never fails: a malformed header yields `None`
/// or the bytes between the delimiters, which the caller checks.
///
/// # Examples
///
/// ```
/// use tower_lb::sticky::cookie_value;
///
/// assert_eq!(cookie_value(b"a=1; SERVERID=\"xyz\"; b=2", "SERVERID"), Some(&b"xyz"[..]));
/// assert_eq!(cookie_value(b"SERVERIDX=1", "SERVERID"), None);
/// ```
pub fn cookie_value<'a>(header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    cookie_values(header, name).next()
}

/// Every value of cookies named `name` in one `Cookie` header value, in order.
///
/// Looks for the name itself (`memchr` for its first byte, then the rest compared) rather than
/// splitting every pair: a match counts where only spaces or tabs stand between it and the
/// previous `;` (or the start), and only spaces or tabs between it and the `=`. The same
/// answers as splitting on `;`, trimming and comparing each pair's name (a property test
/// checks it against that reading).
pub(crate) fn cookie_values<'a, 'n>(header: &'a [u8], name: &'n str) -> CookieValues<'a, 'n> {
    let name = name.as_bytes();
    // Such a name is never a pair's trimmed name (the text before its first `=`, trimmed,
    // within one `;`-separated pair).
    let impossible = name.iter().any(|&b| b == b'=' || b == b';')
        || matches!(name.first(), Some(b' ' | b'\t'))
        || matches!(name.last(), Some(b' ' | b'\t'));
    CookieValues {
        header,
        at: if impossible { header.len() + 1 } else { 0 },
        name,
    }
}

/// [`cookie_values`] for a name [`valid_name`] accepts (the layer's own, checked when it was
/// built): such a name is never impossible, so the check is skipped.
#[inline]
pub(crate) fn valid_name_values<'a, 'n>(header: &'a [u8], name: &'n str) -> CookieValues<'a, 'n> {
    debug_assert!(valid_name(name));
    CookieValues {
        header,
        at: 0,
        name: name.as_bytes(),
    }
}

/// The iterator of [`cookie_values`].
pub(crate) struct CookieValues<'a, 'n> {
    header: &'a [u8],
    /// Where the search goes on; past the end once it is over.
    at: usize,
    name: &'n [u8],
}

impl<'a> Iterator for CookieValues<'a, '_> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let header = self.header;
        let name = self.name;
        // An empty name stands right before a pair's `=`.
        let first = name.first().copied().unwrap_or(b'=');
        while self.at <= header.len() {
            let Some(i) = memchr::memchr(first, &header[self.at..]).map(|i| self.at + i) else {
                self.at = header.len() + 1;
                return None;
            };
            self.at = i + 1;
            // Only spaces or tabs since the pair began.
            let before = trim_end(&header[..i]);
            if !matches!(before.last(), None | Some(b';')) {
                continue;
            }
            let Some(after) = header[i..].strip_prefix(name) else {
                continue;
            };
            let Some(after) = trim_start(after).strip_prefix(b"=") else {
                continue;
            };
            let (value, next) = match memchr::memchr(b';', after) {
                Some(j) => (&after[..j], header.len() - after.len() + j + 1),
                None => (after, header.len() + 1),
            };
            self.at = next;
            return Some(match trim(value) {
                [b'"', inner @ .., b'"'] => inner,
                v => v,
            });
        }
        None
    }
}

fn trim_start(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    s
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn trim(s: &[u8]) -> &[u8] {
    trim_end(trim_start(s))
}

/// Whether `name` is a cookie name browsers accept (an RFC 7230 token).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `value` may stand in a `Path` or `Domain` attribute: visible ASCII but `;`.
pub(crate) fn valid_attribute(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b';')
}

/// The parts of `Set-Cookie` that do not change between responses.
#[derive(Debug, Clone)]
pub(crate) struct CookieSpec {
    /// `NAME=`
    prefix: String,
    /// `; Path=/; Domain=…; HttpOnly; Secure; SameSite=Lax; Max-Age=N; Expires=`
    suffix: String,
}

impl CookieSpec {
    pub(crate) fn new(
        name: &str,
        path: Option<&str>,
        domain: Option<&str>,
        http_only: bool,
        secure: bool,
        same_site: SameSite,
        ttl: Duration,
    ) -> CookieSpec {
        let mut suffix = String::new();
        if let Some(path) = path {
            suffix.push_str("; Path=");
            suffix.push_str(path);
        }
        if let Some(domain) = domain {
            suffix.push_str("; Domain=");
            suffix.push_str(domain);
        }
        if http_only {
            suffix.push_str("; HttpOnly");
        }
        if secure {
            suffix.push_str("; Secure");
        }
        suffix.push_str("; SameSite=");
        suffix.push_str(same_site.as_str());
        suffix.push_str("; Max-Age=");
        suffix.push_str(&ttl.as_secs().to_string());
        suffix.push_str("; Expires=");
        CookieSpec {
            prefix: format!("{name}="),
            suffix,
        }
    }

    /// The `Set-Cookie` value carrying `token`, expiring at `expires`.
    pub(crate) fn set_cookie(&self, token: &str, expires: SystemTime) -> Option<HeaderValue> {
        let date = httpdate::fmt_http_date(expires);
        let mut v =
            String::with_capacity(self.prefix.len() + token.len() + self.suffix.len() + date.len());
        v.push_str(&self.prefix);
        v.push_str(token);
        v.push_str(&self.suffix);
        v.push_str(&date);
        HeaderValue::from_str(&v).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_named_cookie() {
        let h = b"theme=dark;SERVERID=abc ; other=\"q\"";
        assert_eq!(cookie_value(h, "SERVERID"), Some(&b"abc"[..]));
        assert_eq!(cookie_value(h, "other"), Some(&b"q"[..]));
        assert_eq!(cookie_value(h, "theme"), Some(&b"dark"[..]));
        assert_eq!(cookie_value(h, "missing"), None);
        assert_eq!(cookie_value(b"", "a"), None);
        assert_eq!(cookie_value(b";;;=;a", "a"), None);
        assert_eq!(cookie_value(b"a=", "a"), Some(&b""[..]));
        assert_eq!(cookie_value(b"a=\"", "a"), Some(&b"\""[..]));
        let all: Vec<_> = cookie_values(b"a=1; a=2", "a").collect();
        assert_eq!(all, [&b"1"[..], &b"2"[..]]);
    }

    /// The split-and-trim reading of RFC 6265 §4.2 that `cookie_values` answers like.
    fn by_splitting<'a>(header: &'a [u8], name: &str) -> Vec<&'a [u8]> {
        header
            .split(|&b| b == b';')
            .filter_map(|pair| {
                let pair = trim(pair);
                let eq = pair.iter().position(|&b| b == b'=')?;
                if trim(&pair[..eq]) != name.as_bytes() {
                    return None;
                }
                Some(match trim(&pair[eq + 1..]) {
                    [b'"', inner @ .., b'"'] => inner,
                    v => v,
                })
            })
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 2048,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x636f_6f6b),
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// Headers and names over a small alphabet rich in delimiters: the one-pass scan finds
        /// exactly what splitting, trimming and comparing finds.
        #[test]
        fn the_scan_agrees_with_splitting(
            header in proptest::collection::vec(proptest::sample::select(b"ab=; \t\"".to_vec()), 0..40),
            name in proptest::collection::vec(proptest::sample::select(b"ab= \t".to_vec()), 0..4),
        ) {
            let name = String::from_utf8(name).unwrap();
            let scanned: Vec<&[u8]> = cookie_values(&header, &name).collect();
            if valid_name(&name) {
                let valid: Vec<&[u8]> = valid_name_values(&header, &name).collect();
                proptest::prop_assert_eq!(&valid, &scanned);
            }
            proptest::prop_assert_eq!(scanned, by_splitting(&header, &name));
        }
    }

    #[test]
    fn names_and_attributes_are_validated() {
        assert!(valid_name("SERVERID"));
        assert!(valid_name("session_id"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name("a=b"));
        assert!(!valid_name("a;b"));
        assert!(valid_attribute("/api"));
        assert!(valid_attribute(".example.com"));
        assert!(!valid_attribute("/a;b"));
        assert!(!valid_attribute("/a b"));
        assert!(!valid_attribute(""));
    }

    #[test]
    fn set_cookie_has_every_attribute() {
        let spec = CookieSpec::new(
            "SERVERID",
            Some("/"),
            Some(".phoenix-orch"),
            true,
            true,
            SameSite::Strict,
            Duration::from_secs(3600),
        );
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let v = spec.set_cookie("tok", at).unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            "SERVERID=tok; Path=/; Domain=.phoenix-orch; HttpOnly; Secure; SameSite=Strict; \
             Max-Age=3600; Expires=Sun, 06 Nov 1994 08:49:37 GMT"
        );
    }
}
