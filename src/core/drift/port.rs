//! Drift of one service port on one node: its expected rules (planned) against the node's actual rules.
//!
//! What is *not* drift, because kube-proxy itself produces it on a healthy node:
//! - the order of rules across Services in the entry chains (compared as multisets);
//! - the kernel's normalized printing (compared as parsed, normalized rules);
//! - per-endpoint comments present or absent (large-cluster mode, and partial syncs that keep old
//!   comments): comments are ignored on `KUBE-SEP` rules and on jumps to `KUBE-SEP` chains;
//! - per-service chains nothing jumps to any more (kube-proxy deletes them later, in large-cluster mode
//!   only once per sync period).

use std::collections::{BTreeMap, BTreeSet};

use crate::core::plan::ServiceRules;
use crate::core::rules::format::{Form, rule_args};
use crate::core::rules::{Chain, DumpChain, IpFamily, Match, Rule, Table, Target};

use super::finding::{Finding, FindingKind};
use crate::core::path::actual::{
    ActualRules, ChainKind, EntryRef, dnat_destination, is_affinity_check, rule_target_chain,
};
use crate::core::path::graph::{is_even, ladder, reached_chains};

/// Where the comparison happens.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The node's name, put on every finding.
    pub node: &'a str,
    /// The family of the dump.
    pub family: IpFamily,
}

/// The findings for service port `spn` on one node. `expected` is `None` for a port that no longer
/// exists (its actual rules, if any, are then stale).
pub fn compare_port(
    scope: Scope<'_>,
    spn: &str,
    expected: Option<&ServiceRules>,
    actual: &ActualRules<'_>,
) -> Vec<Finding> {
    let entries = actual.entries_of(spn);
    // Only what the entry rules reach carries traffic: chains nothing jumps to are leftovers that
    // kube-proxy deletes later, not drift.
    let reached = reached_chains(actual, entries, &[]);
    let mut out = PortFindings {
        scope,
        spn,
        findings: Vec::new(),
    };
    let Some(expected) = expected else {
        out.stale_port(entries, &reached);
        return out.findings;
    };
    let expects_anything = !expected.entries.is_empty() || !expected.chains.is_empty();
    if expects_anything && entries.is_empty() {
        out.push(
            Finding::new(
                FindingKind::MissingServiceRules,
                format!(
                    "the node has no rules for {spn}: no entry in KUBE-SERVICES/KUBE-NODEPORTS and none of its chains"
                ),
            )
            .in_chain(expected.chains.first().map_or("KUBE-SERVICES", |c| c.name.as_str())),
        );
        return out.findings;
    }
    out.entries(expected, entries);
    out.endpoints(expected, &reached, actual);
    out.service_chains(expected, &reached);
    out.findings
}

struct PortFindings<'a> {
    scope: Scope<'a>,
    spn: &'a str,
    findings: Vec<Finding>,
}

/// A rule as compared: normalized, and for rules about one endpoint without comment and probability
/// (the ladder's shares are judged on their own, [`super::FindingKind::WrongProbability`]).
pub fn comparable(rule: &Rule, endpoint_rule: bool) -> Rule {
    let mut rule = without_endpoint_comment(rule, endpoint_rule);
    if endpoint_rule {
        rule.matches
            .retain(|m| !matches!(m, Match::Statistic { .. }));
    }
    rule
}

/// A rule normalized, and for rules about one endpoint without its comment: kube-proxy leaves those
/// comments out in large-cluster mode, and partial syncs leave old ones in place.
pub fn without_endpoint_comment(rule: &Rule, endpoint_rule: bool) -> Rule {
    let mut rule = rule.normalized();
    if endpoint_rule {
        rule.matches.retain(|m| !matches!(m, Match::Comment { .. }));
    }
    rule
}

/// Whether `rule` is about one endpoint: it jumps to a `KUBE-SEP` chain.
pub fn jumps_to_endpoint(rule: &Rule) -> bool {
    rule_target_chain(rule).and_then(ChainKind::of) == Some(ChainKind::Sep)
}

/// Whether a filter entry rule stops traffic for a Service without (local) endpoints.
fn is_reject_or_drop(entry: &EntryRef<'_>) -> bool {
    entry.table == Table::Filter
        && matches!(
            entry.rule.rule.target,
            Some(Target::Reject { .. } | Target::Drop)
        )
        && entry.rule.rule.comment().is_some_and(|c| {
            c.ends_with("has no endpoints") || c.ends_with("has no local endpoints")
        })
}

