//! Our own types for the Kubernetes objects a service proxy consumes, independent of any client library.
//!
//! [`convert`] builds them from k8s-openapi types; [`bundle`] loads them from a snapshot bundle's
//! `cluster.json`; [`settings`] reads a bundle's `node-context.json` into a [`NodeContext`]. Addresses are
//! parsed the way kube-proxy parses them ([`sloppy`]). Everything downstream (plan, path, drift) works on
//! these types only.

pub mod bundle;
pub mod context;
pub mod convert;
pub mod detect;
pub mod error;
pub mod infer;
mod json;
pub mod kube_proxy_config;
pub mod resolve;
pub mod settings;
mod skim;
pub mod sloppy;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::core::rules::{IpFamily, Protocol};

pub use context::{LocalDetector, NodeContext};
pub use error::ModelError;
pub use resolve::{ResolvedContext, SettingsOverrides, resolve_node_context};

/// A namespaced object name, printed as `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NamespacedName {
    /// The namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

impl NamespacedName {
    /// A name in a namespace.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        NamespacedName {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One port of one Service, as kube-proxy identifies it: `namespace/name[:port]` plus the protocol.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServicePortName {
    /// The Service.
    pub service: NamespacedName,
    /// The port's name; empty for a Service's single unnamed port.
    pub port: String,
    /// The port's protocol.
    pub protocol: Protocol,
}

impl ServicePortName {
    /// The service-port name string: `ns/name:port`, or `ns/name` for an unnamed port. This string
    /// starts every per-service comment and is the input of the chain-name hashes.
    pub fn spn(&self) -> String {
        if self.port.is_empty() {
            self.service.to_string()
        } else {
            format!(
                "{}/{}:{}",
                self.service.namespace, self.service.name, self.port
            )
        }
    }
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.spn(), self.protocol)
    }
}

/// `spec.type` of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ServiceType {
    /// A virtual IP inside the cluster.
    #[default]
    ClusterIP,
    /// A cluster IP plus a port on every node.
    NodePort,
    /// A NodePort plus an external load balancer.
    LoadBalancer,
    /// A DNS alias; never proxied.
    ExternalName,
}

/// `externalTrafficPolicy` / `internalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TrafficPolicy {
    /// Any ready endpoint in the cluster.
    #[default]
    Cluster,
    /// Only endpoints on the receiving node.
    Local,
}

/// A Service's `targetPort`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A named container port.
    Name(String),
}

/// One entry of `spec.ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    /// The port's name; empty when the Service has a single unnamed port.
    pub name: String,
    /// TCP, UDP or SCTP.
    pub protocol: Protocol,
    /// The service port.
    pub port: u16,
    /// The target port on the endpoints (informational: the endpoints carry the resolved port).
    pub target_port: Option<TargetPort>,
    /// The node port, for NodePort and LoadBalancer Services.
    pub node_port: Option<u16>,
}

/// One entry of `status.loadBalancer.ingress`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerIngress {
    /// The ingress IP, when the load balancer has one.
    pub ip: Option<IpAddr>,
    /// The ingress hostname, when it has one instead.
    pub hostname: Option<String>,
    /// `ipMode`: `VIP` (the default) or `Proxy`. Proxy-mode IPs are not captured by the node.
    pub ip_mode: Option<String>,
}

impl LoadBalancerIngress {
    /// The IP the node should capture, if any: set, and in `VIP` mode. As in kube-proxy, an absent
    /// `ipMode` means `VIP`, and any other value (`Proxy`, or one the API does not define) is not captured.
    pub fn vip(&self) -> Option<IpAddr> {
        match self.ip_mode.as_deref() {
            None | Some("VIP") => self.ip,
            Some(_) => None,
        }
    }
}

/// A Service, reduced to what a service proxy and its diagnostics need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Namespace and name.
    pub id: NamespacedName,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `spec.type`.
    pub service_type: ServiceType,
    /// `spec.clusterIPs` (or `spec.clusterIP`); empty for headless Services.
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.clusterIP` is `None`.
    pub headless: bool,
    /// `spec.ports`.
    pub ports: Vec<ServicePort>,
    /// `spec.externalIPs` that parse as IP addresses.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress`.
    pub load_balancer_ingress: Vec<LoadBalancerIngress>,
    /// `spec.loadBalancerSourceRanges`.
    pub load_balancer_source_ranges: Vec<IpNet>,
    /// `spec.externalTrafficPolicy`.
    pub external_traffic_policy: TrafficPolicy,
    /// `spec.internalTrafficPolicy`.
    pub internal_traffic_policy: TrafficPolicy,
    /// With `sessionAffinity: ClientIP`, the affinity timeout in seconds (default 10800).
    pub session_affinity_timeout: Option<u32>,
    /// `spec.healthCheckNodePort`.
    pub health_check_node_port: Option<u16>,
    /// `spec.selector`.
    pub selector: BTreeMap<String, String>,
    /// `spec.externalName`.
    pub external_name: Option<String>,
}

