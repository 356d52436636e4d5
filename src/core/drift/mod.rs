//! Drift: what a node's rules do against what the cluster says they should do, as [`Finding`]s.
//!
//! - [`service_findings`]: one Service's ports on one node ([`port::compare_port`]), including ports
//!   the cluster no longer has (`stale-service`);
//! - [`node_findings`]: the node as a whole (canaries, jumps from the built-in chains, both backends);
//! - [`cluster_findings`] and [`local_findings`]: what the cluster state alone says about a Service
//!   (no endpoints, selector problems) and what that means on one node (Local policy without local
//!   endpoints).

pub mod finding;
pub mod port;

use std::collections::BTreeSet;

use crate::core::model::{ClusterState, NamespacedName, Pod};
use crate::core::path::actual::{ActualRules, rule_target_chain};
use crate::core::path::service_port_names;
use crate::core::plan::{ServicePorts, jump_rules};
use crate::core::rules::names::{KUBE_PROXY_CANARY, is_owned_chain};
use crate::core::rules::{Dump, Table};

pub use finding::{Finding, FindingKind, Severity};
pub use port::{Scope, compare_port};

/// The findings for every port of `service` on one node: each port the cluster has (planned in
/// `expected`) and each port only the node's rules still name.
pub fn service_findings(
    scope: Scope<'_>,
    service: &NamespacedName,
    expected: &ServicePorts,
    actual: &ActualRules<'_>,
) -> Vec<Finding> {
    service_port_names(service, expected, actual)
        .into_iter()
        .flat_map(|spn| {
            let planned = expected
                .iter()
                .find(|(name, _)| name.spn() == spn)
                .map(|(_, rules)| rules);
            compare_port(scope, &spn, planned, actual)
        })
        .collect()
}

/// The tables whose canary and jumps kube-proxy maintains.
const CANARY_TABLES: [Table; 3] = [Table::Mangle, Table::Nat, Table::Filter];

/// Findings about the node as a whole: flushed tables (a missing `KUBE-PROXY-CANARY`), missing jumps
/// from the built-in chains, and kube-proxy chains in both backends (`other_backend` is the dump of
/// the backend the proxy does not use, when it was taken). Tables absent from the dump are not judged.
pub fn node_findings(
    node: &str,
    actual: &ActualRules<'_>,
    other_backend: Option<&Dump>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let flushed: Vec<&str> = CANARY_TABLES
        .iter()
        .filter(|t| actual.has_table(**t) && actual.chain(**t, KUBE_PROXY_CANARY).is_none())
        .map(|t| t.as_str())
        .collect();
    if !flushed.is_empty() {
        findings.push(
            Finding::new(
                FindingKind::RulesFlushed,
                format!(
                    "the {} table{} lost the KUBE-PROXY-CANARY chain: something flushed the rules (a firewall reload?) and the proxy has not restored them yet",
                    flushed.join(", "),
                    if flushed.len() > 1 { "s" } else { "" }
                ),
            )
            .in_chain(KUBE_PROXY_CANARY)
            .on_node(node),
        );
    }
    for jump in jump_rules() {
        if !actual.has_table(jump.table) {
            continue;
        }
        let present = actual.chain(jump.table, jump.from).is_some_and(|chain| {
            chain
                .rules
                .iter()
                .any(|r| rule_target_chain(&r.rule) == Some(jump.to))
        });
        if !present {
            findings.push(
                Finding::new(
                    FindingKind::MissingJump,
                    format!(
                        "{} {} does not jump to {}: traffic never reaches the proxy's rules there",
                        jump.table.as_str(),
                        jump.from,
                        jump.to
                    ),
                )
                .in_chain(jump.from)
                .on_node(node),
            );
        }
    }
    if let Some(other) = other_backend {
        let owned: BTreeSet<&str> = other
            .tables
            .iter()
            .flat_map(|t| {
                t.chains
                    .iter()
                    .filter(move |c| is_owned_chain(t.table, &c.name))
                    .map(|c| c.name.as_str())
            })
            .collect();
        if !owned.is_empty() {
            let backend = other.backend.as_deref().unwrap_or("the other backend");
            findings.push(
                Finding::new(
                    FindingKind::BackendMismatch,
                    format!(
                        "kube-proxy chains exist in {backend} too ({}): two proxies, or a proxy and the host, use different iptables backends",
                        owned.iter().take(3).copied().collect::<Vec<_>>().join(", ")
                    ),
                )
                .on_node(node),
            );
        }
    }
    findings
}

