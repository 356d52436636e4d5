//! Loading `cluster.json` and `node-context.json`: the real kube-proxy v1.36 fixtures, the seed bundle,
//! and the error messages for broken files.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use pretty_assertions::assert_eq;
use serde_json::Value;
use svcproxy::core::model::bundle::{
    LoadScope, REGENERATE_HINT, load_cluster_json, load_cluster_json_scoped,
    load_cluster_json_with_summary,
};
use svcproxy::core::model::settings::load_node_context;
use svcproxy::core::model::{
    AddressType, ClusterState, EndpointSlice, LocalDetector, NamespacedName, Node, Pod, Service,
    ServiceType, TargetPort, TrafficPolicy,
};
use svcproxy::core::rules::{IpFamily, Protocol};

fn read(relative: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture(scenario: &str, file: &str) -> String {
    read(&format!(
        "tests/fixtures/kube-proxy-v1.36/{scenario}/{file}"
    ))
}

fn load_fixture(scenario: &str) -> ClusterState {
    load_cluster_json(&fixture(scenario, "cluster.json"), "cluster.json").unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn nn(namespace: &str, name: &str) -> NamespacedName {
    NamespacedName::new(namespace, name)
}

fn svc<'a>(state: &'a ClusterState, namespace: &str, name: &str) -> &'a Service {
    state
        .services
        .get(&nn(namespace, name))
        .unwrap_or_else(|| panic!("no Service {namespace}/{name}"))
}

fn slice<'a>(state: &'a ClusterState, namespace: &str, name: &str) -> &'a EndpointSlice {
    state
        .endpoint_slices
        .get(&nn(namespace, name))
        .unwrap_or_else(|| panic!("no EndpointSlice {namespace}/{name}"))
}

fn slice_names(state: &ClusterState, namespace: &str, service: &str) -> Vec<String> {
    state
        .slices_for(&nn(namespace, service))
        .map(|s| s.id.to_string())
        .collect()
}

/// Every item of both fixtures converts on its own through `TryFrom`, and the bundle loader agrees.
#[test]
fn every_fixture_object_converts() {
    for (scenario, services, slices) in [("basic", 6, 5), ("extended", 11, 10)] {
        let text = fixture(scenario, "cluster.json");
        let list: Value = serde_json::from_str(&text).unwrap();
        let mut counts = BTreeMap::<String, usize>::new();
        let mut state = ClusterState::default();
        for item in list["items"].as_array().unwrap() {
            let kind = item["kind"].as_str().unwrap().to_string();
            match kind.as_str() {
                "Service" => state.insert_service(
                    Service::try_from(
                        serde_json::from_value::<core::Service>(item.clone()).unwrap(),
                    )
                    .unwrap(),
                ),
                "EndpointSlice" => state.insert_slice(
                    EndpointSlice::try_from(
                        serde_json::from_value::<discovery::EndpointSlice>(item.clone()).unwrap(),
                    )
                    .unwrap(),
                ),
                "Node" => state.insert_node(
                    Node::try_from(serde_json::from_value::<core::Node>(item.clone()).unwrap())
                        .unwrap(),
                ),
                "Pod" => state.insert_pod(
                    Pod::try_from(serde_json::from_value::<core::Pod>(item.clone()).unwrap())
                        .unwrap(),
                ),
                other => panic!("unexpected kind {other}"),
            }
            *counts.entry(kind).or_default() += 1;
        }
        assert_eq!(
            counts,
            BTreeMap::from([
                ("EndpointSlice".into(), slices),
                ("Node".into(), 1),
                ("Service".into(), services)
            ]),
            "{scenario}"
        );

        let loaded = load_cluster_json_with_summary(&text, "cluster.json").unwrap();
        assert_eq!(loaded.state, state, "{scenario}");
        assert_eq!(loaded.summary.services, services);
        assert_eq!(loaded.summary.endpoint_slices, slices);
        assert_eq!(loaded.summary.nodes, 1);
        assert_eq!(loaded.summary.pods, 0);
        assert_eq!(loaded.summary.ignored_total(), 0);
        assert_eq!(loaded.summary.warnings, Vec::<String>::new(), "{scenario}");
        assert!(!loaded.summary.kube_proxy_config);
        assert!(
            state.services.values().all(Service::is_proxied),
            "{scenario}"
        );
    }
}

