//! Deterministic synthetic clusters for benchmarks and scale tests: `services` Services with
//! `endpoints_per_service` ready endpoints each, spread over nodes `node-0` … `node-99`.
//!
//! [`write_bundle`] writes the same cluster as a snapshot bundle (DESIGN §4), for benchmarks of the
//! diagnostics that run the real binary: `cluster.json` (Services, EndpointSlices, the Nodes and the
//! `kube-system/kube-proxy` ConfigMap, as Kubernetes JSON) and `nodes/node-0.iptables-save`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use serde_json::{Value, json};

use crate::core::model::{
    AddressType, ClusterState, Endpoint, EndpointPort, EndpointSlice, LocalDetector,
    NamespacedName, NodeContext, SERVICE_NAME_LABEL, Service, ServicePort, ServiceType,
    TrafficPolicy,
};
use crate::core::plan::plan;
use crate::core::render::render_node_dump;
use crate::core::rules::{IpFamily, Protocol};

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

/// The cluster CIDR in a synthetic bundle's kube-proxy configuration; it holds every endpoint address.
pub const CLUSTER_CIDR: &str = "10.128.0.0/9";

/// The name of node `k`.
pub fn node_name(k: usize) -> String {
    format!("node-{k}")
}

/// The InternalIP of node `k`.
fn node_ip(k: usize) -> IpAddr {
    offset(Ipv4Addr::new(172, 16, 0, 1), k)
}

/// The proxy's context on node `k` of a synthetic bundle: the settings of the bundle's kube-proxy
/// ConfigMap (ClusterCIDR detection with [`CLUSTER_CIDR`], localhost NodePorts) and the node's IP.
pub fn node_context(k: usize) -> NodeContext {
    let mut ctx = NodeContext::new(node_name(k), vec![node_ip(k)]);
    ctx.node_labels
        .insert("kubernetes.io/hostname".into(), node_name(k));
    ctx.local_detector = LocalDetector::ClusterCidr(
        CLUSTER_CIDR
            .parse()
            .map(|net| vec![net])
            .unwrap_or_default(),
    );
    ctx.localhost_nodeports = true;
    ctx
}

/// Kubernetes JSON of a synthetic Service, as the API server returns it.
fn service_json(i: usize) -> Value {
    let svc = service(i);
    let ip = svc.cluster_ips[0].to_string();
    let ports: Vec<Value> = svc
        .ports
        .iter()
        .map(|p| {
            let mut port = json!({"name": p.name, "port": p.port, "protocol": "TCP"});
            if let Some(node_port) = p.node_port {
                port["nodePort"] = json!(node_port);
            }
            port
        })
        .collect();
    let service_type = match svc.service_type {
        ServiceType::NodePort => "NodePort",
        _ => "ClusterIP",
    };
    let mut spec = json!({
        "clusterIP": ip,
        "clusterIPs": [ip],
        "internalTrafficPolicy": "Cluster",
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "ports": ports,
        "sessionAffinity": "None",
        "type": service_type,
    });
    if svc.service_type == ServiceType::NodePort {
        spec["externalTrafficPolicy"] = json!("Cluster");
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "name": svc.id.name,
            "namespace": svc.id.namespace,
            "resourceVersion": (1000 + 2 * i).to_string(),
            "uid": uid(1, i),
        },
        "spec": spec,
        "status": {"loadBalancer": {}},
    })
}

/// Kubernetes JSON of a synthetic EndpointSlice.
fn slice_json(i: usize, endpoints: usize) -> Value {
    let slice = slice(i, endpoints, 0);
    let endpoints: Vec<Value> = slice
        .endpoints
        .iter()
        .map(|e| {
            json!({
                "addresses": e.addresses,
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "nodeName": e.node_name,
            })
        })
        .collect();
    json!({
        "addressType": "IPv4",
        "apiVersion": "discovery.k8s.io/v1",
        "endpoints": endpoints,
        "kind": "EndpointSlice",
        "metadata": {
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "generation": 1,
            "labels": {
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                SERVICE_NAME_LABEL: slice.service_name,
            },
            "name": slice.id.name,
            "namespace": slice.id.namespace,
            "resourceVersion": (1001 + 2 * i).to_string(),
            "uid": uid(2, i),
        },
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    })
}

/// Kubernetes JSON of node `k`.
fn node_json(k: usize) -> Value {
    let name = node_name(k);
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
            },
            "name": name,
            "resourceVersion": (500 + k).to_string(),
            "uid": uid(3, k),
        },
        "spec": {},
        "status": {
            "addresses": [
                {"address": node_ip(k).to_string(), "type": "InternalIP"},
                {"address": name, "type": "Hostname"},
            ],
            "conditions": [{"status": "True", "type": "Ready"}],
        },
    })
}

/// The `kube-system/kube-proxy` ConfigMap matching [`node_context`].
fn kube_proxy_config_json() -> Value {
    let config = format!(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\n\
         kind: KubeProxyConfiguration\n\
         mode: iptables\n\
         clusterCIDR: {CLUSTER_CIDR}\n\
         detectLocalMode: ClusterCIDR\n\
         iptables:\n  localhostNodePorts: true\n  masqueradeAll: false\n\
         nodePortAddresses: null\n"
    );
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "data": {"config.conf": config},
        "metadata": {"name": "kube-proxy", "namespace": "kube-system", "uid": uid(4, 0)},
    })
}