/// The label that hands a Service to an alternative proxy; kube-proxy ignores such Services.
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// The label EndpointSlices carry to name their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label kube-proxy's EndpointSlice informer excludes.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// The Node label with the topology zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

impl Service {
    /// Whether a kube-proxy compatible proxy programs this Service at all (spec §3.1): not ExternalName,
    /// not headless, not handed to another proxy.
    pub fn is_proxied(&self) -> bool {
        self.service_type != ServiceType::ExternalName
            && !self.headless
            && !self.cluster_ips.is_empty()
            && !self.labels.contains_key(SERVICE_PROXY_NAME_LABEL)
    }

    /// The cluster IP of `family`, if the Service has one.
    pub fn cluster_ip(&self, family: IpFamily) -> Option<IpAddr> {
        self.cluster_ips
            .iter()
            .copied()
            .find(|ip| IpFamily::of(ip) == family)
    }

    /// External IPs of `family`.
    pub fn external_ips(&self, family: IpFamily) -> impl Iterator<Item = IpAddr> + '_ {
        self.external_ips
            .iter()
            .copied()
            .filter(move |ip| IpFamily::of(ip) == family)
    }

    /// Load-balancer VIPs of `family` (ingress IPs that are set and not in Proxy mode).
    pub fn load_balancer_vips(&self, family: IpFamily) -> impl Iterator<Item = IpAddr> + '_ {
        self.load_balancer_ingress
            .iter()
            .filter_map(LoadBalancerIngress::vip)
            .filter(move |ip| IpFamily::of(ip) == family)
    }

    /// `loadBalancerSourceRanges` of `family`.
    pub fn source_ranges(&self, family: IpFamily) -> impl Iterator<Item = IpNet> + '_ {
        self.load_balancer_source_ranges
            .iter()
            .copied()
            .filter(move |net| IpFamily::of(&net.addr()) == family)
    }

    /// The port's identity for chain names and comments.
    pub fn port_name(&self, port: &ServicePort) -> ServicePortName {
        ServicePortName {
            service: self.id.clone(),
            port: port.name.clone(),
            protocol: port.protocol.clone(),
        }
    }
}

/// `addressType` of an EndpointSlice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AddressType {
    /// IPv4 addresses.
    IPv4,
    /// IPv6 addresses.
    IPv6,
    /// Hostnames; ignored by service proxies.
    #[serde(rename = "FQDN")]
    Fqdn,
}

impl AddressType {
    /// The IP family, for IP slices.
    pub fn family(self) -> Option<IpFamily> {
        match self {
            AddressType::IPv4 => Some(IpFamily::V4),
            AddressType::IPv6 => Some(IpFamily::V6),
            AddressType::Fqdn => None,
        }
    }
}

/// One entry of an EndpointSlice's `ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointPort {
    /// The port name; `None` when absent (such a port is skipped), `Some("")` for an unnamed port.
    pub name: Option<String>,
    /// The port number; `None` when absent or 0 (such a port is skipped).
    pub port: Option<u16>,
    /// The protocol (TCP when absent).
    pub protocol: Protocol,
}

/// What an endpoint points at (`targetRef`), usually a Pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// `kind`, e.g. `Pod`.
    pub kind: Option<String>,
    /// `namespace`.
    pub namespace: Option<String>,
    /// `name`.
    pub name: Option<String>,
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// `addresses`; service proxies use only the first. In IPv4/IPv6 slices, addresses that parse are
    /// normalized by kube-proxy's sloppy parse (`010.001.002.003` becomes `10.1.2.3`); others are kept
    /// verbatim.
    pub addresses: Vec<String>,
    /// `conditions.ready` (absent means ready).
    pub ready: Option<bool>,
    /// `conditions.serving` (absent means serving).
    pub serving: Option<bool>,
    /// `conditions.terminating` (absent means not terminating).
    pub terminating: Option<bool>,
    /// `nodeName`.
    pub node_name: Option<String>,
    /// `zone`.
    pub zone: Option<String>,
    /// `hints.forZones[].name`, when hints are present.
    pub zone_hints: Option<Vec<String>>,
    /// `hints.forNodes[].name`, when hints are present.
    pub node_hints: Option<Vec<String>>,
    /// `targetRef`.
    pub target_ref: Option<ObjectRef>,
}

impl Endpoint {
    /// The address a service proxy uses: `addresses[0]`, parsed sloppily as kube-proxy does. `None` when
    /// there is no address or it is not an IP (such an endpoint gets no rules).
    pub fn ip(&self) -> Option<IpAddr> {
        self.addresses.first().and_then(|a| sloppy::parse_ip(a))
    }

