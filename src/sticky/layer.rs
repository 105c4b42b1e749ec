use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue, Request};
use tower_layer::Layer;

use super::Sticky;
use super::codec::{self, Claims, ENCODED_LEN, Keyed, Tag};
use super::cookie::{self, CookieSpec, SameSite};
use super::error::{InvalidSticky, Reason};
use super::verified::{self, Verified};
use crate::balance::Affinity;
use crate::group::TargetGroup;
use crate::target::TargetId;

/// Keys shorter than this are refused (HMAC-SHA256's output size).
pub(crate) const MIN_KEY_LEN: usize = 32;
/// One signing key and up to seven old ones.
pub(crate) const MAX_KEYS: usize = 8;
/// At most this many candidate values are checked per request (each costs one MAC), however
/// many cookies or headers of the name a client sends.
const MAX_CANDIDATES: usize = 4;
/// Clock skew tolerated between instances sharing a key: a token may expire this much later
/// than this instance's own TTL would allow.
const SKEW_SECS: u64 = 60;
const MAX_TTL: Duration = Duration::from_secs(400 * 24 * 3600);

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Sets and honours sticky sessions: see the [module docs](super).
///
/// Built with [`StickyLayer::cookie`] or [`StickyLayer::header`]; cheap to clone (the
/// configuration and the tag tables are shared behind an `Arc`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::sticky::StickyLayer;
/// use tower_lb::{Target, TargetGroup};
///
/// let group = TargetGroup::builder("api").target(Target::new("api-1", "10.0.0.1:8080")?).build()?;
/// let sticky = StickyLayer::cookie("SERVERID")
///     .group(&group)
///     .key(*b"a secret of at least 32 bytes!!!")
///     .ttl(Duration::from_secs(3600))
///     .build()?;
///
/// // What the layer would set for a response from `api-1`, and what it reads back.
/// let token = sticky.issue("api", &"api-1".into()).unwrap();
/// assert!(!token.contains("api-1") && !token.contains("10.0.0.1"));
/// assert_eq!(sticky.resolve(&token).unwrap().target().as_str(), "api-1");
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Clone)]
pub struct StickyLayer {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for StickyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("StickyLayer")
            .field("mode", &s.mode)
            .field("groups", &s.names)
            .field("ttl_secs", &s.ttl_secs)
            .field("keys", &s.keys.len())
            .finish()
    }
}

/// Where the token travels.
#[derive(Debug)]
pub(crate) enum Mode {
    Cookie { name: String, spec: CookieSpec },
    Header(HeaderName),
}

/// A verified token found on a request: `Copy`, so carrying it to the response costs no
/// reference count; the target is found again by its tag only when a token is reissued.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit {
    pub(crate) group: u16,
    /// The target's tag under the key that signed the token.
    pub(crate) tag: Tag,
    pub(crate) expiry: u64,
    /// The clock when the request was read, in Unix seconds.
    pub(crate) now: u64,
    /// Signed with the current signing key (not an old one).
    pub(crate) current_key: bool,
}

pub(crate) struct Shared {
    pub(crate) mode: Mode,
    /// `keys[0]` signs; every key verifies.
    keys: Box<[Keyed]>,
    groups: Box<[TargetGroup]>,
    pub(crate) names: Box<[Arc<str>]>,
    pub(crate) ttl_secs: u64,
    table: ArcSwap<Table>,
    sync: Mutex<()>,
    clock: Option<Clock>,
    /// Recently verified tokens of the signing key (see [`Verified`]).
    verified: Verified,
    /// The last [`Table::generation`] handed out.
    generations: AtomicU64,
    /// The generation of the table in `table`, stored after it (a service holding an older
    /// one loads the new one).
    current: AtomicU64,
}

/// Tags are HMAC outputs: uniformly spread already, so their first bytes are the hash. The
/// table's keys are ours, so a client choosing tags cannot lengthen its probe sequences.
#[derive(Default)]
struct TagHasher(u64);

impl Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for (i, &b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(b) << (8 * i);
        }
    }
}

