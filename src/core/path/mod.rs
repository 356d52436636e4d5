//! The Service → pod path on one node: for each service port, the node's actual entry rules, the
//! per-service chains they reach, and every endpoint with its share of traffic, counters, pod and
//! node, marked against what the node should have ([`EndpointStatus`]).
//!
//! Built from the cluster state, the node's parsed dump ([`ActualRules`]) and the planned rules for
//! that node. It reads upstream kube-proxy dumps as well as ours: the service port is taken from the
//! entry rules' comments, and endpoint chains are found through the chain graph, so large-cluster mode
//! (no per-endpoint comments) and the kernel's normalized printing need nothing special.

pub mod actual;
pub mod graph;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;

use crate::core::model::{ClusterState, NamespacedName, Service, ServicePort};
use crate::core::plan::endpoints::{EndpointInfo, endpoints_for_port};
use crate::core::plan::{ServicePorts, ServiceRules};
use crate::core::rules::format::{Form, rule_args};
use crate::core::rules::{Counters, IpFamily, Table, Target};

use actual::dnat_destination;
pub use actual::{ActualRules, ChainKind, EntryRef};
use graph::{ladder, reached_chains};

/// The path of every port of one Service on one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePath {
    /// The node.
    pub node: String,
    /// One entry per service port, known to the cluster or to the node.
    pub ports: Vec<PortPath>,
}

/// The path of one service port on one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortPath {
    /// `namespace/name[:port]`.
    pub service_port: String,
    /// The port's name (empty for an unnamed port), when the cluster knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// The Service port number and protocol (`80/TCP`), when the cluster knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Whether the cluster still has this port.
    pub in_cluster: bool,
    /// The node's rules in the shared entry chains for this port.
    pub entries: Vec<EntryStep>,
    /// The per-service chains (`KUBE-SVC`/`SVL`/`EXT`/`FW`) the entries reach.
    pub chains: Vec<ChainStep>,
    /// Every endpoint: reached on the node, expected there, or listed in the slices.
    pub endpoints: Vec<EndpointStep>,
}

/// One rule in an entry chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryStep {
    /// `nat` or `filter`.
    pub table: String,
    /// The entry chain.
    pub chain: String,
    /// What the rule is for: its comment without the service port (`cluster IP`, `has no endpoints`, …).
    pub purpose: String,
    /// The destination it matches (`-d`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The destination port it matches, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<String>,
    /// The target: a chain name, `REJECT`, `DROP`, `ACCEPT`, ….
    pub target: String,
    /// Counters, when the dump has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counters: Option<Counters>,
    /// The line in the dump.
    pub line: usize,
    /// The rule as `iptables-save` prints it (without `-A CHAIN`).
    pub rule: String,
}

/// One per-service chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainStep {
    /// Its name.
    pub name: String,
    /// `SVC`, `SVL`, `EXT` or `FW`.
    pub kind: ChainKind,
    /// Its rules as `iptables-save` prints them, with counters and lines.
    pub rules: Vec<RuleStep>,
}

/// One rule of a chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleStep {
    /// The rule as `iptables-save` prints it (without `-A CHAIN`).
    pub rule: String,
    /// Counters, when the dump has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counters: Option<Counters>,
    /// The line in the dump.
    pub line: usize,
}

/// Where an endpoint stands on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointStatus {
    /// Expected and present: the node load-balances to it.
    Active,
    /// Present on the node but not a usable endpoint any more.
    Stale,
    /// Expected but absent: the node never sends it traffic.
    Missing,
    /// In the slices, but not used by this node (not ready, or another node's Local endpoint).
    Unused,
}

/// The share of one ladder's new connections an endpoint receives.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Share {
    /// The `KUBE-SVC`/`KUBE-SVL` chain.
    pub via: String,
    /// Between 0 and 1.
    pub share: f64,
}

/// One endpoint of a service port.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStep {
    /// `ip:port` (`[ip]:port` for IPv6).
    pub address: String,
    /// Where it stands on this node.
    pub status: EndpointStatus,
    /// Its `KUBE-SEP` chain (the node's, or the expected name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// Its share in each ladder that reaches it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<Share>,
    /// The DNAT rule's counters, when the dump has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counters: Option<Counters>,
    /// The pod behind it (`namespace/name`), from the slice's targetRef or a pod with that IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The node it runs on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Its conditions in the slices, when listed there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Conditions>,
}

/// An endpoint's conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conditions {
    /// Ready.
    pub ready: bool,
    /// Serving.
    pub serving: bool,
    /// Terminating.
    pub terminating: bool,
}

