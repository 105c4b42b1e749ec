//! Errors of rule sets and access lists.

use std::fmt;

/// A rule set (or router setting) was refused: it names the rule, the field and why. The
/// rules in force before stay in force.
///
/// ```
/// use tower_lb::route::{Rule, Router};
///
/// let router = Router::builder().destination("api", tower::service_fn(|_r: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// })).build()?;
/// let err = router.set_rules([Rule::new("v2").path("/v2/*").to("nope")]).unwrap_err();
/// assert_eq!(err.rule(), Some("v2"));
/// assert_eq!(err.field(), "destination");
/// assert_eq!(err.to_string(), "rule `v2`: destination: unknown destination `nope`");
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRule {
    rule: Option<String>,
    field: &'static str,
    reason: String,
}

impl InvalidRule {
    pub(crate) fn new(rule: Option<&str>, field: &'static str, reason: impl Into<String>) -> Self {
        InvalidRule {
            rule: rule.map(|r| r.chars().take(128).collect()),
            field,
            reason: reason.into(),
        }
    }

    /// The rule's name; `None` for a router-wide setting (fallback, access list).
    pub fn rule(&self) -> Option<&str> {
        self.rule.as_deref()
    }

    /// The field: `name`, `path`, `method`, `header`, `query`, `host`, `destination`,
    /// `split`, `request_header`, `response_header`, `rewrite`, `timeout`, `access` or
    /// `fallback`.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why it was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for InvalidRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some(r) => write!(f, "rule `{r}`: {}: {}", self.field, self.reason),
            None => write!(f, "router: {}: {}", self.field, self.reason),
        }
    }
}

impl std::error::Error for InvalidRule {}

/// An access-list entry was not `allow`/`deny` followed by an address, a CIDR or `all`.
///
/// ```
/// use tower_lb::route::Access;
///
/// let err = Access::parse("allow 10.0.0.0/33; deny all;").unwrap_err();
/// assert_eq!(err.entry(), "10.0.0.0/33");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid access entry `{entry}`")]
pub struct InvalidAccess {
    entry: String,
}

impl InvalidAccess {
    pub(crate) fn new(entry: &str) -> Self {
        InvalidAccess {
            entry: entry.trim().chars().take(64).collect(),
        }
    }

    /// The entry that did not parse (its first 64 characters).
    pub fn entry(&self) -> &str {
        &self.entry
    }
}