/// The tags of every current target of every group under every key; rebuilt when a lookup
/// misses and some group has changed since. Its size is bounded by targets × keys.
#[derive(Default)]
pub(crate) struct Table {
    /// Distinguishes this table from every other of the layer's (the verified-token cache
    /// points into one by index).
    generation: u64,
    versions: Box<[u64]>,
    /// Every (group, target, key).
    named: Vec<Named>,
    /// Where each tag's entry is in `named`.
    by_tag: HashMap<Tag, u32, BuildHasherDefault<TagHasher>>,
    /// Per group: each target's tag under the signing key.
    signing: Box<[HashMap<TargetId, Tag>]>,
}

impl Table {
    fn get(&self, tag: &Tag) -> Option<(u32, &Named)> {
        let &i = self.by_tag.get(tag)?;
        Some((i, self.named.get(i as usize)?))
    }
}

struct Named {
    tag: Tag,
    key: u8,
    group: u16,
    target: TargetId,
    /// The affinity a token with this tag asks for, built once: a request clones it (one
    /// reference count) rather than building one from the group name and the target id.
    affinity: Affinity,
}

impl Shared {
    pub(crate) fn now(&self) -> u64 {
        match &self.clock {
            Some(c) => c()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            None => coarse_unix_secs(),
        }
    }

    fn stale(&self, table: &Table) -> bool {
        table.versions.len() != self.groups.len()
            || self
                .groups
                .iter()
                .zip(table.versions.iter())
                .any(|(g, &v)| g.version() != v)
    }

    #[cold]
    fn rebuild(&self) {
        let _lock = crate::util::lock(&self.sync);
        if !self.stale(&self.table.load()) {
            return;
        }
        let mut table = Table {
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
            versions: self.groups.iter().map(TargetGroup::version).collect(),
            ..Table::default()
        };
        let mut signing = Vec::with_capacity(self.groups.len());
        for (g, group) in self.groups.iter().enumerate() {
            let name = &self.names[g];
            let mut by_id = HashMap::new();
            // In snapshot order: each target's position is its affinity's hint.
            for (position, target) in group.targets().into_iter().enumerate() {
                let id = target.id();
                for (k, key) in self.keys.iter().enumerate() {
                    let tag = key.tag(name, id.as_str());
                    if k == 0 {
                        by_id.insert(id.clone(), tag);
                    }
                    let Ok(index) = u32::try_from(table.named.len()) else {
                        continue;
                    };
                    table.by_tag.insert(tag, index);
                    table.named.push(Named {
                        tag,
                        key: k as u8,
                        group: g as u16,
                        target: id.clone(),
                        affinity: Affinity::in_group_at(name.clone(), id.clone(), position),
                    });
                }
            }
            signing.push(by_id);
        }
        table.signing = signing.into();
        tracing::debug!(groups = ?self.names, tags = table.by_tag.len(), "sticky tag table rebuilt");
        let generation = table.generation;
        self.table.store(Arc::new(table));
        self.current.store(generation, Ordering::Release);
    }

    /// The (group, target) a token names, if it is well formed, unexpired, not from further
    /// in the future than this configuration's TTL allows, names a current target and carries
    /// a valid MAC; with the affinity it asks for.
    #[inline]
    pub(crate) fn verify(&self, table: &Table, token: &[u8], now: u64) -> Option<(Hit, Affinity)> {
        let token: &[u8; ENCODED_LEN] = token.try_into().ok()?;
        let key = self.verified.key(token);
        // A token byte-identical to one that passed the checks below under the signing key
        // (whose claims were read then): only its expiry is checked again.
        if let Some(entry) = self.verified.get(&key) {
            if entry.generation == table.generation {
                if let Some(named) = table.named.get(entry.index as usize) {
                    if !self.in_time(entry.expiry, now) {
                        return None;
                    }
                    return Some(self.found(named, entry.expiry, now));
                }
            }
        }
        self.verify_in_full(token, &key, now)
    }

