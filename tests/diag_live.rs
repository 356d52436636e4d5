//! The live diagnostics (`svcproxy::kube::diag`) with the real kube client over real HTTP against the
//! test API server: the cluster state in both scopes, a node's rules through `pods/proxy` (from our own
//! metrics server, and end to end from a real proxy in a network namespace) and through `pods/exec`,
//! and the errors that say what to grant or do.

mod support;

use std::time::Duration;

use serde_json::json;
use support::apiserver::{ApiServer, ExecReply};
use support::diagsrv::{
    DebugServer, V4_DUMP, V6_DUMP, app_pod, kube_proxy_config, kube_proxy_pod, node, proxy_pod,
    service, slice,
};
use svcproxy::core::model::NamespacedName;
use svcproxy::core::model::bundle::load_cluster_json;
use svcproxy::core::parse::parse_dump;
use svcproxy::kube::DiagError;
use svcproxy::kube::diag::{ClusterScope, fetch_cluster, fetch_node_rules};

/// A client as the diagnostics build it: kube's retries of 503 off.
async fn client(api: &ApiServer) -> kube::Client {
    let mut config = api.config().await;
    config.default_retry = false;
    kube::Client::try_from(config).expect("a client")
}

/// Two namespaces, two Services in `shop`, nodes, pods and kube-proxy's ConfigMap.
fn populate(api: &ApiServer) {
    api.apply_json(node("node-a", "192.168.1.1"));
    api.apply_json(node("node-b", "192.168.1.2"));
    api.apply_json(service("shop", "web", "10.96.0.10"));
    api.apply_json(service("shop", "cart", "10.96.0.11"));
    api.apply_json(service("other", "db", "10.96.0.12"));
    api.apply_json(slice("shop", "web", "web-1", "10.244.1.10", "node-a"));
    api.apply_json(slice("shop", "cart", "cart-1", "10.244.1.11", "node-b"));
    api.apply_json(slice("other", "db", "db-1", "10.244.2.10", "node-b"));
    api.apply_json(app_pod("shop", "web-1", "web", "10.244.1.10", "node-a"));
    api.apply_json(app_pod("shop", "cart-1", "cart", "10.244.1.11", "node-b"));
    api.apply_json(app_pod("other", "db-1", "db", "10.244.2.10", "node-b"));
    api.apply_json(kube_proxy_config());
}

fn id(namespace: &str, name: &str) -> NamespacedName {
    NamespacedName::new(namespace, name)
}

#[tokio::test]
async fn one_service_scope_reads_the_service_its_slices_its_namespaces_pods_and_every_node() {
    let api = ApiServer::start();
    populate(&api);
    let scope = ClusterScope::Service {
        namespace: "shop".into(),
        name: "web".into(),
    };
    let fetched = fetch_cluster(&client(&api).await, &scope)
        .await
        .expect("fetch");
    let state = &fetched.state;
    assert_eq!(
        state.services.keys().cloned().collect::<Vec<_>>(),
        [id("shop", "web")]
    );
    assert_eq!(
        state.endpoint_slices.keys().cloned().collect::<Vec<_>>(),
        [id("shop", "web-abcde")]
    );
    assert_eq!(
        state.pods.keys().cloned().collect::<Vec<_>>(),
        [id("shop", "cart-1"), id("shop", "web-1")]
    );
    assert_eq!(
        state.nodes.keys().cloned().collect::<Vec<_>>(),
        ["node-a", "node-b"]
    );
    let config = state
        .kube_proxy_config
        .as_ref()
        .expect("kube-proxy's config");
    assert!(config["config.conf"].contains("clusterCIDR: 10.244.0.0/16"));
    assert!(fetched.warnings.is_empty(), "{:?}", fetched.warnings);
    // The slices were selected by the API server, by label.
    let lists = api.requests();
    assert!(lists.iter().any(|r| {
        r.is_list_of("/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices")
            && r.param("labelSelector") == Some("kubernetes.io/service-name=web")
    }));
    // The JSON kept is what the state was made from: it loads back to the same state.
    let text = serde_json::to_string(&fetched.list_json()).expect("json");
    assert_eq!(
        &load_cluster_json(&text, "cluster.json").expect("loads"),
        state
    );
}

#[tokio::test]
async fn a_missing_service_is_not_an_error_in_one_service_scope() {
    let api = ApiServer::start();
    populate(&api);
    // The Service is gone but its slice lingers (as during a deletion).
    api.apply_json(slice("shop", "gone", "web-1", "10.244.1.10", "node-a"));
    let scope = ClusterScope::Service {
        namespace: "shop".into(),
        name: "gone".into(),
    };
    let fetched = fetch_cluster(&client(&api).await, &scope)
        .await
        .expect("a missing Service is not an error here");
    assert!(fetched.state.services.is_empty());
    assert_eq!(fetched.state.endpoint_slices.len(), 1);
    assert_eq!(fetched.state.nodes.len(), 2);
}

