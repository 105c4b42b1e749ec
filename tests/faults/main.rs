//! Fault attribution and retries on real loopback sockets (issue 10): a client's fault never
//! counts against a target, a timeout counts against the target it hit, a retry sends the same
//! bytes with the same framing, and no configuration value panics.
//!
//! Every scenario states its bound and counts at the backends what they received.

mod config;
