//! Builders for model objects, so tests state a cluster in a few lines.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use svcproxy::core::model::{
    AddressType, ClusterState, Endpoint, EndpointPort, EndpointSlice, LoadBalancerIngress,
    LocalDetector, NamespacedName, NodeContext, ObjectRef, Service, ServicePort, ServiceType,
    TrafficPolicy,
};
use svcproxy::core::rules::Protocol;

/// Parses an IP literal in a test.
pub fn ip(text: &str) -> IpAddr {
    text.parse().expect("test IP literal")
}

/// A Service under construction.
pub struct ServiceBuilder(Service);

/// A ClusterIP Service with one cluster IP and no ports yet.
pub fn service(namespace: &str, name: &str, cluster_ip: &str) -> ServiceBuilder {
    ServiceBuilder(Service {
        id: NamespacedName::new(namespace, name),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        service_type: ServiceType::ClusterIP,
        cluster_ips: vec![ip(cluster_ip)],
        headless: false,
        ports: Vec::new(),
        external_ips: Vec::new(),
        load_balancer_ingress: Vec::new(),
        load_balancer_source_ranges: Vec::new(),
        external_traffic_policy: TrafficPolicy::Cluster,
        internal_traffic_policy: TrafficPolicy::Cluster,
        session_affinity_timeout: None,
        health_check_node_port: None,
        selector: BTreeMap::new(),
        external_name: None,
    })
}

impl ServiceBuilder {
    pub fn port(mut self, name: &str, protocol: &str, port: u16) -> Self {
        self.0.ports.push(ServicePort {
            name: name.into(),
            protocol: protocol.parse().unwrap_or(Protocol::Tcp),
            port,
            target_port: None,
            node_port: None,
        });
        self
    }
    pub fn node_port(mut self, node_port: u16) -> Self {
        if self.0.service_type == ServiceType::ClusterIP {
            self.0.service_type = ServiceType::NodePort;
        }
        if let Some(last) = self.0.ports.last_mut() {
            last.node_port = Some(node_port);
        }
        self
    }
    pub fn load_balancer(mut self, ips: &[&str]) -> Self {
        self.0.service_type = ServiceType::LoadBalancer;
        self.0.load_balancer_ingress = ips
            .iter()
            .map(|i| LoadBalancerIngress {
                ip: Some(ip(i)),
                hostname: None,
                ip_mode: None,
            })
            .collect();
        self
    }
    pub fn external_ip(mut self, address: &str) -> Self {
        self.0.external_ips.push(ip(address));
        self
    }
    pub fn source_range(mut self, cidr: &str) -> Self {
        self.0
            .load_balancer_source_ranges
            .push(cidr.parse().expect("test CIDR"));
        self
    }
    pub fn etp_local(mut self) -> Self {
        self.0.external_traffic_policy = TrafficPolicy::Local;
        self
    }
    pub fn itp_local(mut self) -> Self {
        self.0.internal_traffic_policy = TrafficPolicy::Local;
        self
    }
    pub fn affinity(mut self, seconds: u32) -> Self {
        self.0.session_affinity_timeout = Some(seconds);
        self
    }
    pub fn health_check_node_port(mut self, port: u16) -> Self {
        self.0.health_check_node_port = Some(port);
        self
    }
    pub fn build(self) -> Service {
        self.0
    }
}

/// An EndpointSlice under construction.
pub struct SliceBuilder(EndpointSlice);

/// An IPv4 slice for Service `namespace/service`.
pub fn slice(namespace: &str, service: &str, name: &str) -> SliceBuilder {
    let mut labels = BTreeMap::new();
    labels.insert(
        "kubernetes.io/service-name".to_string(),
        service.to_string(),
    );
    SliceBuilder(EndpointSlice {
        id: NamespacedName::new(namespace, name),
        service_name: service.into(),
        labels,
        address_type: AddressType::IPv4,
        ports: Vec::new(),
        endpoints: Vec::new(),
        last_change_trigger_time: None,
    })
}

/// Endpoint conditions: (ready, serving, terminating).
pub const READY: (bool, bool, bool) = (true, true, false);
/// Terminating but still serving.
pub const TERMINATING_SERVING: (bool, bool, bool) = (false, true, true);
/// Terminating and not serving.
pub const TERMINATING: (bool, bool, bool) = (false, false, true);
/// Not ready, not terminating.
pub const NOT_READY: (bool, bool, bool) = (false, false, false);

impl SliceBuilder {
    pub fn ipv6(mut self) -> Self {
        self.0.address_type = AddressType::IPv6;
        self
    }
    pub fn port(mut self, name: &str, protocol: &str, port: u16) -> Self {
        self.0.ports.push(EndpointPort {
            name: Some(name.into()),
            port: Some(port),
            protocol: protocol.parse().unwrap_or(Protocol::Tcp),
        });
        self
    }
    pub fn endpoint(mut self, address: &str, node: &str, conditions: (bool, bool, bool)) -> Self {
        let (ready, serving, terminating) = conditions;
        self.0.endpoints.push(Endpoint {
            addresses: vec![address.into()],
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
            node_name: Some(node.into()),
            zone: None,
            zone_hints: None,
            node_hints: None,
            target_ref: Some(ObjectRef {
                kind: Some("Pod".into()),
                namespace: Some(self.0.id.namespace.clone()),
                name: Some(format!(
                    "{}-{}",
                    self.0.service_name,
                    address.replace(['.', ':'], "-")
                )),
            }),
        });
        self
    }
    pub fn build(self) -> EndpointSlice {
        self.0
    }
}

/// A cluster from services and slices.
pub fn cluster(services: Vec<Service>, slices: Vec<EndpointSlice>) -> ClusterState {
    let mut state = ClusterState::default();
    for s in services {
        state.insert_service(s);
    }
    for s in slices {
        state.insert_slice(s);
    }
    state
}

/// kube-proxy's unit-test node: `test-node`, node IP 192.168.0.2, pod CIDR 10.0.0.0/8 (ClusterCIDR
/// detection), the fake interfaces' addresses, localhost NodePorts on.
pub fn test_node() -> NodeContext {
    let mut ctx = NodeContext::new("test-node", vec![ip("192.168.0.2")]);
    ctx.local_addresses = [
        "127.0.0.1",
        "::1",
        "192.168.0.2",
        "192.168.1.2",
        "192.168.99.11",
        "2001:db8::1",
        "2001:db8:1::2",
    ]
    .iter()
    .map(|a| ip(a))
    .collect();
    ctx.local_detector = LocalDetector::ClusterCidr(vec!["10.0.0.0/8".parse().expect("cidr")]);
    ctx
}