#[tokio::test]
async fn all_scope_reads_every_namespace_and_a_forbidden_config_map_is_a_warning() {
    let api = ApiServer::start();
    populate(&api);
    api.forbid("get", "configmaps");
    let fetched = fetch_cluster(&client(&api).await, &ClusterScope::All)
        .await
        .expect("fetch");
    let state = &fetched.state;
    assert_eq!(state.services.len(), 3);
    assert_eq!(state.endpoint_slices.len(), 3);
    assert_eq!(state.pods.len(), 3);
    assert_eq!(state.nodes.len(), 2);
    assert!(state.kube_proxy_config.is_none());
    let [warning] = fetched.warnings.as_slice() else {
        panic!("one warning expected: {:?}", fetched.warnings)
    };
    for needle in [
        "get",
        "configmaps",
        "svcproxy-diagnostics-rules",
        "deploy/diagnostics-rbac.yaml",
        "inferred",
    ] {
        assert!(warning.contains(needle), "{needle:?} in {warning}");
    }
    // Every object kept carries its apiVersion and kind, as `kubectl get -o json` prints them.
    for object in &fetched.objects {
        assert!(
            object["apiVersion"].is_string() && object["kind"].is_string(),
            "{object}"
        );
    }
    let text = serde_json::to_string(&fetched.list_json()).expect("json");
    assert_eq!(
        &load_cluster_json(&text, "cluster.json").expect("loads"),
        state
    );

    // A missing ConfigMap is a warning too.
    api.allow("get", "configmaps");
    api.delete::<k8s_openapi::api::core::v1::ConfigMap>("kube-system", "kube-proxy");
    let fetched = fetch_cluster(&client(&api).await, &ClusterScope::All)
        .await
        .expect("fetch");
    assert!(
        fetched
            .warnings
            .iter()
            .any(|w| w.contains("there is no ConfigMap kube-system/kube-proxy")),
        "{:?}",
        fetched.warnings
    );
}

#[tokio::test]
async fn forbidden_reads_name_the_verb_resource_group_and_role() {
    let api = ApiServer::start();
    populate(&api);
    let cases = [
        (
            "list",
            "endpointslices.discovery.k8s.io",
            ClusterScope::All,
            "list endpointslices (API group discovery.k8s.io)",
        ),
        (
            "list",
            "nodes",
            ClusterScope::All,
            "list nodes (core API group)",
        ),
        (
            "list",
            "pods",
            ClusterScope::Service {
                namespace: "shop".into(),
                name: "web".into(),
            },
            "list pods (core API group) in namespace shop",
        ),
        (
            "get",
            "services",
            ClusterScope::Service {
                namespace: "shop".into(),
                name: "web".into(),
            },
            "get services (core API group) in namespace shop",
        ),
    ];
    for (verb, resource, scope, expected) in cases {
        api.forbid(verb, resource);
        let error = fetch_cluster(&client(&api).await, &scope)
            .await
            .expect_err("forbidden");
        api.allow(verb, resource);
        assert!(matches!(error, DiagError::Forbidden { .. }), "{error:?}");
        let text = error.to_string();
        for needle in [
            expected,
            "svcproxy-diagnostics ",
            "deploy/diagnostics-rbac.yaml",
            "is forbidden: User",
        ] {
            assert!(text.contains(needle), "{needle:?} in {text}");
        }
    }
}

#[tokio::test]
async fn a_node_s_rules_come_from_our_proxy_pod_through_pods_proxy() {
    let api = ApiServer::start();
    populate(&api);
    let debug = DebugServer::start(Ok(V4_DUMP.to_string()), Some(Ok(V6_DUMP.to_string())));
    api.apply_json(proxy_pod("svcproxy-aaaaa", "node-a", "Running"));
    api.apply_json(proxy_pod("svcproxy-bbbbb", "node-b", "Running"));
    // The kube-proxy pod must not be used while ours runs.
    api.apply_json(kube_proxy_pod("kube-proxy-zzzzz", "node-a"));
    api.register_pod_proxy("kube-system", "svcproxy-aaaaa", 10249, &debug.url());

    let rules = fetch_node_rules(&client(&api).await, "node-a")
        .await
        .expect("rules");
    assert_eq!(rules.node, "node-a");
    assert_eq!(
        rules.origin,
        "pod kube-system/svcproxy-aaaaa /debug/iptables"
    );
    assert_eq!(rules.ipv4, V4_DUMP);
    assert_eq!(rules.ipv6.as_deref(), Some(V6_DUMP));
    parse_dump(&rules.ipv4).expect("the IPv4 dump parses");
    let request = api
        .requests()
        .into_iter()
        .find(|r| r.path.contains("/proxy/"))
        .expect("a pods/proxy request");
    assert_eq!(
        request.path,
        "/api/v1/namespaces/kube-system/pods/svcproxy-aaaaa:10249/proxy/debug/iptables"
    );
    assert_eq!(request.param("format"), Some("json"));
    assert!(api.execs().is_empty());
}

