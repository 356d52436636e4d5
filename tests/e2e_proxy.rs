//! The proxy end to end: a real `kubectl-svcproxy proxy` process in a "node" network namespace,
//! watching the test API server through the real kube client, programming real iptables, with real
//! TCP and UDP traffic from pod and outside namespaces.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use support::netns::skip_unless_available;
use support::testbed::{NODE_IP, NODE_NAME, Testbed};

const VIP: &str = "10.96.0.10";
const SYNC: Duration = Duration::from_secs(15);

fn web_service(bed: &Testbed) {
    bed.service(
        "web",
        json!({
            "type": "NodePort", "clusterIP": VIP, "clusterIPs": [VIP],
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080},
                {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 5353},
            ],
        }),
    );
}

fn web_ports() -> serde_json::Value {
    json!([{"name": "http", "protocol": "TCP", "port": 8080}, {"name": "dns", "protocol": "UDP", "port": 5353}])
}

/// The set of pods answering `n` requests to `url` from `from`.
fn answers(bed: &Testbed, from: &str, url: &str, n: usize) -> BTreeSet<String> {
    (0..n)
        .filter_map(|_| Testbed::http(&bed.pod(from).ns, url).ok())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

#[test]
fn cluster_ip_node_port_scaling_and_udp_conntrack() {
    if !skip_unless_available("cluster_ip_node_port_scaling_and_udp_conntrack") {
        return;
    }
    let mut bed = Testbed::new(2);
    bed.node_object();
    web_service(&bed);
    bed.endpoints(
        "web",
        web_ports(),
        &[("pod-a", NODE_NAME), ("pod-b", NODE_NAME)],
    );
    bed.start_proxy(&["--iptables-sync-period=2s"]);
    let url = format!("http://{VIP}/");

    // Every endpoint answers within a few requests, over TCP and UDP.
    bed.wait(SYNC, "the ClusterIP to answer", || {
        Testbed::http(&bed.pod("client").ns, &url).is_ok()
    });
    bed.wait(SYNC, "both endpoints to answer", || {
        answers(&bed, "client", &url, 10) == set(&["pod-a", "pod-b"])
    });
    let udp: BTreeSet<String> = (0..20)
        .filter_map(|_| Testbed::udp(&bed.pod("client").ns, VIP, 53, None).ok())
        .collect();
    assert_eq!(udp, set(&["pod-a", "pod-b"]), "UDP reaches both endpoints");

    // NodePort from outside the node.
    let node_port = format!("http://{NODE_IP}:30080/");
    bed.wait(SYNC, "the NodePort to answer from outside", || {
        Testbed::http(&bed.outside, &node_port).is_ok()
    });

    // A UDP flow pinned to one backend by conntrack moves when that backend leaves the slice.
    let client = &bed.pod("client").ns;
    let first = Testbed::udp(client, VIP, 53, Some(40053)).expect("UDP answer");
    assert_eq!(
        Testbed::udp(client, VIP, 53, Some(40053)).expect("again"),
        first,
        "conntrack pins the flow"
    );
    let other = if first == "pod-a" { "pod-b" } else { "pod-a" };
    bed.endpoints("web", web_ports(), &[(other, NODE_NAME)]);
    bed.wait(
        SYNC,
        "the removed endpoint to stop receiving new connections",
        || answers(&bed, "client", &url, 6) == set(&[other]),
    );
    bed.wait(SYNC, "the stale UDP flow to be cleared", || {
        Testbed::udp(&bed.pod("client").ns, VIP, 53, Some(40053))
            .ok()
            .as_deref()
            == Some(other)
    });

    // Scaling to zero refuses connections (REJECT); scaling back restores the service.
    bed.endpoints("web", web_ports(), &[]);
    bed.wait(SYNC, "connection refused with no endpoints", || {
        Testbed::http(&bed.pod("client").ns, &url)
            .is_err_and(|e| e.contains("refused") || e.contains("(7)"))
    });
    bed.endpoints(
        "web",
        web_ports(),
        &[("pod-a", NODE_NAME), ("pod-b", NODE_NAME)],
    );
    bed.wait(SYNC, "service restored", || {
        answers(&bed, "client", &url, 10) == set(&["pod-a", "pod-b"])
    });

    assert_eq!(
        bed.node_status(10256, "/healthz"),
        "200",
        "healthy after syncing"
    );
    // /debug/state is answered by the sync loop from its live state: the restored endpoints are there.
    let state: serde_json::Value =
        serde_json::from_str(&bed.node_get(10249, "/debug/state")).expect("/debug/state is JSON");
    let web_endpoints: usize = state["state"]["endpointSlices"]
        .as_array()
        .expect("endpointSlices")
        .iter()
        .filter(|slice| slice["service_name"] == "web")
        .map(|slice| slice["endpoints"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(
        web_endpoints, 2,
        "/debug/state shows web's two endpoints: {state}"
    );

    let metrics = bed.node_get(10249, "/metrics");
    let deleted = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "kubeproxy_conntrack_reconciler_deleted_entries_total{ip_family=\"IPv4\"}",
            )
        })
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(
        deleted.is_some_and(|n| n >= 1.0),
        "the stale flow's deletion is counted: {deleted:?}"
    );
    let programmed = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "kubeproxy_network_programming_duration_seconds_count{ip_family=\"IPv4\"}",
            )
        })
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(
        programmed.is_some_and(|n| n >= 1.0),
        "each EndpointSlice change with a trigger time is observed once programmed: {programmed:?}"
    );
    for name in [
        "kubeproxy_sync_proxy_rules_duration_seconds_bucket",
        "kubeproxy_sync_partial_proxy_rules_duration_seconds_count",
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
        "kubeproxy_sync_proxy_rules_iptables_total",
    ] {
        assert!(metrics.contains(name), "{name} exported:\n{metrics}");
    }
}

