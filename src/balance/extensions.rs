use std::sync::Arc;

use crate::key::ClientAddr;
use crate::target::TargetId;

/// What a request's extension map holds when it holds nothing but this crate's own plain
/// values: the client's address (set by the server) and the retry's [`WantServedBy`] mark.
/// Such a map is rebuilt from them rather than cloned whole, and emptied for the next request
/// rather than freed (see `util::spare`): `http::Extensions` clones and frees its map, its
/// table and a box per value. `None` when the map holds anything else.
pub(crate) fn plain(ext: &http::Extensions) -> Option<(Option<ClientAddr>, bool)> {
    // By size first: the common map (the server's `ClientAddr` alone) costs one lookup.
    match ext.len() {
        0 => Some((None, false)),
        1 => match ext.get::<ClientAddr>() {
            Some(addr) => Some((Some(*addr), false)),
            None => ext.get::<WantServedBy>().map(|_| (None, true)),
        },
        2 => {
            let addr = *ext.get::<ClientAddr>()?;
            ext.get::<WantServedBy>()?;
            Some((Some(addr), true))
        }
        _ => None,
    }
}

/// A copy of `ext`: rebuilt into a spare map when it is [`plain`], else cloned whole.
pub(crate) fn copy_plain_or_clone(ext: &http::Extensions) -> http::Extensions {
    let Some((addr, mark)) = plain(ext) else {
        return ext.clone();
    };
    if addr.is_none() && !mark {
        return http::Extensions::new();
    }
    let mut copy = crate::util::spare::extensions();
    if let Some(addr) = addr {
        copy.insert(addr);
    }
    if mark {
        copy.insert(WantServedBy);
    }
    copy
}

/// Empties a [`plain`] map for the next request on this thread (`util::spare`); any other is
/// left alone.
#[cfg_attr(not(feature = "hyper"), allow(dead_code))]
pub(crate) fn recycle_plain(ext: &mut http::Extensions) {
    if !ext.is_empty() && plain(ext).is_some() {
        crate::util::spare::give_back(std::mem::take(ext));
    }
}

pub use crate::target::AvoidTargets;

/// Response extension: the group and target that served the request.
///
/// Set by [`Balance`](super::Balance) on responses with an error status (`4xx`, `5xx`), on
/// responses the group's classifier counts as failures, on responses to requests that carry
/// [`WantServedBy`] and on those to requests whose [`Affinity`] was not honoured, or on every
/// response with
/// [`Balance::served_by(true)`](super::Balance::served_by); read it for access logs, metrics,
/// sticky sessions or retries. An error names its target through
/// [`AttemptFailed`](super::error::AttemptFailed).
///
/// # Examples
///
/// ```
/// use tower_lb::balance::ServedBy;
///
/// # fn f(response: http::Response<()>) {
/// if let Some(served) = response.extensions().get::<ServedBy>() {
///     println!("{} / {}", served.group(), served.target());
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedBy {
    group: Arc<str>,
    target: TargetId,
}

impl ServedBy {
    pub(crate) fn new(group: Arc<str>, target: TargetId) -> Self {
        ServedBy { group, target }
    }

    /// The name of the group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The id of the target.
    pub fn target(&self) -> &TargetId {
        &self.target
    }
}

/// Request extension: asks [`Balance`](super::Balance) to tag this request's response with
/// [`ServedBy`], whatever its outcome.
///
/// Error statuses are tagged anyway; the [`RetryLayer`](crate::retry::RetryLayer) adds this
/// marker to its requests only when it is configured to retry a status below `400`, so that a
/// retry can still avoid the target that answered. A layer that reads `ServedBy` on every
/// response can use [`Balance::served_by(true)`](super::Balance::served_by) instead.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::balance::{Balance, ServedBy, WantServedBy};
/// use tower_lb::{Target, TargetGroup};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let group = TargetGroup::builder("g").target(Target::new("a", "127.0.0.1:1")?).build()?;
/// let balance = Balance::new(group, |_t: &Target| {
///     service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) })
/// });
/// let mut req = Request::new(());
/// req.extensions_mut().insert(WantServedBy);
/// let rsp = balance.oneshot(req).await?;
/// assert_eq!(rsp.extensions().get::<ServedBy>().unwrap().target().as_str(), "a");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WantServedBy;

