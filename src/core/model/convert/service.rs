//! `v1.Service` → [`Service`].

use std::net::IpAddr;

use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Converted, Obj};
use crate::core::model::{
    LoadBalancerIngress, ModelError, Service, ServicePort, ServiceType, TargetPort, TrafficPolicy,
    sloppy,
};
use crate::core::rules::IpFamily;

/// The affinity timeout the API server fills in when `sessionAffinityConfig` is absent.
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10800;
/// The largest affinity timeout the API server accepts (one day).
const MAX_AFFINITY_TIMEOUT_SECONDS: i32 = 86400;

/// Converts a Service.
///
/// Errors: missing `metadata.name` / `metadata.namespace`; an unknown `spec.type`; a cluster IP that is
/// neither an IP address nor `None`, or whose family contradicts `spec.ipFamilies`; a port, node port or
/// health-check node port outside 1–65535; a protocol other than TCP/UDP/SCTP; an affinity timeout outside
/// 1–86400; a `loadBalancerSourceRanges` entry that is not a CIDR.
///
/// Lenient, as kube-proxy is: `spec.clusterIPs` wins over `spec.clusterIP`; `None` makes the Service
/// headless; an external IP or load-balancer ingress IP that does not parse is skipped (warning);
/// source ranges are trimmed and masked, empty ones skipped; a traffic policy other than `Local` is
/// `Cluster` and an affinity other than `ClientIP` is none (warning when the value is unknown);
/// `ClientIP` affinity without a timeout gets 10800 s.
pub fn service(object: &k8s::Service) -> Result<Converted<Service>, ModelError> {
    let mut obj = Obj::new("Service", &object.metadata);
    let id = obj.namespaced_name(&object.metadata)?;
    let empty = k8s::ServiceSpec::default();
    let spec = object.spec.as_ref().unwrap_or(&empty);

    let service_type = match spec.type_.as_deref() {
        None | Some("ClusterIP") => ServiceType::ClusterIP,
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        Some(other) => {
            return Err(obj.invalid(
                "spec.type",
                other,
                "the type must be ClusterIP, NodePort, LoadBalancer or ExternalName",
            ));
        }
    };

    let (cluster_ips, headless) = cluster_ips(&obj, spec)?;

    let mut ports = Vec::new();
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        ports.push(service_port(&obj, i, port)?);
    }

    let mut external_ips = Vec::new();
    for (i, text) in spec.external_ips.iter().flatten().enumerate() {
        match sloppy::parse_ip(text) {
            Some(ip) => external_ips.push(ip),
            None if text.trim().is_empty() => {}
            None => obj.warn(format!(
                "spec.externalIPs[{i}] {text:?} is not an IP address; skipped, as kube-proxy does"
            )),
        }
    }

    let mut load_balancer_source_ranges = Vec::new();
    for (i, text) in spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .enumerate()
    {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            continue;
        }
        match sloppy::parse_cidr(trimmed) {
            Some(net) => load_balancer_source_ranges.push(net),
            None => {
                return Err(obj.invalid(
                    format!("spec.loadBalancerSourceRanges[{i}]"),
                    text.as_str(),
                    "not a CIDR such as 198.51.100.0/24",
                ));
            }
        }
    }

    let mut load_balancer_ingress = Vec::new();
    let ingress = object
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    for (i, entry) in ingress.into_iter().flatten().enumerate() {
        let ip = match entry.ip.as_deref() {
            None | Some("") => None,
            Some(text) => {
                let ip = sloppy::parse_ip(text);
                if ip.is_none() {
                    obj.warn(format!(
                        "status.loadBalancer.ingress[{i}].ip {text:?} is not an IP address; \
                         skipped, as kube-proxy does"
                    ));
                }
                ip
            }
        };
        load_balancer_ingress.push(LoadBalancerIngress {
            ip,
            hostname: entry.hostname.clone().filter(|h| !h.is_empty()),
            ip_mode: entry.ip_mode.clone(),
        });
    }

    let external_traffic_policy = traffic_policy(
        &mut obj,
        "spec.externalTrafficPolicy",
        spec.external_traffic_policy.as_deref(),
    );
    let internal_traffic_policy = traffic_policy(
        &mut obj,
        "spec.internalTrafficPolicy",
        spec.internal_traffic_policy.as_deref(),
    );
    let session_affinity_timeout = session_affinity(&mut obj, spec)?;
    let health_check_node_port =
        obj.optional_port("spec.healthCheckNodePort", spec.health_check_node_port)?;

    let service = Service {
        id,
        labels: object.metadata.labels.clone().unwrap_or_default(),
        annotations: object.metadata.annotations.clone().unwrap_or_default(),
        service_type,
        cluster_ips,
        headless,
        ports,
        external_ips,
        load_balancer_ingress,
        load_balancer_source_ranges,
        external_traffic_policy,
        internal_traffic_policy,
        session_affinity_timeout,
        health_check_node_port,
        selector: spec.selector.clone().unwrap_or_default(),
        external_name: spec.external_name.clone().filter(|n| !n.is_empty()),
    };
    Ok(obj.done(service))
}

