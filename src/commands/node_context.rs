//! Building a [`NodeContext`] from a Node object and the proxy settings flags; shared by `render` and
//! the proxy.

use anyhow::bail;
use ipnet::IpNet;

use crate::cli::{DetectLocalMode, NodePortAddress, ProxySettingsArgs};
use crate::core::model::{LocalDetector, Node, NodeContext};
use crate::core::rules::IpFamily;

/// The context for `node` with `settings` applied. `localhost_nodeports` is kube-proxy's
/// `--iptables-localhost-nodeports`. Fails when the settings contradict each other or need something
/// the Node lacks; the message says which flag to change.
pub fn node_context(
    node: &Node,
    settings: &ProxySettingsArgs,
    localhost_nodeports: bool,
) -> anyhow::Result<NodeContext> {
    let mut ctx = NodeContext::new(node.name.clone(), node.primary_ips());
    ctx.node_labels = node.labels.clone();
    ctx.masquerade_all = settings.masquerade_all;
    ctx.localhost_nodeports = localhost_nodeports;
    ctx.local_detector = local_detector(node, settings)?;
    ctx.nodeport_addresses = nodeport_addresses(node, &settings.nodeport_addresses)?;
    Ok(ctx)
}

fn local_detector(node: &Node, settings: &ProxySettingsArgs) -> anyhow::Result<LocalDetector> {
    let cidrs = one_per_family(&settings.cluster_cidr)?;
    let mode = match settings.detect_local_mode {
        Some(mode) => mode,
        None if cidrs.is_empty() => return Ok(LocalDetector::None),
        None => DetectLocalMode::ClusterCidr,
    };
    Ok(match mode {
        DetectLocalMode::ClusterCidr => {
            if cidrs.is_empty() {
                bail!(
                    "--detect-local-mode ClusterCIDR needs the pod network: add --cluster-cidr CIDR"
                );
            }
            LocalDetector::ClusterCidr(cidrs)
        }
        DetectLocalMode::NodeCidr => {
            if node.pod_cidrs.is_empty() {
                bail!(
                    "--detect-local-mode NodeCIDR needs the Node's spec.podCIDRs, and node {:?} has none: \
                     use --detect-local-mode ClusterCIDR with --cluster-cidr instead",
                    node.name
                );
            }
            LocalDetector::NodeCidr(node.pod_cidrs.clone())
        }
        DetectLocalMode::BridgeInterface => match non_empty(&settings.pod_bridge_interface) {
            Some(bridge) => LocalDetector::BridgeInterface(bridge.to_owned()),
            None => bail!("--detect-local-mode BridgeInterface needs --pod-bridge-interface NAME"),
        },
        DetectLocalMode::InterfaceNamePrefix => {
            match non_empty(&settings.pod_interface_name_prefix) {
                Some(prefix) => LocalDetector::InterfaceNamePrefix(prefix.to_owned()),
                None => bail!(
                    "--detect-local-mode InterfaceNamePrefix needs --pod-interface-name-prefix PREFIX"
                ),
            }
        }
    })
}

/// kube-proxy takes at most one cluster CIDR per IP family.
fn one_per_family(cidrs: &[IpNet]) -> anyhow::Result<Vec<IpNet>> {
    for family in [IpFamily::V4, IpFamily::V6] {
        let same: Vec<String> = cidrs
            .iter()
            .filter(|net| IpFamily::of(&net.addr()) == family)
            .map(ToString::to_string)
            .collect();
        if same.len() > 1 {
            bail!(
                "--cluster-cidr takes at most one {family} CIDR, got {}",
                same.join(", ")
            );
        }
    }
    Ok(cidrs.iter().map(IpNet::trunc).collect())
}

