//! Partial payloads: only what changed for some Services, with rule-level edits of the entry chains.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use super::{ENTRY_CHAINS, push_declaration, write_chain_rules};
use crate::core::model::{NamespacedName, ServicePortName};
use crate::core::plan::{
    EntryRule, ProgrammedPort, ProgrammedPorts, RuleSet, ServicePorts, ServiceRules, chain_digest,
};
use crate::core::rules::format::{Form, write_rule_args};
use crate::core::rules::{Chain, Rule, Table};

/// Why a partial payload cannot express a change; the caller must do a full sync instead.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PartialRenderError {
    /// The two rulesets are for different IP families.
    #[error("cannot diff an {old} ruleset against an {new} one")]
    FamilyChanged {
        /// Family of the old ruleset.
        old: crate::core::rules::IpFamily,
        /// Family of the new ruleset.
        new: crate::core::rules::IpFamily,
    },
    /// The fixed chains' own rules differ (settings changed): only a full sync rewrites them.
    #[error("the static rules of the fixed chains changed; a full sync is needed")]
    FixedChainsChanged,
    /// Large-cluster mode switched, which changes the comments of every Service.
    #[error("large-cluster mode changed; a full sync is needed")]
    LargeClusterModeChanged,
}

/// The payload that turns the kernel state `old` into `new`, looking only at `services` (every port of
/// each). Unchanged ports produce nothing; an empty string means there is nothing to apply.
///
/// Per table the payload declares the chains it rewrites or deletes, deletes changed entry rules with
/// `-D`, appends the rewritten chains' rules, inserts the new entry rules with `-I <chain> 1` (in reverse,
/// so each Service's entries keep their order and nat `KUBE-SERVICES` keeps its tail rule last), and
/// finally deletes chains that went away with `-X`.
pub fn render_partial(
    old: &RuleSet,
    new: &RuleSet,
    services: &BTreeSet<NamespacedName>,
) -> Result<String, PartialRenderError> {
    if old.family != new.family {
        return Err(PartialRenderError::FamilyChanged {
            old: old.family,
            new: new.family,
        });
    }
    if old.large_cluster != new.large_cluster {
        return Err(PartialRenderError::LargeClusterModeChanged);
    }
    if old.filter_chains != new.filter_chains
        || old.nat_chains != new.nat_chains
        || old.services_tail != new.services_tail
    {
        return Err(PartialRenderError::FixedChainsChanged);
    }

    let programmed: Vec<ProgrammedPorts> = services
        .iter()
        .map(|service| programmed_ports(old.services.iter(), service))
        .collect();
    let mut edits = Edits::default();
    for (service, before) in services.iter().zip(&programmed) {
        edits.add_service(&by_name(before), &ports_of(new, service));
    }
    Ok(edits.render(new.family))
}

/// One payload for several Services whose ports changed, each given as (what was programmed, the new
/// rules) as [`crate::core::plan::ProgrammedRules::replace_service`] and
/// [`crate::core::plan::plan_service`] return them. An empty string means nothing changed.
pub fn render_service_updates(
    family: crate::core::rules::IpFamily,
    updates: &[(ProgrammedPorts, ServicePorts)],
) -> String {
    let maps: Vec<_> = updates
        .iter()
        .map(|(before, after)| {
            let after: BTreeMap<&ServicePortName, &ServiceRules> =
                after.iter().map(|(n, r)| (n, r)).collect();
            (by_name(before), after)
        })
        .collect();
    let mut edits = Edits::default();
    for (before, after) in &maps {
        edits.add_service(before, after);
    }
    edits.render(family)
}

/// The payload for one Service whose ports changed from `before` to `after` (as returned by
/// [`RuleSet::replace_service`] and [`crate::core::plan::plan_service`]). The caller guarantees the fixed
/// chains and large-cluster mode are unchanged; an empty string means nothing changed.
pub fn render_service_update(
    family: crate::core::rules::IpFamily,
    before: &[(ServicePortName, ServiceRules)],
    after: &[(ServicePortName, ServiceRules)],
) -> String {
    let before: ProgrammedPorts = before
        .iter()
        .map(|(name, rules)| (name.clone(), ProgrammedPort::from(rules)))
        .collect();
    let after: BTreeMap<&ServicePortName, &ServiceRules> =
        after.iter().map(|(n, r)| (n, r)).collect();
    let mut edits = Edits::default();
    edits.add_service(&by_name(&before), &after);
    edits.render(family)
}

fn by_name(ports: &ProgrammedPorts) -> BTreeMap<&ServicePortName, &ProgrammedPort> {
    ports.iter().map(|(n, p)| (n, p)).collect()
}

/// The ports of `service` among `ports`, in their programmed form.
fn programmed_ports<'a>(
    ports: impl Iterator<Item = (&'a ServicePortName, &'a ServiceRules)>,
    service: &NamespacedName,
) -> ProgrammedPorts {
    ports
        .filter(|(name, _)| &name.service == service)
        .map(|(name, rules)| (name.clone(), ProgrammedPort::from(rules)))
        .collect()
}

