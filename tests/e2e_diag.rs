//! The live diagnostics end to end: a real `kubectl-svcproxy proxy` programs a "node" network
//! namespace, and `fetch_node_rules` reads that node's rules the way it does in a cluster — through the
//! test API server's `pods/proxy`, which reaches the proxy's metrics server on the node, and its
//! `/debug/iptables`, which runs the real iptables-save there.

mod support;

use std::fs::File;
use std::time::Duration;

use serde_json::json;
use support::diagsrv::proxy_pod;
use support::netns::skip_unless_available;
use support::testbed::{NODE_NAME, Testbed};
use svcproxy::core::parse::parse_dump;
use svcproxy::kube::diag::{NodeRules, fetch_node_rules};

const VIP: &str = "10.96.0.10";

/// A rule line without the `[packets:bytes] ` prefix of `iptables-save -c`.
fn without_counters(line: &str) -> &str {
    match line
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
    {
        Some((_, rule)) => rule,
        None => line,
    }
}

/// Runs `fetch_node_rules` from a thread inside the node namespace, where the test API server listens.
fn fetch_in_node(bed: &Testbed) -> Result<NodeRules, String> {
    let path = format!("/run/netns/{}", bed.node.name());
    let config = {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(bed.api.config())
    };
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("enter the node namespace");
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    let mut config = config;
                    config.default_retry = false;
                    let client = kube::Client::try_from(config).expect("client");
                    fetch_node_rules(&client, NODE_NAME)
                        .await
                        .map_err(|e| e.to_string())
                })
            })
            .join()
            .expect("the fetching thread")
    })
}

#[test]
fn a_real_proxy_s_rules_are_read_through_pods_proxy() {
    if !skip_unless_available("a_real_proxy_s_rules_are_read_through_pods_proxy") {
        return;
    }
    let mut bed = Testbed::new(1);
    bed.node_object();
    bed.service(
        "web",
        json!({
            "type": "ClusterIP", "clusterIP": VIP, "clusterIPs": [VIP],
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
        }),
    );
    bed.endpoints(
        "web",
        json!([{"name": "http", "protocol": "TCP", "port": 8080}]),
        &[("pod-a", NODE_NAME)],
    );
    bed.start_proxy(&[]);
    bed.wait(Duration::from_secs(20), "the proxy's rules for web", || {
        bed.rules().contains("default/web:http cluster IP")
    });
    // The DaemonSet's pod on this node; its metrics server listens on the node's 127.0.0.1:10249,
    // which is where the API server (in the same namespace) connects.
    bed.api
        .apply_json(proxy_pod("svcproxy-node1", NODE_NAME, "Running"));
    bed.api.register_pod_proxy(
        "kube-system",
        "svcproxy-node1",
        10249,
        "http://127.0.0.1:10249",
    );

    let rules = fetch_in_node(&bed).unwrap_or_else(|e| panic!("{e}\n{}", bed.proxy_log()));
    assert_eq!(
        rules.origin,
        "pod kube-system/svcproxy-node1 /debug/iptables"
    );
    let dump = parse_dump(&rules.ipv4).expect("the fetched dump parses");
    assert!(!dump.tables.is_empty());
    let service_rule = rules
        .ipv4
        .lines()
        .map(without_counters)
        .find(|l| {
            l.starts_with("-A KUBE-SERVICES")
                && l.contains(&format!("-d {VIP}/32"))
                && l.contains("default/web:http cluster IP")
        })
        .unwrap_or_else(|| panic!("no KUBE-SERVICES rule for web in:\n{}", rules.ipv4));
    assert!(service_rule.contains("-j KUBE-SVC-"), "{service_rule}");
    // What came through the API server is what the node has now.
    let local = bed.rules();
    let fetched: Vec<&str> = rules
        .ipv4
        .lines()
        .map(without_counters)
        .filter(|l| l.starts_with("-A KUBE-"))
        .collect();
    assert!(fetched.len() > 5, "{}", rules.ipv4);
    for line in fetched {
        assert!(local.contains(line), "{line} is not on the node");
    }
}
