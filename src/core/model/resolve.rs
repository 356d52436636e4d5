//! The settings the diagnostics plan a node's expected rules with, each from the best source there is:
//! command-line flags first, then the `kube-system/kube-proxy` ConfigMap, then what the node's own rules
//! show ([`infer`](super::infer)), then kube-proxy's defaults. Pure.
//!
//! A setting the ConfigMap or a flag gives wins over the node's rules; when they disagree the resolver
//! warns, since the node's kube-proxy then runs with other settings than those it was given (or the
//! ConfigMap changed after kube-proxy started).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::detect::{
    DetectLocalMode, DetectLocalSettings, DetectorProblem, NodePortAddress, nodeport_cidrs,
    one_per_family,
};
use super::infer::{InferredDetector, InferredNodePorts, InferredSettings, infer_settings};
use super::kube_proxy_config::{CONFIG_SOURCE, ConfiguredSettings, parse_kube_proxy_config};
use super::{ClusterState, LocalDetector, ModelError, Node, NodeContext};
use crate::core::rules::{Dump, IpFamily};

/// The settings given on the command line, with kube-proxy's flag names; `None` for a flag not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsOverrides {
    /// `--cluster-cidr`.
    pub cluster_cidrs: Option<Vec<IpNet>>,
    /// `--detect-local-mode`.
    pub detect_local_mode: Option<DetectLocalMode>,
    /// `--pod-bridge-interface`.
    pub pod_bridge_interface: Option<String>,
    /// `--pod-interface-name-prefix`.
    pub pod_interface_name_prefix: Option<String>,
    /// `--masquerade-all`.
    pub masquerade_all: Option<bool>,
    /// `--iptables-masquerade-bit`.
    pub masquerade_bit: Option<u8>,
    /// `--iptables-localhost-nodeports`.
    pub localhost_nodeports: Option<bool>,
    /// `--nodeport-addresses`.
    pub nodeport_addresses: Option<Vec<NodePortAddress>>,
}

/// A setting that changes a node's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Setting {
    /// `--detect-local-mode` with `--cluster-cidr` or the pod interface.
    LocalDetection,
    /// `--masquerade-all`.
    MasqueradeAll,
    /// `--iptables-masquerade-bit`.
    MasqueradeBit,
    /// `--iptables-localhost-nodeports`.
    LocalhostNodePorts,
    /// `--nodeport-addresses`.
    NodePortAddresses,
    /// Whether the nfacct counters exist.
    Nfacct,
    /// `net.netfilter.nf_conntrack_tcp_be_liberal`.
    TcpBeLiberal,
    /// `MASQUERADE --random-fully` support.
    RandomFully,
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Setting::LocalDetection => "local-traffic detection",
            Setting::MasqueradeAll => "masquerade-all",
            Setting::MasqueradeBit => "masquerade bit",
            Setting::LocalhostNodePorts => "localhost NodePorts",
            Setting::NodePortAddresses => "NodePort addresses",
            Setting::Nfacct => "nfacct counters",
            Setting::TcpBeLiberal => "nf_conntrack_tcp_be_liberal",
            Setting::RandomFully => "MASQUERADE --random-fully",
        })
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// A command-line flag.
    Flag,
    /// The `kube-system/kube-proxy` ConfigMap.
    ConfigMap,
    /// The node's own rules.
    Inferred,
    /// kube-proxy's default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Flag => "from the command line",
            Origin::ConfigMap => "from the kube-system/kube-proxy ConfigMap",
            Origin::Inferred => "read from the node's rules",
            Origin::Default => "kube-proxy's default",
        })
    }
}

/// One setting's value and where it came from, for a note such as
/// `masquerade bit 14 (kube-proxy's default)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingSource {
    /// The setting.
    pub setting: Setting,
    /// Where its value came from.
    pub origin: Origin,
    /// The value, as a human reads it.
    pub value: String,
}

impl fmt::Display for SettingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.setting, self.value, self.origin)
    }
}

