//! A validated, compiled rule set: one immutable snapshot, swapped whole.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::COOKIE;
use http::{HeaderName, HeaderValue, Method, Request};

use super::Access;
use super::error::InvalidRule;
#[cfg(feature = "regex")]
use super::matcher::regex_literal_segments;
use super::matcher::{
    HeaderCond, HostCond, PathCond, QueryCond, compile_glob, hosts_match, methods_match,
    request_host,
};
use super::path::{EscapedSlashes, normalize_path};
use super::rule::{Action, HeaderMatch, PathMatch, Rule, SplitKey};
use crate::key::{client_ip_of, hash_bytes};

/// The longest regular expression a rule may hold, in bytes.
pub const MAX_REGEX_LEN: usize = 1024;

#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) name: Arc<str>,
    path: PathCond,
    /// The number of leading literal segments the index files the rule under.
    depth: usize,
    /// No condition but the path.
    path_only: bool,
    methods: Box<[Method]>,
    headers: Box<[HeaderCond]>,
    query: Box<[QueryCond]>,
    hosts: Box<[HostCond]>,
    pub(crate) action: CompiledAction,
    pub(crate) request_headers: Box<[(HeaderName, HeaderValue)]>,
    pub(crate) response_headers: Box<[(HeaderName, HeaderValue)]>,
    pub(crate) rewrite: Option<(Box<str>, Box<str>)>,
    pub(crate) timeout: Option<Duration>,
    #[cfg(feature = "governor")]
    pub(crate) rate_limit: Option<crate::limit::RateLimitLayer>,
    pub(crate) access: Option<Access>,
}

#[derive(Debug)]
pub(crate) enum CompiledAction {
    Forward(usize),
    Split {
        /// (cumulative weight, destination), ascending.
        buckets: Box<[(u64, usize)]>,
        total: u64,
        key: SplitKey,
        cookie: Option<Box<str>>,
        header: Option<HeaderName>,
        seed: u64,
    },
}

impl Compiled {
    fn matches<B>(&self, req: &Request<B>, path: &str) -> bool {
        self.path.matches(path) && (self.path_only || self.others_match(req))
    }

    /// Like `matches`, for a rule reached through the index at its own depth: `tail` is the
    /// path after the rule's literal segments, which are known to match.
    #[inline]
    fn matches_indexed<B>(&self, req: &Request<B>, path: &str, tail: Option<&str>) -> bool {
        // The walk has matched the literal prefix up to a segment boundary, so: an exact
        // path (the prefix, or it and a trailing slash) matches by length alone, a prefix
        // always, a glob from its first wildcard on.
        let path_ok = match &self.path {
            PathCond::Exact(p) => p.len() == path.len(),
            PathCond::Prefix(_) => true,
            PathCond::Glob(g) => g.matches_from(tail, self.depth),
            p => p.matches(path),
        };
        path_ok && (self.path_only || self.others_match(req))
    }

    fn others_match<B>(&self, req: &Request<B>) -> bool {
        methods_match(&self.methods, req.method())
            && self.headers.iter().all(|h| h.matches(req.headers()))
            && self.query.iter().all(|q| q.matches(req.uri().query()))
            && hosts_match(
                &self.hosts,
                if self.hosts.is_empty() {
                    None
                } else {
                    request_host(req)
                },
            )
    }