#[test]
fn external_traffic_policy_local_and_health_check_node_ports() {
    if !skip_unless_available("external_traffic_policy_local_and_health_check_node_ports") {
        return;
    }
    let mut bed = Testbed::new(2);
    bed.node_object();
    for (name, vip, node_port, hc_port, endpoint_node) in [
        ("local", "10.96.0.20", 30081, 32001, NODE_NAME),
        ("remote", "10.96.0.21", 30082, 32002, "node-2"),
    ] {
        bed.service(
            name,
            json!({
                "type": "LoadBalancer", "clusterIP": vip, "clusterIPs": [vip],
                "externalTrafficPolicy": "Local", "healthCheckNodePort": hc_port,
                "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": node_port}],
            }),
        );
        bed.endpoints(
            name,
            json!([{"name": "http", "protocol": "TCP", "port": 8080}]),
            &[("pod-a", endpoint_node)],
        );
    }
    bed.start_proxy(&["--iptables-sync-period=2s"]);

    bed.wait(SYNC, "the local NodePort to answer from outside", || {
        Testbed::http(&bed.outside, &format!("http://{NODE_IP}:30081/")).is_ok()
    });
    let dropped = Testbed::http(&bed.outside, &format!("http://{NODE_IP}:30082/"));
    assert!(
        dropped
            .as_ref()
            .is_err_and(|e| e.contains("timed out") || e.contains("(28)")),
        "no local endpoint: dropped, not refused: {dropped:?}"
    );
    bed.wait(SYNC, "health-check node ports", || {
        bed.node_status(32001, "/") == "200" && bed.node_status(32002, "/") == "503"
    });
}

#[test]
fn client_ip_affinity_pins_a_client() {
    if !skip_unless_available("client_ip_affinity_pins_a_client") {
        return;
    }
    let mut bed = Testbed::new(2);
    bed.node_object();
    bed.service(
        "sticky",
        json!({
            "clusterIP": "10.96.0.30", "clusterIPs": ["10.96.0.30"], "sessionAffinity": "ClientIP",
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
        }),
    );
    bed.endpoints(
        "sticky",
        json!([{"name": "http", "protocol": "TCP", "port": 8080}]),
        &[("pod-a", NODE_NAME), ("pod-b", NODE_NAME)],
    );
    bed.start_proxy(&[]);
    let url = "http://10.96.0.30/";
    bed.wait(SYNC, "the service to answer", || {
        Testbed::http(&bed.pod("client").ns, url).is_ok()
    });
    assert_eq!(
        answers(&bed, "client", url, 12).len(),
        1,
        "one client sticks to one endpoint"
    );
}