/// The context to plan a node's expected rules with, where each setting came from, and what the user
/// should know about the guesses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedContext {
    /// The node context.
    pub context: NodeContext,
    /// One entry per [`Setting`], in that order.
    pub provenance: Vec<SettingSource>,
    /// Doubts about the result: an unknown node, a ConfigMap the node's rules contradict, a proxy mode
    /// the diagnostics do not understand.
    pub warnings: Vec<String>,
}

/// Resolves the settings of `node` (see the module documentation). `dump` is the node's parsed
/// `iptables-save`, when available. A node without a Node object still resolves, with no node IPs and
/// a warning.
///
/// Errors: a ConfigMap `config.conf` that does not parse ([`ModelError::Config`] naming the key and the
/// line); two `--cluster-cidr` CIDRs of one family; `BridgeInterface` or `InterfaceNamePrefix` mode
/// without the interface, from flags or the ConfigMap, when the node's rules do not show it either.
pub fn resolve_node_context(
    cluster: &ClusterState,
    node: &str,
    dump: Option<&Dump>,
    overrides: &SettingsOverrides,
) -> Result<ResolvedContext, ModelError> {
    let mut warnings = Vec::new();
    let node_object = cluster.nodes.get(node);
    if node_object.is_none() {
        warnings.push(format!(
            "node {node:?} has no Node object: its IPs, labels and pod CIDRs are unknown, so rules \
             that depend on them may differ"
        ));
    }
    let configured = match &cluster.kube_proxy_config {
        Some(data) => match parse_kube_proxy_config(data)? {
            Some(settings) => {
                warnings.extend(settings.warnings());
                settings
            }
            None => {
                warnings.push(
                    "the kube-system/kube-proxy ConfigMap has no config.conf key; its settings are \
                     not used"
                        .to_string(),
                );
                ConfiguredSettings::default()
            }
        },
        None => ConfiguredSettings::default(),
    };
    let inferred = dump.map(infer_settings);
    if cluster.kube_proxy_config.is_none() && inferred.is_none() {
        warnings.push(
            "neither the kube-proxy ConfigMap nor the node's rules are available: the expected \
             rules use kube-proxy's defaults unless flags say otherwise"
                .to_string(),
        );
    }

    let mut resolver = Resolver {
        node: node_object,
        primary_ips: node_object.map(Node::primary_ips).unwrap_or_default(),
        overrides,
        configured: &configured,
        inferred: inferred.as_ref(),
        provenance: Vec::new(),
        warnings,
    };
    let mut context = NodeContext::new(node, resolver.primary_ips.clone());
    context.local_detector = resolver.local_detector()?;
    if let Some(node) = node_object {
        context.apply_node(node);
    }
    context.masquerade_all = resolver.scalar(
        Setting::MasqueradeAll,
        overrides.masquerade_all,
        configured.masquerade_all,
        |i| i.masquerade_all,
        false,
    );
    context.masquerade_bit = resolver.scalar(
        Setting::MasqueradeBit,
        overrides.masquerade_bit,
        configured.masquerade_bit,
        |i| i.masquerade_bit,
        14,
    );
    context.localhost_nodeports = resolver.scalar(
        Setting::LocalhostNodePorts,
        overrides.localhost_nodeports,
        configured.localhost_nodeports,
        |i| i.localhost_nodeports,
        true,
    );
    context.nodeport_addresses = resolver.nodeport_addresses();
    if let Some(InferredNodePorts::Addresses(ips)) = inferred
        .as_ref()
        .and_then(|i| i.nodeport_addresses.as_ref())
    {
        for ip in ips {
            if !context.local_addresses.contains(ip) {
                context.local_addresses.push(*ip);
            }
        }
    }
    context.nfacct = resolver.scalar(Setting::Nfacct, None, None, |i| i.nfacct, true);
    context.tcp_be_liberal = resolver.scalar(
        Setting::TcpBeLiberal,
        None,
        None,
        |i| i.tcp_be_liberal,
        false,
    );
    context.random_fully =
        resolver.scalar(Setting::RandomFully, None, None, |i| i.random_fully, true);

    Ok(ResolvedContext {
        context,
        provenance: resolver.provenance,
        warnings: resolver.warnings,
    })
}