/// A fixed, distinct UID for object `index` of kind number `kind`.
fn uid(kind: usize, index: usize) -> String {
    format!("00000000-0000-4000-800{kind}-{index:012x}")
}

/// `cluster.json` of [`cluster`]`(services, endpoints_per_service)`: a `v1` `List` as
/// `kubectl get services,endpointslices,nodes -A -o json` prints it (four-space indent), with the nodes
/// `node-0` … `node-99` and the kube-proxy ConfigMap whose settings [`node_context`] holds.
pub fn cluster_json(services: usize, endpoints_per_service: usize) -> String {
    let mut items: Vec<Value> = Vec::with_capacity(2 * services + NODES + 1);
    items.extend((0..services).map(service_json));
    items.extend((0..services).map(|i| slice_json(i, endpoints_per_service)));
    items.extend((0..NODES).map(node_json));
    items.push(kube_proxy_config_json());
    let list = json!({
        "apiVersion": "v1",
        "items": items,
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    });
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Serializing a `Value` into memory cannot fail.
    let _ = serde::Serialize::serialize(&list, &mut serializer);
    out.push(b'\n');
    String::from_utf8(out).unwrap_or_default()
}

/// `iptables-save` on node `k` of the synthetic cluster right after the proxy's first sync: the planned
/// rules in the kernel's printed form, with the `# Generated by` / `# Completed on` lines.
pub fn node_dump(services: usize, endpoints_per_service: usize, k: usize) -> String {
    let rules = plan(
        &cluster(services, endpoints_per_service),
        &node_context(k),
        IpFamily::V4,
    );
    let stamp = "Wed Jan  1 00:00:00 2025";
    let mut out = String::new();
    for line in render_node_dump(&rules).lines() {
        if line.starts_with('*') {
            out.push_str("# Generated by iptables-save v1.8.9 (nf_tables) on ");
            out.push_str(stamp);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
        if line == "COMMIT" {
            out.push_str("# Completed on ");
            out.push_str(stamp);
            out.push('\n');
        }
    }
    out
}

/// Writes a snapshot bundle of the synthetic cluster into `dir`: `cluster.json` ([`cluster_json`]) and
/// `nodes/node-0.iptables-save` ([`node_dump`] of node 0).
pub fn write_bundle(
    dir: &Path,
    services: usize,
    endpoints_per_service: usize,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("nodes"))?;
    std::fs::write(
        dir.join("cluster.json"),
        cluster_json(services, endpoints_per_service),
    )?;
    std::fs::write(
        dir.join("nodes")
            .join(format!("{}.iptables-save", node_name(0))),
        node_dump(services, endpoints_per_service, 0),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::bundle::load_cluster_json_with_summary;
    use crate::core::parse::parse_dump;

    #[test]
    fn the_bundle_holds_the_synthetic_cluster() {
        let loaded = load_cluster_json_with_summary(&cluster_json(120, 3), "cluster.json").unwrap();
        assert_eq!(loaded.summary.warnings, Vec::<String>::new());
        assert_eq!(loaded.summary.ignored_total(), 0);
        assert!(loaded.summary.kube_proxy_config);
        let expected = cluster(120, 3);
        assert!(loaded.state.services == expected.services);
        // The slices carry the controller's managed-by label besides the service-name label.
        let mut slices = loaded.state.endpoint_slices.clone();
        for slice in slices.values_mut() {
            let managed_by = slice
                .labels
                .remove("endpointslice.kubernetes.io/managed-by");
            assert_eq!(
                managed_by.as_deref(),
                Some("endpointslice-controller.k8s.io")
            );
        }
        assert!(slices == expected.endpoint_slices);
        assert_eq!(loaded.state.nodes.len(), NODES);
        let node = &loaded.state.nodes[&node_name(7)];
        assert_eq!(node.primary_ips(), node_context(7).node_ips);
        let config = &loaded.state.kube_proxy_config.as_ref().unwrap()["config.conf"];
        assert!(
            config.contains(&format!("clusterCIDR: {CLUSTER_CIDR}\n")),
            "{config}"
        );
        assert!(config.contains("mode: iptables\n"));
    }

    #[test]
    fn the_cluster_cidr_holds_every_endpoint() {
        let cidr: ipnet::IpNet = CLUSTER_CIDR.parse().unwrap();
        // The highest address of a 10k x 10 cluster, generation 3 (benchmarks shift up to 3).
        let last = slice(9_999, 10, 3).endpoints[9].ip().unwrap();
        assert!(cidr.contains(&last), "{last}");
    }

    #[test]
    fn the_node_dump_is_the_plan_of_the_loaded_bundle() {
        let loaded = load_cluster_json_with_summary(&cluster_json(40, 4), "cluster.json").unwrap();
        let dump = node_dump(40, 4, 0);
        let planned = render_node_dump(&plan(&loaded.state, &node_context(0), IpFamily::V4));
        let rules: String = dump
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(rules, planned);
        assert!(planned.contains("! -s 10.128.0.0/9 -d 10.96.0.1/32"));
        assert!(planned.contains("-A KUBE-NODEPORTS -d 127.0.0.0/8"));
        let parsed = parse_dump(&dump).unwrap();
        assert_eq!(parsed.backend.as_deref(), Some("nf_tables"));
        assert_eq!(parsed.tables.len(), 3);
    }
}
