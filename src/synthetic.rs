//! Deterministic synthetic clusters for benchmarks and scale tests: `services` Services with
//! `endpoints_per_service` ready endpoints each, spread over nodes `node-0` … `node-99`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::core::model::{
    AddressType, ClusterState, Endpoint, EndpointPort, EndpointSlice, NamespacedName,
    SERVICE_NAME_LABEL, Service, ServicePort, ServiceType, TrafficPolicy,
};
use crate::core::rules::Protocol;

/// Number of nodes endpoints are spread over.
pub const NODES: usize = 100;

/// The `index`-th address after `base`.
fn offset(base: Ipv4Addr, index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from(base).wrapping_add(index as u32)))
}

/// The Service number `i` of a synthetic cluster (every tenth one is a NodePort).
pub fn service(i: usize) -> Service {
    let node_port = i.is_multiple_of(10).then(|| 30000 + (i / 10 % 2700) as u16);
    Service {
        id: NamespacedName::new(format!("ns-{}", i % 50), format!("svc-{i}")),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        service_type: if node_port.is_some() {
            ServiceType::NodePort
        } else {
            ServiceType::ClusterIP
        },
        cluster_ips: vec![offset(Ipv4Addr::new(10, 96, 0, 1), i)],
        headless: false,
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            target_port: None,
            node_port,
        }],
        external_ips: Vec::new(),
        load_balancer_ingress: Vec::new(),
        load_balancer_source_ranges: Vec::new(),
        external_traffic_policy: TrafficPolicy::Cluster,
        internal_traffic_policy: TrafficPolicy::Cluster,
        session_affinity_timeout: None,
        health_check_node_port: None,
        selector: BTreeMap::new(),
        external_name: None,
    }
}

/// The EndpointSlice of Service `i`, with `endpoints` ready endpoints; `generation` shifts the addresses
/// so a benchmark can produce a changed slice.
pub fn slice(i: usize, endpoints: usize, generation: usize) -> EndpointSlice {
    let svc = service(i);
    let mut labels = BTreeMap::new();
    labels.insert(SERVICE_NAME_LABEL.to_string(), svc.id.name.clone());
    EndpointSlice {
        id: NamespacedName::new(svc.id.namespace.clone(), format!("{}-abcde", svc.id.name)),
        service_name: svc.id.name.clone(),
        labels,
        address_type: AddressType::IPv4,
        ports: vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Protocol::Tcp,
        }],
        endpoints: (0..endpoints)
            .map(|j| Endpoint {
                addresses: vec![
                    offset(
                        Ipv4Addr::new(10, 128, 0, 0),
                        (i * endpoints + j) * 4 + generation,
                    )
                    .to_string(),
                ],
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
                node_name: Some(format!("node-{}", (i + j) % NODES)),
                zone: None,
                zone_hints: None,
                node_hints: None,
                target_ref: None,
            })
            .collect(),
        last_change_trigger_time: None,
    }
}

/// A cluster of `services` Services with `endpoints_per_service` endpoints each.
pub fn cluster(services: usize, endpoints_per_service: usize) -> ClusterState {
    let mut state = ClusterState::default();
    for i in 0..services {
        state.insert_service(service(i));
        state.insert_slice(slice(i, endpoints_per_service, 0));
    }
    state
}
