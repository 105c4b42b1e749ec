//! Placeholder, replaced by the pick benchmarks.
fn main() {}
