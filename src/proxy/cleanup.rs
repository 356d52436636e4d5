//! `--cleanup`: remove every chain and jump the proxy owns, leaving everything else alone.

use std::collections::BTreeSet;

use crate::core::rules::format::{Form, write_rule_args};
use crate::core::rules::names::{
    FIXED_FILTER_CHAINS, FIXED_NAT_CHAINS, KUBE_FIREWALL, KUBE_PROXY_CANARY, is_service_chain,
};
use crate::core::rules::{Dump, DumpTable, Table};

/// Chains of `table` that cleanup deletes, given what the table holds. `KUBE-FIREWALL` is shared with
/// kubelet: it is deleted only when it holds nothing but the rule the proxy writes.
fn owned(table: &DumpTable) -> BTreeSet<String> {
    table
        .chains
        .iter()
        .map(|c| c.name.as_str())
        .filter(|name| {
            *name == KUBE_PROXY_CANARY
                || match table.table {
                    Table::Nat => {
                        FIXED_NAT_CHAINS.contains(name)
                            || is_service_chain(name)
                            || name.starts_with("KUBE-XLB-")
                    }
                    Table::Filter if *name == KUBE_FIREWALL => only_our_firewall_rule(table),
                    Table::Filter => FIXED_FILTER_CHAINS.contains(name),
                    _ => false,
                }
        })
        .map(str::to_string)
        .collect()
}

fn only_our_firewall_rule(table: &DumpTable) -> bool {
    table.chain(KUBE_FIREWALL).is_some_and(|chain| {
        chain
            .rules
            .iter()
            .all(|r| r.rule.comment() == Some("block incoming localnet connections"))
    })
}

/// The `iptables-restore --noflush` payload that removes what the proxy owns from the tables in `dump`:
/// rules of other chains that jump into those chains first, then the chains themselves. Empty when
/// there is nothing to remove.
pub fn cleanup_payload(dump: &Dump) -> String {
    let mut out = String::new();
    for table in &dump.tables {
        let doomed = owned(table);
        if doomed.is_empty() {
            continue;
        }
        out.push_str(&format!("*{}\n", table.table));
        for name in &doomed {
            out.push_str(&format!(":{name} - [0:0]\n"));
        }
        for chain in table.chains.iter().filter(|c| !doomed.contains(&c.name)) {
            for rule in &chain.rules {
                if rule
                    .rule
                    .jump_chain()
                    .is_some_and(|target| doomed.contains(target))
                {
                    out.push_str("-D ");
                    out.push_str(&chain.name);
                    out.push(' ');
                    write_rule_args(&mut out, &rule.rule, Form::Restore, dump.family);
                    out.push('\n');
                }
            }
        }
        for name in &doomed {
            out.push_str(&format!("-X {name}\n"));
        }
        out.push_str("COMMIT\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::parse::parse_dump;

    const NODE: &str =
        include_str!("../../tests/fixtures/kube-proxy-v1.36/extended/nodes/testnode.iptables-save");

    #[test]
    fn removes_every_owned_chain_and_the_jumps_into_them() {
        let mut text = NODE.replace(
            ":KUBE-PROXY-CANARY - [0:0]\nCOMMIT",
            ":KUBE-PROXY-CANARY - [0:0]\n:FOREIGN - [0:0]\n-A FOREIGN -j ACCEPT\nCOMMIT",
        );
        text = text.replacen(
            "-A INPUT -j KUBE-FIREWALL\n",
            "-A INPUT -j KUBE-FIREWALL\n-A INPUT -j ACCEPT\n",
            1,
        );
        let payload = cleanup_payload(&parse_dump(&text).expect("fixture parses"));
        for chain in [
            "KUBE-SERVICES",
            "KUBE-SVC-CDGGSHYLG3RE2FKL",
            "KUBE-SEP-ELX6N4Z5RGB67TLC",
            "KUBE-FW-NOA3PUSDHE5Q5YIF",
            "KUBE-FIREWALL",
            "KUBE-PROXY-CANARY",
            "KUBE-MARK-MASQ",
        ] {
            assert!(
                payload.contains(&format!("-X {chain}\n")),
                "{chain} deleted:\n{payload}"
            );
        }
        assert!(payload.contains(
            "-D PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
        ));
        assert!(payload.contains("-D INPUT -j KUBE-FIREWALL"));
        assert!(!payload.contains("FOREIGN"), "foreign chains untouched");
        assert!(
            !payload.contains("-D INPUT -j ACCEPT"),
            "foreign rules untouched"
        );
    }

    #[test]
    fn keeps_a_firewall_chain_that_kubelet_also_uses() {
        let text = NODE.replace(
            "-A KUBE-FIREWALL ! -s 127.0.0.0/8",
            "-A KUBE-FIREWALL -m comment --comment \"kubernetes firewall for dropping marked packets\" -m mark --mark 0x8000/0x8000 -j DROP\n-A KUBE-FIREWALL ! -s 127.0.0.0/8",
        );
        let payload = cleanup_payload(&parse_dump(&text).expect("parses"));
        assert!(
            !payload.contains("KUBE-FIREWALL"),
            "kubelet's chain is left alone:\n{payload}"
        );
    }

    #[test]
    fn nothing_to_do_on_a_clean_node() {
        let clean =
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        assert_eq!(cleanup_payload(&parse_dump(clean).expect("parses")), "");
    }
}