#[test]
fn basic_fixture_values() {
    let state = load_fixture("basic");

    let kubernetes = svc(&state, "default", "kubernetes");
    assert_eq!(kubernetes.cluster_ip(IpFamily::V4), Some(ip("10.96.0.1")));
    assert_eq!(kubernetes.cluster_ip(IpFamily::V6), None);
    assert_eq!(kubernetes.ports[0].name, "https");
    assert_eq!(kubernetes.ports[0].port, 443);
    assert_eq!(
        kubernetes.ports[0].target_port,
        Some(TargetPort::Number(6443))
    );
    assert_eq!(
        kubernetes.port_name(&kubernetes.ports[0]).spn(),
        "default/kubernetes:https"
    );
    let api = slice(&state, "default", "kubernetes");
    assert_eq!(api.endpoints[0].addresses, vec!["198.18.0.1"]);
    assert_eq!(
        (
            api.endpoints[0].ready,
            api.endpoints[0].serving,
            api.endpoints[0].terminating
        ),
        (Some(true), None, None)
    );
    assert!(api.endpoints[0].is_serving() && !api.endpoints[0].is_terminating());
    assert_eq!(api.endpoints[0].node_name, None);
    assert_eq!(
        api.labels.get("endpointslice.kubernetes.io/managed-by"),
        None
    );

    let web = svc(&state, "default", "web");
    assert_eq!(web.service_type, ServiceType::ClusterIP);
    assert_eq!(
        web.selector,
        BTreeMap::from([("app".to_string(), "web".to_string())])
    );
    let web_slice = slice(&state, "default", "web-manual");
    assert_eq!(web_slice.service_name, "web");
    assert_eq!(web_slice.address_type, AddressType::IPv4);
    assert_eq!(web_slice.ports[0].name.as_deref(), Some("http"));
    assert_eq!(web_slice.ports[0].port, Some(8080));
    let nodes: Vec<Option<&str>> = web_slice
        .endpoints
        .iter()
        .map(|e| e.node_name.as_deref())
        .collect();
    assert_eq!(
        nodes,
        [Some("testnode"), Some("testnode"), Some("othernode")]
    );

    let nodeport = svc(&state, "default", "web-nodeport");
    assert_eq!(nodeport.service_type, ServiceType::NodePort);
    assert_eq!(nodeport.ports[0].node_port, Some(30080));

    let local = svc(&state, "default", "web-local");
    assert_eq!(local.external_traffic_policy, TrafficPolicy::Local);
    assert_eq!(local.ports[0].node_port, Some(30090));
    assert_eq!(local.health_check_node_port, None);

    let sticky = svc(&state, "default", "sticky");
    assert_eq!(sticky.session_affinity_timeout, Some(10800));
    assert_eq!(web.session_affinity_timeout, None);

    let testnode = &state.nodes["testnode"];
    assert_eq!(testnode.pod_cidrs, vec!["10.244.1.0/24".parse().unwrap()]);
    assert_eq!(testnode.primary_ips(), vec![ip("198.18.0.2")]);
    assert_eq!(testnode.taints[0].key, "node.kubernetes.io/not-ready");
}

