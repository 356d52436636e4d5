//! The `iptables-save` text a node would show right after a first full sync: built-in chains with the
//! ensured jumps, the canaries, and every owned chain, in the kernel's printed form.
//!
//! Used to compare a plan with a real dump without a kernel, to trace planned rules exactly as a node
//! would run them, and to write example bundles.

use std::collections::BTreeMap;

use crate::core::plan::{RuleSet, jump_rules};
use crate::core::rules::format::{Form, write_append, write_chain_declaration};
use crate::core::rules::names::KUBE_PROXY_CANARY;
use crate::core::rules::{Rule, Table};

use super::owned_chains;

/// The whole `iptables-save` output (without `#` header lines) of a fresh node programmed with `rules`.
pub fn render_node_dump(rules: &RuleSet) -> String {
    let family = rules.family;
    let jumps = jump_rules();
    let mut out = String::new();
    for table in [Table::Mangle, Table::Filter, Table::Nat] {
        // User chains: the owned ones, the canary, and every chain a jump creates.
        let mut user: BTreeMap<String, Vec<Rule>> = owned_chains(rules, table);
        user.entry(KUBE_PROXY_CANARY.to_string()).or_default();
        for jump in jumps.iter().filter(|j| j.table == table) {
            user.entry(jump.to.to_string()).or_default();
        }
        out.push('*');
        out.push_str(table.as_str());
        out.push('\n');
        for builtin in table.builtin_chains() {
            write_chain_declaration(&mut out, builtin, Some("ACCEPT"));
            out.push('\n');
        }
        for name in user.keys() {
            write_chain_declaration(&mut out, name, None);
            out.push('\n');
        }
        for builtin in table.builtin_chains() {
            // Each missing jump is inserted at position 1, so the last ensured comes first.
            for jump in jumps
                .iter()
                .rev()
                .filter(|j| j.table == table && j.from == *builtin)
            {
                write_append(&mut out, builtin, &jump.rule, Form::Save, family);
                out.push('\n');
            }
        }
        for (name, chain_rules) in &user {
            for rule in chain_rules {
                write_append(&mut out, name, rule, Form::Save, family);
                out.push('\n');
            }
        }
        out.push_str("COMMIT\n");
    }
    out
}
