//! Errors of the algorithms' builders.

use super::MAX_TABLE_SIZE;

/// The Maglev table size was not a prime in `2..=MAX_TABLE_SIZE`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid maglev table size {size}: must be a prime no larger than {MAX_TABLE_SIZE}")]
pub struct InvalidTableSize {
    pub(super) size: u64,
}

/// The bounded-load factor was not a finite number of at least 1.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid bounded-load factor {factor}: must be finite and at least 1")]
pub struct InvalidLoadFactor {
    pub(super) factor: f64,
}