impl PortFindings<'_> {
    fn push(&mut self, finding: Finding) {
        self.findings
            .push(finding.on_node(self.scope.node).for_service(self.spn));
    }

    fn text(&self, rule: &Rule) -> String {
        rule_args(rule, Form::Save, self.scope.family)
    }

    /// Rules for a port the cluster no longer has.
    fn stale_port(&mut self, entries: &[EntryRef<'_>], reached: &[&DumpChain]) {
        if entries.is_empty() && reached.is_empty() {
            return;
        }
        let chains: Vec<&str> = reached.iter().map(|c| c.name.as_str()).collect();
        let what = if chains.is_empty() {
            format!("{} entry rule(s)", entries.len())
        } else {
            format!(
                "{} entry rule(s) and chains {}",
                entries.len(),
                chains.join(", ")
            )
        };
        let mut finding = Finding::new(
            FindingKind::StaleService,
            format!(
                "{} no longer exists in the cluster, but the node still has {what} for it",
                self.spn
            ),
        );
        if let Some(first) = chains.first() {
            finding = finding.in_chain(*first);
        } else if let Some(entry) = entries.first() {
            finding = finding.in_chain(entry.chain);
        }
        self.push(finding);
    }

    /// The port's rules in the shared entry chains, compared per chain as multisets.
    fn entries(&mut self, expected: &ServiceRules, actual: &[EntryRef<'_>]) {
        type Key = (Table, &'static str);
        let mut want: BTreeMap<Key, Vec<Rule>> = BTreeMap::new();
        for entry in &expected.entries {
            want.entry((entry.table, entry.chain))
                .or_default()
                .push(entry.rule.normalized());
        }
        let mut got: BTreeMap<Key, Vec<(Rule, &EntryRef<'_>)>> = BTreeMap::new();
        for entry in actual {
            got.entry((entry.table, entry.chain))
                .or_default()
                .push((entry.rule.rule.normalized(), entry));
        }
        let keys: BTreeSet<Key> = want.keys().chain(got.keys()).copied().collect();
        for key in keys {
            let mut missing: Vec<Rule> = want.remove(&key).unwrap_or_default();
            let mut extra: Vec<(Rule, &EntryRef<'_>)> = Vec::new();
            for (rule, entry) in got.remove(&key).unwrap_or_default() {
                match missing.iter().position(|m| *m == rule) {
                    Some(at) => {
                        missing.swap_remove(at);
                    }
                    None => extra.push((rule, entry)),
                }
            }
            let (table, chain) = key;
            for (rule, entry) in extra {
                if is_reject_or_drop(entry) {
                    let target = if matches!(rule.target, Some(Target::Drop)) {
                        "DROPs"
                    } else {
                        "REJECTs"
                    };
                    self.push(
                        Finding::new(
                            FindingKind::StaleReject,
                            format!(
                                "{table} {chain} still {target} traffic for {} (line {}: {}), but the Service has usable endpoints now",
                                self.spn,
                                entry.rule.line,
                                self.text(&rule)
                            ),
                        )
                        .in_chain(chain),
                    );
                } else {
                    self.push(
                        Finding::new(
                            FindingKind::RuleMismatch,
                            format!(
                                "unexpected rule in {table} {chain} (line {}): {}",
                                entry.rule.line,
                                self.text(&rule)
                            ),
                        )
                        .in_chain(chain),
                    );
                }
            }
            for rule in missing {
                self.push(
                    Finding::new(
                        FindingKind::RuleMismatch,
                        format!("missing rule in {table} {chain}: {}", self.text(&rule)),
                    )
                    .in_chain(chain),
                );
            }
        }
    }

    /// The endpoints: `KUBE-SEP` chains the node reaches against the ones it should have.
    fn endpoints(
        &mut self,
        expected: &ServiceRules,
        reached: &[&DumpChain],
        actual: &ActualRules<'_>,
    ) {
        let want: BTreeMap<&str, &Chain> = expected
            .chains
            .iter()
            .filter(|c| ChainKind::of(&c.name) == Some(ChainKind::Sep))
            .map(|c| (c.name.as_str(), c))
            .collect();
        let got: BTreeMap<&str, &DumpChain> = reached
            .iter()
            .filter(|c| ChainKind::of(&c.name) == Some(ChainKind::Sep))
            .map(|c| (c.name.as_str(), *c))
            .collect();
        for (name, chain) in &want {
            let address = chain
                .rules
                .iter()
                .find_map(|r| match &r.target {
                    Some(Target::Dnat { to }) => Some(to.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            match got.get(name) {
                None => {
                    let why = if actual.nat_chain(name).is_some() {
                        "its chain exists but no rule of the Service jumps to it"
                    } else {
                        "the node has no chain for it"
                    };
                    self.push(
                        Finding::new(
                            FindingKind::MissingEndpoint,
                            format!(
                                "endpoint {address} of {} gets no traffic on this node: {why}",
                                self.spn
                            ),
                        )
                        .in_chain(*name)
                        .at_endpoint(address),
                    );
                }
                Some(actual_chain) => self.compare_chain(chain, actual_chain, true),
            }
        }
        for (name, chain) in &got {
            if want.contains_key(name) {
                continue;
            }
            let address = dnat_destination(chain).unwrap_or("an unknown address");
            let mut finding = Finding::new(
                FindingKind::StaleEndpoint,
                format!(
                    "the node still sends {} traffic to {address} ({name}), which is not a usable endpoint any more",
                    self.spn
                ),
            )
            .in_chain(*name);
            if let Some(address) = dnat_destination(chain) {
                finding = finding.at_endpoint(address);
            }
            self.push(finding);
        }
    }

    /// The `KUBE-SVC`/`SVL`/`EXT`/`FW` chains: present when expected, and the same rules.
    fn service_chains(&mut self, expected: &ServiceRules, reached: &[&DumpChain]) {
        let got: BTreeMap<&str, &DumpChain> = reached
            .iter()
            .filter(|c| !matches!(ChainKind::of(&c.name), Some(ChainKind::Sep) | None))
            .map(|c| (c.name.as_str(), *c))
            .collect();
        let want: BTreeSet<&str> = expected
            .chains
            .iter()
            .map(|c| c.name.as_str())
            .filter(|n| !matches!(ChainKind::of(n), Some(ChainKind::Sep) | None))
            .collect();
        for chain in expected
            .chains
            .iter()
            .filter(|c| want.contains(c.name.as_str()))
        {
            match got.get(chain.name.as_str()) {
                None => self.push(
                    Finding::new(
                        FindingKind::RuleMismatch,
                        format!(
                            "chain {} of {} is missing or nothing jumps to it",
                            chain.name, self.spn
                        ),
                    )
                    .in_chain(&chain.name),
                ),
                Some(actual) => {
                    self.compare_chain(chain, actual, false);
                    self.check_ladder(actual);
                }
            }
        }
        for (name, _) in got.iter().filter(|(n, _)| !want.contains(*n)) {
            self.push(
                Finding::new(
                    FindingKind::RuleMismatch,
                    format!(
                        "{name} is reached from the rules of {} but should not exist for it",
                        self.spn
                    ),
                )
                .in_chain(*name),
            );
        }
    }

    /// A ladder that does not split traffic evenly.
    fn check_ladder(&mut self, chain: &DumpChain) {
        if !matches!(
            ChainKind::of(&chain.name),
            Some(ChainKind::Svc | ChainKind::Svl)
        ) {
            return;
        }
        let rungs = ladder(chain);
        if is_even(&rungs) {
            return;
        }
        let shares: Vec<String> = rungs
            .iter()
            .map(|r| format!("{} {:.1}%", r.target, r.share * 100.0))
            .collect();
        self.push(
            Finding::new(
                FindingKind::WrongProbability,
                format!(
                    "{} splits new connections unevenly over its {} endpoints: {}",
                    chain.name,
                    rungs.len(),
                    shares.join(", ")
                ),
            )
            .in_chain(&chain.name),
        );
    }

    /// One chain rule by rule. Rules about one endpoint (jumps to `KUBE-SEP` chains, and every rule of a
    /// `KUBE-SEP` chain) are compared without comment and probability, and only for endpoints both
    /// sides have: stale and missing endpoints and uneven ladders are reported on their own.
    fn compare_chain(&mut self, expected: &Chain, actual: &DumpChain, endpoint_chain: bool) {
        let keep = |rule: &Rule| -> bool {
            !jumps_to_endpoint(rule) || {
                let target = rule_target_chain(rule).unwrap_or_default();
                expected
                    .rules
                    .iter()
                    .any(|r| rule_target_chain(r) == Some(target))
                    && actual
                        .rules
                        .iter()
                        .any(|r| rule_target_chain(&r.rule) == Some(target))
            }
        };
        let want: Vec<Rule> = expected
            .rules
            .iter()
            .filter(|r| keep(r))
            .map(|r| comparable(r, endpoint_chain || jumps_to_endpoint(r)))
            .collect();
        let got: Vec<(Rule, usize)> = actual
            .rules
            .iter()
            .filter(|r| keep(&r.rule))
            .map(|r| {
                (
                    comparable(&r.rule, endpoint_chain || jumps_to_endpoint(&r.rule)),
                    r.line,
                )
            })
            .collect();
        if want.len() == got.len() && want.iter().zip(&got).all(|(w, (g, _))| w == g) {
            return;
        }
        let first = want
            .iter()
            .zip(&got)
            .position(|(w, (g, _))| w != g)
            .unwrap_or(want.len().min(got.len()));
        let expected_text = want
            .get(first)
            .map_or_else(|| "nothing".to_string(), |r| self.text(r));
        let actual_text = got.get(first).map_or_else(
            || "nothing".to_string(),
            |(r, line)| format!("line {line}: {}", self.text(r)),
        );
        let affinity =
            want.iter().any(is_affinity_check) != got.iter().any(|(r, _)| is_affinity_check(r));
        let what = if affinity {
            "session affinity differs; "
        } else {
            ""
        };
        self.push(
            Finding::new(
                FindingKind::RuleMismatch,
                format!(
                    "{} differs from the expected rules ({what}rule {}: expected {expected_text}, found {actual_text})",
                    actual.name,
                    first + 1
                ),
            )
            .in_chain(&actual.name),
        );
    }
}
