//! Reading the `kube-system/kube-proxy` ConfigMap (kubeadm style: key `config.conf` holds a YAML
//! `KubeProxyConfiguration`) into the settings that change a node's rules. Pure: the caller fetched the
//! ConfigMap.
//!
//! Only the fields below are read; the configuration's many other fields are ignored:
//!
//! | field | meaning |
//! |---|---|
//! | `clusterCIDR` | one CIDR per family, comma-separated |
//! | `detectLocalMode` | `ClusterCIDR` (the default), `NodeCIDR`, `BridgeInterface`, `InterfaceNamePrefix` |
//! | `detectLocal.bridgeInterface` | the bridge, for `BridgeInterface` |
//! | `detectLocal.interfaceNamePrefix` | the prefix, for `InterfaceNamePrefix` |
//! | `iptables.masqueradeAll` | masquerade all Service traffic |
//! | `iptables.masqueradeBit` | the masquerade mark's bit, 0–31 |
//! | `iptables.localhostNodePorts` | accept NodePort connections to 127.0.0.1 |
//! | `nodePortAddresses` | CIDRs, or `primary` |
//! | `mode` | the proxy mode; the diagnostics understand `iptables` (or empty) only |
//!
//! An empty string or list (kubeadm writes `clusterCIDR: ""` and `nodePortAddresses: null`) means the
//! default and counts as unset, so the node's own rules can say what the node really runs with.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::detect::{DetectLocalMode, NodePortAddress, one_per_family};
use super::{ModelError, sloppy};

/// The ConfigMap key holding the `KubeProxyConfiguration`.
pub const CONFIG_KEY: &str = "config.conf";

/// How errors name the configuration text.
pub const CONFIG_SOURCE: &str = "kube-system/kube-proxy ConfigMap key config.conf";

/// The settings a `KubeProxyConfiguration` gives; `None` where it gives nothing (or an empty value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfiguredSettings {
    /// `clusterCIDR`, at most one per family.
    pub cluster_cidrs: Option<Vec<IpNet>>,
    /// `detectLocalMode`.
    pub detect_local_mode: Option<DetectLocalMode>,
    /// `detectLocal.bridgeInterface`.
    pub bridge_interface: Option<String>,
    /// `detectLocal.interfaceNamePrefix`.
    pub interface_name_prefix: Option<String>,
    /// `iptables.masqueradeAll`.
    pub masquerade_all: Option<bool>,
    /// `iptables.masqueradeBit`.
    pub masquerade_bit: Option<u8>,
    /// `iptables.localhostNodePorts`.
    pub localhost_nodeports: Option<bool>,
    /// `nodePortAddresses`.
    pub nodeport_addresses: Option<Vec<NodePortAddress>>,
    /// `mode`, when not empty.
    pub mode: Option<String>,
}

