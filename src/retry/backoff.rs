//! Backoff between attempts: exponential, capped, with full jitter (after the AWS architecture
//! blog's "full jitter"), as a tower [`Backoff`] session per request.

use std::sync::Arc;
use std::time::Duration;

use tower::retry::backoff::Backoff;

use crate::util::FastRng;

/// How the backoff delay is randomized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Jitter {
    /// Full jitter: a uniform delay in `[0, min(cap, base × 2ⁿ)]`, from a randomly seeded source.
    Full,
    /// Full jitter from a fixed seed (reproducible runs).
    Seeded(u64),
    /// No randomness: always wait `min(cap, base × 2ⁿ)` (tests).
    None,
}

/// The backoff settings a policy was built with.
#[derive(Clone)]
pub(crate) struct BackoffConfig {
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
    pub(crate) rng: Option<Arc<FastRng>>,
}

/// Exponential backoff with full jitter, as a tower [`Backoff`] session.
pub(crate) struct FullJitter {
    pub(crate) config: BackoffConfig,
    pub(crate) iterations: u32,
}

impl FullJitter {
    pub(crate) fn next_delay(&mut self) -> Duration {
        let c = &self.config;
        let exp = c
            .base
            .checked_mul(1u32 << self.iterations.min(31))
            .map_or(c.cap, |d| d.min(c.cap));
        self.iterations = self.iterations.saturating_add(1);
        match &c.rng {
            None => exp,
            Some(rng) => {
                let nanos = exp.as_nanos().min(u64::MAX as u128) as u64;
                Duration::from_nanos(rng.below(nanos.saturating_add(1)))
            }
        }
    }
}

impl Backoff for FullJitter {
    type Future = tokio::time::Sleep;

    fn next_backoff(&mut self) -> Self::Future {
        tokio::time::sleep(self.next_delay())
    }
}
