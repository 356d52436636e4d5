//! Chain-by-chain comparison of two `iptables-save` texts, the way kube-proxy's own tests compare:
//! per-service chains and static chains rule by rule in order, the top-level entry chains as multisets
//! (kube-proxy orders Services randomly there), with the `KUBE-SERVICES` tail rule required last.

use std::collections::BTreeMap;

/// Chains whose rule order across Services is not part of the contract.
const UNORDERED: [(&str, &str); 6] = [
    ("nat", "KUBE-SERVICES"),
    ("nat", "KUBE-NODEPORTS"),
    ("filter", "KUBE-SERVICES"),
    ("filter", "KUBE-EXTERNAL-SERVICES"),
    ("filter", "KUBE-NODEPORTS"),
    ("filter", "KUBE-PROXY-FIREWALL"),
];

/// table → chain → rule lines (without `-A CHAIN `), plus declared chains.
#[derive(Debug, Default)]
pub struct SavedTables {
    pub chains: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

pub fn split(text: &str) -> SavedTables {
    let mut out = SavedTables::default();
    let mut table = String::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') || line == "COMMIT" {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            table = name.to_string();
            out.chains.entry(table.clone()).or_default();
        } else if let Some(decl) = line.strip_prefix(':') {
            let name = decl
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            out.chains
                .entry(table.clone())
                .or_default()
                .entry(name)
                .or_default();
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let (chain, rule) = rest.split_once(' ').unwrap_or((rest, ""));
            out.chains
                .entry(table.clone())
                .or_default()
                .entry(chain.to_string())
                .or_default()
                .push(rule.to_string());
        }
    }
    out
}

/// Every difference between `expected` and `actual`, one line each; empty when they agree.
pub fn differences(expected: &str, actual: &str) -> Vec<String> {
    let expected = split(expected);
    let actual = split(actual);
    let mut diffs = Vec::new();
    let tables: std::collections::BTreeSet<&String> =
        expected.chains.keys().chain(actual.chains.keys()).collect();
    for table in tables {
        let empty = BTreeMap::new();
        let want = expected.chains.get(table).unwrap_or(&empty);
        let got = actual.chains.get(table).unwrap_or(&empty);
        let names: std::collections::BTreeSet<&String> = want.keys().chain(got.keys()).collect();
        for name in names {
            match (want.get(name), got.get(name)) {
                (Some(_), None) => diffs.push(format!("{table} {name}: chain missing")),
                (None, Some(_)) => diffs.push(format!("{table} {name}: unexpected chain")),
                (Some(w), Some(g)) => {
                    let unordered = UNORDERED.iter().any(|(t, c)| t == table && c == name);
                    if unordered {
                        let (mut ws, mut gs) = (w.clone(), g.clone());
                        if table == "nat" && name == "KUBE-SERVICES" && w.last() != g.last() {
                            diffs.push(format!(
                                "{table} {name}: last rule differs: {:?} vs {:?}",
                                w.last(),
                                g.last()
                            ));
                        }
                        ws.sort();
                        gs.sort();
                        for rule in ws.iter().filter(|r| !gs.contains(r)) {
                            diffs.push(format!("{table} {name}: missing rule: {rule}"));
                        }
                        for rule in gs.iter().filter(|r| !ws.contains(r)) {
                            diffs.push(format!("{table} {name}: extra rule: {rule}"));
                        }
                        if ws.len() != gs.len() {
                            diffs.push(format!(
                                "{table} {name}: {} rules expected, {} found",
                                ws.len(),
                                gs.len()
                            ));
                        }
                    } else if w != g {
                        diffs.push(format!(
                            "{table} {name}: rules differ\n  expected: {w:#?}\n  actual:   {g:#?}"
                        ));
                    }
                }
                (None, None) => {}
            }
        }
    }
    diffs
}