#[test]
fn extended_fixture_values() {
    let state = load_fixture("extended");

    let lb = svc(&state, "ext", "lb-local");
    assert_eq!(lb.service_type, ServiceType::LoadBalancer);
    assert_eq!(lb.external_traffic_policy, TrafficPolicy::Local);
    assert_eq!(lb.internal_traffic_policy, TrafficPolicy::Cluster);
    assert_eq!(
        lb.load_balancer_source_ranges,
        vec!["198.51.100.0/24".parse().unwrap()]
    );
    assert_eq!(lb.health_check_node_port, Some(32000));
    assert_eq!(lb.ports[0].node_port, Some(31080));
    assert_eq!(lb.load_balancer_ingress[0].ip, Some(ip("203.0.113.10")));
    assert_eq!(lb.load_balancer_ingress[0].ip_mode.as_deref(), Some("VIP"));
    assert_eq!(
        lb.load_balancer_vips(IpFamily::V4).collect::<Vec<_>>(),
        vec![ip("203.0.113.10")]
    );

    let dns = svc(&state, "ext", "dns");
    let ports: Vec<(&str, Protocol, u16, Option<TargetPort>)> = dns
        .ports
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.protocol.clone(),
                p.port,
                p.target_port.clone(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        vec![
            ("dns", Protocol::Udp, 53, Some(TargetPort::Number(5353))),
            ("dns-tcp", Protocol::Tcp, 53, Some(TargetPort::Number(5353))),
        ]
    );
    let dns_slice = slice(&state, "ext", "dns-manual");
    let slice_ports: Vec<(Option<&str>, Protocol)> = dns_slice
        .ports
        .iter()
        .map(|p| (p.name.as_deref(), p.protocol.clone()))
        .collect();
    assert_eq!(
        slice_ports,
        vec![
            (Some("dns"), Protocol::Udp),
            (Some("dns-tcp"), Protocol::Tcp)
        ]
    );
    let not_ready = &dns_slice.endpoints[2];
    assert_eq!(not_ready.addresses, vec!["10.244.2.83"]);
    assert_eq!(
        (not_ready.ready, not_ready.serving, not_ready.terminating),
        (Some(false), Some(false), Some(false))
    );
    assert!(!not_ready.is_ready() && !not_ready.is_serving());

    let terminating = slice(&state, "ext", "terminating-manual");
    let local = &terminating.endpoints[0];
    assert_eq!(local.ip(), Some(ip("10.244.1.91")));
    assert_eq!(local.node_name.as_deref(), Some("testnode"));
    assert!(!local.is_ready() && local.is_serving() && local.is_terminating());
    let remote = &terminating.endpoints[1];
    assert!(remote.is_ready() && remote.is_serving() && !remote.is_terminating());
    assert_eq!(
        svc(&state, "ext", "terminating").ports[0].node_port,
        Some(31090)
    );

    assert_eq!(
        svc(&state, "ext", "itp-local").internal_traffic_policy,
        TrafficPolicy::Local
    );
    let extip = svc(&state, "ext", "extip");
    assert_eq!(extip.external_ips, vec![ip("203.0.113.20")]);
    assert_eq!(extip.service_type, ServiceType::ClusterIP);

    // Everything of basic/ is in extended/ unchanged, apart from resource versions.
    let basic = load_fixture("basic");
    for (id, service) in &basic.services {
        assert_eq!(state.services.get(id), Some(service), "{id}");
    }
}

#[test]
fn slices_for_returns_the_services_slices() {
    let state = load_fixture("extended");
    assert_eq!(
        slice_names(&state, "default", "web"),
        ["default/web-manual"]
    );
    assert_eq!(
        slice_names(&state, "default", "web-nodeport"),
        ["default/web-nodeport-manual"]
    );
    assert_eq!(
        slice_names(&state, "default", "kubernetes"),
        ["default/kubernetes"]
    );
    assert_eq!(slice_names(&state, "ext", "dns"), ["ext/dns-manual"]);
    assert_eq!(
        slice_names(&state, "default", "no-endpoints"),
        Vec::<String>::new()
    );
    assert_eq!(slice_names(&state, "ext", "web"), Vec::<String>::new());
    assert_eq!(slice_names(&state, "nowhere", "web"), Vec::<String>::new());

    // Several slices for one Service, in name order, and none of a same-named Service elsewhere.
    let mut state = state;
    let mut second = slice(&state, "default", "web-manual").clone();
    second.id = nn("default", "web-2");
    state.insert_slice(second);
    let mut other_namespace = slice(&state, "default", "web-manual").clone();
    other_namespace.id = nn("ext", "web-manual");
    state.insert_slice(other_namespace);
    assert_eq!(
        slice_names(&state, "default", "web"),
        ["default/web-2", "default/web-manual"]
    );
    assert_eq!(slice_names(&state, "ext", "web"), ["ext/web-manual"]);
}

