//! Conversion of single k8s-openapi objects into the model: leniency where kube-proxy is lenient, and
//! the exact error for each malformed case.

use std::net::IpAddr;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use svcproxy::core::model::convert::{self, Converted};
use svcproxy::core::model::{
    AddressType, EndpointPort, EndpointSlice, ModelError, Node, Pod, Service, ServiceType,
    TargetPort, TrafficPolicy,
};
use svcproxy::core::rules::{IpFamily, Protocol};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A valid Service as the API server returns it, for the tests to break.
fn web_service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.96.10.10",
            "clusterIPs": ["10.96.10.10"],
            "ipFamilies": ["IPv4"],
            "selector": {"app": "web"},
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                {"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": "metrics"}
            ]
        }
    })
}

fn web_slice() -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-abcde",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"}
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        "endpoints": [{"addresses": ["10.244.1.11"], "nodeName": "testnode"}]
    })
}

fn a_node() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "testnode"},
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": "198.18.0.2"}]}
    })
}

fn a_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "default"},
        "spec": {"containers": [], "nodeName": "testnode"},
        "status": {"podIP": "10.244.1.11", "podIPs": [{"ip": "10.244.1.11"}]}
    })
}

/// Sets the value at a `/`-separated pointer, creating objects on the way; `Value::Null` removes it.
fn set(mut value: Value, pointer: &str, new: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let mut target = &mut value;
    for part in parent.split('/').filter(|p| !p.is_empty()) {
        target = match target {
            Value::Array(items) => &mut items[part.parse::<usize>().unwrap()],
            other => other
                .as_object_mut()
                .unwrap()
                .entry(part)
                .or_insert_with(|| json!({})),
        };
    }
    match target {
        Value::Array(items) => items[key.parse::<usize>().unwrap()] = new,
        Value::Object(map) if new.is_null() => {
            map.remove(key);
        }
        Value::Object(map) => {
            map.insert(key.to_string(), new);
        }
        other => panic!("cannot set {pointer} in {other}"),
    }
    value
}

fn service(value: Value) -> Result<Converted<Service>, ModelError> {
    convert::service(&serde_json::from_value::<core::Service>(value).unwrap())
}

fn slice(value: Value) -> Result<Converted<EndpointSlice>, ModelError> {
    convert::endpoint_slice(&serde_json::from_value::<discovery::EndpointSlice>(value).unwrap())
}

fn node(value: Value) -> Result<Converted<Node>, ModelError> {
    convert::node(&serde_json::from_value::<core::Node>(value).unwrap())
}

fn pod(value: Value) -> Result<Converted<Pod>, ModelError> {
    convert::pod(&serde_json::from_value::<core::Pod>(value).unwrap())
}

fn service_error(value: Value) -> String {
    service(value).unwrap_err().to_string()
}

#[test]
fn valid_service_converts() {
    let Converted {
        value: svc,
        warnings,
    } = service(web_service()).unwrap();
    assert_eq!(warnings, Vec::<String>::new());
    assert_eq!(svc.id.to_string(), "default/web");
    assert_eq!(svc.service_type, ServiceType::ClusterIP);
    assert_eq!(svc.cluster_ips, vec![ip("10.96.10.10")]);
    assert_eq!(svc.ports[0].target_port, Some(TargetPort::Number(8080)));
    assert_eq!(
        svc.ports[1].target_port,
        Some(TargetPort::Name("metrics".into()))
    );
    assert_eq!(svc.ports[1].node_port, None);
    assert_eq!(svc.session_affinity_timeout, None);
    assert_eq!(svc.external_traffic_policy, TrafficPolicy::Cluster);
    assert!(svc.is_proxied());
    assert_eq!(svc.port_name(&svc.ports[0]).spn(), "default/web:http");
    // TryFrom, by reference and by value, gives the same value without the warnings.
    let object: core::Service = serde_json::from_value(web_service()).unwrap();
    assert_eq!(Service::try_from(&object).unwrap(), svc);
    assert_eq!(Service::try_from(object).unwrap(), svc);
}

