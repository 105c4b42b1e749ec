use tower_layer::Layer;

use super::{Retry, RetryPolicy, RetryStats};

/// Adds [`Retry`] with a [`RetryPolicy`] to a stack; clones share the policy's budget.
///
/// # Examples
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_lb::retry::{RetryLayer, RetryPolicy};
///
/// let layer = RetryLayer::new(RetryPolicy::new());
/// let _builder = ServiceBuilder::new().layer(layer);
/// ```
#[derive(Debug, Clone, Default)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

impl RetryLayer {
    /// A layer retrying per `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        RetryLayer { policy }
    }

    /// The policy's counters (shared by every service this layer built).
    pub fn stats(&self) -> RetryStats {
        self.policy.stats()
    }
}

/// The wrapped service must be `Clone`: retries go through clones of it.
impl<S: Clone> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry::new(inner, self.policy.clone())
    }
}