fn ports_of<'a>(
    rules: &'a RuleSet,
    service: &NamespacedName,
) -> BTreeMap<&'a ServicePortName, &'a ServiceRules> {
    rules
        .services
        .iter()
        .filter(|(name, _)| &name.service == service)
        .collect()
}

/// The collected changes, grouped for rendering.
#[derive(Default)]
struct Edits<'a> {
    /// Entry rules to delete, per (table, chain).
    deletes: BTreeMap<(Table, &'static str), Vec<&'a Rule>>,
    /// Entry rules to insert, per (table, chain), in their final order.
    inserts: BTreeMap<(Table, &'static str), Vec<&'a Rule>>,
    /// Per-service chains to (re)write.
    writes: Vec<&'a Chain>,
    /// Per-service chains to delete.
    removals: Vec<&'a str>,
}

impl<'a> Edits<'a> {
    fn add_service(
        &mut self,
        old_ports: &BTreeMap<&'a ServicePortName, &'a ProgrammedPort>,
        new_ports: &BTreeMap<&'a ServicePortName, &'a ServiceRules>,
    ) {
        let names: BTreeSet<&ServicePortName> =
            old_ports.keys().chain(new_ports.keys()).copied().collect();
        for name in names {
            self.add_port(old_ports.get(name).copied(), new_ports.get(name).copied());
        }
    }

    fn add_port(&mut self, before: Option<&'a ProgrammedPort>, after: Option<&'a ServiceRules>) {
        for (table, chain) in ENTRY_CHAINS {
            let old_rules = entry_rules(before.map(|p| p.entries.as_slice()), table, chain);
            let new_rules = entry_rules(after.map(|s| s.entries.as_slice()), table, chain);
            if old_rules != new_rules {
                self.deletes
                    .entry((table, chain))
                    .or_default()
                    .extend(old_rules);
                self.inserts
                    .entry((table, chain))
                    .or_default()
                    .extend(new_rules);
            }
        }
        let old_chains: BTreeMap<&str, u64> = before
            .into_iter()
            .flat_map(|p| &p.chains)
            .map(|c| (c.name.as_str(), c.digest))
            .collect();
        let new_chains: BTreeMap<&str, &Chain> = after
            .into_iter()
            .flat_map(|s| &s.chains)
            .map(|c| (c.name.as_str(), c))
            .collect();
        for (name, chain) in &new_chains {
            if old_chains.get(name) != Some(&chain_digest(chain)) {
                self.writes.push(chain);
            }
        }
        for name in old_chains.keys() {
            if !new_chains.contains_key(name) {
                self.removals.push(name);
            }
        }
    }

    fn render(&self, family: crate::core::rules::IpFamily) -> String {
        let mut out = String::new();
        for table in [Table::Filter, Table::Nat] {
            let deletes: Vec<_> = self
                .deletes
                .iter()
                .filter(|((t, _), _)| *t == table)
                .collect();
            let inserts: Vec<_> = self
                .inserts
                .iter()
                .filter(|((t, _), _)| *t == table)
                .collect();
            let is_nat = table == Table::Nat;
            let has_chain_work = is_nat && (!self.writes.is_empty() || !self.removals.is_empty());
            let has_rule_work = deletes.iter().any(|(_, r)| !r.is_empty())
                || inserts.iter().any(|(_, r)| !r.is_empty());
            if !has_chain_work && !has_rule_work {
                continue;
            }
            out.push('*');
            out.push_str(table.as_str());
            out.push('\n');
            if is_nat {
                for chain in &self.writes {
                    push_declaration(&mut out, &chain.name);
                }
                for name in &self.removals {
                    push_declaration(&mut out, name);
                }
            }
            for ((_, chain), rules) in &deletes {
                for rule in rules.iter() {
                    out.push_str("-D ");
                    out.push_str(chain);
                    out.push(' ');
                    write_rule_args(&mut out, rule, Form::Restore, family);
                    out.push('\n');
                }
            }
            if is_nat {
                for chain in &self.writes {
                    write_chain_rules(&mut out, &chain.name, chain.rules.iter(), family);
                }
            }
            for ((_, chain), rules) in &inserts {
                for rule in rules.iter().rev() {
                    out.push_str("-I ");
                    out.push_str(chain);
                    out.push_str(" 1 ");
                    write_rule_args(&mut out, rule, Form::Restore, family);
                    out.push('\n');
                }
            }
            if is_nat {
                for name in &self.removals {
                    out.push_str("-X ");
                    out.push_str(name);
                    out.push('\n');
                }
            }
            out.push_str("COMMIT\n");
        }
        out
    }
}

fn entry_rules<'a>(entries: Option<&'a [EntryRule]>, table: Table, chain: &str) -> Vec<&'a Rule> {
    entries
        .into_iter()
        .flatten()
        .filter(|e| e.table == table && e.chain == chain)
        .map(|e| &e.rule)
        .collect()
}