#[test]
fn protocol_defaults_to_tcp() {
    let svc = service(set(web_service(), "/spec/ports/0/protocol", Value::Null))
        .unwrap()
        .value;
    assert_eq!(svc.ports[0].protocol, Protocol::Tcp);
    let sl = slice(set(web_slice(), "/ports/0/protocol", Value::Null))
        .unwrap()
        .value;
    assert_eq!(sl.ports[0].protocol, Protocol::Tcp);
    let udp = service(set(web_service(), "/spec/ports/0/protocol", json!("UDP")))
        .unwrap()
        .value;
    assert_eq!(udp.ports[0].protocol, Protocol::Udp);
}

#[test]
fn cluster_ips_preferred_over_cluster_ip() {
    let dual = set(
        set(
            web_service(),
            "/spec/clusterIPs",
            json!(["10.96.10.10", "fd00:10:96::a"]),
        ),
        "/spec/ipFamilies",
        json!(["IPv4", "IPv6"]),
    );
    let svc = service(dual).unwrap().value;
    assert_eq!(
        svc.cluster_ips,
        vec![ip("10.96.10.10"), ip("fd00:10:96::a")]
    );
    assert_eq!(svc.cluster_ip(IpFamily::V6), Some(ip("fd00:10:96::a")));

    // A stale clusterIP does not matter when clusterIPs is set.
    let svc = service(set(web_service(), "/spec/clusterIP", json!("10.96.99.99")))
        .unwrap()
        .value;
    assert_eq!(svc.cluster_ips, vec![ip("10.96.10.10")]);

    // Without clusterIPs (an old writer), clusterIP is used.
    let svc = service(set(web_service(), "/spec/clusterIPs", Value::Null))
        .unwrap()
        .value;
    assert_eq!(svc.cluster_ips, vec![ip("10.96.10.10")]);
}

#[test]
fn sloppy_addresses_are_normalized() {
    let svc = service(set(
        set(
            web_service(),
            "/spec/clusterIPs",
            json!(["010.096.010.010"]),
        ),
        "/spec/externalIPs",
        json!(["203.000.113.020", "::ffff:203.0.113.21"]),
    ))
    .unwrap()
    .value;
    assert_eq!(svc.cluster_ips, vec![ip("10.96.10.10")]);
    assert_eq!(
        svc.external_ips,
        vec![ip("203.0.113.20"), ip("203.0.113.21")]
    );

    let sl = slice(set(
        web_slice(),
        "/endpoints/0/addresses",
        json!(["010.244.001.011", "10.244.1.12"]),
    ))
    .unwrap()
    .value;
    assert_eq!(
        sl.endpoints[0].addresses,
        vec!["10.244.1.11", "10.244.1.12"]
    );
    assert_eq!(sl.endpoints[0].ip(), Some(ip("10.244.1.11")));
}

#[test]
fn headless_external_name_and_other_proxies_are_not_proxied() {
    let headless = service(set(
        set(web_service(), "/spec/clusterIP", json!("None")),
        "/spec/clusterIPs",
        json!(["None"]),
    ))
    .unwrap()
    .value;
    assert!(headless.headless);
    assert_eq!(headless.cluster_ips, Vec::<IpAddr>::new());
    assert!(!headless.is_proxied());

    let external_name = service(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"}
    }))
    .unwrap()
    .value;
    assert_eq!(external_name.service_type, ServiceType::ExternalName);
    assert_eq!(
        external_name.external_name.as_deref(),
        Some("db.example.com")
    );
    assert!(!external_name.is_proxied());

    let other_proxy = service(set(
        web_service(),
        "/metadata/labels",
        json!({"app": "web", "service.kubernetes.io/service-proxy-name": "cilium"}),
    ))
    .unwrap()
    .value;
    assert!(!other_proxy.is_proxied());

    let not_allocated = service(set(
        set(web_service(), "/spec/clusterIP", Value::Null),
        "/spec/clusterIPs",
        Value::Null,
    ))
    .unwrap()
    .value;
    assert!(!not_allocated.headless);
    assert!(!not_allocated.is_proxied());
}

