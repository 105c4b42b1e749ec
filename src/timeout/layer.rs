use std::time::Duration;

use tower_layer::Layer;

use super::Timeout;

/// Adds a [`Timeout`] of a fixed duration to a stack.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower::ServiceBuilder;
/// use tower_lb::timeout::TimeoutLayer;
///
/// let layer = TimeoutLayer::new(Duration::from_secs(2));
/// assert_eq!(layer.duration(), Duration::from_secs(2));
/// let _builder = ServiceBuilder::new().layer(layer);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// A layer failing requests that take longer than `timeout` from their first poll.
    pub fn new(timeout: Duration) -> Self {
        let timeout = crate::util::cap(timeout);
        TimeoutLayer { timeout }
    }

    /// The duration.
    pub fn duration(&self) -> Duration {
        self.timeout
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout::new(inner, self.timeout)
    }
}
