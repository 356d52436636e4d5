//! The `ServiceTrace` document: a Service's path and findings on each node checked, built from the
//! inputs with the pure core (plan, path, drift, trace).

use std::net::IpAddr;

use anyhow::bail;
use serde::Serialize;

use crate::core::drift::{
    Finding, Scope, cluster_findings, local_findings, node_findings, service_findings,
};
use crate::core::model::{ClusterState, NamespacedName, NodeContext, Service, TrafficPolicy};
use crate::core::path::{ActualRules, NodePath, node_path};
use crate::core::plan::{ServicePorts, plan_service};
use crate::core::rules::IpFamily;

use super::inputs::NodeRules;
use super::settings::ExpectedSettings;
use super::simulate::{PacketSource, Simulation, simulate};

/// The `apiVersion` of every diagnostics document.
pub const API_VERSION: &str = "svcproxy/v1";

/// `trace` output: `kind: ServiceTrace`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceDocument {
    /// Always [`API_VERSION`].
    pub api_version: &'static str,
    /// Always `ServiceTrace`.
    pub kind: &'static str,
    /// The Service as the cluster has it.
    pub service: ServiceSummary,
    /// Its EndpointSlices.
    pub endpoint_slices: Vec<SliceSummary>,
    /// One report per node and IP family checked.
    pub nodes: Vec<NodeReport>,
    /// Every finding: the cluster's, then each node's.
    pub findings: Vec<Finding>,
    /// Nodes whose rules disagree with the cluster.
    pub disagreeing_nodes: Vec<String>,
    /// Things a reader should know about how the check was done (missing dumps, settings guessed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A Service, summarized.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSummary {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Whether the cluster has it (a deleted Service can still have rules on nodes).
    pub exists: bool,
    /// `spec.type`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// Cluster IPs.
    #[serde(rename = "clusterIPs", skip_serializing_if = "Vec::is_empty")]
    pub cluster_ips: Vec<IpAddr>,
    /// External IPs.
    #[serde(rename = "externalIPs", skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<IpAddr>,
    /// Load-balancer ingress IPs.
    #[serde(rename = "loadBalancerIPs", skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_ips: Vec<IpAddr>,
    /// Ports as `name port/PROTO → target (nodePort)`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSummary>,
    /// The selector, `k=v,…`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// `Cluster` or `Local`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<String>,
    /// `Cluster` or `Local`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_traffic_policy: Option<String>,
    /// ClientIP affinity timeout, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_affinity_seconds: Option<u32>,
}

/// One Service port.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortSummary {
    /// Its name (may be empty).
    pub name: String,
    /// Number.
    pub port: u16,
    /// `TCP`, `UDP`, `SCTP`.
    pub protocol: String,
    /// The target port, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_port: Option<String>,
    /// The NodePort.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
}

/// One EndpointSlice.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SliceSummary {
    /// Its name.
    pub name: String,
    /// Endpoints listed.
    pub endpoints: usize,
    /// Of which ready.
    pub ready: usize,
}

/// A Service on one node, for one IP family.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    /// The node.
    pub node: String,
    /// `IPv4` or `IPv6`.
    pub family: &'static str,
    /// Where its rules came from.
    pub source: String,
    /// The proxy settings the expected rules were planned with, and where each came from.
    pub settings: Vec<String>,
    /// The path, port by port.
    pub path: NodePath,
    /// The simulated packet, with `--from`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulation: Option<Simulation>,
    /// This node's findings.
    pub findings: Vec<Finding>,
}

/// What to build a report for.
pub struct Request<'a> {
    /// The cluster state.
    pub cluster: &'a ClusterState,
    /// The Service.
    pub service: &'a NamespacedName,
    /// The nodes' rules.
    pub nodes: &'a [NodeRules],
    /// How to get each node's expected settings.
    pub settings: &'a ExpectedSettings,
    /// `--port`: keep only this port (name or number).
    pub port: Option<&'a str>,
    /// `--from`: simulate one packet.
    pub from: Option<&'a PacketSource>,
    /// Notes gathered while reading the inputs.
    pub notes: Vec<String>,
}