#[test]
fn unparsable_external_and_ingress_ips_are_skipped_with_a_warning() {
    let value = set(
        set(
            web_service(),
            "/spec/externalIPs",
            json!(["bogus", "203.0.113.20", " "]),
        ),
        "/status",
        json!({"loadBalancer": {"ingress": [
            {"ip": "203.0.113.300"},
            {"ip": "203.0.113.10", "ipMode": "Proxy"},
            {"hostname": "lb.example.com"},
            {"ip": "203.0.113.11", "ipMode": "VIP"},
            {"ip": "203.0.113.12", "ipMode": "Tunnel"},
            {"ip": "203.0.113.13"}
        ]}}),
    );
    let Converted {
        value: svc,
        warnings,
    } = service(value).unwrap();
    assert_eq!(svc.external_ips, vec![ip("203.0.113.20")]);
    assert_eq!(svc.load_balancer_ingress.len(), 6);
    assert_eq!(svc.load_balancer_ingress[0].ip, None);
    assert_eq!(svc.load_balancer_ingress[1].ip, Some(ip("203.0.113.10")));
    assert_eq!(
        svc.load_balancer_ingress[1].ip_mode.as_deref(),
        Some("Proxy")
    );
    assert_eq!(svc.load_balancer_ingress[1].vip(), None);
    assert_eq!(
        svc.load_balancer_ingress[2].hostname.as_deref(),
        Some("lb.example.com")
    );
    assert_eq!(
        svc.load_balancer_vips(IpFamily::V4).collect::<Vec<_>>(),
        vec![ip("203.0.113.11"), ip("203.0.113.13")]
    );
    assert_eq!(
        warnings,
        vec![
            "Service default/web: spec.externalIPs[0] \"bogus\" is not an IP address; skipped, as kube-proxy does",
            "Service default/web: status.loadBalancer.ingress[0].ip \"203.0.113.300\" is not an IP address; skipped, as kube-proxy does",
        ]
    );
}

#[test]
fn source_ranges_are_trimmed_and_masked() {
    let svc = service(set(
        web_service(),
        "/spec/loadBalancerSourceRanges",
        json!([" 198.51.100.7/24 ", "", "2001:db8::/32"]),
    ))
    .unwrap()
    .value;
    assert_eq!(
        svc.load_balancer_source_ranges,
        vec![
            "198.51.100.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap()
        ]
    );
    assert_eq!(svc.source_ranges(IpFamily::V4).count(), 1);
}

#[test]
fn session_affinity_and_traffic_policies() {
    let sticky = service(set(
        web_service(),
        "/spec/sessionAffinity",
        json!("ClientIP"),
    ))
    .unwrap()
    .value;
    assert_eq!(sticky.session_affinity_timeout, Some(10800));
    let timed = service(set(
        set(web_service(), "/spec/sessionAffinity", json!("ClientIP")),
        "/spec/sessionAffinityConfig",
        json!({"clientIP": {"timeoutSeconds": 60}}),
    ))
    .unwrap()
    .value;
    assert_eq!(timed.session_affinity_timeout, Some(60));
    let config_without_affinity = service(set(
        web_service(),
        "/spec/sessionAffinityConfig",
        json!({"clientIP": {"timeoutSeconds": 60}}),
    ))
    .unwrap()
    .value;
    assert_eq!(config_without_affinity.session_affinity_timeout, None);

    let local = service(set(
        set(
            set(web_service(), "/spec/type", json!("NodePort")),
            "/spec/externalTrafficPolicy",
            json!("Local"),
        ),
        "/spec/internalTrafficPolicy",
        json!("Local"),
    ))
    .unwrap()
    .value;
    assert_eq!(local.external_traffic_policy, TrafficPolicy::Local);
    assert_eq!(local.internal_traffic_policy, TrafficPolicy::Local);

    let Converted { value, warnings } = service(set(
        web_service(),
        "/spec/externalTrafficPolicy",
        json!("OnlyLocal"),
    ))
    .unwrap();
    assert_eq!(value.external_traffic_policy, TrafficPolicy::Cluster);
    assert_eq!(
        warnings,
        vec![
            "Service default/web: spec.externalTrafficPolicy \"OnlyLocal\" is not Cluster or Local; treated as Cluster, as kube-proxy does"
        ]
    );
}

