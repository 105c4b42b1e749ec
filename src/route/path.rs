//! Path normalization: the one form rules match and backends receive.

use std::borrow::Cow;

/// What the normalizer does with an encoded slash (`%2F`) and with a backslash (`\` or `%5C`).
///
/// Backends disagree on these: some decode `%2F` to `/` or treat `\` as `/` before resolving
/// `..`, so `/public%2F..%2Fadmin` can reach `/admin` at the backend while the router saw one
/// segment. The default therefore refuses such paths (`400`).
///
/// ```
/// use tower_lb::route::{normalize_path, EscapedSlashes};
///
/// assert!(normalize_path("/a%2Fb", EscapedSlashes::Reject).is_err());
/// assert_eq!(normalize_path("/a%2fb", EscapedSlashes::Keep).unwrap(), "/a%2Fb");
/// assert_eq!(normalize_path("/x%2F..%2Fadmin", EscapedSlashes::Decode).unwrap(), "/admin");
/// assert_eq!(normalize_path("/x\\..\\admin", EscapedSlashes::Decode).unwrap(), "/admin");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EscapedSlashes {
    /// Refuse the request as malformed (the default).
    #[default]
    Reject,
    /// Keep `%2F`/`%5C` encoded (hex upper-cased) inside their segment and `\` as it is: for
    /// backends known not to decode them.
    Keep,
    /// Decode them to `/` before resolving segments: the backend receives the decoded path.
    Decode,
}

/// A request path that cannot be normalized: a bad percent escape, a path that is not
/// absolute, or (by default) an encoded slash or backslash. A client fault: `400`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed request path")]
pub struct MalformedPath {
    _p: (),
}

const MALFORMED: MalformedPath = MalformedPath { _p: () };

/// Normalizes a request path (without the query) as rules see it and as the backend will
/// receive it:
///
/// - percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, other
///   escapes kept with upper-case hex; a bad escape is [`MalformedPath`];
/// - `%2F`, `%5C` and `\` are handled by `slashes` (see [`EscapedSlashes`]);
/// - empty segments (`//`) are merged, `.` segments dropped, `..` segments remove the one
///   before them and never climb above the root; a trailing slash is kept;
/// - an empty path is `/`; any other path not starting with `/` is malformed.
///
/// Returns the input itself (no allocation) when it is already normal. Normalizing twice
/// gives the same result as once.
///
/// ```
/// use tower_lb::route::{normalize_path, EscapedSlashes};
///
/// let n = |p| normalize_path(p, EscapedSlashes::default()).unwrap();
/// assert_eq!(n("/x/../admin"), "/admin");
/// assert_eq!(n("/%61dmin"), "/admin");
/// assert_eq!(n("//admin"), "/admin");
/// assert_eq!(n("/../../a/./b/"), "/a/b/");
/// assert_eq!(n("/a%3f"), "/a%3F");
/// assert!(normalize_path("/a%zz", EscapedSlashes::default()).is_err());
/// ```
pub fn normalize_path(path: &str, slashes: EscapedSlashes) -> Result<Cow<'_, str>, MalformedPath> {
    if path.is_empty() {
        return Ok(Cow::Borrowed("/"));
    }
    if !path.starts_with('/') {
        return Err(MALFORMED);
    }
    if quick_normal(path.as_bytes()) || is_normal(path, slashes) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode(path, slashes)?;
    Ok(Cow::Owned(resolve_segments(&decoded)))
}

