//! ClusterState + NodeContext → RuleSet: the rules kube-proxy's iptables mode would program on a node
//! (spec §1–§3), one [`RuleSet`] per IP family.
//!
//! Rules are grouped the way a sync needs them: the fixed chains' own rules, and per service port the rules
//! it adds to the entry chains plus its own chains. Full and partial rendering, the proxy's change tracking
//! and the diagnostics' expected view all work from this grouping.

mod build;
pub mod endpoints;
mod fixed;
mod programmed;
mod service;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::model::{ClusterState, NamespacedName, NodeContext, ServicePortName};
use crate::core::rules::names::{KUBE_SERVICES, SERVICE_CHAIN_PREFIXES};
use crate::core::rules::{Chain, IpFamily, Rule, Table};

pub use endpoints::{Categorized, EndpointInfo};
pub use fixed::{JumpRule, jump_rules};
pub use programmed::{ChainDigest, ProgrammedPort, ProgrammedPorts, ProgrammedRules, chain_digest};

/// A rule a service port adds to one of the shared entry chains (`KUBE-SERVICES`, `KUBE-NODEPORTS`,
/// `KUBE-EXTERNAL-SERVICES`, `KUBE-PROXY-FIREWALL`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct EntryRule {
    /// `filter` or `nat`.
    pub table: Table,
    /// The entry chain.
    pub chain: &'static str,
    /// The rule.
    pub rule: Rule,
}

/// Everything one service port contributes to a node's rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServiceRules {
    /// Rules in the shared entry chains, in kube-proxy's order.
    pub entries: Vec<EntryRule>,
    /// The port's own nat chains: `KUBE-SVC-`, `KUBE-SVL-`, `KUBE-EXT-`, `KUBE-FW-` and its `KUBE-SEP-`
    /// chains, in that order.
    pub chains: Vec<Chain>,
    /// Endpoints known for the port (any condition), for the large-cluster count.
    pub endpoint_count: usize,
    /// iTP=Local and no local endpoint while others exist: cluster-IP traffic is dropped here.
    pub no_local_internal: bool,
    /// eTP=Local and no local endpoint while others exist: external traffic is dropped here.
    pub no_local_external: bool,
}

/// The rules of every port of one Service, as [`plan_service`] returns them.
pub type ServicePorts = Vec<(ServicePortName, ServiceRules)>;

/// The complete set of rules for one node and one IP family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleSet {
    /// The family (`iptables` or `ip6tables`).
    pub family: IpFamily,
    /// More than the large-cluster threshold of endpoints: per-endpoint comments are left out.
    pub large_cluster: bool,
    /// The fixed filter chains with their static rules, in declaration order. Service entry rules are
    /// appended to them when rendering.
    pub filter_chains: Vec<Chain>,
    /// The fixed nat chains with their static rules, in declaration order.
    pub nat_chains: Vec<Chain>,
    /// The rule(s) that must stay last in nat `KUBE-SERVICES` (the jump to `KUBE-NODEPORTS`).
    pub services_tail: Vec<Rule>,
    /// Per service port, in name order.
    pub services: BTreeMap<ServicePortName, ServiceRules>,
}

impl RuleSet {
    /// The rules of entry chain `chain` in `table`: its static rules, then every service's entries in
    /// service order, then (nat `KUBE-SERVICES` only) the tail rule.
    pub fn entry_chain_rules(&self, table: Table, chain: &str) -> Vec<&Rule> {
        let fixed = match table {
            Table::Filter => &self.filter_chains,
            Table::Nat => &self.nat_chains,
            _ => return Vec::new(),
        };
        let mut rules: Vec<&Rule> = fixed
            .iter()
            .filter(|c| c.name == chain)
            .flat_map(|c| c.rules.iter())
            .collect();
        for service in self.services.values() {
            rules.extend(
                service
                    .entries
                    .iter()
                    .filter(|e| e.table == table && e.chain == chain)
                    .map(|e| &e.rule),
            );
        }
        if table == Table::Nat && chain == KUBE_SERVICES {
            rules.extend(self.services_tail.iter());
        }
        rules
    }

    /// Every per-service nat chain name in this ruleset.
    pub fn service_chain_names(&self) -> impl Iterator<Item = &str> {
        self.services
            .values()
            .flat_map(|s| s.chains.iter().map(|c| c.name.as_str()))
    }

    /// Number of rules in the rendered ruleset, per table (filter, nat).
    pub fn rule_counts(&self) -> (usize, usize) {
        let filter = self
            .filter_chains
            .iter()
            .map(|c| c.rules.len())
            .sum::<usize>()
            + self
                .services
                .values()
                .flat_map(|s| &s.entries)
                .filter(|e| e.table == Table::Filter)
                .count();
        let nat = self.nat_chains.iter().map(|c| c.rules.len()).sum::<usize>()
            + self.services_tail.len()
            + self
                .services
                .values()
                .map(|s| {
                    s.entries.iter().filter(|e| e.table == Table::Nat).count()
                        + s.chains.iter().map(|c| c.rules.len()).sum::<usize>()
                })
                .sum::<usize>();
        (filter, nat)
    }
}

