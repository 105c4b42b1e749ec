//! Small helpers shared by the core and the layers: a fast seedable random source, stable
//! hashing, a poison-tolerant lock, `Retry-After` parsing, the cap on durations, spare
//! request-extension maps, a clock reading shared within a poll, and the bits of HTTP/1.1 the
//! server and the target client both write and read.
//!
//! Private to the crate (only `retry_after` is re-exported, from `crate::upstream`), and a leaf:
//! it imports no other module of the crate, so every layer may use it.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

pub(crate) mod clock;
#[cfg(feature = "hyper")]
pub(crate) mod h1;
mod hash;
mod retry_after;
mod rng;
pub(crate) mod spare;

pub(crate) use self::hash::{id_number, stable_hash};
pub use self::retry_after::retry_after;
pub(crate) use self::rng::FastRng;

/// Locks `m`, taking the data even if a thread panicked while holding it: every lock in this
/// crate guards state that stays consistent at each step, and a pick or a response must never
/// panic because some other request did.
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// [`lock`] for reading an `RwLock`.
#[inline]
#[cfg_attr(not(feature = "hyper"), allow(dead_code))]
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// [`lock`] for writing an `RwLock`.
#[inline]
#[cfg_attr(not(feature = "hyper"), allow(dead_code))]
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// The longest duration any setting is taken to mean: about 100 years. Longer values (up to
/// `Duration::MAX`) mean "practically forever" and are capped to this, so adding one to an
/// instant can never overflow, and nothing a builder accepts can panic later.
pub(crate) const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `d`, capped at [`FOREVER`].
#[inline]
pub(crate) fn cap(d: Duration) -> Duration {
    d.min(FOREVER)
}

/// A share (a fraction in `0.0..=1.0`, the crate's one unit for shares) in basis points
/// (1/10 000, rounded), so the checks that use it stay in exact integer arithmetic; `None` when
/// the value is NaN or out of range.
pub(crate) fn share_bp(share: f64) -> Option<u32> {
    if (0.0..=1.0).contains(&share) {
        Some((share * 10_000.0).round() as u32)
    } else {
        None
    }
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