#[test]
fn flushes_are_repaired_restarts_lose_nothing_and_cleanup_leaves_nothing() {
    if !skip_unless_available(
        "flushes_are_repaired_restarts_lose_nothing_and_cleanup_leaves_nothing",
    ) {
        return;
    }
    let mut bed = Testbed::new(2);
    bed.node_object();
    web_service(&bed);
    bed.endpoints(
        "web",
        web_ports(),
        &[("pod-a", NODE_NAME), ("pod-b", NODE_NAME)],
    );
    // Foreign rules in nat and filter, which every sync must leave alone.
    bed.node
        .iptables_restore(
            svcproxy::core::rules::IpFamily::V4,
            "*nat\n:FOREIGN-NAT - [0:0]\n-A FOREIGN-NAT -d 192.0.2.1/32 -j RETURN\n-A PREROUTING -j FOREIGN-NAT\nCOMMIT\n\
             *filter\n:FOREIGN-FILTER - [0:0]\n-A FOREIGN-FILTER -s 192.0.2.2/32 -j ACCEPT\n-A INPUT -j FOREIGN-FILTER\nCOMMIT\n",
            true,
        )
        .expect("foreign rules");
    bed.start_proxy(&["--iptables-sync-period=2s"]);
    let url = format!("http://{VIP}/");
    bed.wait(SYNC, "the service to answer", || {
        Testbed::http(&bed.pod("client").ns, &url).is_ok()
    });

    // An outside flush of nat (and deletion of its chains) is repaired within the sync period.
    // One shell, so the proxy (checking its canaries every 2 s) cannot repair the table between the
    // flush and the look at it; a request made now could already find it repaired.
    let after_flush = bed
        .node
        .exec(
            "sh",
            &[
                "-c",
                "iptables -t nat -F && iptables -t nat -X && iptables-save -t nat",
            ],
            None,
        )
        .expect("flush");
    assert!(
        !after_flush.contains("KUBE-SERVICES"),
        "the flush removes the service rules:\n{after_flush}"
    );
    bed.wait(Duration::from_secs(10), "the flush to be repaired", || {
        Testbed::http(&bed.pod("client").ns, &url).is_ok()
    });
    // The flush took the foreign nat chain too; put it back and check that later syncs keep it.
    bed.node
        .iptables_restore(
            svcproxy::core::rules::IpFamily::V4,
            "*nat\n:FOREIGN-NAT - [0:0]\n-A FOREIGN-NAT -d 192.0.2.1/32 -j RETURN\n-A PREROUTING -j FOREIGN-NAT\nCOMMIT\n",
            true,
        )
        .expect("foreign nat rules again");

    // Restarting the proxy under a continuous request loop fails no request.
    let loop_until = std::time::Instant::now() + Duration::from_secs(6);
    let mut failures = Vec::new();
    let mut requests = 0;
    bed.stop_proxy();
    let restart_at = std::time::Instant::now() + Duration::from_secs(2);
    let mut restarted = false;
    while std::time::Instant::now() < loop_until {
        if !restarted && std::time::Instant::now() >= restart_at {
            bed.start_proxy(&["--iptables-sync-period=2s"]);
            restarted = true;
        }
        requests += 1;
        if let Err(e) = Testbed::http(&bed.pod("client").ns, &url) {
            failures.push(e);
        }
    }
    assert!(requests > 10, "the loop ran: {requests}");
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed across a restart: {failures:?}",
        failures.len()
    );
    bed.wait(SYNC, "the restarted proxy to report healthy", || {
        bed.node_status(10256, "/healthz") == "200"
    });

    let rules = bed.rules();
    assert!(
        rules.contains("-A FOREIGN-NAT -d 192.0.2.1/32 -j RETURN"),
        "foreign nat rule survives"
    );
    assert!(
        rules.contains("-A FOREIGN-FILTER -s 192.0.2.2/32 -j ACCEPT"),
        "foreign filter rule survives"
    );

    // --cleanup removes every KUBE-* chain and leaves the rest.
    bed.stop_proxy();
    let out = bed.node.exec(
        env!("CARGO_BIN_EXE_kubectl-svcproxy"),
        &[
            "proxy",
            "--cleanup",
            &format!("--hostname-override={NODE_NAME}"),
        ],
        None,
    );
    assert!(out.is_ok(), "cleanup: {out:?}");
    let rules = bed.rules();
    let left: Vec<&str> = rules.lines().filter(|l| l.contains("KUBE-")).collect();
    assert!(left.is_empty(), "cleanup left: {left:#?}");
    assert!(
        rules.contains("-A FOREIGN-FILTER -s 192.0.2.2/32 -j ACCEPT"),
        "cleanup keeps foreign rules"
    );
}
