//! An index of a node's actual rules (a parsed [`Dump`]) by the service port they belong to.
//!
//! Entry-chain rules (`KUBE-SERVICES`, `KUBE-NODEPORTS`, …) always carry a comment that starts with the
//! service port name, also in kube-proxy's large-cluster mode. The per-service chains are then found
//! by following the jumps of those rules (and by the chain names the Service's hash gives), so that
//! `KUBE-SEP` chains without comments still belong to their Service.

use std::collections::{BTreeMap, HashMap};

use crate::core::rules::names::{
    EXT_PREFIX, FW_PREFIX, KUBE_EXTERNAL_SERVICES, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL,
    KUBE_SERVICES, SEP_PREFIX, SVC_PREFIX, SVL_PREFIX,
};
use crate::core::rules::{Dump, DumpChain, DumpRule, Match, RecentAction, Table, Target};

/// The entry chains per-service rules are added to, as `(table, chain)`.
pub const ENTRY_CHAINS: [(Table, &str); 6] = [
    (Table::Nat, KUBE_SERVICES),
    (Table::Nat, KUBE_NODEPORTS),
    (Table::Filter, KUBE_SERVICES),
    (Table::Filter, KUBE_EXTERNAL_SERVICES),
    (Table::Filter, KUBE_NODEPORTS),
    (Table::Filter, KUBE_PROXY_FIREWALL),
];

/// A rule in one of the [`ENTRY_CHAINS`].
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'d> {
    /// Its table.
    pub table: Table,
    /// Its chain.
    pub chain: &'static str,
    /// The rule, with its counters and line.
    pub rule: &'d DumpRule,
}

/// A node's rules, indexed for per-Service lookups.
#[derive(Debug)]
pub struct ActualRules<'d> {
    /// The dump itself.
    pub dump: &'d Dump,
    nat: HashMap<&'d str, &'d DumpChain>,
    filter: HashMap<&'d str, &'d DumpChain>,
    /// Entry rules by the service port name that starts their comment.
    entries: BTreeMap<&'d str, Vec<EntryRef<'d>>>,
}

/// The service port name a comment starts with: its first word, when that looks like
/// `namespace/name[:port]`.
pub fn comment_service_port(comment: &str) -> Option<&str> {
    let first = comment.split_whitespace().next()?;
    let (namespace, rest) = first.split_once('/')?;
    (!namespace.is_empty() && !rest.is_empty()).then_some(first)
}

impl<'d> ActualRules<'d> {
    /// Indexes `dump`.
    pub fn new(dump: &'d Dump) -> ActualRules<'d> {
        let chains_of = |table: Table| -> HashMap<&'d str, &'d DumpChain> {
            dump.table(table)
                .map(|t| t.chains.iter().map(|c| (c.name.as_str(), c)).collect())
                .unwrap_or_default()
        };
        let nat = chains_of(Table::Nat);
        let filter = chains_of(Table::Filter);
        let mut entries: BTreeMap<&'d str, Vec<EntryRef<'d>>> = BTreeMap::new();
        for (table, chain) in ENTRY_CHAINS {
            let found = match table {
                Table::Nat => nat.get(chain),
                _ => filter.get(chain),
            };
            for rule in found.map(|c| c.rules.as_slice()).unwrap_or_default() {
                if let Some(spn) = rule.rule.comment().and_then(comment_service_port) {
                    entries
                        .entry(spn)
                        .or_default()
                        .push(EntryRef { table, chain, rule });
                }
            }
        }
        ActualRules {
            dump,
            nat,
            filter,
            entries,
        }
    }

    /// The chain `name` of `table`.
    pub fn chain(&self, table: Table, name: &str) -> Option<&'d DumpChain> {
        match table {
            Table::Nat => self.nat.get(name).copied(),
            Table::Filter => self.filter.get(name).copied(),
            other => self.dump.chain(other, name),
        }
    }

    /// The nat chain `name`.
    pub fn nat_chain(&self, name: &str) -> Option<&'d DumpChain> {
        self.nat.get(name).copied()
    }

    /// Whether the dump has `table` at all.
    pub fn has_table(&self, table: Table) -> bool {
        self.dump.table(table).is_some()
    }

    /// Entry rules whose comment names exactly `spn`.
    pub fn entries_of(&self, spn: &str) -> &[EntryRef<'d>] {
        self.entries.get(spn).map(Vec::as_slice).unwrap_or_default()
    }

    /// Every service port name (`namespace/name` or `namespace/name:port`) of the Service
    /// `namespace/name` that entry rules mention.
    pub fn service_ports_named(&self, service: &str) -> Vec<&'d str> {
        let with_port = format!("{service}:");
        self.entries
            .range::<str, _>((
                std::ops::Bound::Included(service),
                std::ops::Bound::Unbounded,
            ))
            .map(|(spn, _)| *spn)
            .take_while(|spn| spn.starts_with(service))
            .filter(|spn| *spn == service || spn.starts_with(&with_port))
            .collect()
    }

    /// Every service port name the entry rules mention.
    pub fn all_service_ports(&self) -> impl Iterator<Item = &'d str> + '_ {
        self.entries.keys().copied()
    }
}

/// What a per-service chain is, by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChainKind {
    /// `KUBE-SVC-`: Cluster-policy endpoints.
    Svc,
    /// `KUBE-SVL-`: Local-policy endpoints.
    Svl,
    /// `KUBE-EXT-`: external destinations.
    Ext,
    /// `KUBE-FW-`: load-balancer source ranges.
    Fw,
    /// `KUBE-SEP-`: one endpoint.
    Sep,
}

impl ChainKind {
    /// The kind of `chain`, if it is a per-service chain.
    pub fn of(chain: &str) -> Option<ChainKind> {
        [
            (SVC_PREFIX, ChainKind::Svc),
            (SVL_PREFIX, ChainKind::Svl),
            (EXT_PREFIX, ChainKind::Ext),
            (FW_PREFIX, ChainKind::Fw),
            (SEP_PREFIX, ChainKind::Sep),
        ]
        .into_iter()
        .find_map(|(prefix, kind)| chain.starts_with(prefix).then_some(kind))
    }
}

/// The chain a rule jumps or goes to.
pub fn rule_target_chain(rule: &crate::core::rules::Rule) -> Option<&str> {
    match rule.target.as_ref()? {
        Target::Jump { chain } | Target::Goto { chain } => Some(chain),
        _ => None,
    }
}

/// The DNAT destination of an endpoint chain: the `--to-destination` of its first DNAT rule.
pub fn dnat_destination(chain: &DumpChain) -> Option<&str> {
    chain.rules.iter().find_map(|r| match &r.rule.target {
        Some(Target::Dnat { to }) => Some(to.as_str()),
        _ => None,
    })
}

/// Whether `rule` is a session-affinity check (`-m recent --rcheck`).
pub fn is_affinity_check(rule: &crate::core::rules::Rule) -> bool {
    rule.matches
        .iter()
        .any(|m| matches!(m, Match::Recent(recent) if matches!(recent.action, RecentAction::Rcheck | RecentAction::Update)))
}
