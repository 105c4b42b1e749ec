//! Compiled conditions of one rule. Built once per rule set; matched through `&self` without
//! allocating.

use http::header::HOST;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};

/// A compiled path condition; patterns are normalized like request paths.
#[derive(Debug)]
pub(crate) enum PathCond {
    Any,
    Exact(Box<str>),
    /// Segment-wise prefix, stored without a trailing slash (`/` for the root).
    Prefix(Box<str>),
    Glob(Glob),
    /// The regex, and the literal leading segments every match must start with.
    #[cfg(feature = "regex")]
    Regex(regex::Regex, Box<[Box<str>]>),
}

impl PathCond {
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            PathCond::Any => true,
            PathCond::Exact(p) => short_eq(path, p),
            PathCond::Prefix(p) => prefix_matches(p, path),
            PathCond::Glob(g) => g.matches(path),
            #[cfg(feature = "regex")]
            PathCond::Regex(r, _) => r.is_match(path),
        }
    }

    /// The leading literal segments, used to index the rule (empty: visited by every path).
    pub(crate) fn literal_segments(&self) -> Vec<&str> {
        match self {
            PathCond::Any => Vec::new(),
            PathCond::Exact(p) | PathCond::Prefix(p) => {
                p.split('/').filter(|s| !s.is_empty()).collect()
            }
            PathCond::Glob(g) => g
                .segments
                .iter()
                .map_while(|s| match s {
                    Seg::Literal(l) if !l.is_empty() => Some(&**l),
                    _ => None,
                })
                .collect(),
            #[cfg(feature = "regex")]
            PathCond::Regex(_, lits) => lits.iter().map(|s| &**s).collect(),
        }
    }
}

/// The leading `/segment/` runs of a regex pattern that every match must start with: plain
/// unreserved characters each closed by a `/` that no quantifier follows. Conservative: a
/// pattern with `|` anywhere, or anything unusual, gives none (the rule is then tried for
/// every path).
#[cfg(feature = "regex")]
pub(crate) fn regex_literal_segments(pattern: &str) -> Box<[Box<str>]> {
    let b = pattern.as_bytes();
    let mut segs = Vec::new();
    if pattern.contains('|') || !pattern.starts_with('/') {
        return segs.into();
    }
    let mut i = 1;
    loop {
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'-' | b'~')) {
            i += 1;
        }
        if i == start
            || b.get(i) != Some(&b'/')
            || matches!(b.get(i + 1), Some(b'?' | b'*' | b'+' | b'{'))
        {
            break;
        }
        segs.push(pattern[start..i].into());
        i += 1;
    }
    segs.into()
}

/// String equality without a `memcmp` call for the short strings segments and paths are
/// (the call costs more than the compare).
#[inline]
pub(crate) fn short_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    if a.len() > 32 {
        return a == b;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    diff == 0
}

/// `/api` matches `/api`, `/api/` and `/api/x`, not `/apix`; `/` matches everything.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[derive(Debug)]
enum Seg {
    Literal(Box<str>),
    /// `*`: exactly one non-empty segment.
    One,
    /// `*` as the last segment: the rest of the path, possibly empty.
    Rest,
    /// A segment with `*` among literal text (`*.png`, `v*`): the pieces between the stars.
    Partial(Box<[Box<str>]>),
}

/// A compiled glob: `*` is one segment, a final `*` the rest of the path, `*` inside a
/// segment any text within that segment.
#[derive(Debug)]
pub(crate) struct Glob {
    segments: Box<[Seg]>,
}

/// Why a glob pattern was refused.
pub(crate) fn compile_glob(pattern: &str) -> Result<Glob, &'static str> {
    if pattern.contains("**") {
        return Err("`**` is not supported; a final `*` matches the rest of the path");
    }
    let body = &pattern[1..];
    let parts: Vec<&str> = body.split('/').collect();
    let n = parts.len();
    let segments = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if *p == "*" {
                if i + 1 == n { Seg::Rest } else { Seg::One }
            } else if p.contains('*') {
                Seg::Partial(p.split('*').map(Box::from).collect())
            } else {
                Seg::Literal((*p).into())
            }
        })
        .collect();
    Ok(Glob { segments })
}

impl Glob {
    fn matches(&self, path: &str) -> bool {
        self.matches_from(Some(&path[path.len().min(1)..]), 0)
    }