/// The per-service chains among `existing` that are not `active`, sorted and without duplicates.
pub(crate) fn stale_chains<'a, 'b>(
    active: impl IntoIterator<Item = &'a str>,
    existing: impl IntoIterator<Item = &'b str>,
) -> Vec<String> {
    let active: std::collections::HashSet<&str> = active.into_iter().collect();
    let mut stale: Vec<String> = existing
        .into_iter()
        .filter(|name| SERVICE_CHAIN_PREFIXES.iter().any(|p| name.starts_with(p)))
        .filter(|name| !active.contains(name))
        .map(str::to_string)
        .collect();
    stale.sort();
    stale.dedup();
    stale
}

/// Total endpoints over all proxied service ports of `family`: above the threshold kube-proxy switches to
/// large-cluster mode.
pub fn count_endpoints(state: &ClusterState, ctx: &NodeContext, family: IpFamily) -> usize {
    let index = endpoints::SliceIndex::new(state);
    state
        .services
        .values()
        .flat_map(|svc| service::service_endpoints(index.of(&svc.id), ctx, family, svc))
        .map(|(_, endpoints)| endpoints.len())
        .sum()
}

/// Plans the whole ruleset of one node for one family.
pub fn plan(state: &ClusterState, ctx: &NodeContext, family: IpFamily) -> RuleSet {
    let mut ports = Vec::new();
    let mut rules = plan_by_service(state, ctx, family, |service| ports.extend(service));
    // Already in order: collecting builds the map in bulk instead of inserting one by one.
    rules.services = ports.into_iter().collect();
    rules
}

/// Plans like [`plan`], but hands each Service's ports (in name order, Services in name order) to
/// `sink` as soon as they are planned, and returns the ruleset without them: the mode and the fixed
/// chains. A full sync renders and forgets each Service as it comes, so the whole ruleset never has
/// to be held at once.
pub fn plan_by_service(
    state: &ClusterState,
    ctx: &NodeContext,
    family: IpFamily,
    mut sink: impl FnMut(ServicePorts),
) -> RuleSet {
    let index = endpoints::SliceIndex::new(state);
    // Endpoints first: their total decides large-cluster mode, which shapes every Service's rules.
    let per_port: Vec<_> = state
        .services
        .values()
        .flat_map(|svc| {
            service::service_endpoints(index.of(&svc.id), ctx, family, svc)
                .into_iter()
                .map(move |(port, eps)| (svc, port, eps))
        })
        .collect();
    let total_endpoints: usize = per_port.iter().map(|(_, _, eps)| eps.len()).sum();
    let large_cluster = total_endpoints > ctx.large_cluster_threshold;
    // Consumed port by port, so each port's endpoint list is freed as soon as its rules exist.
    let mut current: ServicePorts = Vec::new();
    for (svc, port, eps) in per_port {
        if current
            .first()
            .is_some_and(|(name, _)| name.service != svc.id)
        {
            current.sort_by(|a, b| a.0.cmp(&b.0));
            sink(std::mem::take(&mut current));
        }
        current.push(service::plan_port(
            ctx,
            family,
            large_cluster,
            svc,
            port,
            eps,
        ));
    }
    if !current.is_empty() {
        current.sort_by(|a, b| a.0.cmp(&b.0));
        sink(current);
    }
    RuleSet {
        family,
        large_cluster,
        filter_chains: fixed::filter_chains(ctx, family),
        nat_chains: fixed::nat_chains(ctx),
        services_tail: fixed::services_tail(ctx, family),
        services: BTreeMap::new(),
    }
}

/// Plans the ports of one Service (for partial syncs). `large_cluster` must be the mode of the whole
/// ruleset; a Service that is gone or not proxied yields no ports.
pub fn plan_service(
    state: &ClusterState,
    ctx: &NodeContext,
    family: IpFamily,
    large_cluster: bool,
    service: &NamespacedName,
) -> Vec<(ServicePortName, ServiceRules)> {
    match state.services.get(service) {
        Some(svc) => {
            let slices: Vec<_> = state.slices_for(service).collect();
            service::plan_service(&slices, ctx, family, large_cluster, svc)
        }
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic;

    /// One Service whose three endpoints are listed twice, in two slices: six raw endpoints, three
    /// exact ones.
    fn duplicated_endpoints() -> ClusterState {
        let mut state = ClusterState::default();
        state.insert_service(synthetic::service(1));
        let slice = synthetic::slice(1, 3, 0);
        let mut copy = slice.clone();
        copy.id.name.push_str("-copy");
        state.insert_slice(slice);
        state.insert_slice(copy);
        state
    }

    fn context(threshold: usize) -> NodeContext {
        let mut ctx = NodeContext::new("node-0", vec!["192.168.0.10".parse().expect("IP")]);
        ctx.large_cluster_threshold = threshold;
        ctx
    }

    #[test]
    fn large_cluster_mode_follows_the_exact_endpoint_count() {
        let state = duplicated_endpoints();
        assert_eq!(count_endpoints(&state, &context(0), IpFamily::V4), 3);
        // The raw count (6) is above 4 but the exact, de-duplicated one (3) is not: normal mode.
        let rules = plan(&state, &context(4), IpFamily::V4);
        assert!(!rules.large_cluster);
        assert_eq!(rules, plan(&state, &context(100), IpFamily::V4));
        // Above the threshold either way.
        let rules = plan(&state, &context(2), IpFamily::V4);
        assert!(rules.large_cluster);
        assert_ne!(
            rules.services,
            plan(&state, &context(100), IpFamily::V4).services
        );
    }
}