impl ConfiguredSettings {
    /// What a user should know about this configuration: a proxy mode other than iptables, whose rules
    /// the diagnostics do not understand.
    pub fn warnings(&self) -> Vec<String> {
        match self.mode.as_deref() {
            None | Some("iptables") => Vec::new(),
            Some(mode) => vec![format!(
                "{CONFIG_SOURCE} sets mode {mode:?}; the diagnostics only understand kube-proxy's \
                 iptables mode, so the expected rules may not apply to this cluster"
            )],
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    kind: Option<Spanned<String>>,
    #[serde(rename = "clusterCIDR")]
    cluster_cidr: Option<Spanned<String>>,
    detect_local_mode: Option<Spanned<String>>,
    detect_local: Option<DetectLocalFile>,
    iptables: Option<IptablesFile>,
    node_port_addresses: Option<Vec<Spanned<String>>>,
    mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DetectLocalFile {
    bridge_interface: Option<String>,
    interface_name_prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IptablesFile {
    masquerade_all: Option<bool>,
    masquerade_bit: Option<Spanned<i64>>,
    #[serde(rename = "localhostNodePorts")]
    localhost_node_ports: Option<bool>,
}

/// Reads the ConfigMap's `data`. `Ok(None)` when it has no `config.conf` key.
///
/// Errors ([`ModelError::Config`], naming the ConfigMap key and the line): YAML that does not parse, a
/// field of the wrong type, a `kind` other than `KubeProxyConfiguration`, a CIDR that does not parse,
/// two cluster CIDRs of one family, an unknown `detectLocalMode`, a masquerade bit outside 0–31.
pub fn parse_kube_proxy_config(
    data: &BTreeMap<String, String>,
) -> Result<Option<ConfiguredSettings>, ModelError> {
    data.get(CONFIG_KEY)
        .map(|text| parse_config_conf(text))
        .transpose()
}

/// Reads the text of `config.conf`; see [`parse_kube_proxy_config`].
pub fn parse_config_conf(text: &str) -> Result<ConfiguredSettings, ModelError> {
    if text.trim().is_empty() {
        return Ok(ConfiguredSettings::default());
    }
    let file: ConfigFile = serde_saphyr::from_str(text).map_err(yaml_error)?;
    if let Some(kind) = &file.kind
        && kind.value != "KubeProxyConfiguration"
    {
        return Err(config_error(
            kind,
            format!("kind {:?} is not KubeProxyConfiguration", kind.value),
        ));
    }

    let mut settings = ConfiguredSettings {
        mode: file.mode.filter(|m| !m.is_empty()),
        ..ConfiguredSettings::default()
    };
    if let Some(text) = file.cluster_cidr.as_ref().filter(|t| !t.value.is_empty()) {
        settings.cluster_cidrs = Some(cluster_cidrs(text)?);
    }
    if let Some(mode) = file
        .detect_local_mode
        .as_ref()
        .filter(|m| !m.value.is_empty())
    {
        let parsed = mode
            .value
            .parse::<DetectLocalMode>()
            .map_err(|reason| config_error(mode, format!("detectLocalMode {reason}")))?;
        settings.detect_local_mode = Some(parsed);
    }
    if let Some(detect) = file.detect_local {
        settings.bridge_interface = detect.bridge_interface.filter(|s| !s.is_empty());
        settings.interface_name_prefix = detect.interface_name_prefix.filter(|s| !s.is_empty());
    }
    if let Some(iptables) = file.iptables {
        settings.masquerade_all = iptables.masquerade_all;
        settings.localhost_nodeports = iptables.localhost_node_ports;
        if let Some(bit) = &iptables.masquerade_bit {
            let valid = u8::try_from(bit.value).ok().filter(|b| *b <= 31);
            settings.masquerade_bit = Some(valid.ok_or_else(|| {
                config_error(
                    bit,
                    format!(
                        "iptables.masqueradeBit {} must be between 0 and 31",
                        bit.value
                    ),
                )
            })?);
        }
    }
    if let Some(list) = file.node_port_addresses.filter(|l| !l.is_empty()) {
        let mut addresses = Vec::new();
        for (i, entry) in list.iter().enumerate() {
            addresses.push(nodeport_address(entry).ok_or_else(|| {
                config_error(
                    entry,
                    format!(
                        "nodePortAddresses[{i}] {:?} is not a CIDR (or \"primary\")",
                        entry.value
                    ),
                )
            })?);
        }
        settings.nodeport_addresses = Some(addresses);
    }
    Ok(settings)
}

fn cluster_cidrs(text: &Spanned<String>) -> Result<Vec<IpNet>, ModelError> {
    let mut nets = Vec::new();
    for entry in text
        .value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        nets.push(sloppy::parse_cidr(entry).ok_or_else(|| {
            config_error(
                text,
                format!("clusterCIDR {entry:?} is not a CIDR such as 10.244.0.0/16"),
            )
        })?);
    }
    one_per_family(&nets).map_err(|e| config_error(text, format!("clusterCIDR takes {e}")))
}

fn nodeport_address(entry: &Spanned<String>) -> Option<NodePortAddress> {
    let text = entry.value.trim();
    if text.eq_ignore_ascii_case("primary") {
        Some(NodePortAddress::Primary)
    } else {
        sloppy::parse_cidr(text).map(|net| NodePortAddress::Cidr(net.trunc()))
    }
}

fn config_error<T>(at: &Spanned<T>, message: String) -> ModelError {
    ModelError::Config {
        origin: CONFIG_SOURCE.to_string(),
        line: usize::try_from(at.referenced.line())
            .ok()
            .filter(|l| *l > 0),
        message,
    }
}

fn yaml_error(error: serde_saphyr::Error) -> ModelError {
    let line = error
        .location()
        .and_then(|l| usize::try_from(l.line()).ok())
        .filter(|l| *l > 0);
    let options = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
    let rendered = error.render_with_options(options);
    let first = rendered.lines().next().unwrap_or_default().trim();
    // The plain rendering ends with " at line L, column C"; the error names the line itself.
    let message = match first.rfind(" at line ") {
        Some(at) if line.is_some() => &first[..at],
        _ => first,
    };
    ModelError::Config {
        origin: CONFIG_SOURCE.to_string(),
        line,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `kubeadm init --pod-network-cidr 10.244.0.0/16` writes.
    const KUBEADM: &str = "\
apiVersion: kubeproxy.config.k8s.io/v1alpha1
bindAddress: 0.0.0.0
bindAddressHardFail: false
clientConnection:
  acceptContentTypes: \"\"
  burst: 0
  contentType: \"\"
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 0
clusterCIDR: 10.244.0.0/16
configSyncPeriod: 0s
conntrack:
  maxPerCore: null
  min: null
  tcpBeLiberal: false
  tcpCloseWaitTimeout: null
  tcpEstablishedTimeout: null
  udpStreamTimeout: 0s
  udpTimeout: 0s
detectLocal:
  bridgeInterface: \"\"
  interfaceNamePrefix: \"\"
detectLocalMode: \"\"
enableProfiling: false
healthzBindAddress: \"\"
hostnameOverride: \"\"
iptables:
  localhostNodePorts: null
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
ipvs:
  excludeCIDRs: null
  minSyncPeriod: 0s
  scheduler: \"\"
  strictARP: false
  syncPeriod: 0s
  tcpFinTimeout: 0s
  tcpTimeout: 0s
  udpTimeout: 0s
kind: KubeProxyConfiguration
logging:
  flushFrequency: 0
  options:
    json:
      infoBufferSize: \"0\"
  verbosity: 0
metricsBindAddress: \"\"
mode: \"\"
nftables:
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
nodePortAddresses: null
oomScoreAdj: null
portRange: \"\"
showHiddenMetricsForVersion: \"\"
winkernel:
  enableDSR: false
  forwardHealthCheckVip: false
  networkName: \"\"
  rootHnsEndpointName: \"\"
  sourceVip: \"\"
";

    fn data(text: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (CONFIG_KEY.to_string(), text.to_string()),
            ("kubeconfig.conf".to_string(), "apiVersion: v1".to_string()),
        ])
    }

    #[test]
    fn kubeadm_config() {
        let settings = parse_kube_proxy_config(&data(KUBEADM)).unwrap().unwrap();
        assert_eq!(
            settings,
            ConfiguredSettings {
                cluster_cidrs: Some(vec!["10.244.0.0/16".parse().unwrap()]),
                masquerade_all: Some(false),
                ..ConfiguredSettings::default()
            }
        );
        assert!(settings.warnings().is_empty());
    }

    #[test]
    fn no_config_key_is_no_settings() {
        assert_eq!(parse_kube_proxy_config(&BTreeMap::new()), Ok(None));
    }

    #[test]
    fn every_field() {
        let text = "\
kind: KubeProxyConfiguration
clusterCIDR: 10.244.0.0/16, fd00:10:244::/56
detectLocalMode: BridgeInterface
detectLocal:
  bridgeInterface: cbr0
  interfaceNamePrefix: veth
iptables:
  masqueradeAll: true
  masqueradeBit: 13
  localhostNodePorts: false
nodePortAddresses: [primary, 192.168.001.0/24]
mode: ipvs
someFutureField: {nested: [1, 2]}
";
        let settings = parse_config_conf(text).unwrap();
        assert_eq!(
            settings,
            ConfiguredSettings {
                cluster_cidrs: Some(vec![
                    "10.244.0.0/16".parse().unwrap(),
                    "fd00:10:244::/56".parse().unwrap()
                ]),
                detect_local_mode: Some(DetectLocalMode::BridgeInterface),
                bridge_interface: Some("cbr0".into()),
                interface_name_prefix: Some("veth".into()),
                masquerade_all: Some(true),
                masquerade_bit: Some(13),
                localhost_nodeports: Some(false),
                nodeport_addresses: Some(vec![
                    NodePortAddress::Primary,
                    NodePortAddress::Cidr("192.168.1.0/24".parse().unwrap())
                ]),
                mode: Some("ipvs".into()),
            }
        );
        let warnings = settings.warnings();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("mode \"ipvs\""), "{warnings:?}");
    }

    #[track_caller]
    fn error(text: &str) -> String {
        parse_config_conf(text).unwrap_err().to_string()
    }

    #[test]
    fn bad_yaml_names_the_key_and_the_line() {
        let cases = [
            (
                "kind: KubeProxyConfiguration\niptables:\n  masqueradeAll: maybe\n",
                "line 3: invalid boolean",
            ),
            (
                "kind: KubeProxyConfiguration\nclusterCIDR: [10.244.0.0/16]\n",
                "line 2: expected string scalar",
            ),
            (
                "iptables: {masqueradeBit: 14\n",
                "line 1: unclosed bracket '{'",
            ),
            (
                "kind: KubeProxyConfiguration\niptables:\n\tmasqueradeAll: true\n",
                "line 3: ",
            ),
        ];
        for (text, expected) in cases {
            let message = error(text);
            assert!(
                message.starts_with(&format!("{CONFIG_SOURCE} {expected}")),
                "{text:?}: {message}"
            );
        }
    }

    #[test]
    fn bad_values_name_the_field_and_the_line() {
        let cases = [
            (
                "clusterCIDR: 10.244.0.0/16,10.245.0.0/16\n",
                "line 1: clusterCIDR takes at most one IPv4 CIDR, got 10.244.0.0/16, 10.245.0.0/16",
            ),
            (
                "mode: \"\"\nclusterCIDR: 10.244.0.0\n",
                "line 2: clusterCIDR \"10.244.0.0\" is not a CIDR such as 10.244.0.0/16",
            ),
            (
                "detectLocalMode: Magic\n",
                "line 1: detectLocalMode \"Magic\" must be ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix",
            ),
            (
                "iptables:\n  masqueradeBit: 32\n",
                "line 2: iptables.masqueradeBit 32 must be between 0 and 31",
            ),
            (
                "nodePortAddresses:\n- 10.0.0.0/8\n- eth0\n",
                "line 3: nodePortAddresses[1] \"eth0\" is not a CIDR (or \"primary\")",
            ),
            (
                "kind: KubeletConfiguration\n",
                "line 1: kind \"KubeletConfiguration\" is not KubeProxyConfiguration",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(error(text), format!("{CONFIG_SOURCE} {expected}"), "{text}");
        }
    }
}