#[test]
fn fixture_node_context() {
    for scenario in ["basic", "extended"] {
        let context =
            load_node_context(&fixture(scenario, "node-context.json"), "node-context.json")
                .unwrap();
        assert_eq!(context.node_name, "testnode");
        assert_eq!(context.node_ips, vec![ip("198.18.0.2")]);
        assert_eq!(
            context.local_detector,
            LocalDetector::ClusterCidr(vec!["10.244.0.0/16".parse().unwrap()])
        );
        assert!(context.localhost_nodeports);
        assert!(!context.masquerade_all);
        assert_eq!(context.masquerade_mark(), 0x4000);
        assert!(context.local_addresses.contains(&ip("198.18.0.2")));
        assert!(context.local_addresses.contains(&ip("127.0.0.1")));
    }
}

#[test]
fn seed_bundle_loads() {
    let loaded =
        load_cluster_json_with_summary(&read("examples/seed/cluster.json"), "cluster.json")
            .unwrap();
    let summary = &loaded.summary;
    assert_eq!(
        (
            summary.services,
            summary.endpoint_slices,
            summary.nodes,
            summary.pods
        ),
        (2, 2, 2, 3)
    );
    assert_eq!(summary.ignored_total(), 0);
    assert_eq!(summary.warnings, Vec::<String>::new());
    let state = &loaded.state;

    let my = svc(state, "default", "my-service");
    assert!(my.is_proxied());
    assert_eq!(my.cluster_ips, vec![ip("10.43.7.11")]);
    assert_eq!(my.ports.len(), 1);
    assert_eq!(my.ports[0].name, "");
    assert_eq!(my.ports[0].protocol, Protocol::Tcp);
    assert_eq!(my.ports[0].port, 80);
    assert_eq!(my.ports[0].target_port, Some(TargetPort::Number(80)));
    assert_eq!(my.port_name(&my.ports[0]).spn(), "default/my-service");
    assert_eq!(
        my.selector,
        BTreeMap::from([("app".to_string(), "nginx".to_string())])
    );

    let slices: Vec<&EndpointSlice> = state.slices_for(&my.id).collect();
    assert_eq!(slices.len(), 1);
    let my_slice = slices[0];
    assert_eq!(
        my_slice.labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(my_slice.ports[0].name.as_deref(), Some(""));
    assert_eq!(my_slice.ports[0].port, Some(80));
    let endpoints: Vec<(String, &str, bool)> = my_slice
        .endpoints
        .iter()
        .map(|e| {
            (
                e.addresses[0].clone(),
                e.node_name.as_deref().unwrap(),
                e.is_ready(),
            )
        })
        .collect();
    assert_eq!(
        endpoints,
        vec![
            ("10.42.0.7".to_string(), "node10", true),
            ("10.42.1.3".to_string(), "node8", true),
            ("10.42.1.4".to_string(), "node8", true),
        ]
    );
    // Each endpoint points at a ready nginx Pod with that IP on that node, inside the node's pod CIDR.
    for endpoint in &my_slice.endpoints {
        let target = endpoint.target_ref.as_ref().unwrap();
        assert_eq!(target.kind.as_deref(), Some("Pod"));
        let pod = &state.pods[&nn("default", target.name.as_deref().unwrap())];
        assert!(pod.ready);
        assert_eq!(pod.phase.as_deref(), Some("Running"));
        assert_eq!(pod.labels["app"], "nginx");
        assert_eq!(pod.pod_ips, vec![endpoint.ip().unwrap()]);
        assert_eq!(pod.node_name, endpoint.node_name);
        let node = &state.nodes[endpoint.node_name.as_deref().unwrap()];
        assert!(node.pod_cidrs[0].contains(&endpoint.ip().unwrap()));
    }
    assert!(
        state
            .pods
            .contains_key(&nn("default", "nginx-deployment-6b474476c4-mp8vw"))
    );

    assert_eq!(state.nodes["node8"].primary_ips(), vec![ip("192.168.1.8")]);
    assert_eq!(
        state.nodes["node8"].pod_cidrs,
        vec!["10.42.1.0/24".parse().unwrap()]
    );
    assert_eq!(
        state.nodes["node10"].primary_ips(),
        vec![ip("192.168.1.10")]
    );
    assert_eq!(
        state.nodes["node10"].pod_cidrs,
        vec!["10.42.0.0/24".parse().unwrap()]
    );

    let kubernetes = svc(state, "default", "kubernetes");
    assert_eq!(kubernetes.cluster_ips, vec![ip("10.43.0.1")]);
    assert_eq!(
        (kubernetes.ports[0].name.as_str(), kubernetes.ports[0].port),
        ("https", 443)
    );
    let api: Vec<&EndpointSlice> = state.slices_for(&kubernetes.id).collect();
    assert_eq!(api[0].endpoints[0].ip(), Some(ip("192.168.1.1")));
    assert_eq!(api[0].ports[0].port, Some(6443));
}

const LIST_HEAD: &str =
    "{\n    \"apiVersion\": \"v1\",\n    \"kind\": \"List\",\n    \"items\": [\n";
const LIST_TAIL: &str = "\n    ]\n}\n";

fn list(items: &[&str]) -> String {
    format!("{LIST_HEAD}{}{LIST_TAIL}", items.join(",\n"))
}

const WEB: &str = r#"        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.10.10", "ports": [{"name": "http", "port": 80}]}
        }"#;

