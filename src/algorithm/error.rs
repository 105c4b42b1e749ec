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

/// The P2C in-flight bias was not a finite number of at least 0.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid p2c bias {bias}: must be finite and at least 0")]
pub struct InvalidBias {
    pub(super) bias: f64,
}