    /// Ready: the condition is absent or true.
    pub fn is_ready(&self) -> bool {
        self.ready.unwrap_or(true)
    }

    /// Serving: the condition is absent or true.
    pub fn is_serving(&self) -> bool {
        self.serving.unwrap_or(true)
    }

    /// Terminating: the condition is present and true.
    pub fn is_terminating(&self) -> bool {
        self.terminating.unwrap_or(false)
    }
}

/// An EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSlice {
    /// Namespace and name.
    pub id: NamespacedName,
    /// The Service it belongs to (from the `kubernetes.io/service-name` label).
    pub service_name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `addressType`.
    pub address_type: AddressType,
    /// `ports`.
    pub ports: Vec<EndpointPort>,
    /// `endpoints`.
    pub endpoints: Vec<Endpoint>,
    /// `metadata.annotations["endpoints.kubernetes.io/last-change-trigger-time"]`, verbatim.
    pub last_change_trigger_time: Option<String>,
}

impl EndpointSlice {
    /// The Service this slice belongs to.
    pub fn service(&self) -> NamespacedName {
        NamespacedName::new(self.id.namespace.clone(), self.service_name.clone())
    }
}

/// One entry of a Node's `status.addresses`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, …
    pub kind: String,
    /// The address.
    pub address: String,
}

/// A Node taint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taint {
    /// The taint key.
    pub key: String,
    /// The effect (`NoSchedule`, …).
    pub effect: String,
}

/// A Node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The node's name.
    pub name: String,
    /// `metadata.labels` (topology zone among them).
    pub labels: BTreeMap<String, String>,
    /// `spec.podCIDRs` (or `spec.podCIDR`).
    pub pod_cidrs: Vec<IpNet>,
    /// `status.addresses`.
    pub addresses: Vec<NodeAddress>,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// `metadata.deletionTimestamp` is set.
    pub being_deleted: bool,
}

impl Node {
    /// The node's InternalIP addresses (else ExternalIP ones), parsed, in order.
    pub fn primary_ips(&self) -> Vec<IpAddr> {
        let parse = |kind: &str| -> Vec<IpAddr> {
            self.addresses
                .iter()
                .filter(|a| a.kind == kind)
                .filter_map(|a| a.address.parse().ok())
                .collect()
        };
        let internal = parse("InternalIP");
        if internal.is_empty() {
            parse("ExternalIP")
        } else {
            internal
        }
    }
}

/// A Pod, reduced to what the diagnostics show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    /// Namespace and name.
    pub id: NamespacedName,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `status.podIPs` (or `status.podIP`).
    pub pod_ips: Vec<IpAddr>,
    /// `spec.nodeName`.
    pub node_name: Option<String>,
    /// `status.phase`.
    pub phase: Option<String>,
    /// The `Ready` condition is true.
    pub ready: bool,
    /// `spec.hostNetwork`.
    pub host_network: bool,
}

/// Everything the cluster says, in our own types, keyed for deterministic iteration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Services by namespace/name.
    pub services: BTreeMap<NamespacedName, Service>,
    /// EndpointSlices by namespace/name.
    pub endpoint_slices: BTreeMap<NamespacedName, EndpointSlice>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, Node>,
    /// Pods by namespace/name.
    pub pods: BTreeMap<NamespacedName, Pod>,
    /// The `data` of the `kube-system/kube-proxy` ConfigMap, when the bundle holds it.
    pub kube_proxy_config: Option<BTreeMap<String, String>>,
}

impl ClusterState {
    /// Adds or replaces a Service.
    pub fn insert_service(&mut self, service: Service) {
        self.services.insert(service.id.clone(), service);
    }

    /// Adds or replaces an EndpointSlice.
    pub fn insert_slice(&mut self, slice: EndpointSlice) {
        self.endpoint_slices.insert(slice.id.clone(), slice);
    }

    /// Adds or replaces a Node.
    pub fn insert_node(&mut self, node: Node) {
        self.nodes.insert(node.name.clone(), node);
    }

    /// Adds or replaces a Pod.
    pub fn insert_pod(&mut self, pod: Pod) {
        self.pods.insert(pod.id.clone(), pod);
    }

    /// The EndpointSlices of one Service, in name order.
    pub fn slices_for<'a>(
        &'a self,
        service: &'a NamespacedName,
    ) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        self.endpoint_slices
            .range(NamespacedName::new(service.namespace.clone(), String::new())..)
            .take_while(move |(id, _)| id.namespace == service.namespace)
            .map(|(_, slice)| slice)
            .filter(move |slice| slice.service_name == service.name)
    }
}