fn load_error(text: &str) -> String {
    load_cluster_json(text, "cluster.json")
        .unwrap_err()
        .to_string()
}

#[test]
fn syntax_errors_give_line_column_and_the_fix() {
    let text = "{\n    \"apiVersion\": \"v1\"\n    \"kind\": \"List\"\n}\n";
    assert_eq!(
        load_error(text),
        format!("cluster.json line 3 column 5: expected `,` or `}}`; {REGENERATE_HINT}")
    );
    assert_eq!(
        load_error(""),
        "cluster.json line 1 column 1: EOF while parsing a value; regenerate it with \
         `kubectl get services,endpointslices,nodes,pods -A -o json > cluster.json`"
    );
    assert_eq!(
        load_error("Error from server (Forbidden): services is forbidden\n"),
        format!("cluster.json line 1 column 1: expected value; {REGENERATE_HINT}")
    );
}

#[test]
fn wrong_document_shapes() {
    assert_eq!(
        load_error("[]"),
        format!(
            "cluster.json: expected a Kubernetes List (an object with \"kind\": \"List\" and \"items\"), found a JSON array; {REGENERATE_HINT}"
        )
    );
    assert_eq!(
        load_error(r#"{"kind": "List", "items": {}}"#),
        format!(
            "cluster.json: \"items\" must be a list of objects, found an object; {REGENERATE_HINT}"
        )
    );
    assert_eq!(
        load_error(r#"{"apiVersion": "v1"}"#),
        format!(
            "cluster.json: expected a Kubernetes List (an object with \"kind\": \"List\" and \"items\") or a single object with a \"kind\"; {REGENERATE_HINT}"
        )
    );
}

#[test]
fn conversion_errors_name_the_item() {
    let slice = r#"        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "web-abcde", "namespace": "default"},
            "addressType": "IPv4",
            "endpoints": []
        }"#;
    // items[1] starts on line 11 (5 head lines, 6 lines of WEB, then the separator).
    assert_eq!(
        load_error(&list(&[WEB, slice])),
        "cluster.json line 11 column 9: items[1]: EndpointSlice default/web-abcde: missing \
         metadata.labels[\"kubernetes.io/service-name\"] (the Service it belongs to)"
    );
    let bad_port = WEB.replace("\"port\": 80", "\"port\": 70000");
    assert_eq!(
        load_error(&list(&[&bad_port])),
        "cluster.json line 5 column 9: items[0]: Service default/web: invalid spec.ports[0].port \"70000\": \
         a port must be between 1 and 65535"
    );
}

#[test]
fn schema_errors_point_at_the_field() {
    let string_port = WEB.replace("\"port\": 80", "\"port\": \"80\"");
    assert_eq!(
        load_error(&list(&[WEB, &string_port])),
        "cluster.json line 15 column 88: items[1]: Service default/web: invalid type: string \"80\", expected i32"
    );
    let beta = r#"        {"apiVersion": "discovery.k8s.io/v1beta1", "kind": "EndpointSlice", "metadata": {"name": "x", "namespace": "default"}}"#;
    assert_eq!(
        load_error(&list(&[beta])),
        "cluster.json line 5 column 49: items[0]: EndpointSlice default/x: invalid value: string \
         \"discovery.k8s.io/v1beta1\", expected discovery.k8s.io/v1"
    );
    let no_kind =
        r#"        {"apiVersion": "v1", "metadata": {"name": "x", "namespace": "default"}}"#;
    assert_eq!(
        load_error(&list(&[no_kind])),
        "cluster.json line 5 column 9: items[0]: (no kind) default/x: the object has no \"kind\""
    );
    assert_eq!(
        load_error(&list(&[WEB, "        \"web\""])),
        "cluster.json line 11 column 9: items[1]: (not an object): expected a Kubernetes object such as a Service, \
         found a string"
    );
}

#[test]
fn other_kinds_are_counted_and_kube_proxy_config_is_kept() {
    let deployment = r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx", "namespace": "default"}}"#;
    let config = r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "data": {"config.conf": "mode: iptables\nclusterCIDR: 10.244.0.0/16\n"}}"#;
    let other_config = r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"}}"#;
    let loaded = load_cluster_json_with_summary(
        &list(&[WEB, deployment, config, other_config, deployment]),
        "cluster.json",
    )
    .unwrap();
    assert_eq!(
        loaded.summary.ignored,
        BTreeMap::from([("ConfigMap".to_string(), 1), ("Deployment".to_string(), 2)])
    );
    assert_eq!(loaded.summary.ignored_total(), 3);
    assert!(loaded.summary.kube_proxy_config);
    assert_eq!(
        loaded.state.kube_proxy_config,
        Some(BTreeMap::from([(
            "config.conf".to_string(),
            "mode: iptables\nclusterCIDR: 10.244.0.0/16\n".to_string()
        )]))
    );
    assert_eq!(loaded.state.services.len(), 1);
}

