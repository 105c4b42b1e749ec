//! Side-by-side benchmarks against heavy peers (pingora); not a default member.
fn main() {}
