//! The real kube-proxy v1.36 dumps in `tests/fixtures/kube-proxy-v1.36/`: every line parses, every rule
//! prints back byte for byte in save form, and the restore form of every rule reads back equal.

use std::collections::HashMap;

use pretty_assertions::assert_eq;

use crate::core::rules::format::{Form, chain_declaration, write_append};
use crate::core::rules::{Dump, IpFamily, Rule, Table};

use super::{Op, parse_dump, parse_payload, parse_rule};

const FIXTURES: &[(&str, IpFamily)] = &[
    ("basic/nodes/testnode.iptables-save", IpFamily::V4),
    ("basic/nodes/testnode.ip6tables-save", IpFamily::V6),
    ("extended/nodes/testnode.iptables-save", IpFamily::V4),
    ("extended/nodes/testnode.ip6tables-save", IpFamily::V6),
];

fn fixture(path: &str) -> String {
    let full = format!(
        "{}/tests/fixtures/kube-proxy-v1.36/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// Every rule of the dump with its chain, by line number.
fn rules_by_line(dump: &Dump) -> HashMap<usize, (Table, String, Rule)> {
    let mut out = HashMap::new();
    for table in &dump.tables {
        for chain in &table.chains {
            for rule in &chain.rules {
                out.insert(
                    rule.line,
                    (table.table, chain.name.clone(), rule.rule.clone()),
                );
            }
        }
    }
    out
}

#[test]
fn every_fixture_rule_prints_back_byte_for_byte() {
    for (path, family) in FIXTURES {
        let text = fixture(path);
        let dump = parse_dump(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(dump.family, *family, "{path}");
        assert_eq!(dump.backend.as_deref(), Some("nf_tables"), "{path}");
        let rules = rules_by_line(&dump);
        let mut checked = 0;
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            if line.starts_with("-A ") {
                let (_, chain, rule) = rules
                    .get(&number)
                    .unwrap_or_else(|| panic!("{path}:{number}: no rule parsed"));
                let mut printed = String::new();
                write_append(&mut printed, chain, rule, Form::Save, *family);
                assert_eq!(printed, line, "{path}:{number}");
                // The same options through parse_rule give the same rule.
                let args = line
                    .strip_prefix(&format!("-A {chain}"))
                    .unwrap()
                    .trim_start();
                assert_eq!(&parse_rule(args).unwrap(), rule, "{path}:{number}");
                checked += 1;
            } else if let Some(decl) = line.strip_prefix(':') {
                let name = decl.split(' ').next().unwrap();
                let table = dump
                    .tables
                    .iter()
                    .find(|t| t.chains.iter().any(|c| c.line == number))
                    .unwrap_or_else(|| panic!("{path}:{number}: no chain parsed"));
                let chain = table.chain(name).unwrap();
                assert_eq!(
                    chain_declaration(&chain.name, chain.policy.as_deref()),
                    line,
                    "{path}:{number}"
                );
            }
        }
        assert_eq!(checked, rules.len(), "{path}");
        assert_eq!(checked, dump.rule_count(), "{path}");
        assert!(checked > 0, "{path}");
    }
}

/// Writes the dump back as restore text, the way the renderer does.
fn restore_text(dump: &Dump) -> String {
    let mut out = String::new();
    for table in &dump.tables {
        out.push_str(&format!("*{}\n", table.table));
        // Built-in chains too, with `-` (keep the policy), so the chain order stays the same.
        for chain in &table.chains {
            out.push_str(&chain_declaration(&chain.name, None));
            out.push('\n');
        }
        for chain in &table.chains {
            for rule in &chain.rules {
                write_append(
                    &mut out,
                    &chain.name,
                    &rule.rule,
                    Form::Restore,
                    dump.family,
                );
                out.push('\n');
            }
        }
        out.push_str("COMMIT\n");
    }
    out
}

#[test]
fn restore_form_of_every_fixture_rule_reads_back_equal() {
    for (path, _) in FIXTURES {
        let saved = parse_dump(&fixture(path)).unwrap();
        let text = restore_text(&saved);
        let restored = parse_dump(&text).unwrap_or_else(|e| panic!("{path}: {e}\n{text}"));
        let payload = parse_payload(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(restored.tables.len(), saved.tables.len(), "{path}");
        for (s, r) in saved.tables.iter().zip(&restored.tables) {
            let saved_rules: Vec<(&str, Rule)> = s
                .chains
                .iter()
                .flat_map(|c| {
                    c.rules
                        .iter()
                        .map(move |r| (c.name.as_str(), r.rule.normalized()))
                })
                .collect();
            let restored_rules: Vec<(&str, Rule)> = r
                .chains
                .iter()
                .flat_map(|c| {
                    c.rules
                        .iter()
                        .map(move |r| (c.name.as_str(), r.rule.normalized()))
                })
                .collect();
            assert_eq!(saved_rules, restored_rules, "{path} table {}", s.table);
            let payload_table = payload.tables.iter().find(|t| t.table == s.table).unwrap();
            let payload_rules: Vec<(&str, Rule)> = payload_table
                .ops
                .iter()
                .map(|st| match &st.op {
                    Op::Append { chain, rule, .. } => (chain.as_str(), rule.normalized()),
                    other => panic!("unexpected {other:?}"),
                })
                .collect();
            assert_eq!(saved_rules, payload_rules, "{path} table {}", s.table);
        }
    }
}

#[test]
fn fixture_dumps_with_counters_parse_the_same() {
    // `iptables-save -c` puts `[packets:bytes]` in front of every rule.
    for (path, _) in FIXTURES {
        let text = fixture(path);
        let with_counters: String = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if l.starts_with("-A ") {
                    format!("[{i}:{}] {l}\n", i * 60)
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let plain = parse_dump(&text).unwrap();
        let counted = parse_dump(&with_counters).unwrap();
        for (p, c) in plain.tables.iter().zip(&counted.tables) {
            for (pc, cc) in p.chains.iter().zip(&c.chains) {
                for (pr, cr) in pc.rules.iter().zip(&cc.rules) {
                    assert_eq!(pr.rule, cr.rule);
                    assert_eq!(pr.counters, None);
                    let n = (cr.line - 1) as u64;
                    assert_eq!(
                        cr.counters,
                        Some(crate::core::rules::Counters {
                            packets: n,
                            bytes: n * 60
                        })
                    );
                }
            }
        }
    }
}