/// What the cluster state alone says about `service`: ports without usable endpoints (from the
/// planned rules of any node: a `REJECT` for "has no endpoints"), and a selector that matches no pod
/// or pods missing from the slices. The selector checks need the cluster's pods; without any pod in
/// the Service's namespace they are skipped.
pub fn cluster_findings(
    cluster: &ClusterState,
    service: &NamespacedName,
    expected: &ServicePorts,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (name, rules) in expected {
        let rejects = rules.entries.iter().any(|e| {
            e.table == Table::Filter
                && e.rule
                    .comment()
                    .is_some_and(|c| c.ends_with(" has no endpoints"))
        });
        if rejects {
            findings.push(
                Finding::new(
                    FindingKind::NoEndpoints,
                    format!(
                        "{} has no ready or serving endpoint: connections are refused (REJECT)",
                        name.spn()
                    ),
                )
                .for_service(name.spn()),
            );
        }
    }
    let Some(svc) = cluster.services.get(service) else {
        return findings;
    };
    if svc.selector.is_empty() {
        return findings;
    }
    let in_namespace: Vec<&Pod> = cluster
        .pods
        .values()
        .filter(|p| p.id.namespace == service.namespace)
        .collect();
    if in_namespace.is_empty() {
        return findings;
    }
    let selected: Vec<&Pod> = in_namespace
        .into_iter()
        .filter(|p| svc.selector.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
        .filter(|p| !matches!(p.phase.as_deref(), Some("Succeeded" | "Failed")))
        .collect();
    let selector = svc
        .selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    if selected.is_empty() {
        findings.push(
            Finding::new(
                FindingKind::SelectorMismatch,
                format!(
                    "the selector {selector} of {service} matches no pod in namespace {}",
                    service.namespace
                ),
            )
            .for_service(service.to_string()),
        );
        return findings;
    }
    let listed: BTreeSet<std::net::IpAddr> = cluster
        .slices_for(service)
        .flat_map(|s| s.endpoints.iter().filter_map(|e| e.ip()))
        .collect();
    let absent: Vec<String> = selected
        .iter()
        .filter(|p| !p.host_network || !p.pod_ips.is_empty())
        .filter(|p| !p.pod_ips.is_empty() && !p.pod_ips.iter().any(|ip| listed.contains(ip)))
        .map(|p| p.id.name.clone())
        .collect();
    if !absent.is_empty() {
        findings.push(
            Finding::new(
                FindingKind::SelectorMismatch,
                format!(
                    "pods {} match the selector {selector} of {service} but are in no EndpointSlice (is the EndpointSlice controller behind, or the slices managed by hand?)",
                    absent.join(", ")
                ),
            )
            .for_service(service.to_string()),
        );
    }
    findings
}

/// What the planned rules of one node say about Local traffic policies there: ports whose external
/// (eTP=Local) or internal (iTP=Local) traffic is dropped on this node for want of a local endpoint.
pub fn local_findings(node: &str, expected: &ServicePorts) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (name, rules) in expected {
        let which = match (rules.no_local_external, rules.no_local_internal) {
            (true, true) => "external and cluster-IP",
            (true, false) => "external (externalTrafficPolicy: Local)",
            (false, true) => "cluster-IP (internalTrafficPolicy: Local)",
            (false, false) => continue,
        };
        findings.push(
            Finding::new(
                FindingKind::NoLocalEndpoints,
                format!(
                    "{} has no endpoint on {node}: {which} traffic arriving here is dropped",
                    name.spn()
                ),
            )
            .for_service(name.spn())
            .on_node(node),
        );
    }
    findings
}

/// Every drift finding of one node for one IP family: the node as a whole ([`node_findings`]) and
/// every Service the cluster has or the node's rules still name ([`service_findings`]), planned with
/// `ctx`. Cluster-side findings (no endpoints, selectors, Local policies) are not included: they are not
/// about the node's rules.
pub fn node_drift(
    cluster: &ClusterState,
    ctx: &crate::core::model::NodeContext,
    actual: &ActualRules<'_>,
    other_backend: Option<&Dump>,
) -> Vec<Finding> {
    let family = actual.dump.family;
    let scope = Scope {
        node: &ctx.node_name,
        family,
    };
    let mut services: BTreeSet<NamespacedName> = cluster.services.keys().cloned().collect();
    for spn in actual.all_service_ports() {
        let base = spn.split_once(':').map_or(spn, |(service, _)| service);
        if let Some((namespace, name)) = base.split_once('/') {
            services.insert(NamespacedName::new(namespace, name));
        }
    }
    let mut findings = node_findings(&ctx.node_name, actual, other_backend);
    for service in &services {
        let expected = crate::core::plan::plan_service(cluster, ctx, family, false, service);
        findings.extend(service_findings(scope, service, &expected, actual));
    }
    findings
}
