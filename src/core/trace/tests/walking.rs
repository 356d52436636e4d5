//! Walking: jumps, returns, marks, loops, missing chains, limits, and the filter pass per candidate.

use crate::core::rules::{IpFamily, Protocol, Table};
use crate::core::trace::{Action, Evaluation, Origin, Packet, Stage, Tracer, Verdict};

use super::cluster::{POD, cluster};
use super::{DumpBuilder, assert_share, ip, local_addresses, r, tcp, total_share, trace_packet};

/// PREROUTING → KUBE-SERVICES → `chain` for 172.30.0.41:80.
fn entry(b: &mut DumpBuilder, chain: &str) {
    b.nat("PREROUTING", [r().j("KUBE-SERVICES")]);
    b.nat("KUBE-SERVICES", [r().d("172.30.0.41").tcp(80).j(chain)]);
}

#[test]
fn steps_point_at_the_dump_lines() {
    let dump = cluster();
    let trace = tcp(&dump, Origin::Forwarded, POD, "172.30.0.41", 80);
    let dnat = trace
        .steps
        .iter()
        .find(|s| matches!(s.action, Action::Dnat { .. }))
        .unwrap();
    let rule = &dump.chain(Table::Nat, "KUBE-SEP-1A").unwrap().rules[1];
    assert_eq!(
        (dnat.chain.as_str(), dnat.rule_index, dnat.line),
        ("KUBE-SEP-1A", Some(1), Some(rule.line))
    );
    assert_eq!(
        dnat.action,
        Action::Dnat {
            to: "10.180.0.1:80".to_string()
        }
    );
    assert_eq!(
        dnat.depth, 3,
        "PREROUTING → KUBE-SERVICES → KUBE-SVC → KUBE-SEP"
    );
    // Every rule of every chain walked is there, matched or not, in order.
    let svc: Vec<(Option<usize>, bool)> = trace
        .steps
        .iter()
        .filter(|s| s.chain == "KUBE-SVC-1")
        .map(|s| (s.rule_index, s.evaluation.is_match()))
        .collect();
    assert_eq!(svc, [(Some(0), false), (Some(1), true)]);
}

#[test]
fn jump_loops_are_cut() {
    let mut b = DumpBuilder::new(IpFamily::V4);
    entry(&mut b, "LOOP-A");
    b.nat("LOOP-A", [r().j("LOOP-B"), r().j("LOOP-A")]);
    b.nat(
        "LOOP-B",
        [
            r().j("LOOP-A"),
            r().proto(Protocol::Tcp).dnat("10.180.0.1:80"),
        ],
    );
    let trace = tcp(&b.build(), Origin::Forwarded, POD, "172.30.0.41", 80);
    let loops: Vec<&str> = trace
        .steps
        .iter()
        .filter(|s| s.action == Action::Loop)
        .map(|s| s.chain.as_str())
        .collect();
    assert_eq!(
        loops,
        ["LOOP-A"],
        "B → A is cut, and after B's DNAT A's self-jump is never reached"
    );
    assert_eq!(trace.outcome_string(), "10.180.0.1:80");
    assert!(!trace.is_decidable());
}

#[test]
fn self_jump_without_exit_ends_with_no_match() {
    let mut b = DumpBuilder::new(IpFamily::V4);
    entry(&mut b, "SELF");
    b.nat("SELF", [r().j("SELF")]);
    let trace = tcp(&b.build(), Origin::Forwarded, POD, "172.30.0.41", 80);
    assert_eq!(trace.verdict, Verdict::NoMatch);
    assert_eq!(
        trace
            .steps
            .iter()
            .filter(|s| s.action == Action::Loop)
            .count(),
        1
    );
}

