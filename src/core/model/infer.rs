//! Reading a node's proxy settings back from the rules kube-proxy left in its `iptables-save` dump (spec
//! §1.3–§1.4, §3.5–§3.6). Each setting is `None` when the dump holds no evidence for it, for example a
//! node without Services has no cluster-IP masquerade rule to read the local-traffic detection from.
//!
//! | setting | evidence |
//! |---|---|
//! | local-traffic detection | the cluster-IP masquerade rule of `KUBE-SVC-`/`KUBE-SVL-` chains (`! -s CIDR`, `! -i IFACE`, `! -i PREFIX+`), the pod short-circuit of `KUBE-EXT-` chains, or no masquerade rule in a chain with endpoints |
//! | masquerade-all | a cluster-IP masquerade rule without source or interface condition |
//! | masquerade bit | the `KUBE-MARK-MASQ` chain's MARK value |
//! | localhost NodePorts | the `KUBE-SERVICES` → `KUBE-NODEPORTS` rule with or without `! -d 127.0.0.0/8`; a `-d 127.0.0.0/8` NodePort rule; the filter `KUBE-FIREWALL` localnet rule (IPv4 only) |
//! | NodePort addresses | the `KUBE-SERVICES` → `KUBE-NODEPORTS` rules: `--dst-type LOCAL` for every address, `-d IP` for listed ones |
//! | nfacct | any `-m nfacct` match; its absence from the INVALID-drop rule |
//! | tcp_be_liberal | `KUBE-FORWARD` without its INVALID-drop rule |
//! | random-fully | `KUBE-POSTROUTING`'s `MASQUERADE` with or without `--random-fully` |

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::core::rules::names::{
    EXT_PREFIX, KUBE_FIREWALL, KUBE_FORWARD, KUBE_MARK_MASQ, KUBE_NODEPORTS, KUBE_POSTROUTING,
    KUBE_SERVICES, SEP_PREFIX, SVC_PREFIX, SVL_PREFIX,
};
use crate::core::rules::{Dump, DumpChain, IpFamily, Match, Rule, Table, Target};

/// How the dump says local pod traffic is recognised.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum InferredDetector {
    /// No detection: chains with endpoints have no cluster-IP masquerade rule.
    None,
    /// `-s CIDR`: the cluster CIDR or the Node's pod CIDR of the dump's family (the rules cannot tell
    /// which; see the resolver).
    Cidr(IpNet),
    /// `-i IFACE`: `BridgeInterface` mode.
    BridgeInterface(String),
    /// `-i PREFIX+`: `InterfaceNamePrefix` mode.
    InterfaceNamePrefix(String),
}

/// Where the dump says NodePorts are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InferredNodePorts {
    /// On every local address (`-m addrtype --dst-type LOCAL`): `nodePortAddresses` unset.
    All,
    /// Only on these local addresses (`-d IP` rules): `nodePortAddresses` set.
    Addresses(Vec<IpAddr>),
}

/// The settings a dump shows; `None` where it shows nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferredSettings {
    /// The dump's IP family; the detector's CIDR is of this family.
    pub family: IpFamily,
    /// Local-traffic detection.
    pub local_detector: Option<InferredDetector>,
    /// `--masquerade-all`.
    pub masquerade_all: Option<bool>,
    /// `--iptables-masquerade-bit`.
    pub masquerade_bit: Option<u8>,
    /// `--iptables-localhost-nodeports` (IPv4 dumps only).
    pub localhost_nodeports: Option<bool>,
    /// `--nodeport-addresses`.
    pub nodeport_addresses: Option<InferredNodePorts>,
    /// The nfacct objects exist.
    pub nfacct: Option<bool>,
    /// `nf_conntrack_tcp_be_liberal` is set.
    pub tcp_be_liberal: Option<bool>,
    /// `MASQUERADE --random-fully` is used.
    pub random_fully: Option<bool>,
}

/// Reads the settings kube-proxy ran with from its rules in `dump`.
pub fn infer_settings(dump: &Dump) -> InferredSettings {
    let masquerade = masquerade_evidence(dump);
    let localhost_nodeports = match dump.family {
        IpFamily::V4 => localhost_nodeports(dump),
        IpFamily::V6 => None,
    };
    InferredSettings {
        family: dump.family,
        local_detector: masquerade.detector(),
        masquerade_all: masquerade.masquerade_all(),
        masquerade_bit: masquerade_bit(dump),
        localhost_nodeports,
        nodeport_addresses: nodeport_addresses(dump),
        nfacct: nfacct(dump, localhost_nodeports),
        tcp_be_liberal: tcp_be_liberal(dump),
        random_fully: random_fully(dump),
    }
}

