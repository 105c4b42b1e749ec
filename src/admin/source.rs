//! Where the admin endpoint and the exporter read from: a [`Registry`] of any body and
//! client type, behind one object-safe trait so neither is generic.

use crate::group::TargetGroup;
use crate::lb::{LoadBalancerStats, Registry};

use super::error::AdminError;

pub(crate) trait Source: Send + Sync + 'static {
    /// Every registered load balancer's statistics, by name.
    fn stats(&self) -> Vec<LoadBalancerStats>;
    /// The pool `group` of the load balancer `lb`.
    fn pool(&self, lb: &str, group: &str) -> Result<TargetGroup, AdminError>;
}

impl<B, C> Source for Registry<B, C>
where
    B: 'static,
    C: Clone + Send + Sync + 'static,
{
    fn stats(&self) -> Vec<LoadBalancerStats> {
        self.list()
            .iter()
            .filter_map(|name| self.get(name))
            .map(|lb| lb.stats())
            .collect()
    }

    fn pool(&self, lb: &str, group: &str) -> Result<TargetGroup, AdminError> {
        let lb = self.get(lb).ok_or(AdminError::UnknownLoadBalancer)?;
        lb.pool(group).cloned().ok_or(AdminError::UnknownGroup)
    }
}