    /// Matches pattern segments from `skip` on against `rest`, the path after its first `skip`
    /// segments and their `/` (`None`: the path ended there).
    pub(crate) fn matches_from(&self, mut rest: Option<&str>, skip: usize) -> bool {
        for seg in self.segments.iter().skip(skip) {
            let Some(r) = rest else { return false };
            if let Seg::Rest = seg {
                return true;
            }
            let (head, tail) = match r.split_once('/') {
                Some((h, t)) => (h, Some(t)),
                None => (r, None),
            };
            let ok = match seg {
                Seg::Literal(l) => short_eq(head, l),
                Seg::One => !head.is_empty(),
                Seg::Partial(pieces) => wildcard(pieces, head),
                Seg::Rest => true,
            };
            if !ok {
                return false;
            }
            rest = tail;
        }
        rest.is_none()
    }
}

/// `pieces` are the literal parts between `*`s (at least two); matches `s` in order.
fn wildcard(pieces: &[Box<str>], s: &str) -> bool {
    let (first, last) = (&pieces[0], &pieces[pieces.len() - 1]);
    if s.len() < first.len() + last.len() || !s.starts_with(&**first) || !s.ends_with(&**last) {
        return false;
    }
    let mut mid = &s[first.len()..s.len() - last.len()];
    for p in &pieces[1..pieces.len() - 1] {
        match mid.find(&**p) {
            Some(at) => mid = &mid[at + p.len()..],
            None => return false,
        }
    }
    true
}

/// A compiled header condition.
#[derive(Debug)]
pub(crate) enum HeaderCond {
    Exact(HeaderName, HeaderValue),
    #[cfg(feature = "regex")]
    Regex(HeaderName, regex::bytes::Regex),
    Present(HeaderName),
    Absent(HeaderName),
}

impl HeaderCond {
    pub(crate) fn matches(&self, headers: &HeaderMap) -> bool {
        match self {
            HeaderCond::Exact(n, v) => headers.get_all(n).iter().any(|h| h == v),
            #[cfg(feature = "regex")]
            HeaderCond::Regex(n, r) => headers.get_all(n).iter().any(|h| r.is_match(h.as_bytes())),
            HeaderCond::Present(n) => headers.contains_key(n),
            HeaderCond::Absent(n) => !headers.contains_key(n),
        }
    }
}

/// A compiled query condition; names and values compare percent-decoded (`+` is not a space).
#[derive(Debug)]
pub(crate) enum QueryCond {
    Exact(Box<str>, Box<str>),
    Present(Box<str>),
}

impl QueryCond {
    pub(crate) fn matches(&self, query: Option<&str>) -> bool {
        let Some(query) = query else { return false };
        let (name, value) = match self {
            QueryCond::Exact(n, v) => (n, Some(v)),
            QueryCond::Present(n) => (n, None),
        };
        query.split('&').any(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            decoded_eq(k, name) && value.is_none_or(|want| decoded_eq(v, want))
        })
    }
}

