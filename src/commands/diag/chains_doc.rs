//! The `ServiceChains` document of `chains`: a Service's chains on each node as the node has them,
//! as it should have them, or the difference per chain.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::drift::port::{jumps_to_endpoint, without_endpoint_comment};
use crate::core::model::{ClusterState, NamespacedName};
use crate::core::path::actual::ChainKind;
use crate::core::path::graph::reached_chains;
use crate::core::path::{ActualRules, service_port_names};
use crate::core::plan::plan_service;
use crate::core::rules::format::{Form, rule_args};
use crate::core::rules::{IpFamily, Rule, Table};

use super::inputs::NodeRules;
use super::report::API_VERSION;
use super::settings::ExpectedSettings;

/// Which view `chains` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// The node's chains.
    Actual,
    /// The chains the node should have.
    Expected,
    /// The difference, per chain.
    Diff,
}

/// `chains` output: `kind: ServiceChains`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainsDocument {
    /// Always `svcproxy/v1`.
    pub api_version: &'static str,
    /// Always `ServiceChains`.
    pub kind: &'static str,
    /// `namespace/name`.
    pub service: String,
    /// Which view.
    pub view: View,
    /// One entry per node and family.
    pub nodes: Vec<NodeChains>,
}

/// One node's chains for the Service.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeChains {
    /// The node.
    pub node: String,
    /// `IPv4` or `IPv6`.
    pub family: &'static str,
    /// Where its rules came from.
    pub source: String,
    /// The chains, each with its rules as `iptables-save` prints them (entry chains hold only this
    /// Service's rules).
    pub chains: Vec<ChainRules>,
}

/// One chain.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainRules {
    /// `nat` or `filter`.
    pub table: &'static str,
    /// Its name.
    pub name: String,
    /// Its rules (`actual` and `expected` views).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// `same`, `differs`, `missing` (expected, absent) or `unexpected` (`diff` view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    /// Expected rules the node lacks (`diff` view).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Node rules that should not be there (`diff` view).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unexpected: Vec<String>,
    /// For a per-service chain that differs: the aligned rules, each marked `-` (expected, absent),
    /// `+` (present, not expected) or ` ` (both), in chain order (`diff` view).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<DiffLine>,
}

/// One line of a per-chain diff.
#[derive(Debug, Clone, Serialize)]
pub struct DiffLine {
    /// `-`, `+` or ` `.
    pub op: char,
    /// The rule as `iptables-save` prints it.
    pub rule: String,
}

/// Aligns two rule lists on their longest common subsequence (compared in comparison form).
fn align(want: &Rules, got: &Rules) -> Vec<DiffLine> {
    let (n, m) = (want.len(), got.len());
    // lcs[i][j]: the LCS length of want[i..] and got[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if want[i].0 == got[j].0 {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut lines = Vec::with_capacity(n.max(m));
    while i < n || j < m {
        if i < n && j < m && want[i].0 == got[j].0 {
            lines.push(DiffLine {
                op: ' ',
                rule: got[j].1.clone(),
            });
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            lines.push(DiffLine {
                op: '-',
                rule: want[i].1.clone(),
            });
            i += 1;
        } else {
            lines.push(DiffLine {
                op: '+',
                rule: got[j].1.clone(),
            });
            j += 1;
        }
    }
    lines
}

type ChainKey = (Table, String);

/// A chain's rules, in order: (comparison form, printed form).
type Rules = Vec<(Rule, String)>;

/// A rule in comparison form (normalized; per-endpoint comments, which kube-proxy leaves out in
/// large-cluster mode, removed) and as printed. Probabilities stay: the diff shows the ladder as is.
fn printed(rule: &Rule, family: IpFamily, endpoint_chain: bool) -> (Rule, String) {
    let endpoint_rule = endpoint_chain || jumps_to_endpoint(rule);
    (
        without_endpoint_comment(rule, endpoint_rule),
        rule_args(rule, Form::Save, family),
    )
}

