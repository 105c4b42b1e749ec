use std::sync::Arc;

use crate::target::TargetId;

/// Response extension: the group and target that served the request.
///
/// Set by [`Balance`](super::Balance) on every response; read it for access logs, metrics,
/// sticky sessions or retries.
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

/// Request extension: targets this request should not go to when any other target is available
/// (a retry sets it so the next attempt goes elsewhere).
///
/// Backups stay backups: an avoided primary is still preferred over a backup.
///
/// # Examples
///
/// ```
/// use tower_lb::balance::AvoidTargets;
///
/// let mut req = http::Request::new(());
/// let mut avoid = AvoidTargets::new();
/// avoid.insert("api-1".into());
/// req.extensions_mut().insert(avoid);
/// assert!(req.extensions().get::<AvoidTargets>().unwrap().contains(&"api-1".into()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AvoidTargets {
    ids: Vec<TargetId>,
}

impl AvoidTargets {
    /// An empty set.
    pub fn new() -> Self {
        AvoidTargets { ids: Vec::new() }
    }

    /// Adds a target to avoid.
    pub fn insert(&mut self, id: TargetId) {
        if !self.contains(&id) {
            self.ids.push(id);
        }
    }

    /// Whether `id` is to be avoided.
    #[inline]
    pub fn contains(&self, id: &TargetId) -> bool {
        self.ids.iter().any(|x| x == id)
    }

    /// The number of targets to avoid.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The targets to avoid.
    pub fn iter(&self) -> impl Iterator<Item = &TargetId> {
        self.ids.iter()
    }
}

impl FromIterator<TargetId> for AvoidTargets {
    fn from_iter<I: IntoIterator<Item = TargetId>>(iter: I) -> Self {
        let mut a = AvoidTargets::new();
        for id in iter {
            a.insert(id);
        }
        a
    }
}