#[test]
fn service_errors_name_the_object_and_the_field() {
    let cases: Vec<(Value, &str)> = vec![
        (
            set(web_service(), "/metadata/name", Value::Null),
            "Service default/(unnamed): missing metadata.name",
        ),
        (
            set(web_service(), "/metadata/name", json!("")),
            "Service default/(unnamed): missing metadata.name",
        ),
        (
            set(web_service(), "/metadata/namespace", Value::Null),
            "Service web: missing metadata.namespace",
        ),
        (
            set(web_service(), "/spec/ports/1/port", json!(70000)),
            "Service default/web: invalid spec.ports[1].port \"70000\": a port must be between 1 and 65535",
        ),
        (
            set(web_service(), "/spec/ports/0/port", json!(0)),
            "Service default/web: invalid spec.ports[0].port \"0\": a port must be between 1 and 65535",
        ),
        (
            set(web_service(), "/spec/ports/0/nodePort", json!(-1)),
            "Service default/web: invalid spec.ports[0].nodePort \"-1\": a port must be between 1 and 65535",
        ),
        (
            set(web_service(), "/spec/ports/0/targetPort", json!(65536)),
            "Service default/web: invalid spec.ports[0].targetPort \"65536\": a port must be between 1 and 65535",
        ),
        (
            set(web_service(), "/spec/ports/1/protocol", json!("ICMP")),
            "Service default/web: invalid spec.ports[1].protocol \"ICMP\": the protocol must be TCP, UDP or SCTP",
        ),
        (
            set(web_service(), "/spec/type", json!("Ingress")),
            "Service default/web: invalid spec.type \"Ingress\": the type must be ClusterIP, NodePort, LoadBalancer or ExternalName",
        ),
        (
            set(web_service(), "/spec/clusterIPs", json!(["10.96.10.300"])),
            "Service default/web: invalid spec.clusterIPs[0] \"10.96.10.300\": not an IP address (and not \"None\")",
        ),
        (
            set(
                set(web_service(), "/spec/clusterIPs", Value::Null),
                "/spec/clusterIP",
                json!("web"),
            ),
            "Service default/web: invalid spec.clusterIP \"web\": not an IP address (and not \"None\")",
        ),
        (
            set(web_service(), "/spec/ipFamilies", json!(["IPv6"])),
            "Service default/web: invalid spec.clusterIPs[0] \"10.96.10.10\": an IPv4 address, but spec.ipFamilies[0] is IPv6",
        ),
        (
            set(web_service(), "/spec/ipFamilies", json!(["IPv5"])),
            "Service default/web: invalid spec.ipFamilies[0] \"IPv5\": the family must be IPv4 or IPv6",
        ),
        (
            set(
                web_service(),
                "/spec/loadBalancerSourceRanges",
                json!(["198.51.100.0/24", "198.51.100.0/33"]),
            ),
            "Service default/web: invalid spec.loadBalancerSourceRanges[1] \"198.51.100.0/33\": not a CIDR such as 198.51.100.0/24",
        ),
        (
            set(
                web_service(),
                "/spec/loadBalancerSourceRanges",
                json!(["198.51.100.1"]),
            ),
            "Service default/web: invalid spec.loadBalancerSourceRanges[0] \"198.51.100.1\": not a CIDR such as 198.51.100.0/24",
        ),
        (
            set(web_service(), "/spec/healthCheckNodePort", json!(70000)),
            "Service default/web: invalid spec.healthCheckNodePort \"70000\": a port must be between 1 and 65535",
        ),
        (
            set(
                set(web_service(), "/spec/sessionAffinity", json!("ClientIP")),
                "/spec/sessionAffinityConfig",
                json!({"clientIP": {"timeoutSeconds": 0}}),
            ),
            "Service default/web: invalid spec.sessionAffinityConfig.clientIP.timeoutSeconds \"0\": the timeout must be between 1 and 86400 seconds",
        ),
        (
            set(
                set(web_service(), "/spec/sessionAffinity", json!("ClientIP")),
                "/spec/sessionAffinityConfig",
                json!({"clientIP": {"timeoutSeconds": 86401}}),
            ),
            "Service default/web: invalid spec.sessionAffinityConfig.clientIP.timeoutSeconds \"86401\": the timeout must be between 1 and 86400 seconds",
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(service_error(value), expected);
    }
}

#[test]
fn error_values_are_structured() {
    let error = service(set(web_service(), "/spec/ports/1/port", json!(70000))).unwrap_err();
    assert_eq!(
        error,
        ModelError::InvalidField {
            object: "Service default/web".into(),
            field: "spec.ports[1].port".into(),
            value: "70000".into(),
            reason: "a port must be between 1 and 65535".into(),
        }
    );
}

#[test]
fn slice_ports_and_conditions_are_kept_as_kube_proxy_reads_them() {
    let value = set(
        set(
            web_slice(),
            "/ports",
            json!([
                {"protocol": "TCP", "port": 8080},
                {"name": "", "protocol": "UDP", "port": 53},
                {"name": "zero", "port": 0},
                {"name": "absent"}
            ]),
        ),
        "/endpoints",
        json!([
            {"addresses": ["10.244.1.11"]},
            {"addresses": ["10.244.1.12"], "conditions": {"ready": false, "serving": true, "terminating": true},
             "nodeName": "testnode", "zone": "zone-a",
             "hints": {"forZones": [{"name": "zone-a"}], "forNodes": [{"name": "testnode"}]},
             "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-2"}},
            {"addresses": [], "hints": {"forZones": []}}
        ]),
    );
    let sl = slice(value).unwrap().value;
    assert_eq!(
        sl.ports,
        vec![
            EndpointPort {
                name: None,
                port: Some(8080),
                protocol: Protocol::Tcp
            },
            EndpointPort {
                name: Some(String::new()),
                port: Some(53),
                protocol: Protocol::Udp
            },
            EndpointPort {
                name: Some("zero".into()),
                port: None,
                protocol: Protocol::Tcp
            },
            EndpointPort {
                name: Some("absent".into()),
                port: None,
                protocol: Protocol::Tcp
            },
        ]
    );
    let [plain, terminating, empty] = &sl.endpoints[..] else {
        panic!("three endpoints")
    };
    assert_eq!(
        (plain.ready, plain.serving, plain.terminating),
        (None, None, None)
    );
    assert!(plain.is_ready() && plain.is_serving() && !plain.is_terminating());
    assert_eq!(plain.zone_hints, None);
    assert!(!terminating.is_ready() && terminating.is_serving() && terminating.is_terminating());
    assert_eq!(terminating.zone.as_deref(), Some("zone-a"));
    assert_eq!(terminating.zone_hints, Some(vec!["zone-a".to_string()]));
    assert_eq!(terminating.node_hints, Some(vec!["testnode".to_string()]));
    assert_eq!(
        terminating
            .target_ref
            .as_ref()
            .and_then(|r| r.name.as_deref()),
        Some("web-2")
    );
    assert_eq!(empty.ip(), None);
    assert_eq!(empty.zone_hints, None);
    assert_eq!(sl.service().to_string(), "default/web");
}