/// Builds the document for `service` on every node in `nodes`.
pub fn build(
    cluster: &ClusterState,
    service: &NamespacedName,
    nodes: &[NodeRules],
    settings: &ExpectedSettings,
    view: View,
) -> anyhow::Result<ChainsDocument> {
    let mut out = Vec::new();
    for rules in nodes {
        for (i, dump) in rules.dumps.iter().enumerate() {
            let family = dump.family;
            let resolved = settings.resolve(cluster, &rules.node, Some(dump))?;
            let actual = ActualRules::new(dump);
            let expected = plan_service(cluster, &resolved.context, family, false, service);
            let mut want: BTreeMap<ChainKey, Rules> = BTreeMap::new();
            let mut order: Vec<ChainKey> = Vec::new();
            let mut note = |key: &ChainKey| {
                if !order.contains(key) {
                    order.push(key.clone());
                }
            };
            for (_, port) in &expected {
                for entry in &port.entries {
                    let key = (entry.table, entry.chain.to_string());
                    note(&key);
                    want.entry(key)
                        .or_default()
                        .push(printed(&entry.rule, family, false));
                }
                for chain in &port.chains {
                    let key = (Table::Nat, chain.name.clone());
                    note(&key);
                    let sep = ChainKind::of(&chain.name) == Some(ChainKind::Sep);
                    want.entry(key)
                        .or_default()
                        .extend(chain.rules.iter().map(|r| printed(r, family, sep)));
                }
            }
            let mut got: BTreeMap<ChainKey, Rules> = BTreeMap::new();
            for spn in service_port_names(service, &expected, &actual) {
                let entries = actual.entries_of(&spn);
                for entry in entries {
                    let key = (entry.table, entry.chain.to_string());
                    note(&key);
                    got.entry(key)
                        .or_default()
                        .push(printed(&entry.rule.rule, family, false));
                }
                for chain in reached_chains(&actual, entries, &[]) {
                    let key = (Table::Nat, chain.name.clone());
                    note(&key);
                    let sep = ChainKind::of(&chain.name) == Some(ChainKind::Sep);
                    got.entry(key)
                        .or_default()
                        .extend(chain.rules.iter().map(|r| printed(&r.rule, family, sep)));
                }
            }
            let chains: Vec<ChainRules> = order
                .into_iter()
                .filter_map(|key| chain_view(view, &key, want.get(&key), got.get(&key)))
                .collect();
            // A second family the Service does not use on this node: nothing to show.
            if i > 0 && chains.is_empty() {
                continue;
            }
            out.push(NodeChains {
                node: rules.node.clone(),
                family: family.as_str(),
                source: rules.origin.clone(),
                chains,
            });
        }
    }
    Ok(ChainsDocument {
        api_version: API_VERSION,
        kind: "ServiceChains",
        service: service.to_string(),
        view,
        nodes: out,
    })
}