#[test]
fn typed_lists_single_objects_and_duplicates() {
    // The API's own list form: the items carry no kind.
    let raw = r#"{"apiVersion": "v1", "kind": "ServiceList", "metadata": {"resourceVersion": "1"},
        "items": [{"metadata": {"name": "web", "namespace": "default"}, "spec": {"clusterIP": "10.96.10.10",
        "ports": [{"port": 80}]}}]}"#;
    let state = load_cluster_json(raw, "cluster.json").unwrap();
    assert_eq!(
        svc(&state, "default", "web").ports[0].protocol,
        Protocol::Tcp
    );

    let single = load_cluster_json(WEB, "cluster.json").unwrap();
    assert_eq!(single.services.len(), 1);
    let bad_single = WEB.replace("\"port\": 80", "\"port\": 0");
    assert_eq!(
        load_error(&bad_single),
        "cluster.json: Service default/web: invalid spec.ports[0].port \"0\": a port must be between 1 and 65535"
    );

    let changed = WEB.replace("10.96.10.10", "10.96.10.11");
    let loaded = load_cluster_json_with_summary(&list(&[WEB, &changed]), "cluster.json").unwrap();
    assert_eq!(
        svc(&loaded.state, "default", "web").cluster_ips,
        vec![ip("10.96.10.11")]
    );
    assert_eq!(
        loaded.summary.warnings,
        vec!["items[1]: Service default/web is listed more than once; the later entry wins"]
    );
}

