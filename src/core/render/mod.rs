//! RuleSet → `iptables-restore` text, as kube-proxy writes it (restore form, see
//! [`crate::core::rules::format`]).
//!
//! Three shapes, all for `iptables-restore --noflush`:
//! * [`render_full`]: one payload with both tables, every owned chain declared and rewritten.
//! * [`render_transactions`]: the same rules cut into bounded transactions that each hold whole
//!   Services' own chains, followed by one final transaction that switches the entry chains and deletes
//!   stale chains. `iptables-restore`'s cost grows much faster than linearly with a transaction's size,
//!   so this keeps first syncs of large clusters fast while every Service stays consistent.
//! * [`render_partial`]: only what changed between two rulesets for some Services: their own chains,
//!   rule-level `-D`/`-I` edits of the entry chains, and `-X` for chains that went away.

mod node_dump;
mod partial;
mod transactions;

use std::collections::BTreeMap;

use crate::core::plan::{EntryRule, ProgrammedRules, RuleSet};
use crate::core::rules::format::{Form, write_append, write_chain_declaration};
use crate::core::rules::names::{
    KUBE_EXTERNAL_SERVICES, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL, KUBE_SERVICES,
};
use crate::core::rules::{Chain, IpFamily, Rule, Table};

pub use node_dump::render_node_dump;
pub use partial::{
    PartialRenderError, render_partial, render_service_update, render_service_updates,
};
pub use transactions::{TransactionWriter, plan_full_sync, render_transactions};

/// One whole `iptables-restore --noflush` payload: `*filter` then `*nat`.
pub fn render_full(rules: &RuleSet) -> String {
    render_full_with_stale(rules, &[])
}

/// [`render_full`], also deleting the `stale` per-service chains (see [`ProgrammedRules::stale_chains`]).
pub fn render_full_with_stale(rules: &RuleSet, stale: &[String]) -> String {
    let mut out = String::with_capacity(estimate_size(rules));
    let service_chains = rules.services.values().flat_map(|s| s.chains.iter());
    write_entry_tables(
        &mut out,
        &FixedChains::of_rules(rules),
        rules.family,
        service_chains,
        stale,
    );
    out
}

/// Writes `*filter` and `*nat`: the fixed chains (assembled with every service's entry rules), then
/// `service_chains` (declared and written; none for the final transaction of a full sync), and the
/// deletion of `stale` chains.
fn write_entry_tables<'a, I>(
    out: &mut String,
    fixed: &FixedChains<'a>,
    family: IpFamily,
    service_chains: I,
    stale: &[String],
) where
    I: Iterator<Item = &'a Chain> + Clone,
{
    out.push_str("*filter\n");
    for (name, _) in &fixed.filter {
        push_declaration(out, name);
    }
    for (name, chain_rules) in &fixed.filter {
        write_chain_rules(out, name, chain_rules.iter().copied(), family);
    }
    out.push_str("COMMIT\n");

    out.push_str("*nat\n");
    for (name, _) in &fixed.nat {
        push_declaration(out, name);
    }
    for chain in service_chains.clone() {
        push_declaration(out, &chain.name);
    }
    for name in stale {
        push_declaration(out, name);
    }
    for (name, chain_rules) in &fixed.nat {
        write_chain_rules(out, name, chain_rules.iter().copied(), family);
    }
    for chain in service_chains {
        write_chain_rules(out, &chain.name, chain.rules.iter(), family);
    }
    for name in stale {
        out.push_str("-X ");
        out.push_str(name);
        out.push('\n');
    }
    out.push_str("COMMIT\n");
}

fn write_chain_rules<'a>(
    out: &mut String,
    chain: &str,
    rules: impl IntoIterator<Item = &'a Rule>,
    family: IpFamily,
) {
    for rule in rules {
        write_append(out, chain, rule, Form::Restore, family);
        out.push('\n');
    }
}

/// Appends the declaration line of user chain `name`.
fn push_declaration(out: &mut String, name: &str) {
    write_chain_declaration(out, name, None);
    out.push('\n');
}

