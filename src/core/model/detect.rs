//! The proxy settings that choose local-traffic detection and the NodePort addresses, in kube-proxy's
//! terms, and how they turn into a [`LocalDetector`] and a list of CIDRs. Shared by the proxy's flags,
//! `render`, and the diagnostics' expected-settings resolver; pure.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use super::LocalDetector;
use crate::core::rules::IpFamily;

/// `--detect-local-mode` / `detectLocalMode`: how traffic from local pods is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DetectLocalMode {
    /// Pod traffic has a source in the cluster CIDR.
    ClusterCidr,
    /// Pod traffic has a source in the Node's pod CIDRs.
    NodeCidr,
    /// Pod traffic enters through one bridge interface.
    BridgeInterface,
    /// Pod traffic enters through interfaces whose names start with a prefix.
    InterfaceNamePrefix,
}

impl DetectLocalMode {
    /// Every mode, in kube-proxy's documentation order.
    pub const ALL: [DetectLocalMode; 4] = [
        DetectLocalMode::ClusterCidr,
        DetectLocalMode::NodeCidr,
        DetectLocalMode::BridgeInterface,
        DetectLocalMode::InterfaceNamePrefix,
    ];

    /// kube-proxy's spelling: `ClusterCIDR`, `NodeCIDR`, `BridgeInterface`, `InterfaceNamePrefix`.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectLocalMode::ClusterCidr => "ClusterCIDR",
            DetectLocalMode::NodeCidr => "NodeCIDR",
            DetectLocalMode::BridgeInterface => "BridgeInterface",
            DetectLocalMode::InterfaceNamePrefix => "InterfaceNamePrefix",
        }
    }
}

impl fmt::Display for DetectLocalMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DetectLocalMode {
    type Err = String;

    /// Reads kube-proxy's spelling, ignoring ASCII case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        DetectLocalMode::ALL
            .into_iter()
            .find(|mode| mode.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                format!(
                    "{text:?} must be ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix"
                )
            })
    }
}

/// One `--nodeport-addresses` entry: a CIDR, or `primary` for the node's primary IPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodePortAddress {
    /// The node's primary IP of each family.
    Primary,
    /// Local addresses inside this CIDR.
    Cidr(IpNet),
}

impl FromStr for NodePortAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("primary") {
            return Ok(NodePortAddress::Primary);
        }
        text.parse::<IpNet>()
            .map(NodePortAddress::Cidr)
            .map_err(|_| format!("{text:?} is neither a CIDR (e.g. 10.0.0.0/8) nor `primary`"))
    }
}

impl fmt::Display for NodePortAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodePortAddress::Primary => f.write_str("primary"),
            NodePortAddress::Cidr(net) => net.fmt(f),
        }
    }
}

/// Why the detect-local settings do not make a detector. Callers phrase it in their own terms (flag or
/// configuration field names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetectorProblem {
    /// `ClusterCIDR` mode without a cluster CIDR (kube-proxy then detects nothing).
    NoClusterCidr,
    /// `NodeCIDR` mode, and the Node has no pod CIDRs.
    NoPodCidrs,
    /// `BridgeInterface` mode without the bridge's name.
    NoBridgeInterface,
    /// `InterfaceNamePrefix` mode without the prefix.
    NoInterfaceNamePrefix,
}

/// The detect-local settings, as kube-proxy's configuration holds them.
#[derive(Debug, Clone, Copy, Default)]
pub struct DetectLocalSettings<'a> {
    /// The mode; `None` means ClusterCIDR when a cluster CIDR is given, else no detection.
    pub mode: Option<DetectLocalMode>,
    /// The cluster CIDRs, at most one per family (see [`one_per_family`]).
    pub cluster_cidrs: &'a [IpNet],
    /// The bridge, for `BridgeInterface`.
    pub bridge_interface: Option<&'a str>,
    /// The interface name prefix, for `InterfaceNamePrefix`.
    pub interface_name_prefix: Option<&'a str>,
    /// The Node's pod CIDRs, for `NodeCIDR`.
    pub pod_cidrs: &'a [IpNet],
}

impl DetectLocalSettings<'_> {
    /// The detector these settings make. Empty interface names count as absent.
    pub fn detector(&self) -> Result<LocalDetector, DetectorProblem> {
        let mode = match self.mode {
            Some(mode) => mode,
            None if self.cluster_cidrs.is_empty() => return Ok(LocalDetector::None),
            None => DetectLocalMode::ClusterCidr,
        };
        let named = |name: Option<&str>| name.filter(|n| !n.is_empty()).map(str::to_owned);
        match mode {
            DetectLocalMode::ClusterCidr if self.cluster_cidrs.is_empty() => {
                Err(DetectorProblem::NoClusterCidr)
            }
            DetectLocalMode::ClusterCidr => Ok(LocalDetector::ClusterCidr(
                self.cluster_cidrs.iter().map(IpNet::trunc).collect(),
            )),
            DetectLocalMode::NodeCidr if self.pod_cidrs.is_empty() => {
                Err(DetectorProblem::NoPodCidrs)
            }
            DetectLocalMode::NodeCidr => Ok(LocalDetector::NodeCidr(self.pod_cidrs.to_vec())),
            DetectLocalMode::BridgeInterface => named(self.bridge_interface)
                .map(LocalDetector::BridgeInterface)
                .ok_or(DetectorProblem::NoBridgeInterface),
            DetectLocalMode::InterfaceNamePrefix => named(self.interface_name_prefix)
                .map(LocalDetector::InterfaceNamePrefix)
                .ok_or(DetectorProblem::NoInterfaceNamePrefix),
        }
    }
}

