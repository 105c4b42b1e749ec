//! Small helpers shared by the core and the layers.

use std::time::Duration;

/// The longest duration any setting is taken to mean: about 100 years. Longer values (up to
/// `Duration::MAX`) mean "practically forever" and are capped to this, so adding one to an
/// instant can never overflow, and nothing a builder accepts can panic later.
pub(crate) const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `d`, capped at [`FOREVER`].
#[inline]
pub(crate) fn cap(d: Duration) -> Duration {
    d.min(FOREVER)
}

#[cfg(test)]
mod tests {
    #[test]
    fn capped_durations_add_to_now() {
        let d = super::cap(std::time::Duration::MAX);
        assert_eq!(d, super::FOREVER);
        assert!(tokio::time::Instant::now().checked_add(d).is_some());
    }
}