/// What the cluster-IP masquerade rules and the pod short-circuit rules show.
#[derive(Default)]
struct MasqueradeEvidence {
    /// Detectors seen, with how often.
    detectors: BTreeMap<InferredDetector, usize>,
    /// Conditional cluster-IP masquerade rules seen.
    conditional: usize,
    /// Unconditional cluster-IP masquerade rules seen (masquerade-all).
    unconditional: usize,
    /// Chains with endpoints but without a masquerade rule.
    unmasqueraded: usize,
}

impl MasqueradeEvidence {
    fn detector(&self) -> Option<InferredDetector> {
        let seen = self
            .detectors
            .iter()
            .max_by_key(|(_, count)| **count)
            .map(|(detector, _)| detector.clone());
        match seen {
            Some(detector) => Some(detector),
            None if self.unmasqueraded > 0 && self.unconditional == 0 => {
                Some(InferredDetector::None)
            }
            None => None,
        }
    }

    fn masquerade_all(&self) -> Option<bool> {
        if self.unconditional > 0 {
            Some(true)
        } else if self.conditional > 0 || self.unmasqueraded > 0 {
            Some(false)
        } else {
            None
        }
    }
}

fn nat_chains(dump: &Dump) -> impl Iterator<Item = &DumpChain> {
    dump.table(Table::Nat)
        .into_iter()
        .flat_map(|table| table.chains.iter())
}

fn rules_of<'a>(dump: &'a Dump, table: Table, chain: &str) -> impl Iterator<Item = &'a Rule> {
    dump.chain(table, chain)
        .into_iter()
        .flat_map(|chain| chain.rules.iter().map(|r| &r.rule))
}

fn masquerade_evidence(dump: &Dump) -> MasqueradeEvidence {
    let mut evidence = MasqueradeEvidence::default();
    for chain in nat_chains(dump) {
        let rules = chain.rules.iter().map(|r| &r.rule);
        if chain.name.starts_with(SVC_PREFIX) || chain.name.starts_with(SVL_PREFIX) {
            let has_endpoints = rules
                .clone()
                .any(|r| r.jump_chain().is_some_and(|c| c.starts_with(SEP_PREFIX)));
            let masq = rules
                .clone()
                .find(|r| r.jump_chain() == Some(KUBE_MARK_MASQ));
            match masq {
                Some(rule) => match if_not_local(rule) {
                    Some(detector) => {
                        evidence.conditional += 1;
                        *evidence.detectors.entry(detector).or_default() += 1;
                    }
                    None => evidence.unconditional += 1,
                },
                None if has_endpoints && is_cluster_ip_chain(dump, &chain.name) => {
                    evidence.unmasqueraded += 1;
                }
                None => {}
            }
        } else if chain.name.starts_with(EXT_PREFIX) {
            let short_circuits = rules.filter(|r| {
                r.jump_chain().is_some_and(|c| c.starts_with(SVC_PREFIX))
                    && r.comment()
                        .is_some_and(|c| c.starts_with("pod traffic for "))
            });
            for rule in short_circuits {
                if let Some(detector) = if_local(rule) {
                    *evidence.detectors.entry(detector).or_default() += 1;
                }
            }
        }
    }
    evidence
}

/// Whether nat `KUBE-SERVICES` sends cluster-IP traffic to `chain`: only that chain carries the
/// cluster-IP masquerade rule.
fn is_cluster_ip_chain(dump: &Dump, chain: &str) -> bool {
    rules_of(dump, Table::Nat, KUBE_SERVICES).any(|r| {
        r.jump_chain() == Some(chain) && r.comment().is_some_and(|c| c.ends_with(" cluster IP"))
    })
}

/// The detector of a conditional masquerade rule (`! -s`, `! -i`); `None` when it has no condition.
fn if_not_local(rule: &Rule) -> Option<InferredDetector> {
    if let Some(source) = rule.source.as_ref().filter(|s| s.negated) {
        return Some(InferredDetector::Cidr(source.value));
    }
    rule.in_interface
        .as_ref()
        .filter(|i| i.negated)
        .map(|i| interface_detector(&i.value))
}