struct Resolver<'a> {
    node: Option<&'a Node>,
    primary_ips: Vec<IpAddr>,
    overrides: &'a SettingsOverrides,
    configured: &'a ConfiguredSettings,
    inferred: Option<&'a InferredSettings>,
    provenance: Vec<SettingSource>,
    warnings: Vec<String>,
}

impl Resolver<'_> {
    fn record(&mut self, setting: Setting, origin: Origin, value: String) {
        self.provenance.push(SettingSource {
            setting,
            origin,
            value,
        });
    }

    fn disagree(&mut self, setting: Setting, origin: Origin, value: &str, seen: &str) {
        self.warnings.push(format!(
            "{setting}: the expected rules use {value} ({origin}), but the node's rules show {seen}; \
             the node's kube-proxy may run with other settings"
        ));
    }

    /// A plain setting: flag, ConfigMap, inferred, default.
    fn scalar<T: Copy + PartialEq + fmt::Display>(
        &mut self,
        setting: Setting,
        flag: Option<T>,
        configured: Option<T>,
        inferred: impl Fn(&InferredSettings) -> Option<T>,
        default: T,
    ) -> T {
        let seen = self.inferred.and_then(inferred);
        let (value, origin) = match (flag, configured, seen) {
            (Some(v), _, _) => (v, Origin::Flag),
            (None, Some(v), _) => (v, Origin::ConfigMap),
            (None, None, Some(v)) => (v, Origin::Inferred),
            (None, None, None) => (default, Origin::Default),
        };
        if let Some(seen) = seen
            && seen != value
        {
            self.disagree(setting, origin, &value.to_string(), &seen.to_string());
        }
        self.record(setting, origin, value.to_string());
        value
    }

    fn pod_cidrs(&self) -> &[IpNet] {
        self.node
            .map(|n| n.pod_cidrs.as_slice())
            .unwrap_or_default()
    }

    fn inferred_detector(&self) -> Option<&InferredDetector> {
        self.inferred.and_then(|i| i.local_detector.as_ref())
    }

    fn local_detector(&mut self) -> Result<LocalDetector, ModelError> {
        let flags = self.overrides;
        let configured = self.configured;
        let (mode, mode_origin) = first(flags.detect_local_mode, configured.detect_local_mode);
        let (cidrs, cidr_origin) = first(
            flags.cluster_cidrs.clone(),
            configured.cluster_cidrs.clone(),
        );
        if mode.is_none() && cidrs.is_none() {
            return Ok(self.inferred_local_detector());
        }
        let origin = mode_origin.or(cidr_origin).unwrap_or(Origin::Default);
        let cidrs = one_per_family(&cidrs.unwrap_or_default()).map_err(|e| ModelError::Config {
            origin: "--cluster-cidr".to_string(),
            line: None,
            message: format!("takes {e}"),
        })?;
        let (bridge, _) = first(
            flags.pod_bridge_interface.clone(),
            configured.bridge_interface.clone(),
        );
        let (prefix, _) = first(
            flags.pod_interface_name_prefix.clone(),
            configured.interface_name_prefix.clone(),
        );
        let settings = DetectLocalSettings {
            mode,
            cluster_cidrs: &cidrs,
            bridge_interface: bridge.as_deref(),
            interface_name_prefix: prefix.as_deref(),
            pod_cidrs: self.pod_cidrs(),
        };
        let source = match origin {
            Origin::Flag => "--detect-local-mode",
            _ => CONFIG_SOURCE,
        };
        let inferred = self.inferred_detector().cloned();
        let (detector, origin) = match (settings.detector(), inferred) {
            (Ok(detector), _) => (detector, origin),
            (Err(DetectorProblem::NoClusterCidr), Some(InferredDetector::Cidr(net))) => {
                (LocalDetector::ClusterCidr(vec![net]), Origin::Inferred)
            }
            (Err(DetectorProblem::NoPodCidrs), Some(InferredDetector::Cidr(net))) => {
                (LocalDetector::NodeCidr(vec![net]), Origin::Inferred)
            }
            (
                Err(DetectorProblem::NoBridgeInterface),
                Some(InferredDetector::BridgeInterface(b)),
            ) => (LocalDetector::BridgeInterface(b), Origin::Inferred),
            (
                Err(DetectorProblem::NoInterfaceNamePrefix),
                Some(InferredDetector::InterfaceNamePrefix(p)),
            ) => (LocalDetector::InterfaceNamePrefix(p), Origin::Inferred),
            (Err(DetectorProblem::NoClusterCidr), _) => {
                self.warnings.push(
                    "detect-local mode ClusterCIDR without a cluster CIDR: like kube-proxy, the \
                     expected rules detect no local traffic (give --cluster-cidr to change this)"
                        .to_string(),
                );
                (LocalDetector::None, origin)
            }
            (Err(DetectorProblem::NoPodCidrs), _) => {
                self.warnings.push(
                    "detect-local mode NodeCIDR, and the Node's pod CIDRs are unknown: like \
                     kube-proxy, the expected rules detect no local traffic"
                        .to_string(),
                );
                (LocalDetector::None, origin)
            }
            (Err(DetectorProblem::NoBridgeInterface), _) => {
                return Err(ModelError::Config {
                    origin: source.to_string(),
                    line: None,
                    message: "detect-local mode BridgeInterface needs the bridge's name: give \
                              --pod-bridge-interface NAME"
                        .to_string(),
                });
            }
            (Err(DetectorProblem::NoInterfaceNamePrefix), _) => {
                return Err(ModelError::Config {
                    origin: source.to_string(),
                    line: None,
                    message: "detect-local mode InterfaceNamePrefix needs the prefix: give \
                              --pod-interface-name-prefix PREFIX"
                        .to_string(),
                });
            }
        };
        if origin != Origin::Inferred
            && let Some(seen) = self.inferred_detector().cloned()
            && !detector_matches(&detector, &seen, self.inferred.map(|i| i.family))
        {
            let value = describe(&detector);
            self.disagree(
                Setting::LocalDetection,
                origin,
                &value,
                &describe_inferred(&seen),
            );
        }
        self.record(Setting::LocalDetection, origin, describe(&detector));
        Ok(detector)
    }

    /// Detection from the node's rules alone; a CIDR equal to one of the Node's pod CIDRs is taken as
    /// `NodeCIDR`.
    fn inferred_local_detector(&mut self) -> LocalDetector {
        let Some(seen) = self.inferred_detector().cloned() else {
            self.record(Setting::LocalDetection, Origin::Default, "none".to_string());
            return LocalDetector::None;
        };
        let detector = match seen {
            InferredDetector::None => LocalDetector::None,
            InferredDetector::Cidr(net) if self.pod_cidrs().contains(&net) => {
                LocalDetector::NodeCidr(self.pod_cidrs().to_vec())
            }
            InferredDetector::Cidr(net) => LocalDetector::ClusterCidr(vec![net]),
            InferredDetector::BridgeInterface(name) => LocalDetector::BridgeInterface(name),
            InferredDetector::InterfaceNamePrefix(prefix) => {
                LocalDetector::InterfaceNamePrefix(prefix)
            }
        };
        self.record(
            Setting::LocalDetection,
            Origin::Inferred,
            describe(&detector),
        );
        detector
    }

    fn nodeport_addresses(&mut self) -> Vec<IpNet> {
        let (listed, origin) = first(
            self.overrides.nodeport_addresses.clone(),
            self.configured.nodeport_addresses.clone(),
        );
        let seen = self.inferred.and_then(|i| i.nodeport_addresses.clone());
        let (nets, origin) = match (listed, origin, seen) {
            (Some(listed), Some(origin), seen) => {
                match nodeport_cidrs(&listed, &self.primary_ips) {
                    Some(nets) => (nets, origin),
                    None => {
                        self.warnings.push(
                            "NodePort addresses list `primary`, and the node's primary IPs are \
                             unknown: using the addresses the node's rules show instead"
                                .to_string(),
                        );
                        let mut nets: Vec<IpNet> = listed
                            .iter()
                            .filter_map(|a| match a {
                                NodePortAddress::Cidr(net) => Some(net.trunc()),
                                NodePortAddress::Primary => None,
                            })
                            .collect();
                        if let Some(InferredNodePorts::Addresses(ips)) = seen {
                            nets.extend(ips.into_iter().map(IpNet::from));
                        }
                        nets.sort();
                        nets.dedup();
                        (nets, origin)
                    }
                }
            }
            (_, _, Some(InferredNodePorts::All)) => (Vec::new(), Origin::Inferred),
            (_, _, Some(InferredNodePorts::Addresses(ips))) => {
                let mut nets: Vec<IpNet> = ips.into_iter().map(IpNet::from).collect();
                nets.sort();
                nets.dedup();
                (nets, Origin::Inferred)
            }
            (_, _, None) => (Vec::new(), Origin::Default),
        };
        let value = if nets.is_empty() {
            "every local address".to_string()
        } else {
            join(&nets)
        };
        self.record(Setting::NodePortAddresses, origin, value);
        nets
    }
}

