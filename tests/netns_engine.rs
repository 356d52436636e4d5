//! Rendered payloads in a real kernel: small and large-cluster rulesets, IPv4 and IPv6, are accepted by
//! `iptables-restore` in a throwaway namespace, and what `iptables-save` prints back parses to the same
//! rules, chain by chain and in order.

mod support;

use support::builders::*;
use support::netns::{NetNs, skip_unless_available};
use svcproxy::core::model::{ClusterState, LocalDetector};
use svcproxy::core::parse::parse_dump;
use svcproxy::core::plan::{RuleSet, jump_rules, plan};
use svcproxy::core::render::{owned_chains, render_full};
use svcproxy::core::rules::{IpFamily, Table};
use svcproxy::iptables::{Backend, Iptables};
use svcproxy::synthetic;

/// Loads `rules` into a fresh namespace and checks the kernel's view parses back to the planned rules.
fn assert_kernel_keeps(rules: &RuleSet) {
    let ns = NetNs::create("svcp-engine").expect("namespace");
    ns.create_nfacct(&[
        "ct_state_invalid_dropped_pkts",
        "localhost_nps_accepted_pkts",
    ])
    .expect("nfacct");
    let tools = Iptables::new(rules.family, Backend::Default).with_prefix(vec![
        "ip".into(),
        "netns".into(),
        "exec".into(),
        ns.name().into(),
    ]);
    tools.ensure_canaries().expect("canaries");
    tools.ensure_jumps(&jump_rules()).expect("jumps");
    let payload = render_full(rules);
    tools
        .restore(&payload)
        .unwrap_or_else(|e| panic!("kernel rejected the {} payload: {e}", rules.family));

    let saved = ns.iptables_save(rules.family).expect("iptables-save");
    let dump =
        parse_dump(&saved).unwrap_or_else(|e| panic!("iptables-save output does not parse: {e}"));
    assert_eq!(dump.family, rules.family);
    let mut compared = 0;
    for table in [Table::Filter, Table::Nat] {
        for (name, planned) in owned_chains(rules, table) {
            let chain = dump
                .chain(table, &name)
                .unwrap_or_else(|| panic!("{table} {name} missing in the kernel"));
            let kernel: Vec<_> = chain.rules.iter().map(|r| r.rule.normalized()).collect();
            let planned: Vec<_> = planned.iter().map(|r| r.normalized()).collect();
            assert_eq!(
                kernel, planned,
                "{table} {name}: the kernel's rules differ from the planned ones"
            );
            compared += planned.len();
        }
    }
    let (filter, nat) = rules.rule_counts();
    assert_eq!(compared, filter + nat, "every planned rule was compared");
}

fn small_ipv4() -> ClusterState {
    cluster(
        vec![
            service("ns1", "web", "172.30.0.41")
                .port("http", "tcp", 80)
                .node_port(30080)
                .affinity(600)
                .build(),
            service("ns1", "dns", "172.30.0.10")
                .port("dns", "udp", 53)
                .port("dns-tcp", "tcp", 53)
                .build(),
            service("ns2", "lb", "172.30.0.43")
                .port("http", "tcp", 80)
                .node_port(30081)
                .load_balancer(&["1.2.3.4"])
                .source_range("192.168.0.0/24")
                .etp_local()
                .health_check_node_port(32000)
                .build(),
            service("ns3", "empty", "172.30.0.44")
                .port("http", "tcp", 80)
                .external_ip("192.168.99.44")
                .build(),
        ],
        vec![
            slice("ns1", "web", "web-a")
                .port("http", "tcp", 8080)
                .endpoint("10.180.0.1", "test-node", READY)
                .endpoint("10.180.1.1", "host2", READY)
                .endpoint("10.180.2.1", "host3", READY)
                .build(),
            slice("ns1", "dns", "dns-a")
                .port("dns", "udp", 5353)
                .port("dns-tcp", "tcp", 5353)
                .endpoint("10.180.0.2", "test-node", READY)
                .build(),
            slice("ns2", "lb", "lb-a")
                .port("http", "tcp", 8080)
                .endpoint("10.180.1.3", "host2", READY)
                .build(),
        ],
    )
}

#[test]
fn small_ipv4_ruleset_survives_the_kernel() {
    if !skip_unless_available("small_ipv4_ruleset_survives_the_kernel") {
        return;
    }
    let rules = plan(&small_ipv4(), &test_node(), IpFamily::V4);
    assert!(!rules.large_cluster);
    assert_kernel_keeps(&rules);
}

#[test]
fn large_cluster_ruleset_survives_the_kernel() {
    if !skip_unless_available("large_cluster_ruleset_survives_the_kernel") {
        return;
    }
    let state = synthetic::cluster(150, 10);
    let ctx = test_node();
    let rules = plan(&state, &ctx, IpFamily::V4);
    assert!(rules.large_cluster, "1500 endpoints is large-cluster mode");
    let sep_comments = rules
        .services
        .values()
        .flat_map(|s| &s.chains)
        .filter(|c| c.name.starts_with("KUBE-SEP-"))
        .flat_map(|c| &c.rules)
        .filter(|r| r.comment().is_some())
        .count();
    assert_eq!(
        sep_comments, 0,
        "no per-endpoint comments in large-cluster mode"
    );
    assert_kernel_keeps(&rules);
}

#[test]
fn ipv6_ruleset_survives_the_kernel() {
    if !skip_unless_available("ipv6_ruleset_survives_the_kernel") {
        return;
    }
    let state = cluster(
        vec![
            service("ns1", "web6", "fd00:30::41")
                .port("http", "tcp", 80)
                .node_port(30080)
                .affinity(600)
                .build(),
            service("ns1", "lb6", "fd00:30::42")
                .port("http", "tcp", 80)
                .node_port(30081)
                .load_balancer(&["2001:db8:100::1"])
                .source_range("2001:db8:200::/48")
                .build(),
            service("ns1", "none6", "fd00:30::43")
                .port("http", "tcp", 80)
                .build(),
        ],
        vec![
            slice("ns1", "web6", "web6-a")
                .ipv6()
                .port("http", "tcp", 8080)
                .endpoint("fd00:180::1", "test-node", READY)
                .endpoint("fd00:180::2", "host2", READY)
                .build(),
            slice("ns1", "lb6", "lb6-a")
                .ipv6()
                .port("http", "tcp", 8080)
                .endpoint("fd00:180::3", "host2", READY)
                .build(),
        ],
    );
    let mut ctx = test_node();
    ctx.local_detector = LocalDetector::ClusterCidr(vec!["fd00:180::/64".parse().expect("cidr")]);
    let rules = plan(&state, &ctx, IpFamily::V6);
    assert_eq!(rules.services.len(), 3);
    assert_kernel_keeps(&rules);
}
