//! The packet-flow acceptance scenarios of spec §6.3, end to end through the engine:
//! plan → render (the node's `iptables-save` view) → parse → trace, asserting the verdict, the DNAT set
//! and the masquerade flag.

mod support;

use std::collections::BTreeSet;

use support::builders::*;
use svcproxy::core::model::{ClusterState, LocalDetector, NodeContext};
use svcproxy::core::parse::parse_dump;
use svcproxy::core::plan::plan;
use svcproxy::core::render::render_node_dump;
use svcproxy::core::rules::{IpFamily, Protocol};
use svcproxy::core::trace::{Origin, Packet, Trace, trace};

const POD: &str = "10.0.0.2";
const NODE: &str = "192.168.0.2";
const ALT_NODE: &str = "192.168.1.2";
const EXTERNAL: &str = "203.0.113.2";
const BLOCKED: &str = "203.0.113.130";

/// Plans `state` for `ctx`, renders what the node would show, parses it back and traces one packet.
fn run(state: &ClusterState, ctx: &NodeContext, packet: Packet, origin: Origin) -> Trace {
    let family = IpFamily::of(&packet.destination);
    let rules = plan(state, ctx, family);
    let text = render_node_dump(&rules);
    let dump =
        parse_dump(&text).unwrap_or_else(|e| panic!("rendered dump does not parse: {e}\n{text}"));
    trace(&dump, &packet, origin, &ctx.local_addresses)
}

fn tcp(source: &str, destination: &str, port: u16) -> Packet {
    Packet::tcp(ip(source), ip(destination), port)
}

