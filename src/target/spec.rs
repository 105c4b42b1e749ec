use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use http::uri::Authority;

use super::error::{AddressProblem, InvalidTarget};

/// The largest weight a target may have.
///
/// Weights are relative, so this bound costs nothing in expressiveness; it keeps the tables
/// that weight-aware algorithms build (weighted sequences, hash-ring virtual nodes) bounded.
pub const MAX_WEIGHT: u32 = 10_000;

/// The stable identity of a [`Target`]: cheap to clone, compared by value.
///
/// Ids are what survives membership changes: per-target state (in-flight requests,
/// counters, admin state) is carried from one snapshot to the next by id.
///
/// # Examples
///
/// ```
/// use tower_lb::target::TargetId;
///
/// let id = TargetId::from("api-1");
/// assert_eq!(id.as_str(), "api-1");
/// assert_eq!(id, TargetId::from(String::from("api-1")));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId(Arc<str>);

impl TargetId {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for TargetId {
    fn from(s: &str) -> Self {
        TargetId(Arc::from(s))
    }
}

impl From<String> for TargetId {
    fn from(s: String) -> Self {
        TargetId(Arc::from(s))
    }
}

impl From<&TargetId> for TargetId {
    fn from(id: &TargetId) -> Self {
        id.clone()
    }
}

impl std::borrow::Borrow<str> for TargetId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// One backend a [`TargetGroup`](super::TargetGroup) can send requests to.
///
/// A target is immutable once built; change a target by inserting a new one with the same id
/// (its live state carries over).
///
/// # Examples
///
/// ```
/// use tower_lb::target::Target;
///
/// let t = Target::builder("api-1", "127.0.0.1:8080")
///     .weight(5)
///     .max_conns(100)
///     .label("zone", "eu-west-1a")
///     .build()?;
/// assert_eq!(t.weight(), 5);
/// assert_eq!(t.label("zone"), Some("eu-west-1a"));
/// assert!(!t.is_backup());
///
/// // The short form: weight 1, no limits.
/// let t = Target::new("api-2", "127.0.0.1:8081")?;
/// assert_eq!(t.address().as_str(), "127.0.0.1:8081");
/// # Ok::<(), tower_lb::target::error::InvalidTarget>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    id: TargetId,
    address: Authority,
    weight: u32,
    backup: bool,
    max_conns: Option<NonZeroU32>,
    labels: Box<[(Box<str>, Box<str>)]>,
}

impl Target {
    /// A target with weight 1, no connection limit and no labels.
    pub fn new(
        id: impl Into<TargetId>,
        address: impl fmt::Display,
    ) -> Result<Target, InvalidTarget> {
        Target::builder(id, address).build()
    }

    /// Starts building a target. `address` is an authority such as `10.0.0.7:8080` or
    /// `api.internal:443` (a `SocketAddr` works too).
    pub fn builder(id: impl Into<TargetId>, address: impl fmt::Display) -> TargetBuilder {
        TargetBuilder {
            id: id.into(),
            address: address.to_string(),
            weight: 1,
            backup: false,
            max_conns: None,
            labels: Vec::new(),
        }
    }

    /// The target's stable id.
    pub fn id(&self) -> &TargetId {
        &self.id
    }

    /// Where requests for this target go.
    pub fn address(&self) -> &Authority {
        &self.address
    }

    /// The relative weight, `1..=`[`MAX_WEIGHT`].
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Whether this is a backup target, used only when no primary target is available.
    pub fn is_backup(&self) -> bool {
        self.backup
    }

    /// The most requests this target may have in flight, if limited.
    pub fn max_conns(&self) -> Option<NonZeroU32> {
        self.max_conns
    }

    /// The value of one label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.labels[i].1)
    }

    /// All labels, sorted by key.
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.labels.iter().map(|(k, v)| (&**k, &**v))
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Target");
        d.field("id", &self.id)
            .field("address", &self.address.as_str())
            .field("weight", &self.weight);
        if self.backup {
            d.field("backup", &true);
        }
        if let Some(m) = self.max_conns {
            d.field("max_conns", &m);
        }
        if !self.labels.is_empty() {
            d.field("labels", &self.labels);
        }
        d.finish()
    }
}

/// Builds a [`Target`]; see [`Target::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct TargetBuilder {
    id: TargetId,
    address: String,
    weight: u32,
    backup: bool,
    max_conns: Option<u32>,
    labels: Vec<(Box<str>, Box<str>)>,
}

impl TargetBuilder {
    /// The relative weight, `1..=`[`MAX_WEIGHT`] (default 1). Zero is rejected: to take a target
    /// out of rotation without removing it, disable or drain it
    /// ([`TargetGroup::set_admin`](super::TargetGroup::set_admin)).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Marks the target as a backup: it is picked only when no primary target is available.
    pub fn backup(mut self, backup: bool) -> Self {
        self.backup = backup;
        self
    }

    /// Limits the requests in flight to this target; a full target is skipped at pick time.
    pub fn max_conns(mut self, max: u32) -> Self {
        self.max_conns = Some(max);
        self
    }

