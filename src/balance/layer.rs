use tower_layer::Layer;

use super::Balance;
use crate::http::SetTarget;
use crate::key::Key;
use crate::target::{Target, TargetGroup};

/// Puts a [`Balance`] in front of one shared client service.
///
/// The client (for example a pooled HTTP client) is cloned once per target and wrapped in
/// [`SetTarget`], which points each request's URI at the picked target's address. Use
/// [`Balance::new`] instead when each target needs a service of its own.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_lb::balance::BalanceLayer;
/// use tower_lb::target::{Target, TargetGroup};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let group = TargetGroup::builder("api").target(Target::new("a", "127.0.0.1:8080")?).build()?;
/// // A stand-in for an HTTP client: echoes the URI it was asked to fetch.
/// let client = service_fn(|req: Request<()>| async move {
///     Ok::<_, Infallible>(Response::new(req.uri().to_string()))
/// });
/// let svc = ServiceBuilder::new().layer(BalanceLayer::new(group)).service(client);
/// let rsp = svc.oneshot(Request::get("/users?id=7").body(())?).await?;
/// assert_eq!(rsp.body().get_ref(), "http://127.0.0.1:8080/users?id=7");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BalanceLayer {
    group: TargetGroup,
    key: Option<Key>,
    served_by: Option<bool>,
}

impl BalanceLayer {
    /// A layer balancing over `group`.
    pub fn new(group: TargetGroup) -> Self {
        BalanceLayer {
            group,
            key: None,
            served_by: None,
        }
    }

    /// Hashes each request on `key` for the hashing algorithms; see [`Balance::key`].
    ///
    /// ```
    /// use tower_lb::algorithm::Maglev;
    /// use tower_lb::balance::BalanceLayer;
    /// use tower_lb::key::Key;
    /// use tower_lb::target::TargetGroup;
    ///
    /// let group = TargetGroup::builder("carts").algorithm(Maglev::new()).build()?;
    /// let layer = BalanceLayer::new(group).key(Key::cookie("session"));
    /// # let _ = layer;
    /// # Ok::<(), tower_lb::BoxError>(())
    /// ```
    pub fn key(mut self, key: Key) -> Self {
        self.key = Some(key);
        self
    }
}

impl BalanceLayer {
    /// Tags every response with [`ServedBy`](super::ServedBy) (`true`) or none (`false`); see
    /// [`Balance::served_by`].
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{Request, Response};
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_lb::balance::{BalanceLayer, ServedBy};
    /// use tower_lb::target::{Target, TargetGroup};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
    /// let group = TargetGroup::builder("api").target(Target::new("a", "127.0.0.1:8080")?).build()?;
    /// let client = service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    /// let svc = BalanceLayer::new(group).served_by(true).layer(client);
    /// let rsp = svc.oneshot(Request::new(())).await?;
    /// assert_eq!(rsp.extensions().get::<ServedBy>().unwrap().target().as_str(), "a");
    /// # Ok(()) }
    /// ```
    pub fn served_by(mut self, record: bool) -> Self {
        self.served_by = Some(record);
        self
    }
}

impl<S> Layer<S> for BalanceLayer
where
    S: Clone + Send + Sync + 'static,
{
    type Service = Balance<SetTarget<S>>;

    fn layer(&self, inner: S) -> Self::Service {
        let balance = Balance::new(self.group.clone(), move |t: &Target| {
            SetTarget::new(inner.clone(), t)
        });
        let balance = match &self.key {
            Some(key) => balance.key(key.clone()),
            None => balance,
        };
        match self.served_by {
            Some(record) => balance.served_by(record),
            None => balance,
        }
    }
}
