use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::error::InvalidTrustedProxy;

/// The proxies whose forwarding headers are believed: a list of CIDRs (IPv4 and IPv6).
///
/// Cheap to clone. The default, [`TrustedProxies::none`], trusts nobody: the client is the
/// socket peer. An entry without a prefix length is one address (`/32` or `/128`); an
/// IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) is taken as the IPv4 network it maps.
///
/// # Examples
///
/// ```
/// use tower_lb::client_ip::TrustedProxies;
///
/// let trusted = TrustedProxies::new(["10.0.0.0/8", "127.0.0.1", "fd00::/8"])?;
/// assert!(trusted.contains("10.1.2.3".parse()?));
/// assert!(trusted.contains("::ffff:127.0.0.1".parse()?)); // mapped IPv4 is IPv4
/// assert!(!trusted.contains("192.0.2.1".parse()?));
/// assert!(!TrustedProxies::none().contains("127.0.0.1".parse()?));
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Arc<[IpNet]>,
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for n in self.nets.iter() {
            list.entry(&format_args!("{n}"));
        }
        list.finish()
    }
}

impl TrustedProxies {
    /// Trust the proxies in these CIDRs or addresses; the first entry that does not parse is
    /// returned in the error.
    pub fn new<I, S>(entries: I) -> Result<Self, InvalidTrustedProxy>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nets = entries
            .into_iter()
            .map(|e| parse_net(e.as_ref()).ok_or_else(|| InvalidTrustedProxy::new(e.as_ref())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies { nets: nets.into() })
    }

    /// Trust nobody (the default): forwarding headers are never read.
    pub fn none() -> Self {
        TrustedProxies::default()
    }

    /// Trust the loopback addresses (`127.0.0.0/8`, `::1`): a proxy on the same machine.
    ///
    /// ```
    /// use tower_lb::client_ip::TrustedProxies;
    /// assert!(TrustedProxies::loopback().contains("127.0.0.1".parse()?));
    /// # Ok::<(), tower_lb::BoxError>(())
    /// ```
    pub fn loopback() -> Self {
        TrustedProxies::new(["127.0.0.0/8", "::1/128"]).unwrap_or_default()
    }

    /// Whether `ip` (canonicalized: IPv4-mapped IPv6 as IPv4) is inside a trusted network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// A CIDR or a single address, mapped IPv6 networks turned into IPv4 ones.
pub(crate) fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => IpNet::from(s.parse::<IpAddr>().ok()?),
    };
    Some(match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::V4(Ipv4Net::new(v4, n.prefix_len() - 96).ok()?),
            None => IpNet::V6(n),
        },
        IpNet::V6(n) => IpNet::V6(Ipv6Net::new(n.addr(), n.prefix_len()).ok()?),
        n => n,
    })
}
