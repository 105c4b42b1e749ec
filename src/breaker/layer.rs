use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::error::InvalidBreakerConfig;
use super::state::{Callback, Settings, Shared};
use super::{BreakerEvents, BreakerState, CircuitBreaker, StateChange};
use crate::classify::{Classify, DefaultClassifier};

/// Adds a [`CircuitBreaker`] to a stack. Every service it builds shares one breaker state, so
/// put one layer per group (or per route) and clone it freely.
///
/// Defaults (after Hystrix and resilience4j): open when at least 50% of at least 100 requests
/// in a sliding 60 s window failed; stay open 30 s; then let 3 probes through, close after 3
/// successes, reopen on the first failure.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::breaker::{BreakerState, CircuitBreakerLayer};
///
/// let layer = CircuitBreakerLayer::builder("payments")
///     .failure_rate(0.25)
///     .min_requests(20)
///     .window(Duration::from_secs(30))
///     .open_for(Duration::from_secs(10))
///     .half_open_probes(1)
///     .on_state_change(|c| println!("{} is now {}", c.name, c.to))
///     .build()
///     .unwrap();
/// assert_eq!(layer.state(), BreakerState::Closed);
/// ```
#[derive(Clone)]
pub struct CircuitBreakerLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for CircuitBreakerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("name", &self.shared.settings.name)
            .field("state", &self.shared.state())
            .finish()
    }
}

impl CircuitBreakerLayer {
    /// A breaker named `name` with the defaults.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        match Self::builder(name).build() {
            Ok(l) => l,
            Err(_) => unreachable!("the defaults are valid"),
        }
    }

    /// Starts configuring a breaker named `name` (the name appears in errors, events and logs).
    pub fn builder(name: impl Into<Arc<str>>) -> CircuitBreakerLayerBuilder {
        CircuitBreakerLayerBuilder {
            name: name.into(),
            failure_rate: 0.5,
            min_requests: 100,
            window: Duration::from_secs(60),
            open_for: Duration::from_secs(30),
            probes: 3,
            classifier: None,
            callbacks: Vec::new(),
        }
    }

    /// The breaker's current state.
    pub fn state(&self) -> BreakerState {
        self.shared.state()
    }

    /// Subscribes to the breaker's state changes, from now on.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use http::{Request, Response, StatusCode};
    /// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
    /// use tower_lb::breaker::{BreakerEvent, BreakerState, CircuitBreakerLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
    /// let breaker = CircuitBreakerLayer::builder("api").min_requests(1).build()?;
    /// let mut events = breaker.events();
    /// let mut svc = ServiceBuilder::new().layer(breaker.clone()).service(service_fn(
    ///     |_r: Request<()>| async {
    ///         let mut rsp = Response::new(());
    ///         *rsp.status_mut() = StatusCode::BAD_GATEWAY;
    ///         Ok::<_, tower_lb::BoxError>(rsp)
    ///     },
    /// ));
    /// svc.ready().await?.call(Request::new(())).await?;
    /// match events.next().await {
    ///     Some(BreakerEvent::StateChanged(change)) => assert_eq!(change.to, BreakerState::Open),
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn events(&self) -> BreakerEvents {
        self.shared.subscribe()
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> CircuitBreaker<S> {
        CircuitBreaker::new(inner, self.shared.clone())
    }
}

/// Configures a [`CircuitBreakerLayer`].
#[must_use]
pub struct CircuitBreakerLayerBuilder {
    name: Arc<str>,
    failure_rate: f64,
    min_requests: u32,
    window: Duration,
    open_for: Duration,
    probes: u32,
    classifier: Option<Arc<dyn Classify>>,
    callbacks: Vec<Callback>,
}

impl fmt::Debug for CircuitBreakerLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayerBuilder")
            .field("name", &self.name)
            .field("failure_rate", &self.failure_rate)
            .field("min_requests", &self.min_requests)
            .field("window", &self.window)
            .field("open_for", &self.open_for)
            .field("probes", &self.probes)
            .finish_non_exhaustive()
    }
}

impl CircuitBreakerLayerBuilder {
    /// The failure share (in `(0, 1]`) over the window that opens the circuit (default 0.5).
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = rate;
        self
    }

    /// The fewest requests in the window before the rate is judged (default 100).
    pub fn min_requests(mut self, n: u32) -> Self {
        self.min_requests = n;
        self
    }

    /// The sliding window the rate is measured over, in 10 buckets (default 60 s).
    pub fn window(mut self, window: Duration) -> Self {
        let window = crate::util::cap(window);
        self.window = window;
        self
    }

    /// How long the circuit stays open before probing (default 30 s).
    pub fn open_for(mut self, d: Duration) -> Self {
        let d = crate::util::cap(d);
        self.open_for = d;
        self
    }

    /// How many probes may be in flight when half-open, and how many successes close the
    /// circuit (default 3).
    pub fn half_open_probes(mut self, n: u32) -> Self {
        self.probes = n;
        self
    }

    /// What counts as a failure (default [`DefaultClassifier`]; local rejections never count).
    pub fn classifier(mut self, classifier: impl Classify) -> Self {
        self.classifier = Some(Arc::new(classifier));
        self
    }

    /// Calls `f` on every state change, after the change, outside any lock. Every change is
    /// also a `tracing` line (`warn` when opening, `info` otherwise) and an event on
    /// [`CircuitBreakerLayer::events`].
    pub fn on_state_change(mut self, f: impl Fn(&StateChange) + Send + Sync + 'static) -> Self {
        self.callbacks.push(Arc::new(f));
        self
    }

    /// Validates and builds the layer.
    pub fn build(self) -> Result<CircuitBreakerLayer, InvalidBreakerConfig> {
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            return Err(InvalidBreakerConfig::new("failure rate must be in (0, 1]"));
        }
        if self.min_requests == 0 {
            return Err(InvalidBreakerConfig::new(
                "minimum requests must be at least 1",
            ));
        }
        if self.window.is_zero() {
            return Err(InvalidBreakerConfig::new("window must be non-zero"));
        }
        if self.probes == 0 {
            return Err(InvalidBreakerConfig::new(
                "half-open probes must be at least 1",
            ));
        }
        Ok(CircuitBreakerLayer {
            shared: Arc::new(Shared::new(Settings {
                name: self.name,
                failure_rate: self.failure_rate,
                min_requests: self.min_requests,
                window: self.window,
                open_for: self.open_for,
                probes: self.probes,
                classifier: self
                    .classifier
                    .unwrap_or_else(|| Arc::new(DefaultClassifier::new())),
                callbacks: self.callbacks,
            })),
        })
    }
}