fn nodeport_addresses(node: &Node, addresses: &[NodePortAddress]) -> anyhow::Result<Vec<IpNet>> {
    let mut nets = Vec::new();
    for address in addresses {
        match address {
            NodePortAddress::Cidr(net) => nets.push(net.trunc()),
            NodePortAddress::Primary => {
                let ips = node.primary_ips();
                if ips.is_empty() {
                    bail!(
                        "--nodeport-addresses primary needs the Node's addresses, and node {:?} has no \
                         InternalIP or ExternalIP: list CIDRs instead",
                        node.name
                    );
                }
                nets.extend(ips.into_iter().map(IpNet::from));
            }
        }
    }
    nets.sort();
    nets.dedup();
    Ok(nets)
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    use super::*;
    use crate::core::model::NodeAddress;

    fn node() -> Node {
        Node {
            name: "node8".into(),
            labels: BTreeMap::from([("topology.kubernetes.io/zone".into(), "zone-a".into())]),
            pod_cidrs: vec!["10.244.8.0/24".parse().unwrap()],
            addresses: vec![
                NodeAddress {
                    kind: "Hostname".into(),
                    address: "node8".into(),
                },
                NodeAddress {
                    kind: "InternalIP".into(),
                    address: "192.168.1.8".into(),
                },
            ],
            taints: Vec::new(),
            being_deleted: false,
        }
    }

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    #[test]
    fn defaults_follow_kube_proxy() {
        let ctx = node_context(&node(), &ProxySettingsArgs::default(), true).unwrap();
        assert_eq!(ctx.node_name, "node8");
        assert_eq!(ctx.zone(), Some("zone-a"));
        assert_eq!(ctx.node_ips, vec!["192.168.1.8".parse::<IpAddr>().unwrap()]);
        assert_eq!(ctx.local_detector, LocalDetector::None);
        assert!(!ctx.masquerade_all);
        assert!(ctx.localhost_nodeports);
        assert!(ctx.nodeport_addresses.is_empty());
    }

    #[test]
    fn a_cluster_cidr_turns_on_cluster_cidr_detection() {
        let settings = ProxySettingsArgs {
            cluster_cidr: vec![net("10.244.0.0/16"), net("fd00:10:244::/48")],
            masquerade_all: true,
            ..Default::default()
        };
        let ctx = node_context(&node(), &settings, false).unwrap();
        assert_eq!(
            ctx.local_detector,
            LocalDetector::ClusterCidr(settings.cluster_cidr.clone())
        );
        assert!(ctx.masquerade_all);
        assert!(!ctx.localhost_nodeports);
    }

    #[test]
    fn node_cidr_detection_uses_the_nodes_pod_cidrs() {
        let settings = ProxySettingsArgs {
            detect_local_mode: Some(DetectLocalMode::NodeCidr),
            ..Default::default()
        };
        let ctx = node_context(&node(), &settings, true).unwrap();
        assert_eq!(
            ctx.local_detector,
            LocalDetector::NodeCidr(vec![net("10.244.8.0/24")])
        );

        let mut bare = node();
        bare.pod_cidrs.clear();
        let err = node_context(&bare, &settings, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("has none"), "{err}");
    }

    #[test]
    fn interface_modes_need_their_interface() {
        let mut settings = ProxySettingsArgs {
            detect_local_mode: Some(DetectLocalMode::BridgeInterface),
            ..Default::default()
        };
        let err = node_context(&node(), &settings, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--pod-bridge-interface"), "{err}");
        settings.pod_bridge_interface = Some("cbr0".into());
        let ctx = node_context(&node(), &settings, true).unwrap();
        assert_eq!(
            ctx.local_detector,
            LocalDetector::BridgeInterface("cbr0".into())
        );

        let settings = ProxySettingsArgs {
            detect_local_mode: Some(DetectLocalMode::InterfaceNamePrefix),
            pod_interface_name_prefix: Some("veth".into()),
            ..Default::default()
        };
        let ctx = node_context(&node(), &settings, true).unwrap();
        assert_eq!(
            ctx.local_detector,
            LocalDetector::InterfaceNamePrefix("veth".into())
        );
    }

    #[test]
    fn contradictory_cidr_settings_are_rejected() {
        let settings = ProxySettingsArgs {
            detect_local_mode: Some(DetectLocalMode::ClusterCidr),
            ..Default::default()
        };
        let err = node_context(&node(), &settings, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--cluster-cidr"), "{err}");

        let settings = ProxySettingsArgs {
            cluster_cidr: vec![net("10.244.0.0/16"), net("10.245.0.0/16")],
            ..Default::default()
        };
        let err = node_context(&node(), &settings, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most one IPv4"), "{err}");
    }

    #[test]
    fn nodeport_addresses_resolve_primary_to_the_node_ip() {
        let settings = ProxySettingsArgs {
            nodeport_addresses: vec![
                NodePortAddress::Primary,
                NodePortAddress::Cidr(net("127.0.0.1/8")),
            ],
            ..Default::default()
        };
        let ctx = node_context(&node(), &settings, true).unwrap();
        assert_eq!(
            ctx.nodeport_addresses,
            vec![net("127.0.0.0/8"), net("192.168.1.8/32")]
        );
        assert!(ctx.localhost_nodeports_for(IpFamily::V4));

        let mut bare = node();
        bare.addresses.clear();
        assert!(node_context(&bare, &settings, true).is_err());
    }
}