    /// The destination index, drawing `random` only for a random split. A split keeps a
    /// request on the side its sticky session names (`affine`: the destination of the
    /// request's [`Affinity`](crate::balance::Affinity) group), if that side has weight.
    pub(crate) fn destination<B>(
        &self,
        req: &Request<B>,
        random: impl FnOnce() -> u64,
        affine: impl FnOnce() -> Option<usize>,
    ) -> usize {
        match &self.action {
            CompiledAction::Forward(d) => *d,
            CompiledAction::Split {
                buckets,
                total,
                key,
                cookie,
                header,
                seed,
            } => {
                if let Some(d) = affine() {
                    let mut prev = 0;
                    for &(cum, dest) in buckets.iter() {
                        if dest == d && cum > prev {
                            return d;
                        }
                        prev = cum;
                    }
                }
                let hash = match key {
                    SplitKey::Random => None,
                    SplitKey::Header(_) => header
                        .as_ref()
                        .and_then(|h| req.headers().get(h))
                        .map(|v| hash_bytes(*seed, v.as_bytes())),
                    SplitKey::Cookie(_) => cookie.as_ref().and_then(|name| {
                        req.headers()
                            .get_all(COOKIE)
                            .iter()
                            .find_map(|v| cookie_value(v.as_bytes(), name.as_bytes()))
                            .map(|v| hash_bytes(*seed, v))
                    }),
                    SplitKey::ClientIp => client_ip_of(req.extensions()).map(|ip| match ip {
                        IpAddr::V4(ip) => hash_bytes(*seed, &ip.octets()),
                        IpAddr::V6(ip) => hash_bytes(*seed, &ip.octets()),
                    }),
                };
                let h = hash.unwrap_or_else(random);
                // A point in [0, total): the high bits of h scaled, as split_clients does.
                let point = ((u128::from(h) * u128::from(*total)) >> 64) as u64;
                buckets
                    .iter()
                    .find(|(cum, _)| point < *cum)
                    .map_or(buckets[buckets.len() - 1].1, |b| b.1)
            }
        }
    }
}

fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (pair[..eq].trim_ascii() == name).then(|| pair[eq + 1..].trim_ascii())
    })
}

/// The path index: a radix tree over the rules' literal path prefixes (`/svc1/users` for
/// `/svc1/users/*/orders`), byte by byte as axum's `matchit` does. A node holds the rules whose
/// prefix ends exactly at it; they are candidates when the path has a segment boundary there.
#[derive(Debug, Default)]
struct Node {
    prefix: Box<[u8]>,
    /// The first byte of each child's prefix.
    indices: Vec<u8>,
    children: Vec<Node>,
    rules: Vec<u32>,
}

impl Node {
    fn insert(&mut self, key: &[u8], rule: u32) {
        let common = self
            .prefix
            .iter()
            .zip(key)
            .take_while(|(a, b)| a == b)
            .count();
        if common < self.prefix.len() {
            // Split: this node keeps the common part, a new child the rest.
            let child = Node {
                prefix: self.prefix[common..].into(),
                indices: std::mem::take(&mut self.indices),
                children: std::mem::take(&mut self.children),
                rules: std::mem::take(&mut self.rules),
            };
            self.prefix = self.prefix[..common].into();
            self.indices = vec![child.prefix[0]];
            self.children = vec![child];
        }
        let rest = &key[common..];
        let Some(&first) = rest.first() else {
            self.rules.push(rule);
            return;
        };
        match self.indices.iter().position(|&b| b == first) {
            Some(j) => self.children[j].insert(rest, rule),
            None => {
                self.indices.push(first);
                self.children.push(Node {
                    prefix: rest.into(),
                    rules: vec![rule],
                    ..Node::default()
                });
            }
        }
    }
}

/// One rule set, compiled: rules in precedence order and a segment index over their paths.
#[derive(Debug)]
pub(crate) struct Table {
    /// As given (for `rules()`).
    pub(crate) specs: Arc<[Rule]>,
    /// Enabled rules, by precedence (priority descending, then declaration order).
    pub(crate) rules: Box<[Compiled]>,
    index: Node,
    indexed: bool,
    pub(crate) slashes: EscapedSlashes,
}

