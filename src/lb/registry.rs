use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, RwLock};

use super::LoadBalancer;
use super::error::{NameTaken, UnknownLoadBalancer};
use super::service::DefaultClient;

/// Named [`LoadBalancer`]s, for an admin endpoint or a config loader: cheap to clone (one
/// `Arc`), every clone sees the same set.
///
/// # Examples
///
/// ```
/// use tower_lb::lb::{LoadBalancer, Registry};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let registry = Registry::new();
/// registry.register(LoadBalancer::builder().with_name("api-lb").build::<String>()?)?;
/// registry.register(LoadBalancer::builder().with_name("web-lb").build::<String>()?)?;
/// assert!(registry.register(LoadBalancer::builder().with_name("api-lb").build::<String>()?).is_err());
/// assert_eq!(registry.list(), ["api-lb", "web-lb"]);
///
/// // Out of the registry at once; resolves when its requests in flight are done.
/// registry.deregister("web-lb")?.await;
/// assert!(registry.get("web-lb").is_none());
/// # Ok(()) }
/// ```
pub struct Registry<B, C = DefaultClient<B>> {
    inner: Arc<RwLock<BTreeMap<String, LoadBalancer<B, C>>>>,
}

impl<B, C> Clone for Registry<B, C> {
    fn clone(&self) -> Self {
        Registry {
            inner: self.inner.clone(),
        }
    }
}

impl<B, C> Default for Registry<B, C> {
    fn default() -> Self {
        Registry {
            inner: Arc::default(),
        }
    }
}

impl<B, C> fmt::Debug for Registry<B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field(
                "names",
                &crate::util::read(&self.inner).keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<B, C: Clone> Registry<B, C> {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds `lb` under its name; fails if the name is taken (the registered one stays).
    pub fn register(&self, lb: LoadBalancer<B, C>) -> Result<(), NameTaken> {
        let mut map = crate::util::write(&self.inner);
        if map.contains_key(lb.name()) {
            return Err(NameTaken::new(lb.name()));
        }
        map.insert(lb.name().to_string(), lb);
        Ok(())
    }

    /// Puts `lb` under its name, in place of the one registered there, and returns that one
    /// untouched: nothing is drained or stopped, so a load balancer rebuilt over the same
    /// groups (a configuration reload) takes over without losing a request.
    ///
    /// ```
    /// use tower_lb::lb::{LoadBalancer, Registry};
    ///
    /// # fn main() -> Result<(), tower_lb::BoxError> {
    /// let registry = Registry::new();
    /// assert!(registry.replace(LoadBalancer::builder().with_name("api-lb").build::<String>()?).is_none());
    /// assert!(registry.replace(LoadBalancer::builder().with_name("api-lb").build::<String>()?).is_some());
    /// assert_eq!(registry.list(), ["api-lb"]);
    /// # Ok(()) }
    /// ```
    pub fn replace(&self, lb: LoadBalancer<B, C>) -> Option<LoadBalancer<B, C>> {
        let mut map = crate::util::write(&self.inner);
        map.insert(lb.name().to_string(), lb)
    }

    /// The load balancer named `name` (a clone sharing everything with the registered one).
    pub fn get(&self, name: &str) -> Option<LoadBalancer<B, C>> {
        let map = crate::util::read(&self.inner);
        map.get(name).cloned()
    }

    /// The registered names, sorted.
    pub fn list(&self) -> Vec<String> {
        let map = crate::util::read(&self.inner);
        map.keys().cloned().collect()
    }

    /// Takes the load balancer named `name` out of the registry, stops its active health
    /// checks and drains every target of every pool (no new request is sent to them, through any clone);
    /// the returned future resolves when the requests in flight are done.
    pub fn deregister(
        &self,
        name: &str,
    ) -> Result<impl Future<Output = ()> + Send + 'static, UnknownLoadBalancer> {
        let lb = {
            let mut map = crate::util::write(&self.inner);
            map.remove(name)
                .ok_or_else(|| UnknownLoadBalancer::new(name))?
        };
        let mut drains = Vec::new();
        for group in lb.pools() {
            group.stop_health_check();
            drains.extend(
                group
                    .targets()
                    .iter()
                    .filter_map(|t| group.drain(t.id()).ok()),
            );
        }
        tracing::debug!(load_balancer = %name, targets = drains.len(), "deregistered, draining");
        Ok(async move {
            for d in drains {
                d.await;
            }
        })
    }
}