/// The detector of a pod short-circuit rule (`-s`, `-i`).
fn if_local(rule: &Rule) -> Option<InferredDetector> {
    if let Some(source) = rule.source.as_ref().filter(|s| !s.negated) {
        return Some(InferredDetector::Cidr(source.value));
    }
    rule.in_interface
        .as_ref()
        .filter(|i| !i.negated)
        .map(|i| interface_detector(&i.value))
}

fn interface_detector(name: &str) -> InferredDetector {
    match name.strip_suffix('+') {
        Some(prefix) => InferredDetector::InterfaceNamePrefix(prefix.to_string()),
        None => InferredDetector::BridgeInterface(name.to_string()),
    }
}

fn masquerade_bit(dump: &Dump) -> Option<u8> {
    rules_of(dump, Table::Nat, KUBE_MARK_MASQ).find_map(|rule| match &rule.target {
        Some(Target::Mark(op)) => {
            let (value, _) = op.as_set_xmark();
            (value.count_ones() == 1).then(|| value.trailing_zeros() as u8)
        }
        _ => None,
    })
}

fn is_loopback_v4(net: &IpNet) -> bool {
    matches!(net, IpNet::V4(v4) if v4.prefix_len() == 8 && v4.addr().octets()[0] == 127)
}

/// The `KUBE-SERVICES` → `KUBE-NODEPORTS` rules.
fn nodeport_tail(dump: &Dump) -> impl Iterator<Item = &Rule> {
    rules_of(dump, Table::Nat, KUBE_SERVICES).filter(|r| r.jump_chain() == Some(KUBE_NODEPORTS))
}

fn dst_type_local(rule: &Rule) -> bool {
    rule.matches.iter().any(|m| {
        matches!(m, Match::AddrType { dst_type: Some(t), .. } if !t.negated && t.value == "LOCAL")
    })
}

fn localhost_nodeports(dump: &Dump) -> Option<bool> {
    for rule in nodeport_tail(dump) {
        if dst_type_local(rule) {
            let excluded = rule
                .destination
                .as_ref()
                .is_some_and(|d| d.negated && is_loopback_v4(&d.value));
            return Some(!excluded);
        }
        if rule
            .destination
            .as_ref()
            .is_some_and(|d| !d.negated && d.value.addr().is_loopback())
        {
            return Some(true);
        }
    }
    let loopback_nodeport = rules_of(dump, Table::Nat, KUBE_NODEPORTS).any(|r| {
        r.destination
            .as_ref()
            .is_some_and(|d| !d.negated && is_loopback_v4(&d.value))
    });
    let localnet_firewall = rules_of(dump, Table::Filter, KUBE_FIREWALL)
        .any(|r| r.comment() == Some("block incoming localnet connections"));
    (loopback_nodeport || localnet_firewall).then_some(true)
}

fn nodeport_addresses(dump: &Dump) -> Option<InferredNodePorts> {
    let mut addresses = Vec::new();
    for rule in nodeport_tail(dump) {
        if dst_type_local(rule) {
            return Some(InferredNodePorts::All);
        }
        if let Some(destination) = rule.destination.as_ref().filter(|d| !d.negated) {
            addresses.push(destination.value.addr());
        }
    }
    (!addresses.is_empty()).then_some(InferredNodePorts::Addresses(addresses))
}

fn has_nfacct(rule: &Rule) -> bool {
    rule.matches
        .iter()
        .any(|m| matches!(m, Match::Nfacct { .. }))
}

fn is_invalid_drop(rule: &Rule) -> bool {
    rule.target == Some(Target::Drop)
        && rule.matches.iter().any(|m| {
            matches!(m, Match::Conntrack { negated: false, states } if states.iter().any(|s| s == "INVALID"))
        })
}