/// The first of a flag and a ConfigMap value, with its origin.
fn first<T>(flag: Option<T>, configured: Option<T>) -> (Option<T>, Option<Origin>) {
    match (flag, configured) {
        (Some(v), _) => (Some(v), Some(Origin::Flag)),
        (None, Some(v)) => (Some(v), Some(Origin::ConfigMap)),
        (None, None) => (None, None),
    }
}

/// Whether `detector` plans the rules `seen` was read from (in the dump's `family`).
fn detector_matches(
    detector: &LocalDetector,
    seen: &InferredDetector,
    family: Option<IpFamily>,
) -> bool {
    match (detector, seen) {
        (LocalDetector::None, InferredDetector::None) => true,
        (
            LocalDetector::ClusterCidr(nets) | LocalDetector::NodeCidr(nets),
            InferredDetector::Cidr(net),
        ) => {
            let same_family = nets
                .iter()
                .find(|n| Some(IpFamily::of(&n.addr())) == family);
            same_family == Some(net)
        }
        (LocalDetector::BridgeInterface(a), InferredDetector::BridgeInterface(b)) => a == b,
        (LocalDetector::InterfaceNamePrefix(a), InferredDetector::InterfaceNamePrefix(b)) => a == b,
        _ => false,
    }
}

fn join(nets: &[IpNet]) -> String {
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn describe(detector: &LocalDetector) -> String {
    match detector {
        LocalDetector::None => "none".to_string(),
        LocalDetector::ClusterCidr(nets) => format!("ClusterCIDR {}", join(nets)),
        LocalDetector::NodeCidr(nets) => format!("NodeCIDR {}", join(nets)),
        LocalDetector::BridgeInterface(name) => format!("BridgeInterface {name}"),
        LocalDetector::InterfaceNamePrefix(prefix) => format!("InterfaceNamePrefix {prefix}"),
    }
}

fn describe_inferred(detector: &InferredDetector) -> String {
    match detector {
        InferredDetector::None => "none".to_string(),
        InferredDetector::Cidr(net) => format!("pod CIDR {net}"),
        InferredDetector::BridgeInterface(name) => format!("BridgeInterface {name}"),
        InferredDetector::InterfaceNamePrefix(prefix) => format!("InterfaceNamePrefix {prefix}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::core::model::NodeAddress;
    use crate::core::parse::parse_dump;

    const DUMP: &str = "\
*nat
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x1000/0x1000
-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE
COMMIT
";

    fn cluster(config: Option<&str>) -> ClusterState {
        let mut state = ClusterState::default();
        state.insert_node(Node {
            name: "n1".into(),
            labels: BTreeMap::new(),
            pod_cidrs: vec!["10.244.1.0/24".parse().unwrap()],
            addresses: vec![NodeAddress {
                kind: "InternalIP".into(),
                address: "198.18.0.2".into(),
            }],
            taints: Vec::new(),
            being_deleted: false,
        });
        state.kube_proxy_config =
            config.map(|text| BTreeMap::from([("config.conf".to_string(), text.to_string())]));
        state
    }

    fn origin(resolved: &ResolvedContext, setting: Setting) -> Origin {
        resolved
            .provenance
            .iter()
            .find(|s| s.setting == setting)
            .map(|s| s.origin)
            .unwrap()
    }

    #[test]
    fn precedence() {
        let state = cluster(Some(
            "iptables:\n  masqueradeBit: 13\n  masqueradeAll: true\ndetectLocalMode: NodeCIDR\n",
        ));
        let dump = parse_dump(DUMP).unwrap();
        let overrides = SettingsOverrides {
            masquerade_all: Some(false),
            ..Default::default()
        };
        let resolved = resolve_node_context(&state, "n1", Some(&dump), &overrides).unwrap();
        let ctx = &resolved.context;
        assert!(!ctx.masquerade_all);
        assert_eq!(origin(&resolved, Setting::MasqueradeAll), Origin::Flag);
        assert_eq!(ctx.masquerade_bit, 13);
        assert_eq!(origin(&resolved, Setting::MasqueradeBit), Origin::ConfigMap);
        assert_eq!(
            ctx.local_detector,
            LocalDetector::NodeCidr(vec!["10.244.1.0/24".parse().unwrap()])
        );
        assert!(!ctx.random_fully);
        assert_eq!(origin(&resolved, Setting::RandomFully), Origin::Inferred);
        assert!(ctx.localhost_nodeports);
        assert_eq!(
            origin(&resolved, Setting::LocalhostNodePorts),
            Origin::Default
        );
        assert_eq!(ctx.node_ips, vec![IpAddr::from([198, 18, 0, 2])]);
        // The ConfigMap's bit 13 contradicts the rules' 0x1000 (bit 12).
        assert_eq!(resolved.warnings.len(), 1, "{:?}", resolved.warnings);
        assert_eq!(
            resolved.provenance[2].to_string(),
            "masquerade bit 13 (from the kube-system/kube-proxy ConfigMap)"
        );
    }

    #[test]
    fn unknown_node_and_node_cidr_mode() {
        let state = cluster(Some("detectLocalMode: NodeCIDR\nmode: nftables\n"));
        let resolved = resolve_node_context(&state, "n2", None, &Default::default()).unwrap();
        assert!(resolved.context.node_ips.is_empty());
        assert_eq!(resolved.context.local_detector, LocalDetector::None);
        assert_eq!(resolved.warnings.len(), 3, "{:?}", resolved.warnings);
        assert!(resolved.warnings[0].contains("\"n2\" has no Node object"));
        assert!(resolved.warnings[1].contains("mode \"nftables\""));
        assert!(resolved.warnings[2].contains("NodeCIDR"));
    }

    #[test]
    fn two_cluster_cidrs_of_one_family_are_refused() {
        let overrides = SettingsOverrides {
            cluster_cidrs: Some(vec![
                "10.0.0.0/8".parse().unwrap(),
                "10.1.0.0/16".parse().unwrap(),
            ]),
            ..Default::default()
        };
        let error = resolve_node_context(&cluster(None), "n1", None, &overrides).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--cluster-cidr: takes at most one IPv4 CIDR, got 10.0.0.0/8, 10.1.0.0/16"
        );
    }
}
