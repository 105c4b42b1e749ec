use super::TargetId;

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