#[test]
fn missing_chains_are_recorded_and_skipped() {
    let mut b = DumpBuilder::new(IpFamily::V4);
    entry(&mut b, "KUBE-SVC-GONE");
    b.nat("KUBE-SERVICES", [r().d("172.30.0.41").j("KUBE-SVC-HERE")]);
    b.nat(
        "KUBE-SVC-HERE",
        [r().proto(Protocol::Tcp).dnat("10.180.0.9:80")],
    );
    let trace = tcp(&b.build(), Origin::Forwarded, POD, "172.30.0.41", 80);
    let missing = trace
        .steps
        .iter()
        .find(|s| s.action == Action::MissingChain)
        .unwrap();
    assert_eq!(
        (
            missing.chain.as_str(),
            missing.evaluation.clone(),
            missing.line
        ),
        ("KUBE-SVC-GONE", Evaluation::NotEvaluated, None)
    );
    // The jump came back empty-handed, so the walk went on to the next rule.
    assert_eq!(trace.outcome_string(), "10.180.0.9:80");
    assert!(!trace.is_decidable());
}

#[test]
fn absent_tables_and_entry_chains() {
    let empty = crate::core::rules::Dump {
        family: IpFamily::V4,
        backend: None,
        tables: Vec::new(),
    };
    let trace = tcp(&empty, Origin::Node, POD, "172.30.0.41", 80);
    assert_eq!(trace.verdict, Verdict::NoMatch);
    let absent: Vec<(Table, &str)> = trace
        .steps
        .iter()
        .filter(|s| s.action == Action::EntryChainAbsent)
        .map(|s| (s.table, s.chain.as_str()))
        .collect();
    assert_eq!(
        absent,
        [
            (Table::Nat, "OUTPUT"),
            (Table::Filter, "KUBE-SERVICES"),
            (Table::Filter, "KUBE-EXTERNAL-SERVICES"),
            (Table::Filter, "KUBE-NODEPORTS"),
            (Table::Filter, "KUBE-PROXY-FIREWALL"),
        ]
    );
    assert!(
        trace.is_decidable(),
        "a chain that is simply not there holds no rules"
    );
}

#[test]
fn return_goes_back_to_the_caller() {
    let mut b = DumpBuilder::new(IpFamily::V4);
    entry(&mut b, "CHECK");
    b.nat(
        "KUBE-SERVICES",
        [r().d("172.30.0.41")
            .proto(Protocol::Tcp)
            .dnat("10.180.0.2:80")],
    );
    b.nat(
        "CHECK",
        [
            r().s("10.0.0.0/8").ret(),
            r().proto(Protocol::Tcp).dnat("10.180.0.1:80"),
        ],
    );
    let dump = b.build();
    let from_pod = tcp(&dump, Origin::Forwarded, POD, "172.30.0.41", 80);
    assert_eq!(from_pod.outcome_string(), "10.180.0.2:80");
    assert!(from_pod.steps.iter().any(|s| s.action == Action::Return));
    let from_outside = tcp(&dump, Origin::Arriving, "203.0.113.2", "172.30.0.41", 80);
    assert_eq!(from_outside.outcome_string(), "10.180.0.1:80");
}

#[test]
fn mark_targets_follow_the_masquerade_bit_of_the_dump() {
    // A node whose kube-proxy uses bit 15: KUBE-MARK-MASQ sets 0x8000.
    let mut b = DumpBuilder::new(IpFamily::V4);
    entry(&mut b, "KUBE-SVC-X");
    b.nat("KUBE-MARK-MASQ", [r().mark(0x8000, 0x8000)]);
    b.nat(
        "KUBE-SVC-X",
        [
            r().s("203.0.113.0/24").mark(0x4000, 0x4000),
            r().s("198.51.100.0/24").mark(0x8000, 0x8000),
            r().proto(Protocol::Tcp).dnat("10.180.0.1:80"),
        ],
    );
    let dump = b.build();
    assert_eq!(Tracer::new(&dump).masquerade_mark(), 0x8000);
    assert!(!tcp(&dump, Origin::Arriving, "203.0.113.2", "172.30.0.41", 80).masquerade);
    let trace = tcp(&dump, Origin::Arriving, "198.51.100.2", "172.30.0.41", 80);
    assert!(trace.masquerade);
    assert!(
        trace
            .steps
            .iter()
            .any(|s| s.action == Action::Mark { masquerade: true })
    );
}