    /// Adds a label (a later value for the same key wins).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key: Box<str> = key.into().into();
        self.labels.retain(|(k, _)| *k != key);
        self.labels.push((key, value.into().into()));
        self
    }

    /// Validates and builds the target.
    pub fn build(self) -> Result<Target, InvalidTarget> {
        if self.id.as_str().is_empty() {
            return Err(InvalidTarget::empty_id());
        }
        if !(1..=MAX_WEIGHT).contains(&self.weight) {
            return Err(InvalidTarget::weight(&self.id, self.weight));
        }
        let max_conns = match self.max_conns {
            None => None,
            Some(m) => Some(NonZeroU32::new(m).ok_or_else(|| InvalidTarget::max_conns(&self.id))?),
        };
        let address =
            parse_address(&self.address).map_err(|p| InvalidTarget::address(&self.id, p))?;
        let mut labels = self.labels;
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Target {
            id: self.id,
            address,
            weight: self.weight,
            backup: self.backup,
            max_conns,
            labels: labels.into_boxed_slice(),
        })
    }
}

/// Parses a target address: `host[:port]`, where a port, when given, is a number in
/// `1..=65535`; no user information, path or query.
fn parse_address(raw: &str) -> Result<Authority, AddressProblem> {
    if raw.is_empty() {
        return Err(AddressProblem::Empty);
    }
    if raw.contains('@') {
        return Err(AddressProblem::UserInfo);
    }
    if raw.contains(['/', '?', '#']) {
        return Err(AddressProblem::PathOrQuery);
    }
    let address: Authority = raw.parse().map_err(|_| AddressProblem::Syntax)?;
    if address.host().is_empty() || address.host() == "[]" {
        return Err(AddressProblem::EmptyHost);
    }
    // The text after the host: `:port` or nothing.
    let after_host = match raw.strip_prefix('[') {
        Some(rest) => rest.find(']').map_or("", |i| &rest[i + 1..]),
        None => raw.rfind(':').map_or("", |i| &raw[i..]),
    };
    match after_host.strip_prefix(':') {
        None if after_host.is_empty() => Ok(address),
        None => Err(AddressProblem::Syntax),
        Some("") => Err(AddressProblem::EmptyPort),
        Some(port) if port.bytes().all(|b| b.is_ascii_digit()) => match port.parse::<u16>() {
            Ok(p) if p != 0 => Ok(address),
            _ => Err(AddressProblem::Port),
        },
        Some(_) => Err(AddressProblem::Port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_validated_with_a_reason() {
        use AddressProblem::*;
        let cases = [
            ("", Empty),
            ("127.0.0.1:80800", Port),
            ("127.0.0.1:0", Port),
            ("127.0.0.1:65536", Port),
            ("host:http", Port),
            ("127.0.0.1:", EmptyPort),
            (":8080", EmptyHost),
            ("user:pw@host:80", UserInfo),
            ("host:80/api", PathOrQuery),
            ("host:80?x=1", PathOrQuery),
            ("ho st:80", Syntax),
        ];
        for (raw, want) in cases {
            let err = Target::new("a", raw).unwrap_err();
            assert_eq!(err.address_problem(), Some(want), "{raw:?}");
            assert!(!err.to_string().contains(raw) || raw.is_empty(), "{err}");
        }
        for ok in [
            "127.0.0.1:1",
            "127.0.0.1:65535",
            "[::1]:8080",
            "api.internal",
            "a.b:443",
        ] {
            let t = Target::new("a", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(t.address().as_str(), ok);
        }
        assert_eq!(
            Target::new("a", "[::1]:").unwrap_err().address_problem(),
            Some(EmptyPort)
        );
    }

    #[test]
    fn rejects_bad_input_with_typed_errors() {
        assert!(Target::new("", "127.0.0.1:1").is_err());
        let e = Target::builder("a", "127.0.0.1:1")
            .weight(0)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("weight"), "{e}");
        assert!(
            Target::builder("a", "127.0.0.1:1")
                .weight(MAX_WEIGHT + 1)
                .build()
                .is_err()
        );
        assert!(
            Target::builder("a", "127.0.0.1:1")
                .weight(MAX_WEIGHT)
                .build()
                .is_ok()
        );
        assert!(
            Target::builder("a", "127.0.0.1:1")
                .max_conns(0)
                .build()
                .is_err()
        );
        assert!(Target::new("a", "not an address/").is_err());
        assert!(Target::new("a", "").is_err());
    }

    #[test]
    fn labels_are_sorted_and_last_write_wins() {
        let t = Target::builder("a", "h:1")
            .label("z", "1")
            .label("a", "2")
            .label("z", "3")
            .build()
            .unwrap();
        assert_eq!(t.labels().collect::<Vec<_>>(), vec![("a", "2"), ("z", "3")]);
        assert_eq!(t.label("z"), Some("3"));
        assert_eq!(t.label("missing"), None);
    }

    #[test]
    fn accepts_socket_addrs_and_host_names() {
        let sa: std::net::SocketAddr = "127.0.0.1:9000".parse().unwrap();
        assert_eq!(
            Target::new("a", sa).unwrap().address().port_u16(),
            Some(9000)
        );
        assert_eq!(
            Target::new("b", "[::1]:80").unwrap().address().host(),
            "[::1]"
        );
        assert_eq!(
            Target::new("c", "api.internal:443")
                .unwrap()
                .address()
                .host(),
            "api.internal"
        );
    }
}
