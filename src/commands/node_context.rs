//! Building a [`NodeContext`] from a Node object and the proxy settings flags; shared by `render` and
//! the proxy.

use anyhow::bail;

use crate::cli::ProxySettingsArgs;
use crate::core::model::detect::{
    DetectLocalSettings, DetectorProblem, nodeport_cidrs, one_per_family,
};
use crate::core::model::{LocalDetector, Node, NodeContext};

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
    ctx.nodeport_addresses = match nodeport_cidrs(&settings.nodeport_addresses, &node.primary_ips())
    {
        Some(nets) => nets,
        None => bail!(
            "--nodeport-addresses primary needs the Node's addresses, and node {:?} has no \
             InternalIP or ExternalIP: list CIDRs instead",
            node.name
        ),
    };
    Ok(ctx)
}

fn local_detector(node: &Node, settings: &ProxySettingsArgs) -> anyhow::Result<LocalDetector> {
    let cidrs = one_per_family(&settings.cluster_cidr)
        .map_err(|e| anyhow::anyhow!("--cluster-cidr takes {e}"))?;
    let detect = DetectLocalSettings {
        mode: settings.detect_local_mode,
        cluster_cidrs: &cidrs,
        bridge_interface: settings.pod_bridge_interface.as_deref(),
        interface_name_prefix: settings.pod_interface_name_prefix.as_deref(),
        pod_cidrs: &node.pod_cidrs,
    };
    Ok(match detect.detector() {
        Ok(detector) => detector,
        Err(DetectorProblem::NoClusterCidr) => {
            bail!("--detect-local-mode ClusterCIDR needs the pod network: add --cluster-cidr CIDR")
        }
        Err(DetectorProblem::NoPodCidrs) => bail!(
            "--detect-local-mode NodeCIDR needs the Node's spec.podCIDRs, and node {:?} has none: \
             use --detect-local-mode ClusterCIDR with --cluster-cidr instead",
            node.name
        ),
        Err(DetectorProblem::NoBridgeInterface) => {
            bail!("--detect-local-mode BridgeInterface needs --pod-bridge-interface NAME")
        }
        Err(DetectorProblem::NoInterfaceNamePrefix) => bail!(
            "--detect-local-mode InterfaceNamePrefix needs --pod-interface-name-prefix PREFIX"
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    use ipnet::IpNet;

    use super::*;
    use crate::cli::{DetectLocalMode, NodePortAddress};
    use crate::core::model::NodeAddress;
    use crate::core::rules::IpFamily;

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