/// Whether percent-decoding `encoded` gives `plain`, without allocating. A bad escape
/// compares literally.
fn decoded_eq(encoded: &str, plain: &str) -> bool {
    let (e, p) = (encoded.as_bytes(), plain.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < e.len() {
        let b = if e[i] == b'%' && i + 2 < e.len() {
            match (super::path::hex(e[i + 1]), super::path::hex(e[i + 2])) {
                (Some(h), Some(l)) => {
                    i += 3;
                    h << 4 | l
                }
                _ => {
                    i += 1;
                    b'%'
                }
            }
        } else {
            i += 1;
            e[i - 1]
        };
        if p.get(j) != Some(&b) {
            return false;
        }
        j += 1;
    }
    j == p.len()
}

/// A compiled host condition: lower-case, without port or trailing dot.
#[derive(Debug)]
pub(crate) enum HostCond {
    Exact(Box<str>),
    /// `*.example.com`, stored as `.example.com`: any subdomain, not the domain itself.
    Suffix(Box<str>),
}

impl HostCond {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostCond::Exact(h) => host.eq_ignore_ascii_case(h),
            HostCond::Suffix(s) => {
                host.len() > s.len()
                    && host.is_char_boundary(host.len() - s.len())
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }
}

/// The request's host: the `Host` header, else the URI authority; port and trailing dot
/// removed.
pub(crate) fn request_host<B>(req: &Request<B>) -> Option<&str> {
    let raw = match req.headers().get(HOST) {
        Some(h) => h.to_str().ok()?,
        None => req.uri().host()?,
    };
    let host = if raw.starts_with('[') {
        raw.split_inclusive(']').next().unwrap_or(raw)
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    };
    Some(host.strip_suffix('.').unwrap_or(host))
}

pub(crate) fn hosts_match(conds: &[HostCond], host: Option<&str>) -> bool {
    conds.is_empty() || host.is_some_and(|h| conds.iter().any(|c| c.matches(h)))
}

pub(crate) fn methods_match(methods: &[Method], method: &Method) -> bool {
    methods.is_empty() || methods.iter().any(|m| m == method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let g = |p: &str| compile_glob(p).unwrap();
        assert!(g("/api/v2/*").matches("/api/v2/users/1"));
        assert!(g("/api/v2/*").matches("/api/v2/"));
        assert!(!g("/api/v2/*").matches("/api/v2"));
        assert!(!g("/api/v2/*").matches("/api/v3/x"));
        assert!(g("/users/*/orders").matches("/users/7/orders"));
        assert!(!g("/users/*/orders").matches("/users//orders"));
        assert!(!g("/users/*/orders").matches("/users/7/orders/1"));
        assert!(!g("/users/*/orders").matches("/users/7/8/orders"));
        assert!(g("/img/*.png").matches("/img/a.png"));
        assert!(!g("/img/*.png").matches("/img/a.jpg"));
        assert!(g("/v*/x").matches("/v1/x"));
        assert!(g("/a*b*c").matches("/abxbc"));
        assert!(!g("/a*b*c").matches("/ac"));
        assert!(compile_glob("/a/**").is_err());
    }

    #[cfg(feature = "regex")]
    #[test]
    fn regex_literal_prefixes_are_conservative() {
        let l = |p: &str| {
            regex_literal_segments(p)
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(l("/api/v2/[0-9]+"), ["api", "v2"]);
        assert_eq!(l("/api/v2"), ["api"]);
        assert!(l("/a/?b").is_empty());
        assert!(l("/a/b|/c/d").is_empty());
        assert!(l("(?i)/a/b").is_empty());
        assert_eq!(l("/a/b+/c"), ["a"]);
        assert!(l(r"/a\d/x").is_empty());
        assert!(l("/ab?/x").is_empty());
    }

    #[test]
    fn prefixes_are_segment_wise() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/"));
        assert!(prefix_matches("/api", "/api/x"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn queries_compare_decoded() {
        let q = QueryCond::Exact("user".into(), "a b".into());
        assert!(q.matches(Some("x=1&user=a%20b")));
        assert!(q.matches(Some("%75ser=a%20b")));
        assert!(!q.matches(Some("user=a+b")));
        assert!(!q.matches(Some("user=a%20bc")));
        assert!(!q.matches(None));
        let p = QueryCond::Present("debug".into());
        assert!(p.matches(Some("debug")));
        assert!(p.matches(Some("a=1&debug=")));
        assert!(!p.matches(Some("debugx=1")));
        assert!(decoded_eq("%", "%"));
        assert!(decoded_eq("%zz", "%zz"));
        assert!(decoded_eq("a%2", "a%2"));
    }

    #[test]
    fn hosts() {
        let req = |h: &str| Request::builder().header("host", h).body(()).unwrap();
        let ex = [HostCond::Exact("example.com".into())];
        let wild = [HostCond::Suffix(".example.com".into())];
        assert!(hosts_match(&ex, request_host(&req("Example.COM:8080"))));
        assert!(hosts_match(&ex, request_host(&req("example.com."))));
        assert!(!hosts_match(&ex, request_host(&req("api.example.com"))));
        assert!(hosts_match(&wild, request_host(&req("api.example.com"))));
        assert!(hosts_match(&wild, request_host(&req("a.b.example.com"))));
        assert!(!hosts_match(&wild, request_host(&req("example.com"))));
        assert!(!hosts_match(&wild, request_host(&req("badexample.com"))));
        let h2 = Request::get("https://api.example.com/x").body(()).unwrap();
        assert!(hosts_match(&wild, request_host(&h2)));
        assert!(hosts_match(&[], None));
        assert_eq!(request_host(&req("[::1]:80")), Some("[::1]"));
    }
}