    /// The current tag table, if `held` is not it.
    #[inline]
    pub(crate) fn newer_table(&self, held: &Table) -> Option<Arc<Table>> {
        (self.current.load(Ordering::Acquire) != held.generation).then(|| self.table.load_full())
    }

    /// The current tag table.
    pub(crate) fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// Whether a token expiring at `expiry` is valid at `now`: not expired, and not from
    /// further in the future than this configuration's TTL allows.
    #[inline]
    fn in_time(&self, expiry: u64, now: u64) -> bool {
        expiry >= now && expiry <= now.saturating_add(self.ttl_secs + SKEW_SECS)
    }

    #[inline]
    fn found(&self, named: &Named, expiry: u64, now: u64) -> (Hit, Affinity) {
        let hit = Hit {
            group: named.group,
            tag: named.tag,
            expiry,
            now,
            current_key: named.key == 0,
        };
        (hit, named.affinity.clone())
    }

    /// [`verify`](Self::verify) for a token not in the cache: its claims are decoded, its
    /// target looked up and its MAC checked; a token of the signing key is then cached.
    #[inline(never)]
    fn verify_in_full(
        &self,
        token: &[u8; ENCODED_LEN],
        key: &verified::Key,
        now: u64,
    ) -> Option<(Hit, Affinity)> {
        // The signed part first: the MAC is decoded and checked only for a token that could
        // be honoured.
        let claims = codec::peek(token)?;
        if !self.in_time(claims.expiry, now) {
            return None;
        }
        let mut table = self.table.load();
        let (index, named) = match table.get(&claims.tag) {
            Some(found) => found,
            None => {
                if !self.stale(&table) {
                    return None;
                }
                self.rebuild();
                table = self.table.load();
                table.get(&claims.tag)?
            }
        };
        let signer = &self.keys[usize::from(named.key)];
        if !codec::open(token).is_some_and(|(raw, _)| signer.verify(&raw)) {
            return None;
        }
        if named.key == 0 {
            let entry = verified::Entry {
                expiry: claims.expiry,
                generation: table.generation,
                index,
            };
            self.verified.insert(key, entry);
        }
        Some(self.found(named, claims.expiry, now))
    }

    /// The first valid token on `req`, among at most [`MAX_CANDIDATES`], and the affinity it
    /// asks for.
    #[inline]
    pub(crate) fn hit<B>(&self, table: &Table, req: &Request<B>) -> Option<(Hit, Affinity)> {
        let mut now = None;
        let mut left = MAX_CANDIDATES;
        let mut check = |v: &[u8]| self.verify(table, v, *now.get_or_insert_with(|| self.now()));
        match &self.mode {
            Mode::Cookie { name, .. } => {
                for h in req.headers().get_all(http::header::COOKIE) {
                    for v in cookie::valid_name_values(h.as_bytes(), name) {
                        if left == 0 {
                            return None;
                        }
                        left -= 1;
                        if let Some(found) = check(v) {
                            return Some(found);
                        }
                    }
                }
                None
            }
            Mode::Header(name) => {
                for h in req.headers().get_all(name) {
                    if left == 0 {
                        return None;
                    }
                    left -= 1;
                    if let Some(found) = check(h.as_bytes()) {
                        return Some(found);
                    }
                }
                None
            }
        }
    }

    /// The target a verified token names, if it is still in this layer's table (off the hit
    /// path: only to reissue a token).
    pub(crate) fn target_of(&self, hit: &Hit) -> Option<TargetId> {
        self.table
            .load()
            .get(&hit.tag)
            .map(|(_, n)| n.target.clone())
    }

    /// Whether `target` of group `g` is the one a verified token names.
    pub(crate) fn names(&self, hit: &Hit, g: u16, target: &TargetId) -> bool {
        hit.group == g
            && self
                .table
                .load()
                .get(&hit.tag)
                .is_some_and(|(_, n)| n.target == *target)
    }

    pub(crate) fn group_index(&self, name: &str) -> Option<u16> {
        self.names
            .iter()
            .position(|n| &**n == name)
            .map(|i| i as u16)
    }