impl Table {
    pub(crate) fn build(
        specs: Vec<Rule>,
        destinations: &[Arc<str>],
        slashes: EscapedSlashes,
        indexed: bool,
    ) -> Result<Table, InvalidRule> {
        let mut names = HashSet::new();
        let mut compiled = Vec::new();
        for (order, rule) in specs.iter().enumerate() {
            if rule.name.is_empty() {
                return Err(InvalidRule::new(Some(""), "name", "empty rule name"));
            }
            if !names.insert(rule.name.as_str()) {
                return Err(InvalidRule::new(
                    Some(&rule.name),
                    "name",
                    "duplicate rule name",
                ));
            }
            let c = compile(rule, destinations, slashes)?;
            if rule.enabled {
                compiled.push((std::cmp::Reverse(rule.priority), order, c));
            }
        }
        compiled.sort_by_key(|(p, o, _)| (*p, *o));
        let rules: Box<[Compiled]> = compiled.into_iter().map(|(_, _, c)| c).collect();
        let mut index = Node::default();
        for (i, r) in rules.iter().enumerate() {
            let mut key = String::new();
            for seg in r.path.literal_segments() {
                key.push('/');
                key.push_str(seg);
            }
            index.insert(key.as_bytes(), i as u32);
        }
        Ok(Table {
            specs: specs.into(),
            rules,
            index,
            indexed,
            slashes,
        })
    }

    /// The first rule (in precedence order) matching `req` with normalized `path`.
    pub(crate) fn find<B>(&self, req: &Request<B>, path: &str) -> Option<usize> {
        if !self.indexed {
            return self.rules.iter().position(|r| r.matches(req, path));
        }
        let mut best = usize::MAX;
        let check = |node: &Node, tail: Option<&str>, best: &mut usize| {
            for &i in &node.rules {
                let i = i as usize;
                if i >= *best {
                    break;
                }
                if self.rules[i].matches_indexed(req, path, tail) {
                    *best = i;
                    break;
                }
            }
        };
        let p = path.as_bytes();
        let mut node = &self.index;
        let mut at = 0;
        loop {
            // `p[..at]` spells the node's whole key.
            if !node.rules.is_empty() && p.get(at).is_none_or(|&b| b == b'/') {
                check(node, path.get(at + 1..), &mut best);
            }
            let Some(&b) = p.get(at) else { break };
            let Some(j) = node.indices.iter().position(|&c| c == b) else {
                break;
            };
            let child = &node.children[j];
            if !p[at..].starts_with(&child.prefix) {
                break;
            }
            at += child.prefix.len();
            node = child;
        }
        (best != usize::MAX).then_some(best)
    }
}

