//! Where the admin endpoint and the exporter read from: registries of load balancers (of any
//! body and client type) and standalone balancers, behind one object-safe trait, so neither
//! the endpoint nor the exporter is generic.

use std::sync::Arc;

use super::error::AdminError;
use crate::balance::{Balance, Reporter};
use crate::breaker::BreakerState;
use crate::group::TargetGroup;
use crate::health::HealthSummary;
use crate::lb::Registry;
use crate::retry::RetryStats;
use crate::stats::GroupReport;

/// What the endpoint shows of one load balancer (or of standalone balancers shown under one
/// name): its groups' reports and, for a `LoadBalancer`, what belongs to the whole stack.
#[derive(Debug)]
pub(crate) struct View {
    pub(crate) name: Arc<str>,
    pub(crate) groups: Vec<GroupReport>,
    pub(crate) stack: Option<Stack>,
}

/// What a `LoadBalancer` adds to its groups.
#[derive(Debug)]
pub(crate) struct Stack {
    pub(crate) breaker: Option<BreakerState>,
    pub(crate) retries: RetryStats,
    pub(crate) rate_limited: u64,
    pub(crate) health: HealthSummary,
}

pub(crate) trait Source: Send + Sync + 'static {
    /// Appends a view per load balancer this source has.
    fn views(&self, out: &mut Vec<View>);
    /// The pool `group` of the load balancer `lb`; `None` if this source has no `lb`.
    fn pool(&self, lb: &str, group: &str) -> Option<Result<TargetGroup, AdminError>>;
}

impl<B, C> Source for Registry<B, C>
where
    B: 'static,
    C: Clone + Send + Sync + 'static,
{
    fn views(&self, out: &mut Vec<View>) {
        for lb in self.list().iter().filter_map(|name| self.get(name)) {
            let s = lb.stats();
            out.push(View {
                name: Arc::from(s.name()),
                groups: s.groups().to_vec(),
                stack: Some(Stack {
                    breaker: s.breaker(),
                    retries: *s.retries(),
                    rate_limited: s.rate_limited(),
                    health: *s.health(),
                }),
            });
        }
    }

    fn pool(&self, lb: &str, group: &str) -> Option<Result<TargetGroup, AdminError>> {
        let lb = self.get(lb)?;
        Some(lb.pool(group).cloned().ok_or(AdminError::UnknownGroup))
    }
}

/// Standalone [`Balance`]s shown under one load balancer name.
pub(crate) struct Balances {
    pub(crate) name: Arc<str>,
    pub(crate) entries: Vec<(TargetGroup, Reporter)>,
}

impl Balances {
    pub(crate) fn new<S: Clone + 'static>(name: &str, balance: &Balance<S>) -> Self {
        Balances {
            name: Arc::from(name),
            entries: vec![(balance.group().clone(), balance.reporter())],
        }
    }
}

impl Source for Balances {
    fn views(&self, out: &mut Vec<View>) {
        out.push(View {
            name: self.name.clone(),
            groups: self.entries.iter().map(|(_, r)| r()).collect(),
            stack: None,
        });
    }

    fn pool(&self, lb: &str, group: &str) -> Option<Result<TargetGroup, AdminError>> {
        if lb != &*self.name {
            return None;
        }
        let found = self.entries.iter().find(|(g, _)| g.name() == group);
        Some(
            found
                .map(|(g, _)| g.clone())
                .ok_or(AdminError::UnknownGroup),
        )
    }
}

/// Every source of an endpoint or an exporter.
#[derive(Default)]
pub(crate) struct Sources {
    registries: Vec<Box<dyn Source>>,
    balances: Vec<Balances>,
}

impl Sources {
    pub(crate) fn registry<B, C>(&mut self, registry: &Registry<B, C>)
    where
        B: 'static,
        C: Clone + Send + Sync + 'static,
    {
        self.registries.push(Box::new(registry.clone()));
    }

    /// Adds `balance` under the load balancer name `name` (joining earlier balancers of that
    /// name as one more group).
    pub(crate) fn balance<S: Clone + 'static>(&mut self, name: &str, balance: &Balance<S>) {
        match self.balances.iter_mut().find(|b| &*b.name == name) {
            Some(b) => b
                .entries
                .push((balance.group().clone(), balance.reporter())),
            None => self.balances.push(Balances::new(name, balance)),
        }
    }

    fn all(&self) -> impl Iterator<Item = &dyn Source> {
        let r = self.registries.iter().map(|s| &**s);
        r.chain(self.balances.iter().map(|b| b as &dyn Source))
    }

    pub(crate) fn views(&self) -> Vec<View> {
        let mut out = Vec::new();
        for s in self.all() {
            s.views(&mut out);
        }
        out
    }

    pub(crate) fn pool(&self, lb: &str, group: &str) -> Result<TargetGroup, AdminError> {
        self.all()
            .find_map(|s| s.pool(lb, group))
            .unwrap_or(Err(AdminError::UnknownLoadBalancer))
    }
}
