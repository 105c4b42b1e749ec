use std::sync::Arc;

use crate::target::{Snapshot, Target};

/// A frozen view of a group's current membership that asks the group's algorithm for targets
/// without sending anything: for simulators, tests, benchmarks and custom dispatch.
///
/// Picks see the live state of each target (admin state, requests in flight, latency) but
/// count nothing in flight themselves. A picker keeps the membership it was taken with; take
/// a new one to see later updates.
///
/// # Examples
///
/// ```
/// use tower_lb::algorithm::Maglev;
/// use tower_lb::{Target, TargetGroup};
///
/// let group = TargetGroup::builder("g")
///     .algorithm(Maglev::new())
///     .target(Target::new("a", "127.0.0.1:1")?)
///     .target(Target::new("b", "127.0.0.1:2")?)
///     .build()?;
/// let picker = group.picker();
/// let i = picker.pick(Some(42)).unwrap();
/// assert_eq!(picker.pick(Some(42)), Some(i));
/// println!("key 42 goes to {}", picker.target(i).id());
/// # Ok::<(), tower_lb::BoxError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Picker {
    snapshot: Arc<Snapshot>,
}

impl Picker {
    pub(crate) fn new(snapshot: Arc<Snapshot>) -> Self {
        Picker { snapshot }
    }

    /// Picks a target for a request whose key hashes to `key` (`None`: no key), exactly as the
    /// balancer would: primaries first, backups only when no primary is available. Returns
    /// an index into [`targets`](Self::targets).
    #[inline]
    pub fn pick(&self, key: Option<u64>) -> Option<usize> {
        self.snapshot.pick(key, None)
    }

    /// The target at `index`.
    ///
    /// # Panics
    ///
    /// If `index >= self.len()`.
    pub fn target(&self, index: usize) -> &Target {
        &self.snapshot.entries[index].target
    }

    /// The targets, ordered by id (the indices [`pick`](Self::pick) returns).
    pub fn targets(&self) -> impl ExactSizeIterator<Item = &Target> + '_ {
        self.snapshot.entries.iter().map(|e| &*e.target)
    }

    /// The number of targets.
    pub fn len(&self) -> usize {
        self.snapshot.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.snapshot.entries.is_empty()
    }
}