#[test]
fn xor_mark_clears_the_masquerade_bit() {
    let mut b = DumpBuilder::new(IpFamily::V4);
    entry(&mut b, "KUBE-SVC-X");
    b.nat(
        "KUBE-SVC-X",
        [
            r().j("KUBE-MARK-MASQ"),
            r().mark(0x4000, 0),
            r().proto(Protocol::Tcp).dnat("10.180.0.1:80"),
        ],
    );
    let trace = tcp(&b.build(), Origin::Forwarded, POD, "172.30.0.41", 80);
    assert!(!trace.masquerade);
    assert!(!trace.verdict.candidates()[0].masquerade);
}

#[test]
fn nesting_deeper_than_the_limit_is_cut() {
    let mut b = DumpBuilder::new(IpFamily::V4);
    entry(&mut b, "DEEP-0");
    for i in 0..200 {
        b.nat(&format!("DEEP-{i}"), [r().j(&format!("DEEP-{}", i + 1))]);
    }
    let trace = tcp(&b.build(), Origin::Forwarded, POD, "172.30.0.41", 80);
    assert_eq!(trace.verdict, Verdict::NoMatch);
    assert_eq!(
        trace
            .steps
            .iter()
            .filter(|s| s.action == Action::DepthLimit)
            .count(),
        1
    );
}

#[test]
fn exponential_jump_graphs_stop_at_the_rule_limit() {
    // Each level jumps twice into the next: 2^40 walks without a limit.
    let mut b = DumpBuilder::new(IpFamily::V4);
    entry(&mut b, "FAN-0");
    for i in 0..40 {
        let next = format!("FAN-{}", i + 1);
        b.nat(&format!("FAN-{i}"), [r().j(&next), r().j(&next)]);
    }
    let dump = b.build();
    let trace = Tracer::new(&dump).with_rule_limit(10_000).trace(
        &Packet::tcp(ip(POD), ip("172.30.0.41"), 80),
        Origin::Forwarded,
        &local_addresses(),
    );
    assert_eq!(
        trace
            .steps
            .iter()
            .filter(|s| s.action == Action::StepLimit)
            .count(),
        1
    );
    assert!(
        trace
            .steps
            .iter()
            .filter(|s| s.rule_index.is_some())
            .count()
            <= 10_000
    );
    assert!(!trace.is_decidable());
}

#[test]
fn a_ladder_without_a_final_rung_leaves_traffic_undnatted() {
    let mut b = DumpBuilder::new(IpFamily::V4);
    entry(&mut b, "KUBE-SVC-X");
    b.nat(
        "KUBE-SVC-X",
        [
            r().probability(0.25).j("KUBE-SEP-A"),
            r().probability(0.5).j("KUBE-SEP-B"),
        ],
    );
    b.nat(
        "KUBE-SEP-A",
        [r().proto(Protocol::Tcp).dnat("10.180.0.1:80")],
    );
    b.nat(
        "KUBE-SEP-B",
        [r().proto(Protocol::Tcp).dnat("10.180.0.2:80")],
    );
    let trace = tcp(&b.build(), Origin::Forwarded, POD, "172.30.0.41", 80);
    let shares: Vec<f64> = trace.verdict.candidates().iter().map(|c| c.share).collect();
    assert_share(shares[0], 0.25);
    assert_share(shares[1], 0.375);
    assert_share(total_share(&trace), 0.625);
}