/// Builds the document. Fails when neither the cluster nor any node knows the Service, or `--port`
/// names no port.
pub fn build(request: Request<'_>) -> anyhow::Result<TraceDocument> {
    let Request {
        cluster,
        service,
        nodes,
        settings,
        port,
        from,
        mut notes,
    } = request;
    let svc = cluster.services.get(service);
    if let (Some(svc), Some(port)) = (svc, port)
        && !svc
            .ports
            .iter()
            .any(|p| p.name == port || p.port.to_string() == port)
    {
        bail!(
            "Service {service} has no port {port:?}; its ports are {}",
            port_list(svc)
        );
    }
    let mut reports = Vec::new();
    let mut node_level = Vec::new();
    let mut cluster_expected: Option<ServicePorts> = None;
    for rules in nodes {
        for (i, dump) in rules.dumps.iter().enumerate() {
            let family = dump.family;
            // Each family from its own dump: what the IPv4 rules show says nothing of the IPv6
            // cluster CIDR.
            let resolved = settings.resolve(cluster, &rules.node, Some(dump))?;
            for warning in &resolved.warnings {
                let note = format!("{} ({family}): {warning}", rules.node);
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
            let actual = ActualRules::new(dump);
            let mut expected = plan_service(cluster, &resolved.context, family, false, service);
            if let Some(port) = port {
                expected.retain(|(name, _)| {
                    name.port == port
                        || svc.is_some_and(|s| {
                            s.ports.iter().any(|p| {
                                p.port.to_string() == port
                                    && p.name == name.port
                                    && p.protocol == name.protocol
                            })
                        })
                });
            }
            if cluster_expected.is_none() && family == IpFamily::V4 {
                cluster_expected = Some(expected.clone());
            }
            let mut path = node_path(cluster, service, &rules.node, &expected, &actual);
            // A second family the Service does not use, and the node has no rules for: nothing to say.
            if i > 0 && expected.is_empty() && path.ports.is_empty() {
                continue;
            }
            // With --port: the planned ports kept above, and ports only the node still has whose
            // name is that port.
            let selected = |spn: &str| {
                port.is_none_or(|port| {
                    expected.iter().any(|(name, _)| name.spn() == spn)
                        || spn.ends_with(&format!(":{port}"))
                })
            };
            path.ports.retain(|p| selected(&p.service_port));
            let scope = Scope {
                node: &rules.node,
                family,
            };
            let mut findings = Vec::new();
            if i == 0 {
                findings.extend(node_findings(
                    &rules.node,
                    &actual,
                    rules.other_backend.as_ref(),
                ));
            }
            findings.extend(local_findings(&rules.node, &expected));
            findings.extend(
                service_findings(scope, service, &expected, &actual)
                    .into_iter()
                    .filter(|f| f.service.as_deref().is_none_or(selected)),
            );
            let simulation =
                from.map(|source| simulate(cluster, svc, &resolved.context, dump, source, port));
            node_level.extend(findings.iter().cloned());
            reports.push(NodeReport {
                node: rules.node.clone(),
                family: family.as_str(),
                source: rules.origin.clone(),
                settings: resolved.provenance.clone(),
                path,
                simulation,
                findings,
            });
        }
    }
    let known_to_nodes = reports
        .iter()
        .any(|r| r.path.ports.iter().any(|p| !p.entries.is_empty()));
    if svc.is_none() && !known_to_nodes {
        return Err(service_not_found(service, nodes));
    }
    let cluster_expected = match cluster_expected {
        Some(expected) => expected,
        None => {
            let ctx = NodeContext::new("", Vec::new());
            plan_service(cluster, &ctx, IpFamily::V4, false, service)
        }
    };
    let mut findings = cluster_findings(cluster, service, &cluster_expected);
    findings.extend(node_level);
    let mut disagreeing: Vec<String> = reports
        .iter()
        .filter(|r| r.findings.iter().any(is_drift))
        .map(|r| r.node.clone())
        .collect();
    disagreeing.dedup();
    Ok(TraceDocument {
        api_version: API_VERSION,
        kind: "ServiceTrace",
        service: summarize(service, svc),
        endpoint_slices: cluster
            .slices_for(service)
            .map(|s| SliceSummary {
                name: s.id.name.clone(),
                endpoints: s.endpoints.len(),
                ready: s.endpoints.iter().filter(|e| e.is_ready()).count(),
            })
            .collect(),
        nodes: reports,
        findings,
        disagreeing_nodes: disagreeing,
        notes,
    })
}

/// Whether a finding is about the node's rules disagreeing with the cluster (not the cluster alone, and
/// not an expected Local-policy drop).
pub fn is_drift(finding: &Finding) -> bool {
    use crate::core::drift::FindingKind::*;
    !matches!(
        finding.kind,
        NoEndpoints | NoLocalEndpoints | SelectorMismatch
    )
}

fn port_list(svc: &Service) -> String {
    svc.ports
        .iter()
        .map(|p| {
            if p.name.is_empty() {
                p.port.to_string()
            } else {
                format!("{} ({})", p.name, p.port)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn policy(policy: TrafficPolicy) -> String {
    match policy {
        TrafficPolicy::Cluster => "Cluster".into(),
        TrafficPolicy::Local => "Local".into(),
    }
}

fn summarize(id: &NamespacedName, svc: Option<&Service>) -> ServiceSummary {
    let mut summary = ServiceSummary {
        namespace: id.namespace.clone(),
        name: id.name.clone(),
        exists: svc.is_some(),
        r#type: None,
        cluster_ips: Vec::new(),
        external_ips: Vec::new(),
        load_balancer_ips: Vec::new(),
        ports: Vec::new(),
        selector: None,
        external_traffic_policy: None,
        internal_traffic_policy: None,
        session_affinity_seconds: None,
    };
    let Some(svc) = svc else {
        return summary;
    };
    summary.r#type = Some(format!("{:?}", svc.service_type));
    summary.cluster_ips = svc.cluster_ips.clone();
    summary.external_ips = svc.external_ips.clone();
    summary.load_balancer_ips = svc
        .load_balancer_ingress
        .iter()
        .filter_map(|i| i.vip())
        .collect();
    summary.ports = svc
        .ports
        .iter()
        .map(|p| PortSummary {
            name: p.name.clone(),
            port: p.port,
            protocol: p.protocol.as_str().to_uppercase(),
            target_port: p.target_port.as_ref().map(|t| match t {
                crate::core::model::TargetPort::Number(n) => n.to_string(),
                crate::core::model::TargetPort::Name(n) => n.clone(),
            }),
            node_port: p.node_port,
        })
        .collect();
    summary.selector = (!svc.selector.is_empty()).then(|| {
        svc.selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    });
    summary.external_traffic_policy = Some(policy(svc.external_traffic_policy));
    summary.internal_traffic_policy = Some(policy(svc.internal_traffic_policy));
    summary.session_affinity_seconds = svc.session_affinity_timeout;
    summary
}

/// The error for a Service neither the cluster nor the rules read know, naming the nodes checked.
pub fn service_not_found(service: &NamespacedName, nodes: &[NodeRules]) -> anyhow::Error {
    let checked = if nodes.is_empty() {
        "no node's rules were read (to look for rules a deleted Service left on a node, add --node NAME)"
            .to_string()
    } else {
        format!(
            "the rules of {} do not mention it either",
            nodes
                .iter()
                .map(|n| n.node.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    anyhow::anyhow!(
        "Service {service} not found: the cluster has no Service {name:?} in namespace {ns:?}, and {checked}; check the name, pick the namespace with -n NAMESPACE, or search every namespace with -A",
        name = service.name,
        ns = service.namespace
    )
}
