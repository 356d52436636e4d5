//! Reading a bundle's `node-context.json` (one node's kube-proxy settings) into a [`NodeContext`]. Pure:
//! the caller reads the file.
//!
//! The file is one JSON object, for example:
//!
//! ```json
//! {"node":"testnode","nodeIPs":["198.18.0.2"],"clusterCIDR":"10.244.0.0/16","detectLocalMode":"ClusterCIDR",
//!  "localhostNodePorts":true,"masqueradeAll":false,"kubeProxyVersion":"v1.36.2"}
//! ```
//!
//! Only `node` is required; everything absent keeps kube-proxy's default ([`NodeContext::new`]). The keys
//! follow kube-proxy's flags and configuration fields:
//!
//! | key | meaning |
//! |---|---|
//! | `node` | the node's name (`--hostname-override`) |
//! | `nodeIPs` | the node's primary IPs, one per family |
//! | `nodeLabels` | the node's labels (the topology zone among them) |
//! | `clusterCIDR` | `--cluster-cidr`: a string with one CIDR per family, comma-separated, or a list |
//! | `detectLocalMode` | `ClusterCIDR` (the default), `NodeCIDR`, `BridgeInterface` or `InterfaceNamePrefix` |
//! | `podCIDR` | for `NodeCIDR`: the node's pod CIDRs, like `clusterCIDR` (else taken from the Node, see [`NodeContext::apply_node`]) |
//! | `podBridgeInterface` | for `BridgeInterface`: `--pod-bridge-interface` |
//! | `podInterfaceNamePrefix` | for `InterfaceNamePrefix`: `--pod-interface-name-prefix` |
//! | `localhostNodePorts` | `--iptables-localhost-nodeports` (default true) |
//! | `masqueradeAll` | `--masquerade-all` (default false) |
//! | `masqueradeBit` | `--iptables-masquerade-bit` (default 14) |
//! | `nodePortAddresses` | `--nodeport-addresses`: CIDRs, or `primary` for the node IPs |
//! | `kubeProxyVersion` | informational, not used |
//!
//! As in kube-proxy, `ClusterCIDR` mode without a cluster CIDR means no local-traffic detection at all.
//! Unknown keys are errors, so that a misspelt setting does not silently fall back to its default.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use super::json::json_error;
use super::{LocalDetector, ModelError, NodeContext, sloppy};
use crate::core::rules::IpFamily;

/// The advice attached to errors about `node-context.json`.
pub const NODE_CONTEXT_HINT: &str = "it must be one JSON object such as \
    {\"node\":\"NAME\",\"nodeIPs\":[\"IP\"],\"clusterCIDR\":\"CIDR\",\"detectLocalMode\":\"ClusterCIDR\"}";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NodeContextFile {
    node: Option<String>,
    #[serde(rename = "nodeIPs")]
    node_ips: Option<Vec<String>>,
    node_labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "clusterCIDR")]
    cluster_cidr: Option<CidrList>,
    detect_local_mode: Option<String>,
    #[serde(rename = "podCIDR")]
    pod_cidr: Option<CidrList>,
    pod_bridge_interface: Option<String>,
    pod_interface_name_prefix: Option<String>,
    localhost_node_ports: Option<bool>,
    masquerade_all: Option<bool>,
    masquerade_bit: Option<u8>,
    node_port_addresses: Option<Vec<String>>,
    #[allow(dead_code)]
    kube_proxy_version: Option<String>,
}

/// A comma-separated string (the flag form) or a list of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum CidrList {
    Joined(String),
    Listed(Vec<String>),
}