    /// A fresh token for `target` of group `g`, expiring `ttl` after `now`.
    pub(crate) fn issue(&self, g: u16, target: &TargetId, now: u64) -> String {
        let table = self.table.load();
        let tag = table
            .signing
            .get(usize::from(g))
            .and_then(|m| m.get(target).copied())
            .unwrap_or_else(|| self.keys[0].tag(&self.names[usize::from(g)], target.as_str()));
        self.keys[0].seal(&Claims {
            expiry: now.saturating_add(self.ttl_secs),
            tag,
        })
    }

    /// The header to set for a fresh token (`Set-Cookie`, or the affinity header).
    pub(crate) fn header(&self, token: &str, now: u64) -> Option<(HeaderName, HeaderValue)> {
        match &self.mode {
            Mode::Cookie { spec, .. } => {
                let expires =
                    SystemTime::UNIX_EPOCH + Duration::from_secs(now.saturating_add(self.ttl_secs));
                Some((http::header::SET_COOKIE, spec.set_cookie(token, expires)?))
            }
            Mode::Header(name) => Some((name.clone(), HeaderValue::from_str(token).ok()?)),
        }
    }
}

/// The wall clock in Unix seconds, read where it is cheap: tokens expire by the second, so
/// the kernel's coarse real-time clock (updated every tick, a few milliseconds behind at most,
/// read without touching the hardware counter) is precise enough and costs a fraction of
/// `SystemTime::now`. Elsewhere, `SystemTime::now`.
fn coarse_unix_secs() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        u64::try_from(t.tv_sec).unwrap_or(0)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

impl StickyLayer {
    /// Sticky sessions carried in a cookie named `name` (nginx's `sticky cookie SERVERID`).
    pub fn cookie(name: impl Into<String>) -> StickyLayerBuilder {
        StickyLayerBuilder::new(Carrier::Cookie(name.into()))
    }

    /// Sticky sessions carried in a request header named `name`, for clients that keep no
    /// cookies: the response carries the token in the same header, and the client sends it
    /// back.
    ///
    /// ```
    /// use tower_lb::sticky::StickyLayer;
    /// use tower_lb::TargetGroup;
    ///
    /// let group = TargetGroup::new("api");
    /// let sticky = StickyLayer::header("x-affinity").group(&group).key([1; 32]).build()?;
    /// # let _ = sticky;
    /// # Ok::<(), tower_lb::BoxError>(())
    /// ```
    pub fn header(name: impl Into<String>) -> StickyLayerBuilder {
        StickyLayerBuilder::new(Carrier::Header(name.into()))
    }

    /// A token for `target` of the group named `group` (what a response from it would carry),
    /// or `None` if this layer does not serve that group. The target need not exist yet.
    pub fn issue(&self, group: &str, target: &TargetId) -> Option<String> {
        let g = self.shared.group_index(group)?;
        Some(self.shared.issue(g, target, self.shared.now()))
    }

    /// The affinity a token asks for, if it is valid now (well formed, signed by one of the
    /// keys, unexpired, naming a current target of one of the groups).
    pub fn resolve(&self, token: &str) -> Option<Affinity> {
        if self.shared.stale(&self.shared.table.load()) {
            self.shared.rebuild();
        }
        let table = self.shared.table.load();
        let (_, affinity) = self
            .shared
            .verify(&table, token.as_bytes(), self.shared.now())?;
        Some(affinity)
    }
}

impl<S> Layer<S> for StickyLayer {
    type Service = Sticky<S>;

    fn layer(&self, inner: S) -> Sticky<S> {
        Sticky::new(inner, self.clone())
    }
}

#[derive(Debug)]
enum Carrier {
    Cookie(String),
    Header(String),
}