/// The ports of `service` that exist in the cluster (with their planned rules) plus those only the
/// node's entry rules name.
pub fn service_port_names(
    service: &NamespacedName,
    expected: &ServicePorts,
    actual: &ActualRules<'_>,
) -> Vec<String> {
    let mut names: Vec<String> = expected.iter().map(|(spn, _)| spn.spn()).collect();
    for spn in actual.service_ports_named(&service.to_string()) {
        if !names.iter().any(|n| n == spn) {
            names.push(spn.to_string());
        }
    }
    names
}

/// The path of `service` on one node.
pub fn node_path(
    cluster: &ClusterState,
    service: &NamespacedName,
    node: &str,
    expected: &ServicePorts,
    actual: &ActualRules<'_>,
) -> NodePath {
    let svc = cluster.services.get(service);
    let family = actual.dump.family;
    let ports = service_port_names(service, expected, actual)
        .into_iter()
        .map(|spn| {
            let planned = expected.iter().find(|(name, _)| name.spn() == spn);
            let service_port = svc.and_then(|s| {
                planned.and_then(|(name, _)| {
                    s.ports
                        .iter()
                        .find(|p| p.name == name.port && p.protocol == name.protocol)
                })
            });
            port_path(
                cluster,
                svc,
                service_port,
                &spn,
                planned.map(|(_, rules)| rules),
                actual,
                node,
                family,
            )
        })
        .collect();
    NodePath {
        node: node.to_string(),
        ports,
    }
}