/// Request extension: send this request to one target if it is available (set by the
/// [sticky-session layer](crate::sticky), or by anything else that wants affinity).
///
/// [`Balance`](super::Balance) sends the request to the named target when that target is in
/// its group and could be picked right now (enabled, not draining, healthy, not ejected,
/// below its connection limit, not in [`AvoidTargets`]); otherwise the request is balanced as
/// if it had no affinity, and its response is tagged with [`ServedBy`] (unless the balancer
/// [tags nothing](super::Balance::served_by)), so that whoever set the affinity learns where
/// the request went; a response without the tag came from the target asked for (or from no
/// target at all). An affinity never makes a request fail. A backup target is never
/// honoured here: backups serve only while no primary is available, which the group's own
/// pick decides.
///
/// An affinity [for a group](Affinity::in_group) is honoured only by a balancer over the
/// group of that name, so one request can pass several balancers (a router's groups).
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::balance::{Affinity, Balance, ServedBy};
/// use tower_lb::{Target, TargetGroup};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let group = TargetGroup::builder("api")
///     .target(Target::new("a", "127.0.0.1:8080")?)
///     .target(Target::new("b", "127.0.0.1:8081")?)
///     .build()?;
/// let balance = Balance::new(group, |_t: &Target| {
///     service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) })
/// })
/// .served_by(true);
///
/// for _ in 0..3 {
///     let mut req = Request::new(());
///     req.extensions_mut().insert(Affinity::in_group("api", "b".into()));
///     let rsp = balance.clone().oneshot(req).await?;
///     assert_eq!(rsp.extensions().get::<ServedBy>().unwrap().target().as_str(), "b");
/// }
/// # Ok(()) }
/// ```
///
/// Cloning one costs one reference count (the group name and the target id sit behind one
/// shared pointer), so a layer that sets the same affinity on many requests builds it once.
#[derive(Clone)]
pub struct Affinity(Arc<AffinityInner>);

struct AffinityInner {
    group: Option<Arc<str>>,
    target: TargetId,
    /// Where the target probably sits in its group's current snapshot (set by the sticky
    /// layer, which knows): checked against the id before use, so a stale hint only costs the
    /// lookup by id it was meant to save.
    hint: Option<u32>,
}

impl PartialEq for Affinity {
    fn eq(&self, other: &Self) -> bool {
        self.0.group == other.0.group && self.0.target == other.0.target
    }
}

impl Eq for Affinity {}

impl std::fmt::Debug for Affinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Affinity")
            .field("group", &self.0.group)
            .field("target", &self.0.target)
            .finish()
    }
}

impl Affinity {
    /// Affinity to `target` in whichever group a balancer serves.
    pub fn new(target: TargetId) -> Self {
        Affinity(Arc::new(AffinityInner {
            group: None,
            target,
            hint: None,
        }))
    }

    /// Affinity to `target` in the group named `group` only.
    pub fn in_group(group: impl Into<Arc<str>>, target: TargetId) -> Self {
        Affinity(Arc::new(AffinityInner {
            group: Some(group.into()),
            target,
            hint: None,
        }))
    }

    /// [`in_group`](Self::in_group), with where the target sits in the group's snapshot now.
    pub(crate) fn in_group_at(group: Arc<str>, target: TargetId, position: usize) -> Self {
        Affinity(Arc::new(AffinityInner {
            group: Some(group),
            target,
            hint: u32::try_from(position).ok(),
        }))
    }

    /// Where the target probably sits in its group's snapshot (unchecked).
    #[inline]
    pub(crate) fn hint(&self) -> Option<usize> {
        self.0.hint.map(|h| h as usize)
    }

    /// The group this affinity is for, if it names one.
    pub fn group(&self) -> Option<&str> {
        self.0.group.as_deref()
    }

    /// The target asked for.
    pub fn target(&self) -> &TargetId {
        &self.0.target
    }

    /// Whether a balancer over the group `name` should honour this affinity.
    #[inline]
    pub(crate) fn applies_to(&self, name: &str) -> bool {
        self.0.group.as_deref().is_none_or(|g| g == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Other(u8);

    #[test]
    fn a_plain_map_is_rebuilt_and_recycled_and_any_other_cloned_and_left_alone() {
        let addr = ClientAddr("192.0.2.1:5000".parse().unwrap());
        let mut ext = http::Extensions::new();
        assert_eq!(plain(&ext), Some((None, false)));
        assert!(copy_plain_or_clone(&ext).is_empty());
        let mut marked = http::Extensions::new();
        marked.insert(WantServedBy);
        assert_eq!(plain(&marked), Some((None, true)));
        marked.insert(Other(1));
        assert_eq!(plain(&marked), None);
        ext.insert(addr);
        assert_eq!(plain(&ext), Some((Some(addr), false)));
        ext.insert(WantServedBy);
        let copy = copy_plain_or_clone(&ext);
        assert_eq!(copy.len(), 2);
        assert_eq!(copy.get::<ClientAddr>(), Some(&addr));
        assert!(copy.get::<WantServedBy>().is_some());

        ext.insert(Other(3));
        assert_eq!(plain(&ext), None);
        let copy = copy_plain_or_clone(&ext);
        assert_eq!(copy.get::<Other>(), Some(&Other(3)));
        assert_eq!(copy.get::<ClientAddr>(), Some(&addr));
        recycle_plain(&mut ext);
        assert_eq!(
            ext.len(),
            3,
            "a map with anything else is left with its request"
        );

        ext.remove::<Other>();
        recycle_plain(&mut ext);
        assert!(ext.is_empty(), "a plain map goes back for the next request");
    }
}