/// Configures a [`StickyLayer`]; from [`StickyLayer::cookie`] or [`StickyLayer::header`].
///
/// Defaults: TTL 1 hour (`Max-Age` and `Expires`), `Path=/`, no `Domain`, `HttpOnly`, not
/// `Secure`, `SameSite=Lax`, the system clock. A signing key and at least one group are
/// required.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::sticky::{SameSite, StickyLayer};
/// use tower_lb::TargetGroup;
///
/// let group = TargetGroup::new("api-v2");
/// let sticky = StickyLayer::cookie("session_id")
///     .group(&group)
///     .key(*b"this month's key, 32 bytes long!")
///     .old_key(*b"last month's key, still accepted")
///     .ttl(Duration::from_secs(3600))
///     .path("/api/v2")
///     .domain(".example.com")
///     .secure(true)
///     .same_site(SameSite::Strict)
///     .build()?;
/// # let _ = sticky;
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
pub struct StickyLayerBuilder {
    carrier: Carrier,
    keys: Vec<Vec<u8>>,
    signing: bool,
    groups: Vec<TargetGroup>,
    ttl: Duration,
    path: Option<String>,
    domain: Option<String>,
    http_only: bool,
    secure: bool,
    same_site: SameSite,
    clock: Option<Clock>,
}

impl fmt::Debug for StickyLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StickyLayerBuilder")
            .field("carrier", &self.carrier)
            .field("keys", &self.keys.len())
            .field("groups", &self.groups.len())
            .field("ttl", &self.ttl)
            .field("path", &self.path)
            .field("domain", &self.domain)
            .field("http_only", &self.http_only)
            .field("secure", &self.secure)
            .field("same_site", &self.same_site)
            .finish()
    }
}

impl StickyLayerBuilder {
    fn new(carrier: Carrier) -> Self {
        StickyLayerBuilder {
            carrier,
            keys: Vec::new(),
            signing: false,
            groups: Vec::new(),
            ttl: Duration::from_secs(3600),
            path: Some("/".into()),
            domain: None,
            http_only: true,
            secure: false,
            same_site: SameSite::Lax,
            clock: None,
        }
    }

    /// A group whose targets the tokens may name (call once per group behind the layer).
    pub fn group(mut self, group: &TargetGroup) -> Self {
        self.groups.push(group.clone());
        self
    }

    /// The secret that signs new tokens (and verifies them): at least 32 random bytes, the
    /// same on every instance that should honour the others' cookies. Calling it again
    /// replaces the signing key.
    pub fn key(mut self, secret: impl AsRef<[u8]>) -> Self {
        let secret = secret.as_ref().to_vec();
        if self.signing {
            self.keys[0] = secret;
        } else {
            self.keys.insert(0, secret);
            self.signing = true;
        }
        self
    }

    /// A previous secret: tokens it signed are still honoured (and replaced by tokens from
    /// the signing key on their next response). Up to seven.
    pub fn old_key(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.keys.push(secret.as_ref().to_vec());
        self
    }

