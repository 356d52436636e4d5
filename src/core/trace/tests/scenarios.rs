//! The acceptance scenarios of spec §6.3, decided on [`cluster`]'s ruleset.

use crate::core::rules::{Protocol, Table};
use crate::core::trace::{Action, Evaluation, Origin, Packet, Stage, Verdict};

use super::cluster::{BLOCKED, EXTERNAL, NODE, POD, cluster};
use super::{assert_share, ip, tcp, total_share, trace_packet};

/// (origin, source, destination, port, expected outcome, expected masquerade)
type Case = (Origin, &'static str, &'static str, u16, &'static str, bool);

fn check(cases: &[Case]) {
    let dump = cluster();
    for &(origin, source, destination, port, outcome, masquerade) in cases {
        let trace = tcp(&dump, origin, source, destination, port);
        assert_eq!(
            (trace.outcome_string().as_str(), trace.masquerade),
            (outcome, masquerade),
            "{origin:?} {source} -> {destination}:{port}; matched steps: {:#?}",
            trace.matched_steps().collect::<Vec<_>>()
        );
        assert!(
            trace.is_decidable(),
            "{source} -> {destination}:{port} should be decidable"
        );
    }
}

#[test]
fn cluster_ip_single_endpoint() {
    // §6.3 #1, and #24: a node-originated packet is not from the pod CIDR, so it is masqueraded.
    check(&[
        (
            Origin::Forwarded,
            POD,
            "172.30.0.41",
            80,
            "10.180.0.1:80",
            false,
        ),
        (Origin::Node, NODE, "172.30.0.41", 80, "10.180.0.1:80", true),
        (
            Origin::Arriving,
            EXTERNAL,
            "172.30.0.41",
            80,
            "10.180.0.1:80",
            true,
        ),
    ]);
    let trace = tcp(&cluster(), Origin::Forwarded, POD, "172.30.0.41", 80);
    assert_eq!(trace.verdict.candidates().len(), 1);
    let candidate = &trace.verdict.candidates()[0];
    assert_eq!(candidate.endpoint_chain, "KUBE-SEP-1A");
    assert_share(candidate.share, 1.0);
}

#[test]
fn cluster_ip_ladder_of_two_collects_both_endpoints() {
    // §6.3 #2
    check(&[(
        Origin::Forwarded,
        POD,
        "172.30.0.44",
        80,
        "10.180.0.4:80, 10.180.0.5:80",
        false,
    )]);
    let trace = tcp(&cluster(), Origin::Forwarded, POD, "172.30.0.44", 80);
    for candidate in trace.verdict.candidates() {
        assert_share(candidate.share, 0.5);
    }
}

#[test]
fn cluster_ip_ladder_of_three_gives_each_endpoint_a_third() {
    let trace = tcp(&cluster(), Origin::Forwarded, POD, "172.30.0.49", 80);
    assert_eq!(
        trace.outcome_string(),
        "10.180.0.91:8080, 10.180.0.92:8080, 10.180.0.93:8080"
    );
    let shares: Vec<f64> = trace.verdict.candidates().iter().map(|c| c.share).collect();
    for share in &shares {
        assert_share(*share, 1.0 / 3.0);
    }
    assert_share(total_share(&trace), 1.0);
    // The rungs report the kernel's probabilities.
    let probabilities: Vec<Option<f64>> = trace
        .steps
        .iter()
        .filter(|s| s.chain == "KUBE-SVC-9")
        .filter_map(|s| match &s.action {
            Action::Jump { probability, .. } => Some(*probability),
            _ => None,
        })
        .collect();
    assert_eq!(probabilities.len(), 3);
    assert!((probabilities[0].unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(probabilities[1], Some(0.5));
    assert_eq!(probabilities[2], None);
}

#[test]
fn hairpin_traffic_is_masqueraded_on_its_own_path_only() {
    // §6.3 #3
    check(&[(
        Origin::Forwarded,
        "10.180.0.1",
        "172.30.0.41",
        80,
        "10.180.0.1:80",
        true,
    )]);
    // With two endpoints, only the path back to the sender is marked.
    let trace = tcp(
        &cluster(),
        Origin::Forwarded,
        "10.180.0.4",
        "172.30.0.44",
        80,
    );
    let marks: Vec<(&str, bool)> = trace
        .verdict
        .candidates()
        .iter()
        .map(|c| (c.destination.as_str(), c.masquerade))
        .collect();
    assert_eq!(marks, [("10.180.0.4:80", true), ("10.180.0.5:80", false)]);
    assert!(trace.masquerade);
}

#[test]
fn protocol_selects_the_service_port() {
    // §6.3 #5
    let dump = cluster();
    let dns = |protocol: Protocol| {
        let packet = Packet::new(ip(POD), ip("172.30.0.50"), protocol, 53);
        trace_packet(&dump, Origin::Forwarded, &packet).outcome_string()
    };
    assert_eq!(dns(Protocol::Tcp), "10.180.0.10:5353");
    assert_eq!(dns(Protocol::Udp), "10.180.0.10:53");
    assert_eq!(dns(Protocol::Sctp), "");
}

#[test]
fn port_and_protocol_mismatches_match_nothing() {
    // §6.3 #6
    let dump = cluster();
    let udp = Packet::new(ip(POD), ip("172.30.0.41"), Protocol::Udp, 80);
    let trace = trace_packet(&dump, Origin::Forwarded, &udp);
    assert_eq!(trace.verdict, Verdict::NoMatch);
    assert_eq!(trace.outcome_string(), "");
    let why = trace
        .steps
        .iter()
        .find(|s| s.chain == "KUBE-SERVICES" && s.table == Table::Nat && s.rule_index == Some(0))
        .unwrap();
    assert_eq!(why.evaluation.to_string(), "protocol udp is not tcp");

    let trace = tcp(&dump, Origin::Forwarded, POD, "172.30.0.41", 81);
    assert_eq!(trace.verdict, Verdict::NoMatch);
    let why = trace
        .steps
        .iter()
        .find(|s| s.chain == "KUBE-SERVICES" && s.table == Table::Nat && s.rule_index == Some(0))
        .unwrap();
    assert_eq!(why.evaluation.to_string(), "destination port 81 is not 80");
}

#[test]
fn services_without_endpoints_reject() {
    // §6.3 #7: cluster IP (filter KUBE-SERVICES), external IP, LB IP and NodePort (KUBE-EXTERNAL-SERVICES).
    check(&[
        (Origin::Forwarded, POD, "172.30.0.46", 80, "REJECT", false),
        (
            Origin::Arriving,
            EXTERNAL,
            "192.168.99.66",
            80,
            "REJECT",
            false,
        ),
        (Origin::Arriving, EXTERNAL, "1.2.3.6", 80, "REJECT", false),
        (Origin::Arriving, EXTERNAL, NODE, 3006, "REJECT", false),
    ]);
    let trace = tcp(&cluster(), Origin::Forwarded, POD, "172.30.0.46", 80);
    let last = trace.steps.last().unwrap();
    assert_eq!(
        (last.table, last.chain.as_str(), &last.action),
        (Table::Filter, "KUBE-SERVICES", &Action::Reject)
    );
    assert_eq!(
        last.stage,
        Stage::Filter {
            destination: "172.30.0.46:80".to_string()
        }
    );
}

#[test]
fn load_balancer_source_ranges() {
    // §6.3 #8–#11
    check(&[
        (
            Origin::Arriving,
            EXTERNAL,
            "5.6.7.8",
            80,
            "10.180.0.3:80",
            true,
        ),
        (Origin::Arriving, BLOCKED, "5.6.7.8", 80, "DROP", false),
        (Origin::Forwarded, POD, "5.6.7.8", 80, "DROP", false),
        (Origin::Arriving, BLOCKED, NODE, 3002, "10.180.0.3:80", true),
        (Origin::Node, NODE, "5.6.7.8", 80, "10.180.0.3:80", true),
        (
            Origin::Arriving,
            "5.6.7.8",
            "5.6.7.8",
            80,
            "10.180.0.3:80",
            true,
        ),
    ]);
}

#[test]
fn blocked_client_falls_off_the_firewall_chain_into_the_filter_drop() {
    let trace = tcp(&cluster(), Origin::Arriving, BLOCKED, "5.6.7.8", 80);
    let fw: Vec<(&Evaluation, &Action)> = trace
        .steps
        .iter()
        .filter(|s| s.chain == "KUBE-FW-5")
        .map(|s| (&s.evaluation, &s.action))
        .collect();
    assert_eq!(fw.len(), 4);
    assert!(
        fw[..3]
            .iter()
            .all(|(e, a)| !e.is_match() && **a == Action::Next)
    );
    assert_eq!(fw[3], (&Evaluation::Matched, &Action::Passed));
    assert_eq!(
        fw[1].0.to_string(),
        "source 203.0.113.130 not in 203.0.113.0/25",
        "the step says why the range did not admit the client"
    );
    let drop = trace.steps.last().unwrap();
    assert_eq!(
        (drop.chain.as_str(), &drop.action),
        ("KUBE-PROXY-FIREWALL", &Action::Drop)
    );
    assert_eq!(trace.verdict, Verdict::Drop);
}

#[test]
fn node_ports_through_the_dst_type_local_tail_rule() {
    // §6.3 #10, #12, #14
    check(&[
        (
            Origin::Arriving,
            EXTERNAL,
            NODE,
            3003,
            "10.180.0.3:80",
            true,
        ),
        (
            Origin::Arriving,
            EXTERNAL,
            "192.168.1.2",
            3003,
            "10.180.0.3:80",
            true,
        ),
        (
            Origin::Node,
            "127.0.0.1",
            "127.0.0.1",
            3003,
            "10.180.0.3:80",
            true,
        ),
        (Origin::Arriving, EXTERNAL, "192.168.7.7", 3003, "", false),
    ]);
    // localhost takes the nfacct-counted localhost rule, which then ends KUBE-NODEPORTS.
    let trace = tcp(&cluster(), Origin::Node, "127.0.0.1", "127.0.0.1", 3003);
    let nodeports: Vec<(Option<usize>, bool)> = trace
        .steps
        .iter()
        .filter(|s| s.chain == "KUBE-NODEPORTS" && s.table == Table::Nat)
        .map(|s| (s.rule_index, s.evaluation.is_match()))
        .collect();
    assert_eq!(nodeports, [(Some(0), false), (Some(1), true)]);
    // A non-local destination fails the tail rule with a reason.
    let trace = tcp(&cluster(), Origin::Arriving, EXTERNAL, "192.168.7.7", 3003);
    let tail = trace
        .steps
        .iter()
        .rfind(|s| s.table == Table::Nat && s.chain == "KUBE-SERVICES")
        .unwrap();
    assert_eq!(
        tail.evaluation.to_string(),
        "destination 192.168.7.7 is not LOCAL"
    );
}

#[test]
fn external_traffic_policy_local() {
    // §6.3 #15–#17: pods short-circuit to every endpoint; outside clients get the local one, unmasqueraded;
    // the node gets every endpoint, masqueraded.
    let both = "10.180.0.2:80, 10.180.1.2:80";
    check(&[
        (Origin::Forwarded, POD, NODE, 3001, both, false),
        (Origin::Forwarded, POD, "1.2.3.4", 80, both, false),
        (
            Origin::Arriving,
            EXTERNAL,
            NODE,
            3001,
            "10.180.0.2:80",
            false,
        ),
        (
            Origin::Arriving,
            EXTERNAL,
            "1.2.3.4",
            80,
            "10.180.0.2:80",
            false,
        ),
        (
            Origin::Arriving,
            EXTERNAL,
            "192.168.99.22",
            80,
            "10.180.0.2:80",
            false,
        ),
        (Origin::Node, NODE, "1.2.3.4", 80, both, true),
        (Origin::Node, NODE, NODE, 3001, both, true),
    ]);
    // The pod short-circuit is the first KUBE-EXT rule; outside traffic reaches KUBE-SVL.
    let trace = tcp(&cluster(), Origin::Arriving, EXTERNAL, "1.2.3.4", 80);
    let ext: Vec<bool> = trace
        .steps
        .iter()
        .filter(|s| s.chain == "KUBE-EXT-2")
        .map(|s| s.evaluation.is_match())
        .collect();
    assert_eq!(ext, [false, false, false, true]);
    assert_eq!(trace.verdict.candidates()[0].endpoint_chain, "KUBE-SEP-2A");
}

#[test]
fn external_traffic_policy_local_without_local_endpoints() {
    // §6.3 #18–#20
    check(&[
        (
            Origin::Arriving,
            EXTERNAL,
            "192.168.99.77",
            80,
            "DROP",
            false,
        ),
        (
            Origin::Node,
            NODE,
            "192.168.99.77",
            80,
            "10.180.2.7:80",
            true,
        ),
        (Origin::Node, NODE, NODE, 30007, "ACCEPT", false),
        (Origin::Arriving, EXTERNAL, NODE, 30000, "ACCEPT", false),
    ]);
}

#[test]
fn internal_traffic_policy_local() {
    // §6.3 #21–#23
    check(&[
        (
            Origin::Forwarded,
            POD,
            "172.30.0.48",
            80,
            "10.180.0.8:80",
            false,
        ),
        (
            Origin::Arriving,
            EXTERNAL,
            "172.30.0.48",
            80,
            "10.180.0.8:80",
            true,
        ),
        (
            Origin::Forwarded,
            POD,
            NODE,
            3008,
            "10.180.0.8:80, 10.180.1.8:80",
            true,
        ),
    ]);
}

#[test]
fn node_originated_packets_enter_nat_output() {
    let trace = tcp(&cluster(), Origin::Node, NODE, "172.30.0.41", 80);
    assert_eq!(trace.steps[0].chain, "OUTPUT");
    assert_eq!(trace.steps[0].table, Table::Nat);
    let trace = tcp(&cluster(), Origin::Forwarded, POD, "172.30.0.41", 80);
    assert_eq!(trace.steps[0].chain, "PREROUTING");
}