/// Two cluster CIDRs of one family: kube-proxy takes at most one per family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwoCidrsOfOneFamily {
    /// The family given twice.
    pub family: IpFamily,
    /// Every CIDR of that family, as given.
    pub cidrs: Vec<IpNet>,
}

impl fmt::Display for TwoCidrsOfOneFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.cidrs.iter().map(ToString::to_string).collect();
        write!(
            f,
            "at most one {} CIDR, got {}",
            self.family,
            list.join(", ")
        )
    }
}

/// Checks that `cidrs` hold at most one CIDR per IP family and returns them without host bits.
pub fn one_per_family(cidrs: &[IpNet]) -> Result<Vec<IpNet>, TwoCidrsOfOneFamily> {
    for family in [IpFamily::V4, IpFamily::V6] {
        let same: Vec<IpNet> = cidrs
            .iter()
            .copied()
            .filter(|net| IpFamily::of(&net.addr()) == family)
            .collect();
        if same.len() > 1 {
            return Err(TwoCidrsOfOneFamily {
                family,
                cidrs: same,
            });
        }
    }
    Ok(cidrs.iter().map(IpNet::trunc).collect())
}

/// The CIDRs `--nodeport-addresses` selects: each CIDR without host bits, `primary` as the node's
/// `primary_ips`, sorted and without duplicates. `None` when `primary` is listed and there are no
/// primary IPs.
pub fn nodeport_cidrs(addresses: &[NodePortAddress], primary_ips: &[IpAddr]) -> Option<Vec<IpNet>> {
    let mut nets = Vec::new();
    for address in addresses {
        match address {
            NodePortAddress::Cidr(net) => nets.push(net.trunc()),
            NodePortAddress::Primary if primary_ips.is_empty() => return None,
            NodePortAddress::Primary => nets.extend(primary_ips.iter().copied().map(IpNet::from)),
        }
    }
    nets.sort();
    nets.dedup();
    Some(nets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    #[test]
    fn modes_read_kube_proxy_spellings() {
        for mode in DetectLocalMode::ALL {
            assert_eq!(mode.as_str().parse::<DetectLocalMode>(), Ok(mode));
        }
        assert_eq!("nodecidr".parse(), Ok(DetectLocalMode::NodeCidr));
        assert!("Magic".parse::<DetectLocalMode>().is_err());
    }

    #[test]
    fn detector_from_settings() {
        let cidrs = [net("10.244.1.0/16")];
        let settings = DetectLocalSettings {
            cluster_cidrs: &cidrs,
            ..Default::default()
        };
        assert_eq!(
            settings.detector(),
            Ok(LocalDetector::ClusterCidr(vec![net("10.244.0.0/16")]))
        );
        assert_eq!(
            DetectLocalSettings::default().detector(),
            Ok(LocalDetector::None)
        );
        let explicit = DetectLocalSettings {
            mode: Some(DetectLocalMode::ClusterCidr),
            ..Default::default()
        };
        assert_eq!(explicit.detector(), Err(DetectorProblem::NoClusterCidr));
        let bridge = DetectLocalSettings {
            mode: Some(DetectLocalMode::BridgeInterface),
            bridge_interface: Some(""),
            ..Default::default()
        };
        assert_eq!(bridge.detector(), Err(DetectorProblem::NoBridgeInterface));
    }

    #[test]
    fn one_cidr_per_family() {
        let error = one_per_family(&[net("10.0.0.0/8"), net("10.1.0.0/16")]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "at most one IPv4 CIDR, got 10.0.0.0/8, 10.1.0.0/16"
        );
        assert!(one_per_family(&[net("10.0.0.0/8"), net("fd00::/48")]).is_ok());
    }

    #[test]
    fn primary_needs_primary_ips() {
        let ips = [IpAddr::from([192, 168, 1, 8])];
        let addresses = [
            NodePortAddress::Primary,
            NodePortAddress::Cidr(net("127.0.0.1/8")),
        ];
        assert_eq!(
            nodeport_cidrs(&addresses, &ips),
            Some(vec![net("127.0.0.0/8"), net("192.168.1.8/32")])
        );
        assert_eq!(nodeport_cidrs(&addresses, &[]), None);
    }
}