#[test]
fn conversion_warnings_reach_the_summary() {
    let with_bad_external_ip = WEB.replace(
        "\"clusterIP\"",
        "\"externalIPs\": [\"bogus\"], \"clusterIP\"",
    );
    let loaded =
        load_cluster_json_with_summary(&list(&[&with_bad_external_ip]), "cluster.json").unwrap();
    assert_eq!(
        loaded.summary.warnings,
        vec![
            "items[0]: Service default/web: spec.externalIPs[0] \"bogus\" is not an IP address; skipped, as kube-proxy does"
        ]
    );
}

fn scope(namespace: Option<&str>, name: &str) -> LoadScope {
    LoadScope {
        namespace: namespace.map(str::to_string),
        name: name.to_string(),
        pods: Vec::new(),
    }
}

/// What `load_cluster_json_scoped` must give: the full state, less what `scope` does not need.
fn restricted(full: &ClusterState, scope: &LoadScope) -> ClusterState {
    let wanted = |namespace: &str, name: &str| {
        name == scope.name && scope.namespace.as_deref().is_none_or(|n| n == namespace)
    };
    let services: BTreeMap<NamespacedName, Service> = full
        .services
        .iter()
        .filter(|(id, _)| wanted(&id.namespace, &id.name))
        .map(|(id, s)| (id.clone(), s.clone()))
        .collect();
    let namespaces: Vec<&str> = match &scope.namespace {
        Some(namespace) => vec![namespace.as_str()],
        None => services.keys().map(|id| id.namespace.as_str()).collect(),
    };
    ClusterState {
        endpoint_slices: full
            .endpoint_slices
            .iter()
            .filter(|(id, s)| wanted(&id.namespace, &s.service_name))
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect(),
        nodes: full.nodes.clone(),
        pods: full
            .pods
            .iter()
            .filter(|(id, _)| {
                namespaces.contains(&id.namespace.as_str()) || scope.pods.contains(id)
            })
            .map(|(id, p)| (id.clone(), p.clone()))
            .collect(),
        kube_proxy_config: full.kube_proxy_config.clone(),
        services,
    }
}

fn scoped(text: &str, scope: &LoadScope) -> ClusterState {
    load_cluster_json_scoped(text, "cluster.json", scope).unwrap()
}

#[test]
fn scoped_loading_keeps_what_one_service_needs() {
    for text in [
        fixture("basic", "cluster.json"),
        fixture("extended", "cluster.json"),
        read("examples/seed/cluster.json"),
    ] {
        let full = load_cluster_json(&text, "cluster.json").unwrap();
        assert!(!full.services.is_empty());
        for id in full.services.keys() {
            for scope in [
                scope(Some(&id.namespace), &id.name),
                scope(None, &id.name),
                scope(Some("elsewhere"), &id.name),
            ] {
                assert_eq!(
                    scoped(&text, &scope),
                    restricted(&full, &scope),
                    "{scope:?}"
                );
            }
        }
        // A pod named from another namespace comes along.
        if let Some(pod) = full.pods.keys().next() {
            let mut wanted = scope(Some("elsewhere"), "nothing");
            wanted.pods.push(pod.clone());
            let state = scoped(&text, &wanted);
            assert_eq!(state.pods.keys().collect::<Vec<_>>(), vec![pod]);
            assert_eq!(state, restricted(&full, &wanted));
        }
    }
}

