//! Structural checks every planned ruleset must pass.

use std::collections::{BTreeMap, BTreeSet};

use svcproxy::core::plan::RuleSet;
use svcproxy::core::render::owned_chains;
use svcproxy::core::rules::Table;
use svcproxy::core::rules::names::is_service_chain;

/// Every jump lands on a chain that exists, and every per-service chain is jumped to.
pub fn assert_jumps_consistent(rules: &RuleSet) {
    for table in [Table::Filter, Table::Nat] {
        let chains: BTreeMap<String, Vec<_>> = owned_chains(rules, table);
        let mut referenced = BTreeSet::new();
        for (chain, chain_rules) in &chains {
            for rule in chain_rules {
                if let Some(target) = rule.jump_chain() {
                    assert!(
                        chains.contains_key(target),
                        "{table} {chain} jumps to missing chain {target}"
                    );
                    referenced.insert(target.to_string());
                }
            }
        }
        for chain in chains.keys().filter(|c| is_service_chain(c)) {
            assert!(
                referenced.contains(chain),
                "{table} chain {chain} is never jumped to"
            );
        }
    }
}