#[test]
fn the_same_endpoint_reached_twice_is_one_candidate() {
    let mut b = DumpBuilder::new(IpFamily::V4);
    entry(&mut b, "KUBE-SVC-X");
    b.nat(
        "KUBE-SVC-X",
        [r().probability(0.5).j("KUBE-SEP-A"), r().j("KUBE-SEP-A")],
    );
    b.nat(
        "KUBE-SEP-A",
        [r().proto(Protocol::Tcp).dnat("10.180.0.1:80")],
    );
    let trace = tcp(&b.build(), Origin::Forwarded, POD, "172.30.0.41", 80);
    assert_eq!(trace.verdict.candidates().len(), 1);
    assert_share(trace.verdict.candidates()[0].share, 1.0);
}

#[test]
fn filter_runs_once_per_candidate_with_the_dnat_address_and_port() {
    // svc4 DNATs to 10.180.0.4:80 and 10.180.0.5:80; a filter rule drops the second endpoint.
    let mut dump = cluster();
    let mut extra = DumpBuilder::new(IpFamily::V4);
    extra.filter("KUBE-SERVICES", [r().d("10.180.0.5").tcp(80).drop()]);
    let drop_rule = extra
        .build()
        .chain(Table::Filter, "KUBE-SERVICES")
        .unwrap()
        .rules[0]
        .clone();
    let services = dump
        .tables
        .iter_mut()
        .find(|t| t.table == Table::Filter)
        .unwrap();
    let chain = services
        .chains
        .iter_mut()
        .find(|c| c.name == "KUBE-SERVICES")
        .unwrap();
    chain.rules.push(drop_rule.clone());

    let trace = tcp(&dump, Origin::Forwarded, POD, "172.30.0.44", 80);
    assert_eq!(trace.outcome_string(), "10.180.0.4:80");
    assert_share(trace.verdict.candidates()[0].share, 0.5);
    let passes: Vec<&Stage> = trace
        .steps
        .iter()
        .filter_map(|s| (s.table == Table::Filter).then_some(&s.stage))
        .collect();
    assert!(passes.contains(&&Stage::Filter {
        destination: "10.180.0.4:80".to_string()
    }));
    assert!(passes.contains(&&Stage::Filter {
        destination: "10.180.0.5:80".to_string()
    }));

    // The second pass records only what matched: the DROP.
    let second: Vec<&Action> = trace
        .steps
        .iter()
        .filter(|s| {
            s.stage
                == Stage::Filter {
                    destination: "10.180.0.5:80".to_string(),
                }
        })
        .map(|s| &s.action)
        .collect();
    assert_eq!(second, [&Action::Drop]);

    // When every candidate is dropped, the verdict is DROP.
    let mut drop_both = drop_rule.clone();
    drop_both.rule.destination = Some(crate::core::rules::Neg::is(super::net("10.180.0.0/24")));
    let services = dump
        .tables
        .iter_mut()
        .find(|t| t.table == Table::Filter)
        .unwrap();
    let chain = services
        .chains
        .iter_mut()
        .find(|c| c.name == "KUBE-SERVICES")
        .unwrap();
    chain.rules.push(drop_both);
    assert_eq!(
        tcp(&dump, Origin::Forwarded, POD, "172.30.0.44", 80).verdict,
        Verdict::Drop
    );
}

#[test]
fn filter_sees_the_translated_port() {
    // The ladder of three DNATs port 80 to 8080; filter rejects 10.180.0.92:8080 only.
    let mut dump = cluster();
    let mut extra = DumpBuilder::new(IpFamily::V4);
    extra.filter(
        "KUBE-SERVICES",
        [
            r().d("10.180.0.92").tcp(8080).reject(),
            r().d("10.180.0.93").tcp(80).reject(),
        ],
    );
    let rules = extra
        .build()
        .chain(Table::Filter, "KUBE-SERVICES")
        .unwrap()
        .rules
        .clone();
    let filter = dump
        .tables
        .iter_mut()
        .find(|t| t.table == Table::Filter)
        .unwrap();
    filter
        .chains
        .iter_mut()
        .find(|c| c.name == "KUBE-SERVICES")
        .unwrap()
        .rules
        .extend(rules);
    let trace = tcp(&dump, Origin::Forwarded, POD, "172.30.0.49", 80);
    assert_eq!(trace.outcome_string(), "10.180.0.91:8080, 10.180.0.93:8080");
}