/// A fast first look, eight bytes at a time: no `%`, no `\\`, no `//` and no `/.` means
/// nothing to do. Paths with any of them get the exact check.
#[inline]
fn quick_normal(b: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // The high bit of each zero byte of `x`, plus possibly of bytes above a zero byte (a
    // borrow): such extra bits only appear next to a real match, which already makes the path
    // not normal, so the answer stays exact.
    let zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let window = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        let v = u64::from_le_bytes(w);
        let slash = zero(v ^ (LO * 0x2f));
        // `.` is 0x2e: setting bit 0 of every byte makes `/` and `.` both 0x2f.
        let slash_or_dot = zero((v | LO) ^ (LO * 0x2f));
        let odd = zero(v ^ (LO * u64::from(b'%'))) | zero(v ^ (LO * u64::from(b'\\')));
        // Byte k is `/` and byte k + 1 is `/` or `.` (little endian: k + 1 shifted onto k).
        (odd | (slash & (slash_or_dot >> 8))) == 0
    };
    if b.len() < 8 {
        return !b.iter().enumerate().any(|(k, &c)| {
            c == b'%' || c == b'\\' || (c == b'/' && matches!(b.get(k + 1), Some(b'/' | b'.')))
        });
    }
    // Windows overlap by one byte so pairs across windows are seen; the last one ends at the
    // end of the path.
    let mut i = 0;
    while i + 8 < b.len() {
        if !window(i) {
            return false;
        }
        i += 7;
    }
    window(b.len() - 8)
}

/// Whether `path` (starting with `/`) needs no change. One pass; segments are looked at
/// only when they are short enough to be `.` or `..` or empty.
fn is_normal(path: &str, slashes: EscapedSlashes) -> bool {
    let bytes = path.as_bytes();
    let keep = slashes == EscapedSlashes::Keep;
    let dot_segment = |seg: &[u8]| matches!(seg, b"" | b"." | b"..");
    let mut seg_start = 1;
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'/' => {
                if i - seg_start <= 2 && dot_segment(&bytes[seg_start..i]) {
                    return false;
                }
                seg_start = i + 1;
            }
            b'%' => {
                let upper =
                    |b: Option<&u8>| b.is_some_and(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'));
                if !(upper(bytes.get(i + 1)) && upper(bytes.get(i + 2))) {
                    return false;
                }
                let v = hex(bytes[i + 1]).unwrap_or(0) << 4 | hex(bytes[i + 2]).unwrap_or(0);
                if is_unreserved(v) || ((v == b'/' || v == b'\\') && !keep) {
                    return false;
                }
                i += 2;
            }
            b'\\' if !keep => return false,
            _ => {}
        }
        i += 1;
    }
    // The last segment may be empty (a trailing slash), not `.` or `..`.
    let last = &bytes[seg_start.min(bytes.len())..];
    !(last == b"." || last == b"..")
}

/// The value of one hexadecimal digit (percent-decoding here and in query matching).
pub(super) fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn decode(path: &str, slashes: EscapedSlashes) -> Result<String, MalformedPath> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(MALFORMED);
            };
            let v = hi << 4 | lo;
            if is_unreserved(v) {
                out.push(char::from(v));
            } else if (v == b'/' || v == b'\\') && slashes != EscapedSlashes::Keep {
                if slashes == EscapedSlashes::Reject {
                    return Err(MALFORMED);
                }
                out.push('/');
            } else {
                out.push('%');
                out.push(char::from(HEX[usize::from(hi)]));
                out.push(char::from(HEX[usize::from(lo)]));
            }
            i += 3;
        } else if b == b'\\' {
            match slashes {
                EscapedSlashes::Reject => return Err(MALFORMED),
                EscapedSlashes::Keep => out.push('\\'),
                EscapedSlashes::Decode => out.push('/'),
            }
            i += 1;
        } else {
            // Copy the run up to the next byte of interest (keeps multi-byte UTF-8 whole).
            let end = bytes[i..]
                .iter()
                .position(|&c| c == b'%' || c == b'\\')
                .map_or(bytes.len(), |p| i + p);
            out.push_str(&path[i..end]);
            i = end;
        }
    }
    Ok(out)
}

