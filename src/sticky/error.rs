//! Errors of the sticky-session layer.

use std::fmt;

/// A sticky-session configuration that cannot work, from
/// [`StickyLayerBuilder::build`](super::StickyLayerBuilder::build).
///
/// # Examples
///
/// ```
/// use tower_lb::sticky::StickyLayer;
/// use tower_lb::TargetGroup;
///
/// let group = TargetGroup::new("api");
/// let err = StickyLayer::cookie("bad name").group(&group).key([7; 32]).build().unwrap_err();
/// assert!(err.to_string().contains("cookie name"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidSticky {
    reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reason {
    NoKey,
    ShortKey(usize),
    TooManyKeys,
    CookieName(String),
    HeaderName(String),
    Path(String),
    Domain(String),
    Ttl,
    NoGroup,
    DuplicateGroup(String),
    TooManyGroups,
    SameSiteNoneInsecure,
}

impl InvalidSticky {
    pub(crate) fn new(reason: Reason) -> Self {
        InvalidSticky { reason }
    }
}

impl fmt::Display for InvalidSticky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid sticky sessions: ")?;
        match &self.reason {
            Reason::NoKey => f.write_str("no signing key (call `key`)"),
            Reason::ShortKey(n) => write!(
                f,
                "a key of {n} bytes is too short (at least {} bytes)",
                super::layer::MIN_KEY_LEN
            ),
            Reason::TooManyKeys => write!(
                f,
                "more than {} keys (one signing, the rest verifying)",
                super::layer::MAX_KEYS
            ),
            Reason::CookieName(n) => write!(f, "cookie name {n:?} is not an HTTP token"),
            Reason::HeaderName(n) => write!(f, "header name {n:?} is not a valid header name"),
            Reason::Path(p) => write!(f, "cookie path {p:?} has a space, `;` or a control byte"),
            Reason::Domain(d) => {
                write!(f, "cookie domain {d:?} has a space, `;` or a control byte")
            }
            Reason::Ttl => f.write_str("the ttl must be between 1 second and 400 days"),
            Reason::NoGroup => f.write_str("no target group (call `group`)"),
            Reason::DuplicateGroup(g) => write!(f, "group {g:?} is given twice"),
            Reason::TooManyGroups => f.write_str("too many groups"),
            Reason::SameSiteNoneInsecure => {
                f.write_str("SameSite=None needs Secure (browsers drop the cookie otherwise)")
            }
        }
    }
}