#[tokio::test]
async fn a_failed_ipv6_save_leaves_ipv6_out_and_a_failed_ipv4_save_is_an_error() {
    let api = ApiServer::start();
    populate(&api);
    api.apply_json(proxy_pod("svcproxy-aaaaa", "node-a", "Running"));
    let debug = DebugServer::start(
        Ok(V4_DUMP.to_string()),
        Some(Err("ip6tables-save: not found".to_string())),
    );
    api.register_pod_proxy("kube-system", "svcproxy-aaaaa", 10249, &debug.url());
    let rules = fetch_node_rules(&client(&api).await, "node-a")
        .await
        .expect("rules");
    assert_eq!(rules.ipv6, None);
    drop(debug);

    let debug = DebugServer::start(Err("iptables-save: xtables lock held".to_string()), None);
    api.register_pod_proxy("kube-system", "svcproxy-aaaaa", 10249, &debug.url());
    let error = fetch_node_rules(&client(&api).await, "node-a")
        .await
        .expect_err("no IPv4 rules");
    let text = error.to_string();
    assert!(text.contains("iptables-save: xtables lock held"), "{text}");
    assert!(text.contains("svcproxy-aaaaa"), "{text}");
}

#[tokio::test]
async fn without_our_proxy_the_rules_come_from_iptables_save_in_kube_proxy() {
    let api = ApiServer::start();
    populate(&api);
    api.apply_json(kube_proxy_pod("kube-proxy-xyz12", "node-b"));
    api.apply_json(kube_proxy_pod("kube-proxy-other", "node-a"));
    api.set_exec_reply(
        "kube-system",
        "kube-proxy-xyz12",
        "iptables-save",
        ExecReply::ok(V4_DUMP),
    );
    api.set_exec_reply(
        "kube-system",
        "kube-proxy-xyz12",
        "ip6tables-save",
        ExecReply::ok(V6_DUMP),
    );
    for protocols in [&["v5.channel.k8s.io"][..], &["v4.channel.k8s.io"][..]] {
        api.set_exec_protocols(protocols);
        let rules = fetch_node_rules(&client(&api).await, "node-b")
            .await
            .unwrap_or_else(|e| panic!("{protocols:?}: {e}"));
        assert_eq!(
            rules.origin,
            "iptables-save in pod kube-system/kube-proxy-xyz12 (container kube-proxy)"
        );
        assert_eq!(rules.ipv4, V4_DUMP, "{protocols:?}");
        assert_eq!(rules.ipv6.as_deref(), Some(V6_DUMP), "{protocols:?}");
    }
    let execs = api.execs();
    assert_eq!(execs.len(), 4);
    assert!(
        execs
            .iter()
            .all(|e| e.pod == "kube-proxy-xyz12" && e.container == "kube-proxy")
    );
    assert_eq!(execs[0].command, ["iptables-save"]);
    assert_eq!(execs[1].command, ["ip6tables-save"]);
}

#[tokio::test]
async fn exec_failures_are_reported_and_a_missing_ip6tables_save_is_not_one() {
    let api = ApiServer::start();
    populate(&api);
    api.apply_json(kube_proxy_pod("kube-proxy-xyz12", "node-b"));
    api.set_exec_reply(
        "kube-system",
        "kube-proxy-xyz12",
        "iptables-save",
        ExecReply::ok(V4_DUMP),
    );
    // No reply for ip6tables-save: it "is not in the image".
    let rules = fetch_node_rules(&client(&api).await, "node-b")
        .await
        .expect("IPv4 alone is enough");
    assert_eq!(rules.ipv6, None);

    api.set_exec_reply(
        "kube-system",
        "kube-proxy-xyz12",
        "iptables-save",
        ExecReply::fail(4, "Another app is currently holding the xtables lock."),
    );
    let error = fetch_node_rules(&client(&api).await, "node-b")
        .await
        .expect_err("iptables-save fails");
    assert!(matches!(error, DiagError::ExecFailed { .. }), "{error:?}");
    let text = error.to_string();
    for needle in [
        "exit code 4",
        "holding the xtables lock",
        "kube-proxy-xyz12",
        "node-b",
    ] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }
}