    /// How long a token stays valid, and the cookie's `Max-Age`/`Expires` (default 1 hour).
    /// A token is renewed on a response once less than half of it is left.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The cookie's `Path` (default `/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// The cookie's `Domain` (default none: the host that set it).
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Whether the cookie is `HttpOnly` (default `true`: scripts cannot read it).
    pub fn http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// Whether the cookie is `Secure` (default `false`; set it when clients use HTTPS).
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// The cookie's `SameSite` (default [`SameSite::Lax`]).
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// The wall clock tokens expire by, for tests and simulations (default: the system's
    /// real-time clock read at seconds resolution, its cheap coarse variant on Linux).
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Checks the configuration and builds the layer.
    pub fn build(self) -> Result<StickyLayer, InvalidSticky> {
        let err = |r| Err(InvalidSticky::new(r));
        if !self.signing {
            return err(Reason::NoKey);
        }
        if self.keys.len() > MAX_KEYS {
            return err(Reason::TooManyKeys);
        }
        if let Some(k) = self.keys.iter().find(|k| k.len() < MIN_KEY_LEN) {
            return err(Reason::ShortKey(k.len()));
        }
        if self.ttl < Duration::from_secs(1) || self.ttl > MAX_TTL {
            return err(Reason::Ttl);
        }
        if self.groups.is_empty() {
            return err(Reason::NoGroup);
        }
        if self.groups.len() > usize::from(u16::MAX) {
            return err(Reason::TooManyGroups);
        }
        let names: Box<[Arc<str>]> = self.groups.iter().map(|g| Arc::from(g.name())).collect();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return err(Reason::DuplicateGroup(n.to_string()));
            }
        }
        let mode = match self.carrier {
            Carrier::Cookie(name) => {
                if !cookie::valid_name(&name) {
                    return err(Reason::CookieName(name));
                }
                if let Some(p) = self.path.as_ref().filter(|p| !cookie::valid_attribute(p)) {
                    return err(Reason::Path(p.clone()));
                }
                if let Some(d) = self.domain.as_ref().filter(|d| !cookie::valid_attribute(d)) {
                    return err(Reason::Domain(d.clone()));
                }
                if self.same_site == SameSite::None && !self.secure {
                    return err(Reason::SameSiteNoneInsecure);
                }
                let spec = CookieSpec::new(
                    &name,
                    self.path.as_deref(),
                    self.domain.as_deref(),
                    self.http_only,
                    self.secure,
                    self.same_site,
                    self.ttl,
                );
                Mode::Cookie { name, spec }
            }
            Carrier::Header(name) => match HeaderName::try_from(name.as_str()) {
                Ok(h) => Mode::Header(h),
                Err(_) => return err(Reason::HeaderName(name)),
            },
        };
        let keys: Box<[Keyed]> = self.keys.iter().map(|k| Keyed::new(k)).collect();
        let secret = keys[0].derive(b"verified-token cache");
        let shared = Shared {
            mode,
            verified: Verified::new(u64::from_le_bytes(secret[..8].try_into().unwrap_or([0; 8]))),
            generations: AtomicU64::new(0),
            current: AtomicU64::new(0),
            keys,
            groups: self.groups.into(),
            names,
            ttl_secs: self.ttl.as_secs(),
            table: ArcSwap::from_pointee(Table::default()),
            sync: Mutex::new(()),
            clock: self.clock,
        };
        shared.rebuild();
        Ok(StickyLayer {
            shared: Arc::new(shared),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use proptest::prelude::*;

    use super::*;
    use crate::target::Target;

    fn group() -> TargetGroup {
        TargetGroup::builder("g")
            .target(Target::new("a", "127.0.0.1:1").unwrap())
            .target(Target::new("b", "127.0.0.1:2").unwrap())
            .build()
            .unwrap()
    }

    /// A layer over `group` whose clock reads `now` (Unix seconds).
    fn layer(group: &TargetGroup, now: Arc<AtomicU64>) -> StickyLayer {
        StickyLayer::cookie("SERVERID")
            .group(group)
            .key([7; 32])
            .old_key([8; 32])
            .ttl(Duration::from_secs(3600))
            .clock(move || {
                SystemTime::UNIX_EPOCH + Duration::from_secs(now.load(Ordering::Relaxed))
            })
            .build()
            .unwrap()
    }

    fn target(layer: &StickyLayer, token: &str) -> Option<String> {
        layer.resolve(token).map(|a| a.target().to_string())
    }

    fn cached(layer: &StickyLayer, token: &str) -> bool {
        let token: &[u8; ENCODED_LEN] = token.as_bytes().try_into().unwrap();
        let shared = &layer.shared;
        shared.verified.get(&shared.verified.key(token)).is_some()
    }

    #[test]
    fn a_verified_token_is_cached_and_answers_the_same() {
        let g = group();
        let l = layer(&g, Arc::new(AtomicU64::new(1_000_000)));
        let t = l.issue("g", &"b".into()).unwrap();
        assert!(!cached(&l, &t), "issuing caches nothing");
        assert_eq!(target(&l, &t).as_deref(), Some("b"));
        assert!(cached(&l, &t), "verified once, then cached");
        let full = l.shared.verify_in_full(
            t.as_bytes().try_into().unwrap(),
            &l.shared.verified.key(t.as_bytes().try_into().unwrap()),
            1_000_000,
        );
        let cached = l.shared.verify(&l.shared.table(), t.as_bytes(), 1_000_000);
        let (full, cached) = (full.unwrap(), cached.unwrap());
        assert_eq!(full.1, cached.1, "the same affinity");
        assert_eq!(
            (full.0.group, full.0.tag, full.0.expiry, full.0.current_key),
            (
                cached.0.group,
                cached.0.tag,
                cached.0.expiry,
                cached.0.current_key
            )
        );
    }

    #[test]
    fn a_cached_token_still_expires() {
        let g = group();
        let now = Arc::new(AtomicU64::new(1_000_000));
        let l = layer(&g, now.clone());
        let t = l.issue("g", &"a".into()).unwrap();
        assert_eq!(target(&l, &t).as_deref(), Some("a"));
        now.store(1_000_000 + 3600, Ordering::Relaxed);
        assert_eq!(
            target(&l, &t).as_deref(),
            Some("a"),
            "valid to its last second"
        );
        now.store(1_000_000 + 3601, Ordering::Relaxed);
        assert!(cached(&l, &t));
        assert_eq!(target(&l, &t), None, "expired, though cached");
        // A clock that went back by more than the TTL allows: too far in the future.
        now.store(1_000_000 - SKEW_SECS - 1, Ordering::Relaxed);
        assert_eq!(target(&l, &t), None);
    }

    #[test]
    fn tokens_of_an_old_key_verify_and_are_not_cached() {
        let g = group();
        let now = Arc::new(AtomicU64::new(1_000_000));
        let old = StickyLayer::cookie("SERVERID")
            .group(&g)
            .key([8; 32])
            .clock(|| SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
            .build()
            .unwrap();
        let t = old.issue("g", &"b".into()).unwrap();
        let l = layer(&g, now);
        for _ in 0..2 {
            assert_eq!(target(&l, &t).as_deref(), Some("b"));
            assert!(!cached(&l, &t));
        }
    }

    #[test]
    fn a_cached_token_survives_a_rebuilt_table() {
        let g = group();
        let l = layer(&g, Arc::new(AtomicU64::new(1_000_000)));
        let t = l.issue("g", &"b".into()).unwrap();
        assert_eq!(target(&l, &t).as_deref(), Some("b"));
        let before = l.shared.table.load().generation;
        // A target added before `b` moves it in the snapshot: the table is rebuilt, the cached
        // entry points into the old one and is checked in full again.
        g.insert(Target::new("0", "127.0.0.1:3").unwrap());
        let c = l.issue("g", &"0".into()).unwrap();
        assert_eq!(target(&l, &c).as_deref(), Some("0"));
        assert!(l.shared.table.load().generation > before);
        let affinity = l.resolve(&t).unwrap();
        assert_eq!(affinity.target().as_str(), "b");
        assert_eq!(affinity.hint(), Some(2), "the new table's position");
        assert_eq!(target(&l, &t).as_deref(), Some("b"));
        // Once the table no longer has the target, neither has the cache.
        g.remove(&"b".into()).unwrap();
        assert_eq!(target(&l, &t), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x6361_6368),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// With the genuine token cached, a token differing from it in any one byte is never
        /// accepted, and the genuine one still is.
        #[test]
        fn a_token_one_byte_off_a_cached_one_is_refused(
            at in 0..ENCODED_LEN,
            to in prop_oneof![
                any::<u8>(),
                proptest::sample::select(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".to_vec()
                ),
            ],
        ) {
            let g = group();
            let l = layer(&g, Arc::new(AtomicU64::new(1_000_000)));
            let t = l.issue("g", &"b".into()).unwrap();
            prop_assert_eq!(target(&l, &t), Some("b".to_string()));
            prop_assert!(cached(&l, &t));
            let mut bad = t.clone().into_bytes();
            prop_assume!(bad[at] != to);
            bad[at] = to;
            let table = l.shared.table();
            prop_assert!(l.shared.verify(&table, &bad, 1_000_000).is_none(), "byte {} to {:?}", at, to);
            prop_assert_eq!(target(&l, &t), Some("b".to_string()));
        }
    }
}