/// The outcome as a set (candidate order follows the ladder, which is not part of the contract).
fn outcome(trace: &Trace) -> BTreeSet<String> {
    trace
        .outcome_string()
        .split(", ")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

#[track_caller]
fn expect(trace: &Trace, want: &[&str], masquerade: Option<bool>) {
    assert_eq!(
        outcome(trace),
        set(want),
        "outcome; steps: {:#?}",
        trace.steps
    );
    if let Some(masq) = masquerade {
        assert_eq!(
            trace.masquerade,
            masq,
            "masquerade flag for outcome {:?}",
            trace.outcome_string()
        );
    }
}

fn one_endpoint() -> ClusterState {
    cluster(
        vec![
            service("ns1", "svc1", "172.30.0.41")
                .port("p80", "tcp", 80)
                .build(),
        ],
        vec![
            slice("ns1", "svc1", "s1")
                .port("p80", "tcp", 80)
                .endpoint("10.180.0.1", "test-node", READY)
                .build(),
        ],
    )
}

#[test]
fn s01_cluster_ip_single_endpoint() {
    let t = run(
        &one_endpoint(),
        &test_node(),
        tcp(POD, "172.30.0.41", 80),
        Origin::Forwarded,
    );
    expect(&t, &["10.180.0.1:80"], Some(false));
}

#[test]
fn s02_cluster_ip_two_endpoints_each_half() {
    let state = cluster(
        vec![
            service("ns2", "svc2", "172.30.0.44")
                .port("p80", "tcp", 80)
                .build(),
        ],
        vec![
            slice("ns2", "svc2", "s2")
                .port("p80", "tcp", 80)
                .endpoint("10.180.0.4", "test-node", READY)
                .endpoint("10.180.0.5", "host2", READY)
                .build(),
        ],
    );
    let t = run(
        &state,
        &test_node(),
        tcp(POD, "172.30.0.44", 80),
        Origin::Forwarded,
    );
    expect(&t, &["10.180.0.4:80", "10.180.0.5:80"], Some(false));
    for candidate in t.verdict.candidates() {
        assert!(
            (candidate.share - 0.5).abs() < 1e-6,
            "each endpoint gets half: {candidate:?}"
        );
    }
}

#[test]
fn s03_hairpin_is_masqueraded() {
    let t = run(
        &one_endpoint(),
        &test_node(),
        tcp("10.180.0.1", "172.30.0.41", 80),
        Origin::Forwarded,
    );
    expect(&t, &["10.180.0.1:80"], Some(true));
}

#[test]
fn s04_named_port_maps_to_target_port() {
    let state = cluster(
        vec![
            service("ns1", "svc1", "172.30.0.41")
                .port("https", "tcp", 443)
                .build(),
        ],
        vec![
            slice("ns1", "svc1", "s1")
                .port("https", "tcp", 8443)
                .endpoint("10.180.0.1", "test-node", READY)
                .endpoint("10.180.2.1", "host2", READY)
                .build(),
        ],
    );
    let t = run(
        &state,
        &test_node(),
        tcp(POD, "172.30.0.41", 443),
        Origin::Forwarded,
    );
    expect(&t, &["10.180.0.1:8443", "10.180.2.1:8443"], Some(false));
}

#[test]
fn s05_same_port_number_for_three_protocols() {
    let state = cluster(
        vec![
            service("ns1", "svc1", "172.30.0.41")
                .port("dns-tcp", "tcp", 53)
                .port("dns-udp", "udp", 53)
                .port("dns-sctp", "sctp", 53)
                .build(),
        ],
        vec![
            slice("ns1", "svc1", "s1")
                .port("dns-tcp", "tcp", 5353)
                .port("dns-udp", "udp", 53)
                .port("dns-sctp", "sctp", 53)
                .endpoint("10.180.0.1", "test-node", READY)
                .build(),
        ],
    );
    let ctx = test_node();
    let t = run(&state, &ctx, tcp(POD, "172.30.0.41", 53), Origin::Forwarded);
    expect(&t, &["10.180.0.1:5353"], Some(false));
    for protocol in [Protocol::Udp, Protocol::Sctp] {
        let packet = Packet::new(ip(POD), ip("172.30.0.41"), protocol.clone(), 53);
        let t = run(&state, &ctx, packet, Origin::Forwarded);
        expect(&t, &["10.180.0.1:53"], Some(false));
    }
}

#[test]
fn s06_wrong_protocol_or_port_matches_nothing() {
    let ctx = test_node();
    let udp = Packet::new(ip(POD), ip("172.30.0.41"), Protocol::Udp, 80);
    expect(
        &run(&one_endpoint(), &ctx, udp, Origin::Forwarded),
        &[],
        None,
    );
    expect(
        &run(
            &one_endpoint(),
            &ctx,
            tcp(POD, "172.30.0.41", 81),
            Origin::Forwarded,
        ),
        &[],
        None,
    );
}

#[test]
fn s07_no_endpoints_rejects_every_destination() {
    let state = cluster(
        vec![
            service("ns1", "svc1", "172.30.0.41")
                .port("p80", "tcp", 80)
                .node_port(3001)
                .load_balancer(&["1.2.3.4"])
                .external_ip("192.168.99.11")
                .build(),
        ],
        vec![],
    );
    let ctx = test_node();
    for (source, destination, port, origin) in [
        (POD, "172.30.0.41", 80, Origin::Forwarded),
        (EXTERNAL, "192.168.99.11", 80, Origin::Arriving),
        (EXTERNAL, NODE, 3001, Origin::Arriving),
        (EXTERNAL, "1.2.3.4", 80, Origin::Arriving),
    ] {
        let t = run(&state, &ctx, tcp(source, destination, port), origin);
        expect(&t, &["REJECT"], None);
    }
}

fn firewalled_lb() -> ClusterState {
    cluster(
        vec![
            service("ns5", "svc5", "172.30.0.45")
                .port("p80", "tcp", 80)
                .node_port(3001)
                .load_balancer(&["1.2.3.4", "5.6.7.8"])
                .source_range("192.168.0.0/24")
                .source_range("203.0.113.0/25")
                .build(),
        ],
        vec![
            slice("ns5", "svc5", "s5")
                .port("p80", "tcp", 80)
                .endpoint("10.180.0.3", "test-node", READY)
                .build(),
        ],
    )
}

#[test]
fn s08_allowed_source_reaches_the_load_balancer() {
    let t = run(
        &firewalled_lb(),
        &test_node(),
        tcp(EXTERNAL, "1.2.3.4", 80),
        Origin::Arriving,
    );
    expect(&t, &["10.180.0.3:80"], Some(true));
}

#[test]
fn s09_blocked_source_or_pod_is_dropped_at_the_load_balancer() {
    let ctx = test_node();
    for source in [BLOCKED, POD] {
        for lb in ["1.2.3.4", "5.6.7.8"] {
            let t = run(
                &firewalled_lb(),
                &ctx,
                tcp(source, lb, 80),
                Origin::Arriving,
            );
            expect(&t, &["DROP"], None);
        }
    }
}

#[test]
fn s10_node_port_ignores_source_ranges() {
    let t = run(
        &firewalled_lb(),
        &test_node(),
        tcp(BLOCKED, NODE, 3001),
        Origin::Arriving,
    );
    expect(&t, &["10.180.0.3:80"], Some(true));
}

#[test]
fn s11_node_and_lb_ip_sources_are_allowed_when_a_range_holds_the_node() {
    let ctx = test_node();
    let t = run(
        &firewalled_lb(),
        &ctx,
        tcp(NODE, "1.2.3.4", 80),
        Origin::Node,
    );
    expect(&t, &["10.180.0.3:80"], Some(true));
    let t = run(
        &firewalled_lb(),
        &ctx,
        tcp("1.2.3.4", "1.2.3.4", 80),
        Origin::Arriving,
    );
    expect(&t, &["10.180.0.3:80"], Some(true));
}

fn node_port_two_endpoints() -> ClusterState {
    cluster(
        vec![
            service("ns1", "svc1", "172.30.0.41")
                .port("p80", "tcp", 80)
                .node_port(3001)
                .build(),
        ],
        vec![
            slice("ns1", "svc1", "s1")
                .port("p80", "tcp", 80)
                .endpoint("10.180.0.1", "test-node", READY)
                .endpoint("10.180.2.1", "host2", READY)
                .build(),
        ],
    )
}

#[test]
fn s12_localhost_node_port() {
    let t = run(
        &node_port_two_endpoints(),
        &test_node(),
        tcp("127.0.0.1", "127.0.0.1", 3001),
        Origin::Node,
    );
    expect(&t, &["10.180.0.1:80", "10.180.2.1:80"], Some(true));
}

#[test]
fn s13_localhost_node_port_disabled() {
    let mut ctx = test_node();
    ctx.localhost_nodeports = false;
    let t = run(
        &node_port_two_endpoints(),
        &ctx,
        tcp("127.0.0.1", "127.0.0.1", 3001),
        Origin::Node,
    );
    expect(&t, &[], None);
}

#[test]
fn s14_node_port_addresses_limit_where_node_ports_answer() {
    let mut ctx = test_node();
    ctx.nodeport_addresses = vec!["192.168.0.0/24".parse().expect("cidr")];
    let t = run(
        &node_port_two_endpoints(),
        &ctx,
        tcp(EXTERNAL, ALT_NODE, 3001),
        Origin::Arriving,
    );
    expect(&t, &[], None);
    let t = run(
        &node_port_two_endpoints(),
        &ctx,
        tcp(EXTERNAL, NODE, 3001),
        Origin::Arriving,
    );
    expect(&t, &["10.180.0.1:80", "10.180.2.1:80"], Some(true));
}

fn local_lb() -> ClusterState {
    cluster(
        vec![
            service("ns1", "svc1", "172.30.0.41")
                .port("p80", "tcp", 80)
                .node_port(3001)
                .load_balancer(&["1.2.3.4"])
                .etp_local()
                .build(),
        ],
        vec![
            slice("ns1", "svc1", "s1")
                .port("p80", "tcp", 80)
                .endpoint("10.180.0.2", "test-node", READY)
                .endpoint("10.180.1.2", "host2", READY)
                .build(),
        ],
    )
}

#[test]
fn s15_pods_short_circuit_external_traffic_policy_local() {
    let ctx = test_node();
    for (destination, port) in [(NODE, 3001), ("1.2.3.4", 80)] {
        let t = run(
            &local_lb(),
            &ctx,
            tcp(POD, destination, port),
            Origin::Forwarded,
        );
        expect(&t, &["10.180.0.2:80", "10.180.1.2:80"], Some(false));
    }
}

#[test]
fn s16_external_clients_get_only_local_endpoints() {
    let ctx = test_node();
    for (destination, port) in [(NODE, 3001), ("1.2.3.4", 80)] {
        let t = run(
            &local_lb(),
            &ctx,
            tcp(EXTERNAL, destination, port),
            Origin::Arriving,
        );
        expect(&t, &["10.180.0.2:80"], Some(false));
    }
}

#[test]
fn s17_node_originated_traffic_reaches_every_endpoint_masqueraded() {
    let ctx = test_node();
    for (destination, port) in [(NODE, 3001), ("1.2.3.4", 80)] {
        let t = run(
            &local_lb(),
            &ctx,
            tcp(NODE, destination, port),
            Origin::Node,
        );
        expect(&t, &["10.180.0.2:80", "10.180.1.2:80"], Some(true));
    }
}

fn local_external_ip_remote_only() -> ClusterState {
    cluster(
        vec![
            service("ns1", "svc1", "172.30.0.41")
                .port("p80", "tcp", 80)
                .load_balancer(&[])
                .external_ip("192.168.99.11")
                .etp_local()
                .health_check_node_port(30000)
                .build(),
        ],
        vec![
            slice("ns1", "svc1", "s1")
                .port("p80", "tcp", 80)
                .endpoint("10.180.1.2", "host2", READY)
                .build(),
        ],
    )
}

#[test]
fn s18_no_local_endpoint_drops_external_traffic() {
    let t = run(
        &local_external_ip_remote_only(),
        &test_node(),
        tcp(EXTERNAL, "192.168.99.11", 80),
        Origin::Arriving,
    );
    expect(&t, &["DROP"], None);
}

#[test]
fn s19_node_traffic_to_external_ip_still_reaches_the_cluster_endpoint() {
    let t = run(
        &local_external_ip_remote_only(),
        &test_node(),
        tcp(NODE, "192.168.99.11", 80),
        Origin::Node,
    );
    expect(&t, &["10.180.1.2:80"], Some(true));
}

#[test]
fn s20_health_check_node_port_is_accepted() {
    let t = run(
        &local_external_ip_remote_only(),
        &test_node(),
        tcp(NODE, NODE, 30000),
        Origin::Node,
    );
    expect(&t, &["ACCEPT"], None);
}

fn internal_local() -> ClusterState {
    cluster(
        vec![
            service("ns1", "svc1", "172.30.0.41")
                .port("p80", "tcp", 80)
                .node_port(3001)
                .load_balancer(&["1.2.3.4"])
                .itp_local()
                .build(),
        ],
        vec![
            slice("ns1", "svc1", "s1")
                .port("p80", "tcp", 80)
                .endpoint("10.180.0.3", "test-node", READY)
                .endpoint("10.180.1.3", "host2", READY)
                .build(),
        ],
    )
}

#[test]
fn s21_internal_traffic_policy_local_from_a_pod() {
    let t = run(
        &internal_local(),
        &test_node(),
        tcp(POD, "172.30.0.41", 80),
        Origin::Forwarded,
    );
    expect(&t, &["10.180.0.3:80"], Some(false));
}

#[test]
fn s22_internal_traffic_policy_local_from_outside() {
    let t = run(
        &internal_local(),
        &test_node(),
        tcp(EXTERNAL, "172.30.0.41", 80),
        Origin::Arriving,
    );
    expect(&t, &["10.180.0.3:80"], Some(true));
}

#[test]
fn s23_internal_traffic_policy_does_not_apply_to_external_destinations() {
    let ctx = test_node();
    for (destination, port) in [(NODE, 3001), ("1.2.3.4", 80)] {
        let t = run(
            &internal_local(),
            &ctx,
            tcp(POD, destination, port),
            Origin::Forwarded,
        );
        expect(&t, &["10.180.0.3:80", "10.180.1.3:80"], Some(true));
    }
}

#[test]
fn s24_node_to_cluster_ip_is_masqueraded() {
    let t = run(
        &one_endpoint(),
        &test_node(),
        tcp(NODE, "172.30.0.41", 80),
        Origin::Node,
    );
    expect(&t, &["10.180.0.1:80"], Some(true));
}

#[test]
fn s25_masquerade_all_marks_pod_traffic() {
    let mut ctx = test_node();
    ctx.masquerade_all = true;
    let t = run(
        &one_endpoint(),
        &ctx,
        tcp(POD, "172.30.0.41", 80),
        Origin::Forwarded,
    );
    expect(&t, &["10.180.0.1:80"], Some(true));
}

fn without_detector() -> NodeContext {
    let mut ctx = test_node();
    ctx.local_detector = LocalDetector::None;
    ctx
}

#[test]
fn s26_without_a_local_detector_cluster_ips_are_not_masqueraded() {
    let ctx = without_detector();
    let t = run(
        &one_endpoint(),
        &ctx,
        tcp(NODE, "172.30.0.41", 80),
        Origin::Node,
    );
    expect(&t, &["10.180.0.1:80"], Some(false));
    let t = run(
        &one_endpoint(),
        &ctx,
        tcp(EXTERNAL, "172.30.0.41", 80),
        Origin::Arriving,
    );
    expect(&t, &["10.180.0.1:80"], Some(false));
}

#[test]
fn s27_without_a_local_detector_pods_get_no_short_circuit() {
    let ctx = without_detector();
    for (destination, port) in [(NODE, 3001), ("1.2.3.4", 80)] {
        let t = run(
            &local_lb(),
            &ctx,
            tcp(POD, destination, port),
            Origin::Forwarded,
        );
        expect(&t, &["10.180.0.2:80"], None);
    }
}

fn terminating(endpoints: &[(&str, &str, (bool, bool, bool))]) -> ClusterState {
    let mut slice = slice("ns1", "svc1", "s1").port("p80", "tcp", 80);
    for (address, node, conditions) in endpoints {
        slice = slice.endpoint(address, node, *conditions);
    }
    cluster(
        vec![
            service("ns1", "svc1", "172.30.0.41")
                .port("p80", "tcp", 80)
                .load_balancer(&["1.2.3.4"])
                .build(),
        ],
        vec![slice.build()],
    )
}

#[test]
fn s28_ready_endpoints_win_over_terminating_ones() {
    let state = terminating(&[
        ("10.0.1.1", "test-node", READY),
        ("10.0.1.2", "test-node", READY),
        ("10.0.1.3", "test-node", TERMINATING_SERVING),
        ("10.0.1.4", "test-node", TERMINATING),
        ("10.0.1.5", "host2", READY),
    ]);
    let ctx = test_node();
    let want = ["10.0.1.1:80", "10.0.1.2:80", "10.0.1.5:80"];
    expect(
        &run(&state, &ctx, tcp(POD, "172.30.0.41", 80), Origin::Forwarded),
        &want,
        Some(false),
    );
    expect(
        &run(&state, &ctx, tcp(EXTERNAL, "1.2.3.4", 80), Origin::Arriving),
        &want,
        Some(true),
    );
}

#[test]
fn s29_only_serving_terminating_endpoints_are_used_as_a_fallback() {
    let state = terminating(&[
        ("10.0.1.2", "test-node", TERMINATING_SERVING),
        ("10.0.1.3", "test-node", TERMINATING_SERVING),
        ("10.0.1.4", "test-node", TERMINATING),
        ("10.0.1.5", "host2", TERMINATING_SERVING),
    ]);
    let ctx = test_node();
    let want = ["10.0.1.2:80", "10.0.1.3:80", "10.0.1.5:80"];
    expect(
        &run(&state, &ctx, tcp(POD, "172.30.0.41", 80), Origin::Forwarded),
        &want,
        Some(false),
    );
    expect(
        &run(&state, &ctx, tcp(EXTERNAL, "1.2.3.4", 80), Origin::Arriving),
        &want,
        Some(true),
    );
}

#[test]
fn s30_no_serving_endpoint_rejects() {
    let state = terminating(&[
        ("10.0.1.1", "test-node", TERMINATING),
        ("10.0.1.2", "host2", NOT_READY),
    ]);
    let ctx = test_node();
    expect(
        &run(&state, &ctx, tcp(POD, "172.30.0.41", 80), Origin::Forwarded),
        &["REJECT"],
        None,
    );
    expect(
        &run(&state, &ctx, tcp(EXTERNAL, "1.2.3.4", 80), Origin::Arriving),
        &["REJECT"],
        None,
    );
    let empty = cluster(
        vec![
            service("ns1", "svc1", "172.30.0.41")
                .port("p80", "tcp", 80)
                .build(),
        ],
        vec![],
    );
    expect(
        &run(&empty, &ctx, tcp(POD, "172.30.0.41", 80), Origin::Forwarded),
        &["REJECT"],
        None,
    );
}

#[test]
fn ipv6_cluster_ip_and_localhost_node_port() {
    let state = cluster(
        vec![
            service("ns1", "svc1", "fd00:30::41")
                .port("p80", "tcp", 80)
                .node_port(3001)
                .build(),
        ],
        vec![
            slice("ns1", "svc1", "s1")
                .ipv6()
                .port("p80", "tcp", 80)
                .endpoint("fd00:180::1", "test-node", READY)
                .build(),
        ],
    );
    let mut ctx = test_node();
    ctx.local_detector = LocalDetector::ClusterCidr(vec!["fd00::/48".parse().expect("cidr")]);
    let t = run(
        &state,
        &ctx,
        tcp("fd00::2", "fd00:30::41", 80),
        Origin::Forwarded,
    );
    expect(&t, &["[fd00:180::1]:80"], Some(false));
    let t = run(&state, &ctx, tcp("::1", "::1", 3001), Origin::Node);
    expect(&t, &[], None);
    let t = run(
        &state,
        &ctx,
        tcp("2001:db8:ffff::2", "2001:db8::1", 3001),
        Origin::Arriving,
    );
    expect(&t, &["[fd00:180::1]:80"], Some(true));
}