fn chain_view(
    view: View,
    key: &ChainKey,
    want: Option<&Rules>,
    got: Option<&Rules>,
) -> Option<ChainRules> {
    let (table, name) = key;
    let base = ChainRules {
        table: table.as_str(),
        name: name.clone(),
        rules: Vec::new(),
        status: None,
        missing: Vec::new(),
        unexpected: Vec::new(),
        lines: Vec::new(),
    };
    let texts = |rules: &Rules| rules.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>();
    match view {
        View::Actual => got.map(|g| ChainRules {
            rules: texts(g),
            ..base
        }),
        View::Expected => want.map(|w| ChainRules {
            rules: texts(w),
            ..base
        }),
        View::Diff => {
            let empty = Vec::new();
            let w = want.unwrap_or(&empty);
            let g = got.unwrap_or(&empty);
            // Entry chains hold Services in any order: compare them as multisets. Per-service chains
            // are ordered: any difference in order is a difference.
            let ordered = ChainKind::of(name).is_some();
            let mut missing = Vec::new();
            let mut unexpected = Vec::new();
            let mut lines = Vec::new();
            if ordered {
                let same = w.len() == g.len() && w.iter().zip(g).all(|(a, b)| a.0 == b.0);
                if !same {
                    lines = align(w, g);
                    for line in &lines {
                        match line.op {
                            '-' => missing.push(line.rule.clone()),
                            '+' => unexpected.push(line.rule.clone()),
                            _ => {}
                        }
                    }
                }
            } else {
                let mut left: Vec<&(Rule, String)> = g.iter().collect();
                for rule in w {
                    match left.iter().position(|r| r.0 == rule.0) {
                        Some(at) => {
                            left.swap_remove(at);
                        }
                        None => missing.push(rule.1.clone()),
                    }
                }
                unexpected = left.into_iter().map(|(_, t)| t.clone()).collect();
            }
            let status = match (want.is_some(), got.is_some()) {
                (true, false) => "missing",
                (false, true) => "unexpected",
                _ if missing.is_empty() && unexpected.is_empty() => "same",
                _ => "differs",
            };
            Some(ChainRules {
                status: Some(status),
                missing,
                unexpected,
                lines,
                ..base
            })
        }
    }
}

/// Whether a `diff` document shows any difference.
pub fn has_differences(doc: &ChainsDocument) -> bool {
    doc.nodes
        .iter()
        .flat_map(|n| &n.chains)
        .any(|c| c.status.is_some_and(|s| s != "same"))
}

/// The document as text: `iptables-save`-like sections per node, or a diff per chain.
pub fn render_text(doc: &ChainsDocument, color: bool) -> String {
    use owo_colors::OwoColorize;
    use std::fmt::Write as _;
    let paint = |text: String, red: bool| -> String {
        match (color, red) {
            (false, _) => text,
            (true, true) => text.red().to_string(),
            (true, false) => text.green().to_string(),
        }
    };
    let mut out = String::new();
    for node in &doc.nodes {
        let family = if node.family == "IPv6" { " (IPv6)" } else { "" };
        let _ = writeln!(
            out,
            "# node {}{family}: {} ({})",
            node.node, doc.service, node.source
        );
        if node.chains.is_empty() {
            let _ = writeln!(out, "# no chains for this Service");
        }
        let mut table = "";
        for chain in &node.chains {
            if doc.view != View::Diff && chain.table != table {
                table = chain.table;
                let _ = writeln!(out, "*{table}");
            }
            match doc.view {
                View::Actual | View::Expected => {
                    for rule in &chain.rules {
                        let _ = writeln!(out, "-A {} {rule}", chain.name);
                    }
                    if chain.rules.is_empty() {
                        let _ = writeln!(out, ":{} (empty)", chain.name);
                    }
                }
                View::Diff => {
                    let status = chain.status.unwrap_or("same");
                    let _ = writeln!(out, "{} {}: {status}", chain.table, chain.name);
                    if chain.lines.is_empty() {
                        for rule in &chain.missing {
                            let text = format!("- -A {} {rule}", chain.name);
                            let _ = writeln!(out, "{}", paint(text, true));
                        }
                        for rule in &chain.unexpected {
                            let text = format!("+ -A {} {rule}", chain.name);
                            let _ = writeln!(out, "{}", paint(text, false));
                        }
                    }
                    for line in &chain.lines {
                        let text = format!("{} -A {} {}", line.op, chain.name, line.rule);
                        let text = match line.op {
                            '-' => paint(text, true),
                            '+' => paint(text, false),
                            _ => text,
                        };
                        let _ = writeln!(out, "{text}");
                    }
                }
            }
        }
        out.push('\n');
    }
    if doc.view == View::Diff {
        let _ = writeln!(
            out,
            "# '-' lines: expected, absent from the node; '+' lines: on the node, not expected; other lines: both (per-endpoint comments are not compared)"
        );
    }
    out
}