/// The cluster IPs (from `clusterIPs`, else `clusterIP`) and whether the Service is headless.
fn cluster_ips(obj: &Obj, spec: &k8s::ServiceSpec) -> Result<(Vec<IpAddr>, bool), ModelError> {
    let listed: Vec<(String, &str)> = match spec.cluster_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips
            .iter()
            .enumerate()
            .map(|(i, ip)| (format!("spec.clusterIPs[{i}]"), ip.as_str()))
            .collect(),
        _ => match spec.cluster_ip.as_deref() {
            Some(ip) if !ip.is_empty() => vec![("spec.clusterIP".to_string(), ip)],
            _ => Vec::new(),
        },
    };
    if listed.first().is_some_and(|(_, ip)| *ip == "None") {
        return Ok((Vec::new(), true));
    }

    let mut families = Vec::new();
    for (i, family) in spec.ip_families.iter().flatten().enumerate() {
        families.push(match family.as_str() {
            "IPv4" => IpFamily::V4,
            "IPv6" => IpFamily::V6,
            other => {
                return Err(obj.invalid(
                    format!("spec.ipFamilies[{i}]"),
                    other,
                    "the family must be IPv4 or IPv6",
                ));
            }
        });
    }

    let mut ips = Vec::new();
    for (i, (field, text)) in listed.iter().enumerate() {
        let ip = sloppy::parse_ip(text).ok_or_else(|| {
            obj.invalid(
                field.as_str(),
                *text,
                "not an IP address (and not \"None\")",
            )
        })?;
        if let Some(family) = families.get(i)
            && IpFamily::of(&ip) != *family
        {
            return Err(obj.invalid(
                field.as_str(),
                *text,
                format!(
                    "an {} address, but spec.ipFamilies[{i}] is {family}",
                    IpFamily::of(&ip)
                ),
            ));
        }
        ips.push(ip);
    }
    Ok((ips, false))
}

fn service_port(
    obj: &Obj,
    index: usize,
    port: &k8s::ServicePort,
) -> Result<ServicePort, ModelError> {
    let field = |name: &str| format!("spec.ports[{index}].{name}");
    let target_port = match &port.target_port {
        None => None,
        Some(IntOrString::Int(0)) => None,
        Some(IntOrString::Int(number)) => {
            Some(TargetPort::Number(obj.port(&field("targetPort"), *number)?))
        }
        Some(IntOrString::String(name)) if name.is_empty() => None,
        Some(IntOrString::String(name)) => Some(TargetPort::Name(name.clone())),
    };
    Ok(ServicePort {
        name: port.name.clone().unwrap_or_default(),
        protocol: obj.protocol(&field("protocol"), port.protocol.as_deref())?,
        port: obj.port(&field("port"), port.port)?,
        target_port,
        node_port: obj.optional_port(&field("nodePort"), port.node_port)?,
    })
}

/// kube-proxy compares the policy with `Local`; anything else behaves as `Cluster`.
fn traffic_policy(obj: &mut Obj, field: &str, value: Option<&str>) -> TrafficPolicy {
    match value {
        Some("Local") => TrafficPolicy::Local,
        None | Some("") | Some("Cluster") => TrafficPolicy::Cluster,
        Some(other) => {
            obj.warn(format!(
                "{field} {other:?} is not Cluster or Local; treated as Cluster, as kube-proxy does"
            ));
            TrafficPolicy::Cluster
        }
    }
}

fn session_affinity(obj: &mut Obj, spec: &k8s::ServiceSpec) -> Result<Option<u32>, ModelError> {
    match spec.session_affinity.as_deref() {
        Some("ClientIP") => {}
        None | Some("") | Some("None") => return Ok(None),
        Some(other) => {
            obj.warn(format!(
                "spec.sessionAffinity {other:?} is not None or ClientIP; \
                 treated as None, as kube-proxy does"
            ));
            return Ok(None);
        }
    }
    let timeout = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds);
    match timeout {
        None => Ok(Some(DEFAULT_AFFINITY_TIMEOUT_SECONDS)),
        Some(seconds) if (1..=MAX_AFFINITY_TIMEOUT_SECONDS).contains(&seconds) => {
            Ok(Some(seconds.unsigned_abs()))
        }
        Some(seconds) => Err(obj.invalid(
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            seconds.to_string(),
            "the timeout must be between 1 and 86400 seconds",
        )),
    }
}