fn nfacct(dump: &Dump, localhost_nodeports: Option<bool>) -> Option<bool> {
    let all_rules = dump
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .flat_map(|c| &c.rules)
        .map(|r| &r.rule);
    if all_rules.clone().any(has_nfacct) {
        return Some(true);
    }
    let invalid_drop = rules_of(dump, Table::Filter, KUBE_FORWARD).any(is_invalid_drop);
    // With IPv4 localhost NodePorts on (and loopback among the NodePort addresses), each NodePort
    // gets a `-d 127.0.0.0/8` twin counted by nfacct; a NodePort rule without one shows nfacct is
    // missing.
    let loopback_accepted = match nodeport_addresses(dump) {
        Some(InferredNodePorts::All) => true,
        Some(InferredNodePorts::Addresses(ips)) => ips.iter().any(IpAddr::is_loopback),
        None => false,
    };
    let nodeport_without_twin = localhost_nodeports == Some(true)
        && loopback_accepted
        && rules_of(dump, Table::Nat, KUBE_NODEPORTS)
            .any(|r| r.jump_chain().is_some_and(|c| c.starts_with(EXT_PREFIX)));
    (invalid_drop || nodeport_without_twin).then_some(false)
}

fn tcp_be_liberal(dump: &Dump) -> Option<bool> {
    let forward: Vec<&Rule> = rules_of(dump, Table::Filter, KUBE_FORWARD).collect();
    if forward.iter().any(|r| is_invalid_drop(r)) {
        Some(false)
    } else if forward
        .iter()
        .any(|r| r.comment() == Some("kubernetes forwarding rules"))
    {
        Some(true)
    } else {
        None
    }
}

fn random_fully(dump: &Dump) -> Option<bool> {
    rules_of(dump, Table::Nat, KUBE_POSTROUTING).find_map(|rule| match rule.target {
        Some(Target::Masquerade { random_fully }) => Some(random_fully),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::parse::parse_dump;

    fn infer(text: &str) -> InferredSettings {
        infer_settings(&parse_dump(text).unwrap())
    }

    const FIXED: &str = "\
*filter
:KUBE-FORWARD - [0:0]
-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x2000/0x2000 -j ACCEPT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]
:KUBE-SEP-BBBBBBBBBBBBBBBB - [0:0]
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x2000/0x2000
-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment \"a/b:p cluster IP\" -m tcp --dport 80 -j KUBE-SVC-AAAAAAAAAAAAAAAA
-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS
-A KUBE-SVC-AAAAAAAAAAAAAAAA -m comment --comment \"a/b:p -> 10.244.1.1:80\" -j KUBE-SEP-BBBBBBBBBBBBBBBB
COMMIT
";

    #[test]
    fn hand_written_dump() {
        let inferred = infer(FIXED);
        assert_eq!(
            inferred,
            InferredSettings {
                family: IpFamily::V4,
                local_detector: Some(InferredDetector::None),
                masquerade_all: Some(false),
                masquerade_bit: Some(13),
                localhost_nodeports: Some(false),
                nodeport_addresses: Some(InferredNodePorts::All),
                nfacct: None,
                tcp_be_liberal: Some(true),
                random_fully: Some(false),
            }
        );
    }

    #[test]
    fn interface_detectors() {
        let with = |condition: &str| {
            FIXED.replace(
                "-A KUBE-SVC-AAAAAAAAAAAAAAAA -m comment --comment \"a/b:p -> 10",
                &format!(
                    "-A KUBE-SVC-AAAAAAAAAAAAAAAA {condition} -d 10.96.0.10/32 -p tcp -m comment --comment \"a/b:p cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ\n\
                     -A KUBE-SVC-AAAAAAAAAAAAAAAA -m comment --comment \"a/b:p -> 10"
                ),
            )
        };
        assert_eq!(
            infer(&with("! -i cbr0")).local_detector,
            Some(InferredDetector::BridgeInterface("cbr0".into()))
        );
        assert_eq!(
            infer(&with("! -i veth+")).local_detector,
            Some(InferredDetector::InterfaceNamePrefix("veth".into()))
        );
        let all = infer(&with(""));
        assert_eq!(all.masquerade_all, Some(true));
        assert_eq!(all.local_detector, None);
    }

    #[test]
    fn an_empty_dump_shows_nothing() {
        let inferred = infer("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n");
        assert_eq!(inferred.local_detector, None);
        assert_eq!(inferred.masquerade_all, None);
        assert_eq!(inferred.masquerade_bit, None);
        assert_eq!(inferred.localhost_nodeports, None);
        assert_eq!(inferred.nodeport_addresses, None);
        assert_eq!(inferred.nfacct, None);
        assert_eq!(inferred.tcp_be_liberal, None);
        assert_eq!(inferred.random_fully, None);
    }
}