#[test]
fn ipv6_services() {
    let mut b = DumpBuilder::new(IpFamily::V6);
    b.nat("PREROUTING", [r().j("KUBE-SERVICES")]);
    b.nat("OUTPUT", [r().j("KUBE-SERVICES")]);
    b.nat(
        "KUBE-SERVICES",
        [
            r().d("fd00:30::41").tcp(80).j("KUBE-SVC-6"),
            r().dst_local().not_d("::1/128").j("KUBE-NODEPORTS"),
        ],
    );
    b.nat(
        "KUBE-SVC-6",
        [
            r().not_s("fd00:10::/64")
                .d("fd00:30::41")
                .tcp(80)
                .j("KUBE-MARK-MASQ"),
            r().j("KUBE-SEP-6"),
        ],
    );
    b.nat(
        "KUBE-SEP-6",
        [
            r().s("fd00:10::5").j("KUBE-MARK-MASQ"),
            r().proto(Protocol::Tcp).dnat("[fd00:10::5]:8080"),
        ],
    );
    b.nat("KUBE-NODEPORTS", [r().tcp(30080).j("KUBE-EXT-6")]);
    b.nat("KUBE-EXT-6", [r().j("KUBE-MARK-MASQ"), r().j("KUBE-SVC-6")]);
    let dump = b.build();

    let from_pod = trace_packet(
        &dump,
        Origin::Forwarded,
        &Packet::tcp(ip("fd00:10::2"), ip("fd00:30::41"), 80),
    );
    assert_eq!(from_pod.outcome_string(), "[fd00:10::5]:8080");
    assert!(!from_pod.masquerade);
    assert!(from_pod.steps.iter().any(|s| s.stage
        == Stage::Filter {
            destination: "[fd00:10::5]:8080".to_string()
        }));

    // IPv6 localhost NodePorts never work.
    let localhost = trace_packet(
        &dump,
        Origin::Node,
        &Packet::tcp(ip("::1"), ip("::1"), 30080),
    );
    assert_eq!(localhost.verdict, Verdict::NoMatch);
    let node = trace_packet(
        &dump,
        Origin::Node,
        &Packet::tcp(ip("2001:db8::1"), ip("2001:db8::1"), 30080),
    );
    assert_eq!(node.outcome_string(), "[fd00:10::5]:8080");
    assert!(node.masquerade);
}

#[test]
fn unsimulated_and_ignorable_targets() {
    use crate::core::rules::Target;
    let mut b = DumpBuilder::new(IpFamily::V4);
    entry(&mut b, "KUBE-SVC-X");
    b.nat(
        "KUBE-SVC-X",
        [
            r().target(Target::Other {
                name: "LOG".into(),
                args: vec!["--log-prefix".into(), "svc".into()],
            }),
            r().proto(Protocol::Tcp).dnat("10.180.0.1:80"),
        ],
    );
    let trace = tcp(&b.build(), Origin::Forwarded, POD, "172.30.0.41", 80);
    assert!(trace.steps.iter().any(|s| s.action
        == Action::Ignored {
            target: "LOG".into()
        }));
    assert!(trace.is_decidable());
    assert_eq!(trace.outcome_string(), "10.180.0.1:80");

    let mut b = DumpBuilder::new(IpFamily::V4);
    entry(&mut b, "KUBE-SVC-X");
    b.nat(
        "KUBE-SVC-X",
        [
            r().target(Target::Other {
                name: "REDIRECT".into(),
                args: vec!["--to-ports".into(), "15001".into()],
            }),
            r().proto(Protocol::Tcp).dnat("10.180.0.1:80"),
        ],
    );
    let trace = tcp(&b.build(), Origin::Forwarded, POD, "172.30.0.41", 80);
    assert!(trace.steps.iter().any(|s| s.action
        == Action::Unsimulated {
            target: "REDIRECT".into()
        }));
    assert!(!trace.is_decidable());
}

