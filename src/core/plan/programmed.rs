//! What the kernel holds after a sync, kept small: the proxy remembers it between syncs to write only
//! what changed, and at 5,000 Services the full [`RuleSet`] is about 45 MiB.
//!
//! A partial sync needs, for each service port it had programmed, the entry rules (to delete them by
//! their text), the names of its own chains (to delete those that go away) and whether each chain's rules
//! changed. The last is a digest of the chain's rules, so the rules themselves are not kept.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use super::{EntryRule, RuleSet, ServiceRules};
use crate::core::model::{NamespacedName, ServicePortName};
use crate::core::rules::{Chain, IpFamily, Protocol, Rule, Table};

/// A per-service chain as programmed: its name and a digest of its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDigest {
    /// The chain's name.
    pub name: String,
    /// [`chain_digest`] of its rules.
    pub digest: u64,
}

/// A digest of a chain's rules (its name excluded): equal rules give equal digests, and different
/// rules differ but for a 2^-64 chance.
pub fn chain_digest(chain: &Chain) -> u64 {
    // DefaultHasher::new() is deterministic within a build, which is all a process needs.
    let mut hasher = DefaultHasher::new();
    chain.rules.hash(&mut hasher);
    hasher.finish()
}

/// One service port as programmed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgrammedPort {
    /// Its rules in the shared entry chains, as written.
    pub entries: Vec<EntryRule>,
    /// Its own nat chains, in the order [`ServiceRules::chains`] has them.
    pub chains: Vec<ChainDigest>,
    /// Rules in its own chains.
    pub chain_rules: usize,
    /// Endpoints known for the port, for the large-cluster count.
    pub endpoint_count: usize,
    /// iTP=Local with no local endpoint.
    pub no_local_internal: bool,
    /// eTP=Local with no local endpoint.
    pub no_local_external: bool,
}

impl From<&ServiceRules> for ProgrammedPort {
    fn from(rules: &ServiceRules) -> ProgrammedPort {
        ProgrammedPort {
            entries: rules.entries.clone(),
            chains: rules
                .chains
                .iter()
                .map(|chain| ChainDigest {
                    name: chain.name.clone(),
                    digest: chain_digest(chain),
                })
                .collect(),
            chain_rules: rules.chains.iter().map(|c| c.rules.len()).sum(),
            endpoint_count: rules.endpoint_count,
            no_local_internal: rules.no_local_internal,
            no_local_external: rules.no_local_external,
        }
    }
}

impl From<ServiceRules> for ProgrammedPort {
    fn from(mut rules: ServiceRules) -> ProgrammedPort {
        let entries = std::mem::take(&mut rules.entries);
        ProgrammedPort {
            entries,
            ..ProgrammedPort::from(&rules)
        }
    }
}

/// The ports of one Service as programmed, as [`ProgrammedRules::replace_service`] returns them.
pub type ProgrammedPorts = Vec<(ServicePortName, ProgrammedPort)>;

/// A node's rules for one family as programmed by the last successful sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgrammedRules {
    /// The family.
    pub family: IpFamily,
    /// Large-cluster mode was on.
    pub large_cluster: bool,
    /// The fixed filter chains with their static rules.
    pub filter_chains: Vec<Chain>,
    /// The fixed nat chains with their static rules.
    pub nat_chains: Vec<Chain>,
    /// The rules kept last in nat `KUBE-SERVICES`.
    pub services_tail: Vec<Rule>,
    /// Per service port, in name order.
    pub services: BTreeMap<ServicePortName, ProgrammedPort>,
}

impl From<RuleSet> for ProgrammedRules {
    fn from(rules: RuleSet) -> ProgrammedRules {
        ProgrammedRules {
            family: rules.family,
            large_cluster: rules.large_cluster,
            filter_chains: rules.filter_chains,
            nat_chains: rules.nat_chains,
            services_tail: rules.services_tail,
            services: rules
                .services
                .into_iter()
                .map(|(name, port)| (name, ProgrammedPort::from(port)))
                .collect(),
        }
    }
}

impl ProgrammedRules {
    /// Whether `other` has the same fixed chains (same settings): only then can a partial sync follow.
    pub fn same_fixed_chains(&self, other: &RuleSet) -> bool {
        self.filter_chains == other.filter_chains
            && self.nat_chains == other.nat_chains
            && self.services_tail == other.services_tail
    }

    /// Replaces every port of `service` with `ports` (none removes the Service) and returns what it
    /// had before.
    pub fn replace_service(
        &mut self,
        service: &NamespacedName,
        ports: &[(ServicePortName, ServiceRules)],
    ) -> ProgrammedPorts {
        let first = ServicePortName {
            service: service.clone(),
            port: String::new(),
            protocol: Protocol::Tcp,
        };
        let old_names: Vec<ServicePortName> = self
            .services
            .range(first..)
            .take_while(|(name, _)| &name.service == service)
            .map(|(name, _)| name.clone())
            .collect();
        let old = old_names
            .into_iter()
            .filter_map(|name| self.services.remove_entry(&name))
            .collect();
        self.services.extend(
            ports
                .iter()
                .map(|(name, rules)| (name.clone(), ProgrammedPort::from(rules))),
        );
        old
    }

