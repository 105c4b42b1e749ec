use std::net::IpAddr;

use http::StatusCode;
use ipnet::IpNet;

use super::error::InvalidAccess;
use crate::client_ip::parse_net;

/// Ordered allow/deny lists on the resolved client IP (nginx's `allow`/`deny`): the first
/// entry that matches decides; a request no entry matches is allowed. `all` matches every
/// client, including one whose address is unknown. Refusals get `403` unless
/// [`status`](Self::status) says otherwise.
///
/// The client IP is the one [`client_ip`](crate::client_ip) resolved (trusted proxies only),
/// else the socket peer.
///
/// # Examples
///
/// ```
/// use tower_lb::route::Access;
///
/// // nginx: `allow 127.0.0.1; deny all;`
/// let local_only = Access::parse("allow 127.0.0.1; deny all;")?;
/// assert!(local_only.allows(Some("127.0.0.1".parse()?)));
/// assert!(!local_only.allows(Some("192.0.2.1".parse()?)));
/// assert!(!local_only.allows(None));
///
/// // The same as a builder, with IPv6 and a 404 to hide the path.
/// let admins = Access::new().allow("10.0.0.0/8").allow("::1").deny("all").status(http::StatusCode::NOT_FOUND);
/// assert!(admins.allows(Some("::1".parse()?)));
/// assert_eq!(admins.refusal_status(), http::StatusCode::NOT_FOUND);
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    entries: Vec<(bool, Entry)>,
    status: StatusCode,
    /// The first entry that did not parse, reported when the rule set is validated.
    invalid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    All,
    Net(IpNet),
}

impl Default for Access {
    fn default() -> Self {
        Access::new()
    }
}

impl Access {
    /// An empty list: allows everyone, refusal status `403`.
    pub fn new() -> Self {
        Access {
            entries: Vec::new(),
            status: StatusCode::FORBIDDEN,
            invalid: None,
        }
    }

    /// Parses nginx's directives: `allow ADDR|CIDR|all;` and `deny ADDR|CIDR|all;`, separated
    /// by `;` (the final `;` optional).
    pub fn parse(directives: &str) -> Result<Self, InvalidAccess> {
        let mut access = Access::new();
        for d in directives.split(';') {
            let mut words = d.split_whitespace();
            let (Some(verb), Some(what), None) = (words.next(), words.next(), words.next()) else {
                if d.trim().is_empty() {
                    continue;
                }
                return Err(InvalidAccess::new(d));
            };
            access = match verb {
                "allow" => access.allow(what),
                "deny" => access.deny(what),
                _ => return Err(InvalidAccess::new(d)),
            };
        }
        match access.invalid.take() {
            Some(bad) => Err(InvalidAccess::new(&bad)),
            None => Ok(access),
        }
    }

    fn push(mut self, allow: bool, what: &str) -> Self {
        let entry = if what.trim() == "all" {
            Some(Entry::All)
        } else {
            parse_net(what).map(Entry::Net)
        };
        match entry {
            Some(e) => self.entries.push((allow, e)),
            None => {
                self.invalid
                    .get_or_insert_with(|| what.chars().take(64).collect());
            }
        }
        self
    }

    /// Appends an `allow` entry: an address, a CIDR, or `all`. A bad entry is reported when
    /// the rule set or router is validated ([`check`](Self::check) reports it at once).
    pub fn allow(self, what: &str) -> Self {
        self.push(true, what)
    }

    /// Appends a `deny` entry: an address, a CIDR, or `all`.
    pub fn deny(self, what: &str) -> Self {
        self.push(false, what)
    }

    /// The status of a refusal (default `403 Forbidden`).
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The status of a refusal.
    pub fn refusal_status(&self) -> StatusCode {
        self.status
    }

    /// An error naming the first entry that did not parse, if any.
    pub fn check(&self) -> Result<(), InvalidAccess> {
        match &self.invalid {
            Some(bad) => Err(InvalidAccess::new(bad)),
            None => Ok(()),
        }
    }

    /// Whether a client with this IP (`None`: unknown) is allowed.
    pub fn allows(&self, ip: Option<IpAddr>) -> bool {
        let ip = ip.map(|ip| ip.to_canonical());
        for (allow, entry) in &self.entries {
            let hit = match entry {
                Entry::All => true,
                Entry::Net(n) => ip.is_some_and(|ip| n.contains(&ip)),
            };
            if hit {
                return *allow;
            }
        }
        true
    }
}
