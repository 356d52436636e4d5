//! Golden rules for the six-service cluster of kube-proxy's full-ruleset test, and the structural
//! checks every planned ruleset must pass.

mod support;

use support::builders::*;
use support::checks::assert_jumps_consistent;
use svcproxy::core::model::ClusterState;
use svcproxy::core::plan::plan;
use svcproxy::core::render::{render_full, render_node_dump};
use svcproxy::core::rules::IpFamily;

/// ClusterIP; LB eTP=Local + external IP + HC port; NodePort; external IP; LB eTP=Cluster with source
/// ranges and ClientIP affinity; and a Service with no endpoints.
fn six_services() -> ClusterState {
    cluster(
        vec![
            service("ns1", "svc1", "172.30.0.41")
                .port("p80", "tcp", 80)
                .build(),
            service("ns2", "svc2", "172.30.0.42")
                .port("p80", "tcp", 80)
                .node_port(3001)
                .load_balancer(&["1.2.3.4"])
                .external_ip("192.168.99.22")
                .etp_local()
                .health_check_node_port(30000)
                .build(),
            service("ns3", "svc3", "172.30.0.43")
                .port("p80", "tcp", 80)
                .node_port(3003)
                .build(),
            service("ns4", "svc4", "172.30.0.44")
                .port("p80", "tcp", 80)
                .external_ip("192.168.99.33")
                .build(),
            service("ns5", "svc5", "172.30.0.45")
                .port("p80", "tcp", 80)
                .node_port(3002)
                .load_balancer(&["5.6.7.8"])
                .source_range("203.0.113.0/25")
                .affinity(10800)
                .build(),
            service("ns6", "svc6", "172.30.0.46")
                .port("p80", "tcp", 80)
                .build(),
        ],
        vec![
            slice("ns1", "svc1", "svc1-a")
                .port("p80", "tcp", 80)
                .endpoint("10.180.0.1", "test-node", READY)
                .build(),
            slice("ns2", "svc2", "svc2-a")
                .port("p80", "tcp", 80)
                .endpoint("10.180.0.2", "test-node", READY)
                .endpoint("10.180.1.2", "host2", READY)
                .build(),
            slice("ns3", "svc3", "svc3-a")
                .port("p80", "tcp", 80)
                .endpoint("10.180.0.3", "test-node", READY)
                .build(),
            slice("ns4", "svc4", "svc4-a")
                .port("p80", "tcp", 80)
                .endpoint("10.180.0.4", "test-node", READY)
                .endpoint("10.180.0.5", "host2", READY)
                .build(),
            slice("ns5", "svc5", "svc5-a")
                .port("p80", "tcp", 80)
                .endpoint("10.180.0.3", "test-node", READY)
                .build(),
        ],
    )
}

#[test]
fn six_service_ruleset_matches_the_golden_payload() {
    let rules = plan(&six_services(), &test_node(), IpFamily::V4);
    insta::assert_snapshot!("six_services_restore", render_full(&rules));
    insta::assert_snapshot!("six_services_node_dump", render_node_dump(&rules));
}

#[test]
fn six_service_ruleset_jumps_are_consistent() {
    assert_jumps_consistent(&plan(&six_services(), &test_node(), IpFamily::V4));
}

#[test]
fn planning_is_deterministic() {
    let a = render_full(&plan(&six_services(), &test_node(), IpFamily::V4));
    let b = render_full(&plan(&six_services(), &test_node(), IpFamily::V4));
    assert_eq!(a, b);
}

#[test]
fn an_ipv4_cluster_gives_an_ipv6_ruleset_with_only_fixed_chains() {
    let rules = plan(&six_services(), &test_node(), IpFamily::V6);
    assert!(rules.services.is_empty());
    let text = render_full(&rules);
    assert!(
        text.contains("! -d ::1 -m comment"),
        "IPv6 tail rule excludes ::1:\n{text}"
    );
    assert!(
        !text.contains("KUBE-FIREWALL"),
        "no localnet block rule for IPv6:\n{text}"
    );
}