#[test]
fn extension_targets_read_as_jumps_are_not_missing_chains() {
    let mut b = DumpBuilder::new(IpFamily::V4);
    entry(&mut b, "KUBE-SVC-X");
    b.nat(
        "KUBE-SVC-X",
        [
            r().j("LOG"),
            r().j("SNAT"),
            r().proto(Protocol::Tcp).dnat("10.180.0.1:80"),
        ],
    );
    let trace = tcp(&b.build(), Origin::Forwarded, POD, "172.30.0.41", 80);
    let events: Vec<&Action> = trace
        .steps
        .iter()
        .filter(|s| s.rule_index.is_none())
        .map(|s| &s.action)
        .collect();
    assert!(events.contains(&&Action::Ignored {
        target: "LOG".into()
    }));
    assert!(events.contains(&&Action::Unsimulated {
        target: "SNAT".into()
    }));
    assert!(!events.contains(&&Action::MissingChain));
    assert_eq!(trace.outcome_string(), "10.180.0.1:80");
}

#[test]
fn large_rulesets_reach_the_last_service() {
    use crate::core::rules::{Counters, Dump, DumpChain, DumpRule, DumpTable};
    // 40,000 services: 40,000 capture rules in KUBE-SERVICES and 80,000 rules in their own chains.
    const SERVICES: usize = 40_000;
    let chain = |name: String, rules: Vec<super::R>, line: &mut usize| {
        *line += 1;
        let decl = *line;
        let rules = rules
            .into_iter()
            .map(|rule| {
                *line += 1;
                DumpRule {
                    rule: rule.0,
                    counters: None,
                    line: *line,
                }
            })
            .collect();
        DumpChain {
            name,
            policy: None,
            counters: Counters::default(),
            rules,
            line: decl,
        }
    };
    let mut line = 0;
    let vip = |i: usize| format!("172.{}.{}.{}", 16 + i / 65536, (i / 256) % 256, i % 256);
    let mut chains = vec![chain(
        "PREROUTING".into(),
        vec![r().j("KUBE-SERVICES")],
        &mut line,
    )];
    chains.push(chain(
        "KUBE-SERVICES".into(),
        (0..SERVICES)
            .map(|i| r().d(&vip(i)).tcp(80).j(&format!("KUBE-SVC-{i}")))
            .collect(),
        &mut line,
    ));
    for i in 0..SERVICES {
        let endpoint = format!("10.{}.{}.{}:8080", 64 + i / 65536, (i / 256) % 256, i % 256);
        chains.push(chain(
            format!("KUBE-SVC-{i}"),
            vec![r().j(&format!("KUBE-SEP-{i}"))],
            &mut line,
        ));
        chains.push(chain(
            format!("KUBE-SEP-{i}"),
            vec![r().proto(Protocol::Tcp).dnat(&endpoint)],
            &mut line,
        ));
    }
    let dump = Dump {
        family: IpFamily::V4,
        backend: None,
        tables: vec![DumpTable {
            table: Table::Nat,
            chains,
        }],
    };
    assert!(dump.rule_count() > 100_000);

    let tracer = Tracer::new(&dump);
    let last = SERVICES - 1;
    let trace = tracer.trace(
        &Packet::tcp(ip(POD), ip(&vip(last)), 80),
        Origin::Forwarded,
        &local_addresses(),
    );
    assert_eq!(trace.outcome_string(), "10.64.156.63:8080");
    assert_eq!(
        trace.verdict.candidates()[0].endpoint_chain,
        format!("KUBE-SEP-{last}")
    );
    let nat_services = trace
        .steps
        .iter()
        .filter(|s| s.table == Table::Nat && s.chain == "KUBE-SERVICES");
    assert_eq!(nat_services.count(), SERVICES);
}