/// Merges empty segments and resolves `.` and `..` in `path`, which starts with `/`.
fn resolve_segments(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut trailing = false;
    let mut segments = path[1..].split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            "" | "." => trailing = last,
            ".." => {
                let cut = out.rfind('/').unwrap_or(0);
                out.truncate(cut);
                trailing = last;
            }
            s => {
                out.push('/');
                out.push_str(s);
                trailing = false;
            }
        }
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(p: &str) -> Result<String, MalformedPath> {
        normalize_path(p, EscapedSlashes::Reject).map(Cow::into_owned)
    }

    #[test]
    fn bypass_attempts_resolve_to_the_real_path() {
        for p in [
            "/admin",
            "/x/../admin",
            "/%61dmin",
            "//admin",
            "/./admin",
            "/../admin",
            "/x/y/../../admin",
            "/%2e%2e/admin",
            "/x/%2E%2E/admin",
            "///admin",
            "/ADMIN/../admin",
        ] {
            assert_eq!(n(p).unwrap(), "/admin", "{p}");
        }
        assert_eq!(n("/admin/").unwrap(), "/admin/");
        assert_eq!(n("/admin/.").unwrap(), "/admin/");
        assert_eq!(n("/admin/x/..").unwrap(), "/admin/");
        assert_eq!(n("/a/..").unwrap(), "/");
        assert_eq!(n("").unwrap(), "/");
        assert_eq!(n("/").unwrap(), "/");
    }

    #[test]
    fn malformed() {
        for p in [
            "/a%", "/a%4", "/a%g0", "a/b", "*", "/a%2F", "/a%5c", "/a\\b",
        ] {
            assert_eq!(n(p), Err(MALFORMED), "{p}");
        }
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for p in ["/", "/a/b", "/a/b/", "/a.b/c..d/.e", "/é"] {
            assert!(
                matches!(
                    normalize_path(p, EscapedSlashes::Reject),
                    Ok(Cow::Borrowed(_))
                ),
                "{p}"
            );
        }
    }

    proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 2048,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x7061_7468),
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// normalize(normalize(p)) == normalize(p), the result is normal (borrowed when
        /// normalized again), starts with `/`, and has no `.`/`..` or empty inner segments.
        #[test]
        fn idempotent(
            parts in prop::collection::vec(
                prop::sample::select(vec![
                    "a", "b", ".", "..", "", "%2e", "%2E%2e", "%61", "%2f", "%2F", "%5c", "\\",
                    "%", "%4", "%zz", "%3f", "%7E", "~", "é", "*", "%25", "%252e",
                ]),
                0..12,
            ),
            slashes in prop::sample::select(vec![
                EscapedSlashes::Reject, EscapedSlashes::Keep, EscapedSlashes::Decode,
            ]),
        ) {
            let path = format!("/{}", parts.join("/"));
            if let Ok(once) = normalize_path(&path, slashes) {
                let twice = normalize_path(&once, slashes).unwrap();
                prop_assert!(matches!(twice, Cow::Borrowed(_)), "{path} -> {once} -> {twice}");
                prop_assert_eq!(&*twice, &*once);
                prop_assert!(once.starts_with('/'));
                for seg in once[1..].split('/') {
                    prop_assert!(seg != "." && seg != "..");
                }
                prop_assert!(!once.contains("//"));
            }
        }

        /// The fast look never calls a path normal that has `%`, `\\`, `//` or `/.`.
        #[test]
        fn quick_look_is_exact(s in "[/.%\\\\a]{0,40}") {
            let naive = !(s.contains('%') || s.contains('\\') || s.contains("//") || s.contains("/."));
            prop_assert_eq!(quick_normal(s.as_bytes()), naive, "{:?}", s);
        }

        /// Arbitrary strings never panic, and the result is stable.
        #[test]
        fn arbitrary_input(s in "/[\\PC]{0,40}") {
            for slashes in [EscapedSlashes::Reject, EscapedSlashes::Keep, EscapedSlashes::Decode] {
                if let Ok(once) = normalize_path(&s, slashes) {
                    prop_assert_eq!(&*normalize_path(&once, slashes).unwrap(), &*once);
                }
            }
        }
    }
}
