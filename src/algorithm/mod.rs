//! Selection algorithms, and the [`Algorithm`] trait to write your own.
//!
//! An algorithm has two halves, after pingora's `BackendSelection`:
//!
//! - [`Algorithm::build`] runs off the request path whenever a group's membership changes and
//!   returns a [`Selector`] holding whatever tables the algorithm wants (a weighted sequence, a
//!   hash ring, …), built for exactly that set of targets;
//! - [`Selector::select`] runs once per request through `&self`. It must not lock, allocate or
//!   block; it reads the live state of each target through the [`Context`] (weight, requests in
//!   flight, labels, whether the target may be picked right now) and returns an index.
//!
//! The balancer handles everything around the pick: it asks for a primary target first and for a
//! backup only when no primary is available, it steers around targets a retry wants to avoid
//! whenever something else is available, and it discards any answer that
//! [`Context::is_available`] rejects (so a buggy selector can fail a request but never route to
//! a disabled, draining or full target).
//!
//! Built-ins:
//!
//! | algorithm | weights | state read per pick | cost per pick |
//! |---|---|---|---|
//! | [`RoundRobin`] | ignored | a shared counter | O(1), O(n) when many are unavailable |
//! | [`SmoothWeightedRoundRobin`] (default) | exact per cycle (nginx) | a shared counter | O(1) |
//! | [`WeightedRandom`] | in expectation | a shared random state | O(log n) |
//! | [`LeastConnections`] | in-flight ÷ weight | every target's in-flight count | O(n) |
//! | [`P2cInFlight`] | `weight / (in_flight + 1)^bias` | two targets' in-flight counts | O(1) |
//! | [`P2cPeakEwma`] | cost ÷ weight | two targets' latency and in-flight | O(1), coarse clock |
//! | [`HashRing`] | virtual nodes | the request key | O(log points) |
//! | [`Maglev`] | table share | the request key | O(1) |
//!
//! The hashing algorithms read the request key the balancer computes (see [`crate::key`] and
//! [`Balance::key`](crate::balance::Balance::key)). Guidance on choosing, with simulator
//! figures, is in `docs/algorithms.md`.
//!
//! # Writing an algorithm
//!
//! ```
//! use tower_lb::algorithm::{Algorithm, Context, Selector, Targets};
//!
//! /// Always the available target with the fewest requests in flight among those
//! /// labelled `tier=gold`, else nothing.
//! #[derive(Debug)]
//! struct GoldOnly;
//!
//! #[derive(Debug)]
//! struct GoldSelector { gold: Vec<usize> }
//!
//! impl Algorithm for GoldOnly {
//!     fn build(&self, targets: &Targets<'_>) -> Box<dyn Selector> {
//!         let gold = targets.iter().enumerate()
//!             .filter(|(_, t)| t.label("tier") == Some("gold"))
//!             .map(|(i, _)| i)
//!             .collect();
//!         Box::new(GoldSelector { gold })
//!     }
//! }
//!
//! impl Selector for GoldSelector {
//!     fn select(&self, cx: &Context<'_>) -> Option<usize> {
//!         self.gold.iter().copied().filter(|&i| cx.is_available(i)).min_by_key(|&i| cx.in_flight(i))
//!     }
//! }
//!
//! let group = tower_lb::TargetGroup::builder("g").algorithm(GoldOnly).build()?;
//! # Ok::<(), tower_lb::BoxError>(())
//! ```

pub mod error;
mod least_conn;
mod maglev;
mod p2c;
mod peak_ewma;
mod random;
mod ring;
mod round_robin;
mod smooth;
#[cfg(test)]
mod tests;
mod turns;

pub use self::error::{InvalidBias, InvalidLoadFactor, InvalidTableSize};
pub use self::least_conn::LeastConnections;
pub use self::maglev::{DEFAULT_TABLE_SIZE, MAX_TABLE_SIZE, Maglev};
pub use self::p2c::P2cInFlight;
pub use self::peak_ewma::P2cPeakEwma;
pub use self::random::WeightedRandom;
pub use self::ring::{HashRing, MAX_RING_POINTS};
pub use self::round_robin::RoundRobin;
pub use self::smooth::SmoothWeightedRoundRobin;
pub use crate::target::{Algorithm, Context, LatencyTracker, Selector, Targets};

use crate::util::{FastRng, stable_hash};
