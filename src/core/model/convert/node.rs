//! `v1.Node` → [`Node`].

use k8s_openapi::api::core::v1 as k8s;

use super::{Converted, Obj};
use crate::core::model::{ModelError, Node, NodeAddress, Taint, sloppy};

/// Converts a Node.
///
/// Errors: missing `metadata.name`; a pod CIDR that is not a CIDR. `spec.podCIDRs` wins over
/// `spec.podCIDR`; CIDRs are parsed sloppily and masked. Addresses that are IPs are normalized with the
/// sloppy parse (so [`Node::primary_ips`] sees them); others (`Hostname`) are kept verbatim.
pub fn node(object: &k8s::Node) -> Result<Converted<Node>, ModelError> {
    let obj = Obj::new("Node", &object.metadata);
    let name = obj.name(&object.metadata)?;
    let spec = object.spec.as_ref();

    let listed: Vec<(String, &str)> = match spec.and_then(|s| s.pod_cidrs.as_deref()) {
        Some(cidrs) if !cidrs.is_empty() => cidrs
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("spec.podCIDRs[{i}]"), c.as_str()))
            .collect(),
        _ => match spec.and_then(|s| s.pod_cidr.as_deref()) {
            Some(cidr) if !cidr.is_empty() => vec![("spec.podCIDR".to_string(), cidr)],
            _ => Vec::new(),
        },
    };
    let mut pod_cidrs = Vec::new();
    for (field, text) in listed {
        let net = sloppy::parse_cidr(text)
            .ok_or_else(|| obj.invalid(field, text, "not a CIDR such as 10.244.1.0/24"))?;
        pod_cidrs.push(net);
    }

    let addresses = object
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .map(|a| NodeAddress {
            kind: a.type_.clone(),
            address: sloppy::normalize_ip(&a.address).unwrap_or_else(|| a.address.clone()),
        })
        .collect();

    let taints = spec
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .map(|t| Taint {
            key: t.key.clone(),
            effect: t.effect.clone(),
        })
        .collect();

    let node = Node {
        name,
        labels: object.metadata.labels.clone().unwrap_or_default(),
        pod_cidrs,
        addresses,
        taints,
        being_deleted: object.metadata.deletion_timestamp.is_some(),
    };
    Ok(obj.done(node))
}