#[test]
fn fqdn_slices_keep_names_and_bad_addresses_are_kept_with_a_warning() {
    let fqdn = slice(set(
        set(web_slice(), "/addressType", json!("FQDN")),
        "/endpoints/0/addresses",
        json!(["web.example.com"]),
    ))
    .unwrap()
    .value;
    assert_eq!(fqdn.address_type, AddressType::Fqdn);
    assert_eq!(fqdn.endpoints[0].addresses, vec!["web.example.com"]);

    let Converted { value, warnings } = slice(set(
        web_slice(),
        "/endpoints/0/addresses",
        json!(["10.244.1.300", "fd00::1"]),
    ))
    .unwrap();
    assert_eq!(
        value.endpoints[0].addresses,
        vec!["10.244.1.300", "fd00::1"]
    );
    assert_eq!(value.endpoints[0].ip(), None);
    assert_eq!(
        warnings,
        vec![
            "EndpointSlice default/web-abcde: endpoints[0].addresses[0] \"10.244.1.300\" is not an IP address",
            "EndpointSlice default/web-abcde: endpoints[0].addresses[1] \"fd00::1\" does not match addressType IPv4",
        ]
    );
}

#[test]
fn slice_errors_name_the_object_and_the_field() {
    let label = "metadata.labels[\"kubernetes.io/service-name\"] (the Service it belongs to)";
    let cases: Vec<(Value, String)> = vec![
        (
            set(web_slice(), "/metadata/labels", Value::Null),
            format!("EndpointSlice default/web-abcde: missing {label}"),
        ),
        (
            set(web_slice(), "/metadata/labels", json!({"kubernetes.io/service-name": ""})),
            format!("EndpointSlice default/web-abcde: missing {label}"),
        ),
        (
            set(web_slice(), "/metadata/namespace", Value::Null),
            "EndpointSlice web-abcde: missing metadata.namespace".into(),
        ),
        (set(web_slice(), "/addressType", Value::Null), "EndpointSlice default/web-abcde: missing addressType".into()),
        (
            set(web_slice(), "/addressType", json!("IPv5")),
            "EndpointSlice default/web-abcde: invalid addressType \"IPv5\": the address type must be IPv4, IPv6 or FQDN"
                .into(),
        ),
        (
            set(web_slice(), "/ports/0/port", json!(70000)),
            "EndpointSlice default/web-abcde: invalid ports[0].port \"70000\": a port must be between 1 and 65535".into(),
        ),
        (
            set(web_slice(), "/ports/0/protocol", json!("tcpx")),
            "EndpointSlice default/web-abcde: invalid ports[0].protocol \"tcpx\": the protocol must be TCP, UDP or SCTP"
                .into(),
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(slice(value).unwrap_err().to_string(), expected);
    }
}

#[test]
fn nodes_and_pods() {
    let n = node(set(
        set(
            a_node(),
            "/status/addresses",
            json!([
                {"type": "InternalIP", "address": "198.018.000.002"},
                {"type": "Hostname", "address": "testnode"}
            ]),
        ),
        "/spec/taints",
        json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]),
    ))
    .unwrap()
    .value;
    assert_eq!(n.name, "testnode");
    assert_eq!(n.pod_cidrs, vec!["10.244.1.0/24".parse().unwrap()]);
    assert_eq!(n.primary_ips(), vec![ip("198.18.0.2")]);
    assert_eq!(n.addresses[1].address, "testnode");
    assert_eq!(n.taints[0].key, "node.kubernetes.io/not-ready");
    assert!(!n.being_deleted);
    let deleted = node(set(
        a_node(),
        "/metadata/deletionTimestamp",
        json!("2025-01-01T00:00:00Z"),
    ))
    .unwrap()
    .value;
    assert!(deleted.being_deleted);

    let p = pod(set(
        a_pod(),
        "/status/conditions",
        json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]),
    ))
    .unwrap()
    .value;
    assert_eq!(p.pod_ips, vec![ip("10.244.1.11")]);
    assert_eq!(p.node_name.as_deref(), Some("testnode"));
    assert!(p.ready);
    assert!(!p.host_network);
    let pending = pod(set(a_pod(), "/status", json!({"phase": "Pending"})))
        .unwrap()
        .value;
    assert_eq!(pending.pod_ips, Vec::<IpAddr>::new());
    assert_eq!(pending.phase.as_deref(), Some("Pending"));
    assert!(!pending.ready);
}

#[test]
fn node_and_pod_errors() {
    assert_eq!(
        node(set(a_node(), "/metadata/name", Value::Null))
            .unwrap_err()
            .to_string(),
        "Node (unnamed): missing metadata.name"
    );
    assert_eq!(
        node(set(
            a_node(),
            "/spec/podCIDRs",
            json!(["10.244.1.0/24", "fd00::/129"])
        ))
        .unwrap_err()
        .to_string(),
        "Node testnode: invalid spec.podCIDRs[1] \"fd00::/129\": not a CIDR such as 10.244.1.0/24"
    );
    assert_eq!(
        pod(set(a_pod(), "/status/podIPs", json!([{"ip": "10.244.1"}])))
            .unwrap_err()
            .to_string(),
        "Pod default/web-1: invalid status.podIPs[0].ip \"10.244.1\": not an IP address"
    );
    assert_eq!(
        pod(set(a_pod(), "/metadata/namespace", Value::Null))
            .unwrap_err()
            .to_string(),
        "Pod web-1: missing metadata.namespace"
    );
}