impl CidrList {
    fn entries(&self) -> Vec<&str> {
        match self {
            CidrList::Joined(text) => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect(),
            CidrList::Listed(list) => list
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }
}

/// Reads `node-context.json` text (named `source` in errors) into a [`NodeContext`].
///
/// Errors: invalid JSON or an unknown key or a value of the wrong type ([`ModelError::Json`], with line
/// and column); a missing `node`, an address or CIDR that does not parse, two cluster CIDRs of one
/// family, an unknown `detectLocalMode`, a mode without its interface setting, a masquerade bit above
/// 31 ([`ModelError::Bundle`]).
pub fn load_node_context(text: &str, source: &str) -> Result<NodeContext, ModelError> {
    let file: NodeContextFile =
        serde_json::from_str(text).map_err(|e| json_error(source, &e, NODE_CONTEXT_HINT))?;
    let bad = |reason: String| ModelError::Bundle {
        path: source.to_string(),
        reason,
    };

    let node = file.node.filter(|n| !n.is_empty()).ok_or_else(|| {
        bad(format!(
            "missing \"node\" (the node's name); {NODE_CONTEXT_HINT}"
        ))
    })?;

    let mut node_ips = Vec::new();
    for (i, text) in file.node_ips.iter().flatten().enumerate() {
        node_ips.push(
            sloppy::parse_ip(text)
                .ok_or_else(|| bad(format!("nodeIPs[{i}] {text:?} is not an IP address")))?,
        );
    }

    let mut context = NodeContext::new(node, node_ips);
    if let Some(labels) = file.node_labels {
        context.node_labels = labels;
    }

    let cluster_cidrs = match &file.cluster_cidr {
        Some(list) => per_family_cidrs("clusterCIDR", list).map_err(bad)?,
        None => Vec::new(),
    };
    context.local_detector = match file.detect_local_mode.as_deref() {
        None | Some("") | Some("ClusterCIDR") if cluster_cidrs.is_empty() => LocalDetector::None,
        None | Some("") | Some("ClusterCIDR") => LocalDetector::ClusterCidr(cluster_cidrs),
        Some("NodeCIDR") => match &file.pod_cidr {
            Some(list) => LocalDetector::NodeCidr(per_family_cidrs("podCIDR", list).map_err(bad)?),
            None => LocalDetector::NodeCidr(Vec::new()),
        },
        Some("BridgeInterface") => LocalDetector::BridgeInterface(
            file.pod_bridge_interface
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    bad("detectLocalMode BridgeInterface needs \"podBridgeInterface\"".to_string())
                })?,
        ),
        Some("InterfaceNamePrefix") => LocalDetector::InterfaceNamePrefix(
            file.pod_interface_name_prefix
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    bad(
                        "detectLocalMode InterfaceNamePrefix needs \"podInterfaceNamePrefix\""
                            .to_string(),
                    )
                })?,
        ),
        Some(other) => {
            return Err(bad(format!(
                "detectLocalMode {other:?} must be ClusterCIDR, NodeCIDR, \
                 BridgeInterface or InterfaceNamePrefix"
            )));
        }
    };

    if let Some(on) = file.localhost_node_ports {
        context.localhost_nodeports = on;
    }
    if let Some(on) = file.masquerade_all {
        context.masquerade_all = on;
    }
    if let Some(bit) = file.masquerade_bit {
        if bit > 31 {
            return Err(bad(format!("masqueradeBit {bit} must be between 0 and 31")));
        }
        context.masquerade_bit = bit;
    }
    for (i, text) in file.node_port_addresses.iter().flatten().enumerate() {
        let text = text.trim();
        if text == "primary" {
            let hosts: Vec<IpNet> = context.node_ips.iter().map(|ip| IpNet::from(*ip)).collect();
            context.nodeport_addresses.extend(hosts);
        } else {
            let net = sloppy::parse_cidr(text).ok_or_else(|| {
                bad(format!(
                    "nodePortAddresses[{i}] {text:?} is not a CIDR (or \"primary\")"
                ))
            })?;
            context.nodeport_addresses.push(net);
        }
    }
    Ok(context)
}