#[test]
fn scoped_loading_of_a_synthetic_cluster() {
    let text = svcproxy::synthetic::cluster_json(200, 3);
    let full = load_cluster_json(&text, "cluster.json").unwrap();
    for scope in [scope(Some("ns-7"), "svc-7"), scope(None, "svc-57")] {
        let state = scoped(&text, &scope);
        assert_eq!(state.services.len(), 1);
        assert_eq!(state.endpoint_slices.len(), 1);
        assert_eq!(state, restricted(&full, &scope));
    }
}

#[test]
fn scoped_loading_reports_errors_as_the_full_load_does() {
    let web = scope(Some("default"), "web");
    let scoped_error = |text: &str| {
        load_cluster_json_scoped(text, "cluster.json", &web)
            .unwrap_err()
            .to_string()
    };
    let other = WEB.replace("\"default\"", "\"other\"");
    let broken_elsewhere = other.replace("\"port\": 80}", "\"port\": 80,}");
    let bad_port = WEB.replace("\"port\": 80", "\"port\": 70000");
    let string_port = WEB.replace("\"port\": 80", "\"port\": \"80\"");
    let no_label = r#"        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-abcde", "namespace": "default"}, "addressType": "IPv4", "endpoints": []}"#;
    let no_kind =
        r#"        {"apiVersion": "v1", "metadata": {"name": "x", "namespace": "default"}}"#;
    let escaped_kind = WEB
        .replace("\"Service\"", "\"Serv\\u0069ce\"")
        .replace("\"port\": 80", "\"port\": 0");
    for text in [
        // Invalid JSON anywhere, also inside an entry that is not needed.
        "{\n    \"apiVersion\": \"v1\"\n    \"kind\": \"List\"\n}\n".to_string(),
        String::new(),
        "Error from server (Forbidden): services is forbidden\n".to_string(),
        list(&[WEB, &broken_elsewhere]),
        list(&[&broken_elsewhere, WEB]),
        format!("{}x", list(&[WEB])),
        // Wrong shapes.
        "[]".to_string(),
        r#"{"kind": "List", "items": {}}"#.to_string(),
        r#"{"apiVersion": "v1"}"#.to_string(),
        // Entries that are needed and do not convert.
        list(&[&other, &bad_port]),
        list(&[WEB, &string_port]),
        list(&[WEB, no_label]),
        list(&[WEB, no_kind]),
        list(&[WEB, "        \"web\""]),
        list(&[&escaped_kind]),
    ] {
        assert_eq!(scoped_error(&text), load_error(&text), "{text}");
    }
    assert_eq!(
        scoped_error(&list(&[WEB, &broken_elsewhere])),
        format!("cluster.json line 15 column 88: trailing comma; {REGENERATE_HINT}")
    );
    // A single object and a typed list are read as a whole.
    assert_eq!(
        scoped(WEB, &web),
        load_cluster_json(WEB, "cluster.json").unwrap()
    );
    let bad_single = WEB.replace("\"port\": 80", "\"port\": 0");
    assert_eq!(scoped_error(&bad_single), load_error(&bad_single));
}

#[test]
fn scoped_loading_skips_entries_it_does_not_need() {
    // A Service of another namespace that does not convert is not needed, so not an error.
    let other = WEB
        .replace("\"default\"", "\"other\"")
        .replace("\"port\": 80", "\"port\": 70000");
    let text = list(&[&other, WEB]);
    assert!(load_cluster_json(&text, "cluster.json").is_err());
    let state = scoped(&text, &scope(Some("default"), "web"));
    assert_eq!(
        state.services.keys().collect::<Vec<_>>(),
        vec![&nn("default", "web")]
    );
    // Duplicates: the later entry wins, as in the full load.
    let changed = WEB.replace("10.96.10.10", "10.96.10.11");
    let state = scoped(&list(&[WEB, &changed]), &scope(None, "web"));
    assert_eq!(
        svc(&state, "default", "web").cluster_ips,
        vec![ip("10.96.10.11")]
    );
}
