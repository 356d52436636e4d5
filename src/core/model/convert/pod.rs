//! `v1.Pod` → [`Pod`].

use k8s_openapi::api::core::v1 as k8s;

use super::{Converted, Obj};
use crate::core::model::{ModelError, Pod, sloppy};

/// Converts a Pod.
///
/// Errors: missing `metadata.name` / `metadata.namespace`; a pod IP that is not an IP address.
/// `status.podIPs` wins over `status.podIP`; IPs are parsed sloppily. `ready` is the `Ready` condition
/// with status `True`.
pub fn pod(object: &k8s::Pod) -> Result<Converted<Pod>, ModelError> {
    let obj = Obj::new("Pod", &object.metadata);
    let id = obj.namespaced_name(&object.metadata)?;
    let status = object.status.as_ref();
    let spec = object.spec.as_ref();

    let listed: Vec<(String, &str)> = match status.and_then(|s| s.pod_ips.as_deref()) {
        Some(ips) if !ips.is_empty() => ips
            .iter()
            .enumerate()
            .map(|(i, ip)| (format!("status.podIPs[{i}].ip"), ip.ip.as_str()))
            .collect(),
        _ => match status.and_then(|s| s.pod_ip.as_deref()) {
            Some(ip) if !ip.is_empty() => vec![("status.podIP".to_string(), ip)],
            _ => Vec::new(),
        },
    };
    let mut pod_ips = Vec::new();
    for (field, text) in listed {
        pod_ips.push(
            sloppy::parse_ip(text).ok_or_else(|| obj.invalid(field, text, "not an IP address"))?,
        );
    }

    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");

    let pod = Pod {
        id,
        labels: object.metadata.labels.clone().unwrap_or_default(),
        pod_ips,
        node_name: spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        phase: status.and_then(|s| s.phase.clone()),
        ready,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
    };
    Ok(obj.done(pod))
}