/// Parses a CIDR list allowing at most one CIDR per IP family, as kube-proxy does for `--cluster-cidr`.
fn per_family_cidrs(field: &str, list: &CidrList) -> Result<Vec<IpNet>, String> {
    let mut nets: Vec<IpNet> = Vec::new();
    for text in list.entries() {
        let net = sloppy::parse_cidr(text)
            .ok_or_else(|| format!("{field} {text:?} is not a CIDR such as 10.244.0.0/16"))?;
        let family = family_of(&net);
        if let Some(other) = nets.iter().find(|n| family_of(n) == family) {
            return Err(format!(
                "{field} has two {family} CIDRs ({other} and {net}); give at most one per IP family"
            ));
        }
        nets.push(net);
    }
    Ok(nets)
}

fn family_of(net: &IpNet) -> IpFamily {
    IpFamily::of(&net.addr())
}

impl NodeContext {
    /// Completes the context from the node's own object, as kube-proxy does from its Node: the labels
    /// (topology zone) where the context has none of its own, the pod CIDRs for a `NodeCIDR` detector
    /// that has none yet, and the node IPs (with the local addresses) when none were given.
    pub fn apply_node(&mut self, node: &super::Node) {
        for (key, value) in &node.labels {
            self.node_labels
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
        if let LocalDetector::NodeCidr(cidrs) = &mut self.local_detector
            && cidrs.is_empty()
        {
            cidrs.extend(node.pod_cidrs.iter().copied());
        }
        if self.node_ips.is_empty() {
            let ips: Vec<IpAddr> = node.primary_ips();
            self.local_addresses.extend(ips.iter().copied());
            self.node_ips = ips;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<NodeContext, ModelError> {
        load_node_context(text, "node-context.json")
    }

    #[test]
    fn defaults_when_only_the_node_is_given() {
        let context = load(r#"{"node":"n1"}"#).unwrap();
        assert_eq!(context, NodeContext::new("n1", Vec::new()));
    }

    #[test]
    fn dual_stack_cluster_cidr() {
        let context =
            load(r#"{"node":"n1","clusterCIDR":"10.244.0.0/16, fd00:10:244::/56"}"#).unwrap();
        assert_eq!(
            context.local_detector,
            LocalDetector::ClusterCidr(vec![
                "10.244.0.0/16".parse().unwrap(),
                "fd00:10:244::/56".parse().unwrap()
            ])
        );
        let listed =
            load(r#"{"node":"n1","clusterCIDR":["10.244.0.0/16","fd00:10:244::/56"]}"#).unwrap();
        assert_eq!(listed.local_detector, context.local_detector);
    }

    #[test]
    fn cluster_cidr_mode_without_cidr_is_no_detector() {
        let context = load(r#"{"node":"n1","detectLocalMode":"ClusterCIDR"}"#).unwrap();
        assert_eq!(context.local_detector, LocalDetector::None);
    }

    #[test]
    fn other_modes() {
        let bridge = load(
            r#"{"node":"n1","detectLocalMode":"BridgeInterface","podBridgeInterface":"cbr0"}"#,
        )
        .unwrap();
        assert_eq!(
            bridge.local_detector,
            LocalDetector::BridgeInterface("cbr0".into())
        );
        let prefix =
            load(r#"{"node":"n1","detectLocalMode":"InterfaceNamePrefix","podInterfaceNamePrefix":"veth"}"#).unwrap();
        assert_eq!(
            prefix.local_detector,
            LocalDetector::InterfaceNamePrefix("veth".into())
        );
        let node = load(r#"{"node":"n1","detectLocalMode":"NodeCIDR","podCIDR":"10.244.1.0/24"}"#)
            .unwrap();
        assert_eq!(
            node.local_detector,
            LocalDetector::NodeCidr(vec!["10.244.1.0/24".parse().unwrap()])
        );
    }

    #[test]
    fn flags_and_nodeport_addresses() {
        let context = load(
            r#"{"node":"n1","nodeIPs":["192.168.001.010"],"masqueradeAll":true,"localhostNodePorts":false,
                "masqueradeBit":15,"nodePortAddresses":["primary","127.0.0.0/8"]}"#,
        )
        .unwrap();
        assert_eq!(context.node_ips, vec![IpAddr::from([192, 168, 1, 10])]);
        assert!(context.masquerade_all);
        assert!(!context.localhost_nodeports);
        assert_eq!(context.masquerade_mark(), 0x8000);
        assert_eq!(
            context.nodeport_addresses,
            vec![
                "192.168.1.10/32".parse::<IpNet>().unwrap(),
                "127.0.0.0/8".parse().unwrap()
            ]
        );
    }

    #[test]
    fn errors_name_the_file_and_the_setting() {
        let cases = [
            (r#"{"nodeIPs":[]}"#, format!("node-context.json: missing \"node\" (the node's name); {NODE_CONTEXT_HINT}")),
            (
                r#"{"node":"n1","nodeIPs":["198.18.0.300"]}"#,
                "node-context.json: nodeIPs[0] \"198.18.0.300\" is not an IP address".to_string(),
            ),
            (
                r#"{"node":"n1","clusterCIDR":"10.244.0.0/16,10.245.0.0/16"}"#,
                "node-context.json: clusterCIDR has two IPv4 CIDRs (10.244.0.0/16 and 10.245.0.0/16); give at most one per IP family".to_string(),
            ),
            (
                r#"{"node":"n1","clusterCIDR":"10.244.0.0"}"#,
                "node-context.json: clusterCIDR \"10.244.0.0\" is not a CIDR such as 10.244.0.0/16".to_string(),
            ),
            (
                r#"{"node":"n1","detectLocalMode":"Magic"}"#,
                "node-context.json: detectLocalMode \"Magic\" must be ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix".to_string(),
            ),
            (
                r#"{"node":"n1","detectLocalMode":"BridgeInterface"}"#,
                "node-context.json: detectLocalMode BridgeInterface needs \"podBridgeInterface\"".to_string(),
            ),
            (r#"{"node":"n1","masqueradeBit":32}"#, "node-context.json: masqueradeBit 32 must be between 0 and 31".to_string()),
        ];
        for (text, expected) in cases {
            assert_eq!(load(text).unwrap_err().to_string(), expected, "{text}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_json_have_positions() {
        let error = load("{\"node\":\"n1\",\n \"masqueradeALL\":true}").unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "node-context.json line 2 column 16: unknown field `masqueradeALL`, expected one of `node`, `nodeIPs`, \
                 `nodeLabels`, `clusterCIDR`, `detectLocalMode`, `podCIDR`, `podBridgeInterface`, \
                 `podInterfaceNamePrefix`, `localhostNodePorts`, `masqueradeAll`, `masqueradeBit`, \
                 `nodePortAddresses`, `kubeProxyVersion`; {NODE_CONTEXT_HINT}"
            )
        );
        let error = load("{\"node\": \"n1\" \"nodeIPs\": []}").unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "node-context.json line 1 column 15: expected `,` or `}}`; {NODE_CONTEXT_HINT}"
            )
        );
    }

    #[test]
    fn apply_node_fills_what_is_missing() {
        let mut context = load(r#"{"node":"n1","detectLocalMode":"NodeCIDR"}"#).unwrap();
        let node = crate::core::model::Node {
            name: "n1".into(),
            labels: BTreeMap::from([(
                crate::core::model::ZONE_LABEL.to_string(),
                "zone-a".to_string(),
            )]),
            pod_cidrs: vec!["10.244.1.0/24".parse().unwrap()],
            addresses: vec![crate::core::model::NodeAddress {
                kind: "InternalIP".into(),
                address: "198.18.0.2".into(),
            }],
            taints: Vec::new(),
            being_deleted: false,
        };
        context.apply_node(&node);
        assert_eq!(context.zone(), Some("zone-a"));
        assert_eq!(
            context.local_detector,
            LocalDetector::NodeCidr(vec!["10.244.1.0/24".parse().unwrap()])
        );
        assert_eq!(context.node_ips, vec![IpAddr::from([198, 18, 0, 2])]);
        assert!(
            context
                .local_addresses
                .contains(&IpAddr::from([198, 18, 0, 2]))
        );
    }
}