    /// Names of per-service nat chains in `existing` that were not programmed: the stale chains a
    /// full sync deletes.
    pub fn stale_chains<'a>(&self, existing: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let active = self
            .services
            .values()
            .flat_map(|s| s.chains.iter().map(|c| c.name.as_str()));
        super::stale_chains(active, existing)
    }

    /// Endpoints over every programmed port (for the large-cluster threshold).
    pub fn endpoint_count(&self) -> usize {
        self.services.values().map(|s| s.endpoint_count).sum()
    }

    /// Number of rules programmed, per table (filter, nat), counted as [`RuleSet::rule_counts`] does.
    pub fn rule_counts(&self) -> (usize, usize) {
        let entries = |table: Table| {
            self.services
                .values()
                .flat_map(|s| &s.entries)
                .filter(|e| e.table == table)
                .count()
        };
        let fixed = |chains: &[Chain]| chains.iter().map(|c| c.rules.len()).sum::<usize>();
        let filter = fixed(&self.filter_chains) + entries(Table::Filter);
        let nat = fixed(&self.nat_chains)
            + self.services_tail.len()
            + entries(Table::Nat)
            + self.services.values().map(|s| s.chain_rules).sum::<usize>();
        (filter, nat)
    }

    /// Service ports whose Local traffic policy has no local endpoint: (internal, external).
    pub fn no_local_counts(&self) -> (usize, usize) {
        let internal = self
            .services
            .values()
            .filter(|s| s.no_local_internal)
            .count();
        let external = self
            .services
            .values()
            .filter(|s| s.no_local_external)
            .count();
        (internal, external)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::NodeContext;
    use crate::core::plan::{plan, plan_service};
    use crate::synthetic;

    fn context() -> NodeContext {
        NodeContext::new("node-0", vec!["192.168.0.10".parse().unwrap()])
    }

    #[test]
    fn keeps_counts_and_names_of_the_full_ruleset() {
        let state = synthetic::cluster(20, 3);
        let rules = plan(&state, &context(), IpFamily::V4);
        let counts = rules.rule_counts();
        let names: Vec<String> = rules.service_chain_names().map(str::to_string).collect();
        let programmed = ProgrammedRules::from(rules);
        assert_eq!(programmed.rule_counts(), counts);
        let kept: Vec<String> = programmed
            .services
            .values()
            .flat_map(|s| s.chains.iter().map(|c| c.name.clone()))
            .collect();
        assert_eq!(kept, names);
        assert_eq!(programmed.endpoint_count(), 20 * 3);
    }

    #[test]
    fn digests_tell_changed_chains_from_unchanged_ones() {
        let mut state = synthetic::cluster(3, 3);
        let ctx = context();
        let id = synthetic::service(1).id;
        let before = plan_service(&state, &ctx, IpFamily::V4, false, &id);
        state.insert_slice(synthetic::slice(1, 3, 1));
        let after = plan_service(&state, &ctx, IpFamily::V4, false, &id);
        let again = plan_service(&state, &ctx, IpFamily::V4, false, &id);

        let digests = |ports: &[(ServicePortName, ServiceRules)]| -> Vec<u64> {
            ports
                .iter()
                .flat_map(|(_, r)| r.chains.iter().map(chain_digest))
                .collect()
        };
        assert_eq!(digests(&after), digests(&again), "same rules, same digest");
        let svc_chain =
            |ports: &[(ServicePortName, ServiceRules)]| chain_digest(&ports[0].1.chains[0]);
        assert_ne!(
            svc_chain(&before),
            svc_chain(&after),
            "new endpoints change the KUBE-SVC chain's rules"
        );
    }

    #[test]
    fn replace_service_returns_what_was_programmed() {
        let mut state = synthetic::cluster(3, 2);
        let ctx = context();
        let mut programmed = ProgrammedRules::from(plan(&state, &ctx, IpFamily::V4));
        let id = synthetic::service(2).id;
        let was = programmed
            .services
            .iter()
            .filter(|(name, _)| name.service == id)
            .map(|(name, port)| (name.clone(), port.clone()))
            .collect::<Vec<_>>();

        state.services.remove(&id);
        let gone = plan_service(&state, &ctx, IpFamily::V4, false, &id);
        assert!(gone.is_empty());
        assert_eq!(programmed.replace_service(&id, &gone), was);
        assert!(programmed.services.keys().all(|name| name.service != id));
        assert_eq!(programmed.endpoint_count(), 2 * 2);
    }
}