fn compile(
    rule: &Rule,
    destinations: &[Arc<str>],
    slashes: EscapedSlashes,
) -> Result<Compiled, InvalidRule> {
    let err = |field, reason: String| InvalidRule::new(Some(&rule.name), field, reason);
    let dest = |name: &str| {
        destinations
            .iter()
            .position(|d| &**d == name)
            .ok_or_else(|| err("destination", format!("unknown destination `{name}`")))
    };
    let norm = |p: &str| -> Result<String, InvalidRule> {
        if !p.starts_with('/') {
            return Err(err("path", format!("`{p}` does not start with `/`")));
        }
        normalize_path(p, slashes)
            .map(|c| c.into_owned())
            .map_err(|_| err("path", format!("`{p}` is not a valid path")))
    };
    let path = match &rule.path {
        None => PathCond::Any,
        Some(PathMatch::Glob(g)) => {
            if g.is_empty() {
                return Err(err("path", "empty glob".into()));
            }
            let g = norm(g)?;
            if g.contains('*') {
                PathCond::Glob(compile_glob(&g).map_err(|r| err("path", r.into()))?)
            } else {
                PathCond::Exact(g.into())
            }
        }
        Some(PathMatch::Prefix(p)) => {
            let p = norm(p)?;
            let p = if p.len() > 1 {
                p.trim_end_matches('/')
            } else {
                &p
            };
            PathCond::Prefix(p.into())
        }
        Some(PathMatch::Regex(r)) => regex_path(r).map_err(|reason| err("path", reason))?,
    };
    let mut headers = Vec::new();
    for (name, m) in &rule.headers {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| err("header", format!("invalid header name `{name}`")))?;
        headers.push(match m {
            HeaderMatch::Exact(v) => HeaderCond::Exact(
                n,
                HeaderValue::from_str(v)
                    .map_err(|_| err("header", format!("invalid value for `{name}`")))?,
            ),
            HeaderMatch::Regex(r) => header_regex(n, r).map_err(|reason| err("header", reason))?,
            HeaderMatch::Present => HeaderCond::Present(n),
            HeaderMatch::Absent => HeaderCond::Absent(n),
        });
    }
    let query = rule
        .query
        .iter()
        .map(|(n, v)| {
            if n.is_empty() {
                return Err(err("query", "empty parameter name".into()));
            }
            Ok(match v {
                Some(v) => QueryCond::Exact(n.as_str().into(), v.as_str().into()),
                None => QueryCond::Present(n.as_str().into()),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let hosts = rule
        .hosts
        .iter()
        .map(|h| {
            let lower = h.trim_end_matches('.').to_ascii_lowercase();
            let ok = |s: &str| {
                !s.is_empty()
                    && s.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':')
                    })
            };
            match lower.strip_prefix("*.") {
                Some(rest) if ok(rest) => Ok(HostCond::Suffix(format!(".{rest}").into())),
                None if ok(&lower) => Ok(HostCond::Exact(lower.into())),
                _ => Err(err("host", format!("invalid host `{h}`"))),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let action = match &rule.action {
        None => {
            return Err(err(
                "destination",
                "no destination (use `to` or `split`)".into(),
            ));
        }
        Some(Action::Forward(d)) => CompiledAction::Forward(dest(d)?),
        Some(Action::Split(s)) => {
            if s.buckets.is_empty() {
                return Err(err("split", "no destinations".into()));
            }
            let mut cum = 0u64;
            let mut buckets = Vec::new();
            for (d, w) in &s.buckets {
                cum += u64::from(*w);
                buckets.push((cum, dest(d)?));
            }
            if cum == 0 {
                return Err(err("split", "weights sum to 0".into()));
            }
            let header = match &s.key {
                SplitKey::Header(h) => Some(
                    HeaderName::from_bytes(h.as_bytes())
                        .map_err(|_| err("split", format!("invalid header name `{h}`")))?,
                ),
                _ => None,
            };
            let cookie = match &s.key {
                SplitKey::Cookie(c) if c.is_empty() => {
                    return Err(err("split", "empty cookie name".into()));
                }
                SplitKey::Cookie(c) => Some(c.as_str().into()),
                _ => None,
            };
            // Zero-weight destinations take no range; keep only the ones that do.
            buckets.dedup_by_key(|(c, _)| *c);
            CompiledAction::Split {
                buckets: buckets.into(),
                total: cum,
                key: s.key.clone(),
                cookie,
                header,
                seed: s.seed,
            }
        }
    };
    let header_pairs = |field, pairs: &[(String, String)]| {
        pairs
            .iter()
            .map(|(n, v)| {
                Ok((
                    HeaderName::from_bytes(n.as_bytes())
                        .map_err(|_| err(field, format!("invalid header name `{n}`")))?,
                    HeaderValue::from_str(v)
                        .map_err(|_| err(field, format!("invalid value for `{n}`")))?,
                ))
            })
            .collect::<Result<Box<[_]>, InvalidRule>>()
    };
    let rewrite = match &rule.rewrite {
        None => None,
        Some((from, to)) => {
            let from = norm(from).map_err(|e| err("rewrite", e.reason().into()))?;
            let to = norm(to).map_err(|e| err("rewrite", e.reason().into()))?;
            let from = if from.len() > 1 {
                from.trim_end_matches('/').to_string()
            } else {
                from
            };
            Some((from.into(), to.into()))
        }
    };
    if rule.timeout.is_some_and(|t| t.is_zero()) {
        return Err(err("timeout", "zero timeout".into()));
    }
    if let Some(a) = &rule.access {
        a.check().map_err(|e| err("access", e.to_string()))?;
    }
    let path_only =
        rule.methods.is_empty() && headers.is_empty() && query.is_empty() && hosts.is_empty();
    Ok(Compiled {
        name: rule.name.as_str().into(),
        depth: path.literal_segments().len(),
        path_only,
        path,
        methods: rule.methods.clone().into(),
        headers: headers.into(),
        query: query.into(),
        hosts: hosts.into(),
        action,
        request_headers: header_pairs("request_header", &rule.request_headers)?,
        response_headers: header_pairs("response_header", &rule.response_headers)?,
        rewrite,
        timeout: rule.timeout,
        #[cfg(feature = "governor")]
        rate_limit: rule.rate_limit.clone(),
        access: rule.access.clone(),
    })
}

#[cfg(feature = "regex")]
fn regex_path(pattern: &str) -> Result<PathCond, String> {
    check_len(pattern)?;
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map(|r| PathCond::Regex(r, regex_literal_segments(pattern)))
        .map_err(|e| format!("invalid regex: {e}"))
}

#[cfg(not(feature = "regex"))]
fn regex_path(_: &str) -> Result<PathCond, String> {
    Err("regex matching needs the `regex` feature".into())
}

#[cfg(feature = "regex")]
fn header_regex(name: HeaderName, pattern: &str) -> Result<HeaderCond, String> {
    check_len(pattern)?;
    regex::bytes::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map(|r| HeaderCond::Regex(name, r))
        .map_err(|e| format!("invalid regex: {e}"))
}

#[cfg(not(feature = "regex"))]
fn header_regex(_: HeaderName, _: &str) -> Result<HeaderCond, String> {
    Err("regex matching needs the `regex` feature".into())
}

#[cfg(feature = "regex")]
fn check_len(pattern: &str) -> Result<(), String> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(format!("regex longer than {MAX_REGEX_LEN} bytes"));
    }
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seg() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "ab", "*", "x.png", "*.png", ""])
    }

    fn rule(i: usize, kind: u8, segs: Vec<&str>, header: bool) -> Rule {
        let body = segs.join("/");
        let r = Rule::new(format!("r{i}"));
        let r = match kind {
            0 => r.path(format!("/{body}")),
            1 => r.prefix(format!("/{}", body.replace('*', "s"))),
            #[cfg(feature = "regex")]
            2 => r.path_regex(format!(
                "/{}",
                body.replace('*', "[a-z]+").replace(".png", "[.]png")
            )),
            _ => r,
        };
        let r = if header { r.header("h", "1") } else { r };
        r.to("a")
    }

    proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 1024,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x696e_6478),
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// The index gives the same first match as trying every rule in order.
        #[test]
        fn index_agrees_with_a_linear_scan(
            rules in prop::collection::vec((0u8..4, prop::collection::vec(seg(), 0..4), any::<bool>(), -1i32..2), 0..24),
            paths in prop::collection::vec((prop::collection::vec(seg(), 0..5), any::<bool>()), 1..16),
        ) {
            let specs: Vec<Rule> = rules
                .into_iter()
                .enumerate()
                .map(|(i, (k, segs, h, prio))| rule(i, k, segs, h).priority(prio))
                .collect();
            let dests: [Arc<str>; 1] = ["a".into()];
            let (Ok(indexed), Ok(linear)) = (
                Table::build(specs.clone(), &dests, EscapedSlashes::Reject, true),
                Table::build(specs, &dests, EscapedSlashes::Reject, false),
            ) else {
                return Ok(()); // an invalid generated set (e.g. `**`) is refused by both
            };
            for (segs, h) in paths {
                let path = format!("/{}", segs.join("/").replace('*', "q"));
                let mut req = Request::get(path.as_str());
                if h {
                    req = req.header("h", "1");
                }
                let req = req.body(()).unwrap();
                let Ok(norm) = normalize_path(&path, EscapedSlashes::Reject) else { continue };
                prop_assert_eq!(indexed.find(&req, &norm), linear.find(&req, &norm), "{}", path);
            }
        }
    }
}
