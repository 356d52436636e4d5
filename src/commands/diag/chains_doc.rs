//! The `ServiceChains` document of `chains`: a Service's chains on each node as the node has them,
//! as it should have them, or the difference per chain.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::drift::port::{comparable, jumps_to_endpoint};
use crate::core::model::{ClusterState, NamespacedName};
use crate::core::path::actual::ChainKind;
use crate::core::path::graph::reached_chains;
use crate::core::path::{ActualRules, service_port_names};
use crate::core::plan::plan_service;
use crate::core::rules::format::{Form, rule_args};
use crate::core::rules::{IpFamily, Rule, Table};

use super::inputs::NodeRules;
use super::report::{API_VERSION, family_name};
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
}

type ChainKey = (Table, String);

/// A chain's rules, in order: (comparison form, printed form).
type Rules = Vec<(Rule, String)>;

fn printed(rule: &Rule, family: IpFamily) -> (Rule, String) {
    let endpoint = jumps_to_endpoint(rule);
    (
        comparable(rule, endpoint),
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
        let resolved = settings.resolve(cluster, &rules.node, rules.dumps.first())?;
        for (i, dump) in rules.dumps.iter().enumerate() {
            let family = dump.family;
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
                        .push(printed(&entry.rule, family));
                }
                for chain in &port.chains {
                    let key = (Table::Nat, chain.name.clone());
                    note(&key);
                    let sep = ChainKind::of(&chain.name) == Some(ChainKind::Sep);
                    want.entry(key)
                        .or_default()
                        .extend(chain.rules.iter().map(|r| {
                            let (cmp, text) = printed(r, family);
                            (if sep { comparable(r, true) } else { cmp }, text)
                        }));
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
                        .push(printed(&entry.rule.rule, family));
                }
                for chain in reached_chains(&actual, entries, &[]) {
                    let key = (Table::Nat, chain.name.clone());
                    note(&key);
                    let sep = ChainKind::of(&chain.name) == Some(ChainKind::Sep);
                    got.entry(key)
                        .or_default()
                        .extend(chain.rules.iter().map(|r| {
                            let (cmp, text) = printed(&r.rule, family);
                            (if sep { comparable(&r.rule, true) } else { cmp }, text)
                        }));
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
                family: family_name(family),
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
            if ordered {
                let same = w.len() == g.len() && w.iter().zip(g).all(|(a, b)| a.0 == b.0);
                if !same {
                    missing = w.iter().map(|(_, t)| t.clone()).collect();
                    unexpected = g.iter().map(|(_, t)| t.clone()).collect();
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
                    for rule in &chain.missing {
                        let _ = writeln!(
                            out,
                            "{}",
                            paint(format!("- -A {} {rule}", chain.name), true)
                        );
                    }
                    for rule in &chain.unexpected {
                        let _ = writeln!(
                            out,
                            "{}",
                            paint(format!("+ -A {} {rule}", chain.name), false)
                        );
                    }
                }
            }
        }
        out.push('\n');
    }
    if doc.view == View::Diff {
        let _ = writeln!(
            out,
            "# '-' lines: expected, absent from the node; '+' lines: on the node, not expected"
        );
    }
    out
}
