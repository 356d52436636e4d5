//! The node-side settings that change which rules a node should have.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::core::rules::IpFamily;

/// How the proxy tells traffic from local pods apart (`--detect-local-mode`, spec §3.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "mode", content = "value")]
pub enum LocalDetector {
    /// No detector: no cluster-IP masquerade rule and no eTP=Local short-circuit.
    #[default]
    None,
    /// `ClusterCIDR`: `-s <cidr>` with the cluster CIDR of each family.
    ClusterCidr(Vec<IpNet>),
    /// `NodeCIDR`: `-s <cidr>` with the Node's pod CIDR of each family.
    NodeCidr(Vec<IpNet>),
    /// `BridgeInterface`: `-i <bridge>`.
    BridgeInterface(String),
    /// `InterfaceNamePrefix`: `-i <prefix>+`.
    InterfaceNamePrefix(String),
}

/// Everything about one node and its proxy settings that the planner needs, besides the cluster state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeContext {
    /// The node's name (`--hostname-override`), for `isLocal` and node hints.
    pub node_name: String,
    /// The node's labels (the topology zone is read from them).
    pub node_labels: BTreeMap<String, String>,
    /// The node's primary IPs (one per family), used by the `loadBalancerSourceRanges` node-IP rule.
    pub node_ips: Vec<IpAddr>,
    /// Every address on the node's interfaces (loopback included): the "local" addresses for
    /// `--nodeport-addresses` and for `addrtype LOCAL` when tracing.
    pub local_addresses: Vec<IpAddr>,
    /// Local-traffic detection.
    pub local_detector: LocalDetector,
    /// `--masquerade-all`.
    pub masquerade_all: bool,
    /// `--iptables-masquerade-bit` (default 14).
    pub masquerade_bit: u8,
    /// `--iptables-localhost-nodeports` (default true; IPv4 only).
    pub localhost_nodeports: bool,
    /// `--nodeport-addresses` as CIDRs; empty means every local address.
    pub nodeport_addresses: Vec<IpNet>,
    /// Whether the nfacct accounting objects exist, so the rules may reference them.
    pub nfacct: bool,
    /// `net.netfilter.nf_conntrack_tcp_be_liberal` is non-zero: no INVALID-drop rule.
    pub tcp_be_liberal: bool,
    /// `MASQUERADE --random-fully` is supported.
    pub random_fully: bool,
    /// The `PreferSameTrafficDistribution` feature gate (node hints).
    pub prefer_same_node_gate: bool,
    /// Above this many endpoints the per-endpoint comments are left out (kube-proxy: 1000).
    pub large_cluster_threshold: usize,
}

impl NodeContext {
    /// A context with kube-proxy's defaults for a node named `node_name` with `node_ips`.
    pub fn new(node_name: impl Into<String>, node_ips: Vec<IpAddr>) -> NodeContext {
        let mut local_addresses: Vec<IpAddr> = vec![
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ];
        local_addresses.extend(node_ips.iter().copied());
        NodeContext {
            node_name: node_name.into(),
            node_labels: BTreeMap::new(),
            node_ips,
            local_addresses,
            local_detector: LocalDetector::None,
            masquerade_all: false,
            masquerade_bit: 14,
            localhost_nodeports: true,
            nodeport_addresses: Vec::new(),
            nfacct: true,
            tcp_be_liberal: false,
            random_fully: true,
            prefer_same_node_gate: true,
            large_cluster_threshold: 1000,
        }
    }

    /// The masquerade mark, `1 << masquerade_bit`.
    pub fn masquerade_mark(&self) -> u32 {
        1u32 << u32::from(self.masquerade_bit.min(31))
    }

    /// The node's topology zone.
    pub fn zone(&self) -> Option<&str> {
        self.node_labels.get(super::ZONE_LABEL).map(String::as_str)
    }

    /// The node's primary IP of `family`.
    pub fn node_ip(&self, family: IpFamily) -> Option<IpAddr> {
        self.node_ips
            .iter()
            .copied()
            .find(|ip| IpFamily::of(ip) == family)
    }

    /// Whether localhost NodePorts apply to `family` (IPv4 only, and only when the NodePort addresses
    /// include IPv4 loopback).
    pub fn localhost_nodeports_for(&self, family: IpFamily) -> bool {
        family == IpFamily::V4
            && self.localhost_nodeports
            && (self.nodeport_addresses.is_empty()
                || self
                    .nodeport_addresses
                    .iter()
                    .any(|net| net.contains(&IpAddr::from([127, 0, 0, 1]))))
    }
}