/// The fixed chains of both tables in declaration order, each with its rules as
/// [`RuleSet::entry_chain_rules`] assembles them (static rules, every service's entries, the tail),
/// gathered in one pass over the services instead of one pass per chain.
struct FixedChains<'a> {
    filter: Vec<(&'a str, Vec<&'a Rule>)>,
    nat: Vec<(&'a str, Vec<&'a Rule>)>,
}

impl<'a> FixedChains<'a> {
    /// The fixed chains of `rules`, with its services' entry rules.
    fn of_rules(rules: &'a RuleSet) -> Self {
        Self::assemble(
            &rules.filter_chains,
            &rules.nat_chains,
            rules.services.values().flat_map(|s| &s.entries),
            &rules.services_tail,
        )
    }

    /// The fixed chains of what was programmed, with every port's entry rules.
    fn of_programmed(rules: &'a ProgrammedRules) -> Self {
        Self::assemble(
            &rules.filter_chains,
            &rules.nat_chains,
            rules.services.values().flat_map(|s| &s.entries),
            &rules.services_tail,
        )
    }

    fn assemble(
        filter_chains: &'a [Chain],
        nat_chains: &'a [Chain],
        entries: impl Iterator<Item = &'a EntryRule>,
        services_tail: &'a [Rule],
    ) -> Self {
        let with_static_rules = |fixed: &'a [Chain]| -> Vec<(&'a str, Vec<&'a Rule>)> {
            fixed
                .iter()
                .map(|chain| {
                    let static_rules = fixed
                        .iter()
                        .filter(|c| c.name == chain.name)
                        .flat_map(|c| c.rules.iter())
                        .collect();
                    (chain.name.as_str(), static_rules)
                })
                .collect()
        };
        let mut filter = with_static_rules(filter_chains);
        let mut nat = with_static_rules(nat_chains);
        for entry in entries {
            let chains = match entry.table {
                Table::Filter => &mut filter,
                Table::Nat => &mut nat,
                _ => continue,
            };
            for (_, chain_rules) in chains.iter_mut().filter(|(name, _)| *name == entry.chain) {
                chain_rules.push(&entry.rule);
            }
        }
        for (_, chain_rules) in nat.iter_mut().filter(|(name, _)| *name == KUBE_SERVICES) {
            chain_rules.extend(services_tail.iter());
        }
        FixedChains { filter, nat }
    }
}

/// A rough payload size, to allocate once. Measured on synthetic clusters: about 100 bytes per rule
/// in large-cluster mode and 145 with per-endpoint comments; the margin covers longer names (a
/// payload that outgrows the estimate is copied once into a doubled buffer).
fn estimate_size(rules: &RuleSet) -> usize {
    let (filter, nat) = rules.rule_counts();
    let per_rule = if rules.large_cluster { 120 } else { 180 };
    (filter + nat) * per_rule + 4096
}

/// The rendered chains of a ruleset as the kernel would list them: every owned chain of `table` with its
/// rules in order (entry chains assembled). Used by the diagnostics and tests to compare with a dump.
pub fn owned_chains(rules: &RuleSet, table: Table) -> BTreeMap<String, Vec<Rule>> {
    let mut chains = BTreeMap::new();
    let fixed = FixedChains::of_rules(rules);
    let fixed = match table {
        Table::Filter => fixed.filter,
        Table::Nat => fixed.nat,
        _ => return chains,
    };
    for (name, chain_rules) in fixed {
        chains.insert(name.to_string(), chain_rules.into_iter().cloned().collect());
    }
    if table == Table::Nat {
        for chain in rules.services.values().flat_map(|s| &s.chains) {
            chains.insert(chain.name.clone(), chain.rules.clone());
        }
    }
    chains
}

/// The entry chains a partial sync edits rule by rule, per table.
pub(crate) const ENTRY_CHAINS: [(Table, &str); 6] = [
    (Table::Filter, KUBE_SERVICES),
    (Table::Filter, KUBE_EXTERNAL_SERVICES),
    (Table::Filter, KUBE_NODEPORTS),
    (Table::Filter, KUBE_PROXY_FIREWALL),
    (Table::Nat, KUBE_SERVICES),
    (Table::Nat, KUBE_NODEPORTS),
];