#[allow(clippy::too_many_arguments)]
fn port_path(
    cluster: &ClusterState,
    service: Option<&Service>,
    port: Option<&ServicePort>,
    spn: &str,
    expected: Option<&ServiceRules>,
    actual: &ActualRules<'_>,
    node: &str,
    family: IpFamily,
) -> PortPath {
    let entries = actual.entries_of(spn);
    let reached = reached_chains(actual, entries, &[]);
    let entry_steps = entries.iter().map(|e| entry_step(e, spn, family)).collect();
    let chains: Vec<ChainStep> = reached
        .iter()
        .filter_map(|chain| {
            let kind = ChainKind::of(&chain.name)?;
            (kind != ChainKind::Sep).then(|| ChainStep {
                name: chain.name.clone(),
                kind,
                rules: chain
                    .rules
                    .iter()
                    .map(|r| RuleStep {
                        rule: rule_args(&r.rule, Form::Save, family),
                        counters: r.counters,
                        line: r.line,
                    })
                    .collect(),
            })
        })
        .collect();

    // Shares per endpoint chain, from every ladder reached.
    let mut shares: BTreeMap<&str, Vec<Share>> = BTreeMap::new();
    for chain in reached.iter().filter(|c| {
        matches!(
            ChainKind::of(&c.name),
            Some(ChainKind::Svc | ChainKind::Svl)
        )
    }) {
        for rung in ladder(chain) {
            shares.entry(rung.target).or_default().push(Share {
                via: chain.name.clone(),
                share: rung.share,
            });
        }
    }
    let expected_seps: BTreeMap<String, String> = expected
        .map(|e| {
            e.chains
                .iter()
                .filter(|c| ChainKind::of(&c.name) == Some(ChainKind::Sep))
                .filter_map(|c| {
                    c.rules.iter().find_map(|r| match &r.target {
                        Some(Target::Dnat { to }) => Some((to.clone(), c.name.clone())),
                        _ => None,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let listed: Vec<EndpointInfo> = match (service, port) {
        (Some(svc), Some(port)) => {
            let slices: Vec<_> = cluster.slices_for(&svc.id).collect();
            endpoints_for_port(&slices, port, family, node)
        }
        _ => Vec::new(),
    };
    let mut endpoints: Vec<EndpointStep> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for chain in reached
        .iter()
        .filter(|c| ChainKind::of(&c.name) == Some(ChainKind::Sep))
    {
        let address = dnat_destination(chain).unwrap_or_default().to_string();
        let status = if expected_seps.get(&address) == Some(&chain.name) {
            EndpointStatus::Active
        } else {
            EndpointStatus::Stale
        };
        let counters = chain
            .rules
            .iter()
            .find(|r| matches!(r.rule.target, Some(Target::Dnat { .. })))
            .and_then(|r| r.counters);
        seen.insert(address.clone());
        endpoints.push(EndpointStep {
            status,
            chain: Some(chain.name.clone()),
            shares: shares.remove(chain.name.as_str()).unwrap_or_default(),
            counters,
            ..endpoint_identity(cluster, service, &listed, &address)
        });
    }
    for (address, chain) in &expected_seps {
        if seen.insert(address.clone()) {
            endpoints.push(EndpointStep {
                status: EndpointStatus::Missing,
                chain: Some(chain.clone()),
                ..endpoint_identity(cluster, service, &listed, address)
            });
        }
    }
    for info in &listed {
        if seen.insert(info.address.clone()) {
            endpoints.push(EndpointStep {
                status: EndpointStatus::Unused,
                ..endpoint_identity(cluster, service, &listed, &info.address)
            });
        }
    }
    endpoints.sort_by(|a, b| (a.status, &a.address).cmp(&(b.status, &b.address)));
    PortPath {
        service_port: spn.to_string(),
        port_name: expected.and(port).map(|p| p.name.clone()),
        port: port.map(|p| format!("{}/{}", p.port, p.protocol.as_str().to_uppercase())),
        in_cluster: expected.is_some(),
        entries: entry_steps,
        chains,
        endpoints,
    }
}

/// An endpoint step with only its identity filled in: address, pod, node and conditions.
fn endpoint_identity(
    cluster: &ClusterState,
    service: Option<&Service>,
    listed: &[EndpointInfo],
    address: &str,
) -> EndpointStep {
    let info = listed.iter().find(|e| e.address == address);
    let ip = info.map(|e| e.ip).or_else(|| address_ip(address));
    let from_slice = info.and_then(|info| {
        let svc = service?;
        cluster.slices_for(&svc.id).find_map(|slice| {
            slice.endpoints.iter().find_map(|e| {
                (e.ip() == Some(info.ip))
                    .then_some(e.target_ref.as_ref())
                    .flatten()
                    .filter(|r| r.kind.as_deref() == Some("Pod"))
                    .and_then(|r| {
                        Some(format!(
                            "{}/{}",
                            r.namespace.as_deref().unwrap_or(&slice.id.namespace),
                            r.name.as_deref()?
                        ))
                    })
            })
        })
    });
    let pod_by_ip = ip.and_then(|ip| {
        cluster
            .pods
            .values()
            .find(|p| !p.host_network && p.pod_ips.contains(&ip))
    });
    EndpointStep {
        address: address.to_string(),
        status: EndpointStatus::Unused,
        chain: None,
        shares: Vec::new(),
        counters: None,
        pod: from_slice.or_else(|| pod_by_ip.map(|p| p.id.to_string())),
        node: info
            .and_then(|e| e.node_name.clone())
            .or_else(|| pod_by_ip.and_then(|p| p.node_name.clone())),
        conditions: info.map(|e| Conditions {
            ready: e.ready,
            serving: e.serving,
            terminating: e.terminating,
        }),
    }
}

/// The IP of an `ip:port` or `[ip]:port` string.
pub fn address_ip(address: &str) -> Option<IpAddr> {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    address.rsplit_once(':')?.0.parse().ok()
}

fn entry_step(entry: &EntryRef<'_>, spn: &str, family: IpFamily) -> EntryStep {
    let rule = &entry.rule.rule;
    let purpose = rule
        .comment()
        .and_then(|c| c.strip_prefix(spn))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .unwrap_or("node port")
        .to_string();
    let target = match &rule.target {
        Some(Target::Jump { chain } | Target::Goto { chain }) => chain.clone(),
        Some(Target::Reject { .. }) => "REJECT".into(),
        Some(Target::Drop) => "DROP".into(),
        Some(Target::Accept) => "ACCEPT".into(),
        Some(Target::Return) => "RETURN".into(),
        Some(Target::Dnat { .. }) => "DNAT".into(),
        Some(Target::Masquerade { .. }) => "MASQUERADE".into(),
        Some(Target::Mark(_)) => "MARK".into(),
        Some(_) => "other".into(),
        None => "(none)".into(),
    };
    EntryStep {
        table: match entry.table {
            Table::Nat => "nat".into(),
            other => other.as_str().to_string(),
        },
        chain: entry.chain.to_string(),
        purpose,
        destination: rule
            .destination
            .as_ref()
            .map(|d| negated(d.negated, &d.value)),
        destination_port: rule.dport().map(|p| negated(p.negated, &p.value)),
        target,
        counters: entry.rule.counters,
        line: entry.rule.line,
        rule: rule_args(rule, Form::Save, family),
    }
}

/// `value`, preceded by `! ` when negated.
fn negated(negated: bool, value: &impl std::fmt::Display) -> String {
    if negated {
        format!("! {value}")
    } else {
        value.to_string()
    }
}
