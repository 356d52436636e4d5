//! Partial syncs through a real kernel: after a full sync of one cluster state, the partial payload for
//! a change must leave exactly the rules a full sync of the new state leaves (entry chains compared as
//! multisets, as their order across Services is free).

mod support;

use std::collections::BTreeSet;

use support::builders::*;
use support::dumpcmp::differences;
use support::netns::{NetNs, skip_unless_available};
use svcproxy::core::model::{ClusterState, NamespacedName};
use svcproxy::core::plan::{RuleSet, jump_rules, plan};
use svcproxy::core::render::{render_full, render_partial};
use svcproxy::core::rules::IpFamily;
use svcproxy::iptables::{Backend, Iptables};

fn tools(ns: &NetNs) -> Iptables {
    Iptables::new(IpFamily::V4, Backend::Default).with_prefix(vec![
        "ip".into(),
        "netns".into(),
        "exec".into(),
        ns.name().into(),
    ])
}

/// A namespace programmed with a full sync of `rules`.
fn fully_synced(rules: &RuleSet) -> NetNs {
    let ns = NetNs::create("svcp-partial").expect("namespace");
    ns.create_nfacct(&[
        "ct_state_invalid_dropped_pkts",
        "localhost_nps_accepted_pkts",
    ])
    .expect("nfacct");
    let t = tools(&ns);
    t.ensure_canaries().expect("canaries");
    t.ensure_jumps(&jump_rules()).expect("jumps");
    t.restore(&render_full(rules)).expect("full restore");
    ns
}

fn base() -> ClusterState {
    cluster(
        vec![
            service("ns1", "web", "172.30.0.41")
                .port("http", "tcp", 80)
                .node_port(30080)
                .build(),
            service("ns1", "api", "172.30.0.42")
                .port("http", "tcp", 80)
                .build(),
            service("ns2", "lb", "172.30.0.43")
                .port("http", "tcp", 80)
                .node_port(30081)
                .load_balancer(&["1.2.3.4"])
                .source_range("203.0.113.0/25")
                .etp_local()
                .health_check_node_port(32000)
                .build(),
        ],
        vec![
            slice("ns1", "web", "web-a")
                .port("http", "tcp", 8080)
                .endpoint("10.180.0.1", "test-node", READY)
                .endpoint("10.180.1.1", "host2", READY)
                .build(),
            slice("ns1", "api", "api-a")
                .port("http", "tcp", 8080)
                .endpoint("10.180.0.2", "test-node", READY)
                .build(),
            slice("ns2", "lb", "lb-a")
                .port("http", "tcp", 8080)
                .endpoint("10.180.0.3", "test-node", READY)
                .build(),
        ],
    )
}

/// Applies the partial payload for `changed` to a node synced with `old`, and checks the result equals
/// a full sync of `new`.
fn check_partial(old_state: &ClusterState, new_state: &ClusterState, changed: &[(&str, &str)]) {
    let ctx = test_node();
    let old = plan(old_state, &ctx, IpFamily::V4);
    let new = plan(new_state, &ctx, IpFamily::V4);
    let changed: BTreeSet<NamespacedName> = changed
        .iter()
        .map(|(ns, n)| NamespacedName::new(*ns, *n))
        .collect();
    let payload = render_partial(&old, &new, &changed).expect("partial payload");
    assert!(!payload.is_empty(), "the change produces a payload");
    assert!(
        !payload.contains(":KUBE-SERVICES "),
        "entry chains are edited rule by rule:\n{payload}"
    );

    let node = fully_synced(&old);
    tools(&node)
        .restore(&payload)
        .unwrap_or_else(|e| panic!("partial payload rejected: {e}\n{payload}"));
    let after_partial = node.iptables_save(IpFamily::V4).expect("save");

    let reference = fully_synced(&new);
    let after_full = reference.iptables_save(IpFamily::V4).expect("save");
    let diffs = differences(&after_full, &after_partial);
    assert!(
        diffs.is_empty(),
        "partial sync differs from a full sync:\n{}\npayload:\n{payload}",
        diffs.join("\n")
    );
}

#[test]
fn endpoint_added_removed_and_scaled_to_zero() {
    if !skip_unless_available("endpoint_added_removed_and_scaled_to_zero") {
        return;
    }
    let mut added = base();
    added.insert_slice(
        slice("ns1", "web", "web-a")
            .port("http", "tcp", 8080)
            .endpoint("10.180.0.1", "test-node", READY)
            .endpoint("10.180.1.1", "host2", READY)
            .endpoint("10.180.2.1", "host3", READY)
            .build(),
    );
    check_partial(&base(), &added, &[("ns1", "web")]);
    check_partial(&added, &base(), &[("ns1", "web")]);

    let mut zero = base();
    zero.insert_slice(
        slice("ns1", "api", "api-a")
            .port("http", "tcp", 8080)
            .build(),
    );
    check_partial(&base(), &zero, &[("ns1", "api")]);
    check_partial(&zero, &base(), &[("ns1", "api")]);
}

#[test]
fn service_added_and_deleted() {
    if !skip_unless_available("service_added_and_deleted") {
        return;
    }
    let mut more = base();
    more.insert_service(
        service("ns3", "new", "172.30.0.50")
            .port("dns", "udp", 53)
            .node_port(30053)
            .build(),
    );
    more.insert_slice(
        slice("ns3", "new", "new-a")
            .port("dns", "udp", 5353)
            .endpoint("10.180.0.9", "test-node", READY)
            .build(),
    );
    check_partial(&base(), &more, &[("ns3", "new")]);
    check_partial(&more, &base(), &[("ns3", "new")]);
}

#[test]
fn local_endpoint_moves_away_under_external_traffic_policy_local() {
    if !skip_unless_available("local_endpoint_moves_away_under_external_traffic_policy_local") {
        return;
    }
    let mut moved = base();
    moved.insert_slice(
        slice("ns2", "lb", "lb-a")
            .port("http", "tcp", 8080)
            .endpoint("10.180.5.3", "host5", READY)
            .build(),
    );
    check_partial(&base(), &moved, &[("ns2", "lb")]);
    check_partial(&moved, &base(), &[("ns2", "lb")]);
}