#[tokio::test]
async fn forbidden_pods_proxy_and_exec_name_the_permission() {
    let api = ApiServer::start();
    populate(&api);
    api.apply_json(proxy_pod("svcproxy-aaaaa", "node-a", "Running"));
    api.forbid("get", "pods/proxy");
    let text = fetch_node_rules(&client(&api).await, "node-a")
        .await
        .expect_err("forbidden")
        .to_string();
    for needle in [
        "get pods/proxy",
        "in namespace kube-system",
        "svcproxy-diagnostics-rules",
        "RoleBinding in kube-system",
        "deploy/diagnostics-rbac.yaml",
    ] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }

    api.apply_json(kube_proxy_pod("kube-proxy-xyz12", "node-b"));
    api.forbid("create", "pods/exec");
    let text = fetch_node_rules(&client(&api).await, "node-b")
        .await
        .expect_err("forbidden")
        .to_string();
    for needle in [
        "create pods/exec",
        "svcproxy-diagnostics-exec",
        "deploy/diagnostics-rbac.yaml",
    ] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }

    api.allow("create", "pods/exec");
    api.forbid("list", "pods");
    let text = fetch_node_rules(&client(&api).await, "node-b")
        .await
        .expect_err("forbidden")
        .to_string();
    assert!(text.contains("list pods (core API group)"), "{text}");
}

#[tokio::test]
async fn a_node_without_proxy_pods_says_what_to_do_instead() {
    let api = ApiServer::start();
    populate(&api);
    // A pending proxy pod on the node, and a running one elsewhere.
    api.apply_json(proxy_pod("svcproxy-pending", "node-a", "Pending"));
    api.apply_json(proxy_pod("svcproxy-bbbbb", "node-b", "Running"));
    let error = fetch_node_rules(&client(&api).await, "node-a")
        .await
        .expect_err("nothing to read from");
    assert!(
        matches!(error, DiagError::NoRulesSource { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    for needle in [
        "node \"node-a\"",
        "k8s-app=svcproxy",
        "k8s-app=kube-proxy",
        "svcproxy-pending is Pending",
        "--rules FILE",
        "--local",
    ] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }
}

#[tokio::test]
async fn an_unreachable_or_failing_proxy_pod_reports_the_status_and_body() {
    let api = ApiServer::start();
    populate(&api);
    api.apply_json(proxy_pod("svcproxy-aaaaa", "node-a", "Running"));
    // Nothing registered: the API server cannot reach the pod (503).
    let text = tokio::time::timeout(
        Duration::from_secs(20),
        fetch_node_rules(&client(&api).await, "node-a"),
    )
    .await
    .expect("no retrying for minutes")
    .expect_err("unreachable")
    .to_string();
    for needle in [
        "HTTP 503",
        "error trying to reach service",
        "svcproxy-aaaaa",
    ] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }

    // A proxy that answers 500 with a text body.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut conn, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.0 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\nthe debug view broke");
        }
    });
    api.register_pod_proxy(
        "kube-system",
        "svcproxy-aaaaa",
        10249,
        &format!("http://{addr}"),
    );
    let text = fetch_node_rules(&client(&api).await, "node-a")
        .await
        .expect_err("500")
        .to_string();
    server.join().expect("server thread");
    for needle in ["HTTP 500", "the debug view broke"] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }
}

#[tokio::test]
async fn a_proxy_pod_bound_to_loopback_is_pointed_at_the_manifest_fix() {
    let api = ApiServer::start();
    populate(&api);
    let mut pod = proxy_pod("svcproxy-aaaaa", "node-a", "Running");
    pod["spec"]["containers"][0]["args"] = json!(["--metrics-bind-address=127.0.0.1:10249"]);
    pod["spec"]["containers"][0]["ports"] = json!([]);
    api.apply_json(pod);
    let text = fetch_node_rules(&client(&api).await, "node-a")
        .await
        .expect_err("unreachable")
        .to_string();
    for needle in ["127.0.0.1:10249", "deploy/README.md"] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }
}

#[tokio::test]
async fn bad_credentials_are_reported_as_such() {
    let api = ApiServer::start();
    let yaml = api.kubeconfig_yaml().replace(&api.token(), "wrong-token");
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    config.default_retry = false;
    let client = kube::Client::try_from(config).expect("client");
    let text = fetch_cluster(&client, &ClusterScope::All)
        .await
        .expect_err("401")
        .to_string();
    assert!(text.contains("rejected the credentials"), "{text}");
    assert!(text.contains("kubeconfig"), "{text}");
}
