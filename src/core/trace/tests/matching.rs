//! Matching single rules: unknown attributes, history, conntrack, addrtype, unknown modules.

use crate::core::rules::{IpFamily, Match, Neg, PortSpec, Protocol, RecentAction};
use crate::core::trace::matcher::{MatchContext, evaluate};
use crate::core::trace::{Action, Evaluation, Origin, Packet, Verdict};

use super::cluster::{EXTERNAL, POD};
use super::{DumpBuilder, ip, local_addresses, r, tcp, trace_packet};

fn eval(rule: super::R, packet: &Packet) -> Evaluation {
    let locals = local_addresses();
    evaluate(&rule.0, &MatchContext::new(packet, &locals))
}

fn pod_packet() -> Packet {
    Packet::tcp(ip(POD), ip("172.30.0.41"), 80)
}

#[test]
fn unknown_input_interface_matches_only_negated_tests() {
    let unknown = pod_packet();
    let from_bridge = pod_packet().with_in_interface("cni0");
    let from_veth = pod_packet().with_in_interface("veth1234");

    assert!(!eval(r().i("cni0"), &unknown).is_match());
    assert_eq!(
        eval(r().i("cni0"), &unknown).to_string(),
        "input interface unknown, taken as not cni0"
    );
    assert!(eval(r().not_i("cni0"), &unknown).is_match());

    assert!(eval(r().i("cni0"), &from_bridge).is_match());
    assert!(!eval(r().not_i("cni0"), &from_bridge).is_match());
    assert!(!eval(r().i("cni0"), &from_veth).is_match());

    // `+` is a prefix match.
    assert!(eval(r().i("veth+"), &from_veth).is_match());
    assert!(!eval(r().i("veth+"), &from_bridge).is_match());
}

#[test]
fn bridge_interface_detector_needs_the_input_interface() {
    // detect-local-mode BridgeInterface: `! -i cni0` masquerades, `-i cni0` short-circuits.
    let mut b = DumpBuilder::new(IpFamily::V4);
    b.nat("PREROUTING", [r().j("KUBE-SERVICES")]);
    b.nat("KUBE-SERVICES", [r().d("1.2.3.4").tcp(80).j("KUBE-EXT-X")]);
    b.nat(
        "KUBE-EXT-X",
        [
            r().i("cni0").j("KUBE-SVC-X"),
            r().src_local().j("KUBE-MARK-MASQ"),
            r().j("KUBE-SVL-X"),
        ],
    );
    b.nat(
        "KUBE-SVC-X",
        [r().probability(0.5).j("KUBE-SEP-A"), r().j("KUBE-SEP-B")],
    );
    b.nat("KUBE-SVL-X", [r().j("KUBE-SEP-A")]);
    b.nat(
        "KUBE-SEP-A",
        [r().proto(Protocol::Tcp).dnat("10.180.0.1:80")],
    );
    b.nat(
        "KUBE-SEP-B",
        [r().proto(Protocol::Tcp).dnat("10.180.1.1:80")],
    );
    let dump = b.build();

    let from_pod = Packet::tcp(ip(POD), ip("1.2.3.4"), 80).with_in_interface("cni0");
    let trace = trace_packet(&dump, Origin::Forwarded, &from_pod);
    assert_eq!(trace.outcome_string(), "10.180.0.1:80, 10.180.1.1:80");

    let unknown = Packet::tcp(ip(POD), ip("1.2.3.4"), 80);
    let trace = trace_packet(&dump, Origin::Forwarded, &unknown);
    assert_eq!(trace.outcome_string(), "10.180.0.1:80");
}

#[test]
fn source_ports_unknown_unless_given() {
    let sport = |negated: bool| {
        let spec = Neg {
            negated,
            value: PortSpec {
                first: 1000,
                last: 2000,
            },
        };
        r().m(Match::Proto {
            protocol: Protocol::Tcp,
            sport: Some(spec),
            dport: None,
        })
    };
    let unknown = pod_packet();
    assert!(!eval(sport(false), &unknown).is_match());
    assert!(eval(sport(true), &unknown).is_match());
    assert!(eval(sport(false), &pod_packet().with_source_port(1500)).is_match());
    assert!(!eval(sport(false), &pod_packet().with_source_port(2001)).is_match());
    assert!(!eval(sport(true), &pod_packet().with_source_port(1000)).is_match());
}

#[test]
fn port_ranges_and_negated_ports() {
    let dport = |negated: bool, first: u16, last: u16| {
        let spec = Neg {
            negated,
            value: PortSpec { first, last },
        };
        r().m(Match::Proto {
            protocol: Protocol::Tcp,
            sport: None,
            dport: Some(spec),
        })
    };
    let packet = pod_packet();
    assert!(eval(dport(false, 1, 80), &packet).is_match());
    assert!(!eval(dport(false, 81, 90), &packet).is_match());
    assert!(eval(dport(true, 81, 90), &packet).is_match());
    assert_eq!(
        eval(dport(true, 80, 80), &packet).to_string(),
        "destination port 80 excluded by ! --dport 80"
    );
}

#[test]
fn protocol_all_and_numbers() {
    let packet = pod_packet();
    let p = |protocol: Protocol, negated: bool| {
        let mut rule = r();
        rule.0.protocol = Some(Neg {
            negated,
            value: protocol,
        });
        rule
    };
    assert!(eval(p(Protocol::Other("all".into()), false), &packet).is_match());
    assert!(eval(p(Protocol::Other("6".into()), false), &packet).is_match());
    assert!(!eval(p(Protocol::Other("17".into()), false), &packet).is_match());
    assert!(!eval(p(Protocol::Tcp, true), &packet).is_match());
    assert!(eval(p(Protocol::Udp, true), &packet).is_match());
}

#[test]
fn history_matches_never_match() {
    let packet = pod_packet();
    let rcheck = eval(
        r().recent(RecentAction::Rcheck, "KUBE-SEP-A")
            .j("KUBE-SEP-A"),
        &packet,
    );
    assert!(!rcheck.is_match());
    assert!(rcheck.to_string().contains("KUBE-SEP-A"));
    assert!(eval(r().recent(RecentAction::Set, "KUBE-SEP-A"), &packet).is_match());
    let mark = r().m(Match::Mark {
        negated: false,
        value: 0x4000,
        mask: Some(0x4000),
    });
    assert!(!eval(mark, &packet).is_match());
    let not_mark = r().m(Match::Mark {
        negated: true,
        value: 0x4000,
        mask: Some(0x4000),
    });
    assert!(!eval(not_mark, &packet).is_match());
}

#[test]
fn session_affinity_falls_through_to_the_ladder() {
    let mut b = DumpBuilder::new(IpFamily::V4);
    b.nat("PREROUTING", [r().j("KUBE-SERVICES")]);
    b.nat(
        "KUBE-SERVICES",
        [r().d("172.30.0.60").tcp(80).j("KUBE-SVC-S")],
    );
    b.nat(
        "KUBE-SVC-S",
        [
            r().recent(RecentAction::Rcheck, "KUBE-SEP-A")
                .j("KUBE-SEP-A"),
            r().recent(RecentAction::Rcheck, "KUBE-SEP-B")
                .j("KUBE-SEP-B"),
            r().probability(0.5).j("KUBE-SEP-A"),
            r().j("KUBE-SEP-B"),
        ],
    );
    for (chain, to) in [
        ("KUBE-SEP-A", "10.180.0.1:80"),
        ("KUBE-SEP-B", "10.180.0.2:80"),
    ] {
        b.nat(
            chain,
            [r().proto(Protocol::Tcp)
                .recent(RecentAction::Set, chain)
                .dnat(to)],
        );
    }
    let trace = tcp(&b.build(), Origin::Forwarded, POD, "172.30.0.60", 80);
    assert_eq!(trace.outcome_string(), "10.180.0.1:80, 10.180.0.2:80");
    let affinity: Vec<bool> = trace
        .steps
        .iter()
        .filter(|s| s.chain == "KUBE-SVC-S" && s.rule_index < Some(2))
        .map(|s| s.evaluation.is_match())
        .collect();
    assert_eq!(affinity, [false, false]);
}

#[test]
fn conntrack_state_of_a_new_packet() {
    let packet = Packet::tcp(ip(EXTERNAL), ip("127.0.0.1"), 80);
    let martian = || {
        r().not_s("127.0.0.0/8")
            .d("127.0.0.0/8")
            .ctstate(true, &["RELATED", "ESTABLISHED", "DNAT"])
    };
    assert!(eval(martian(), &packet).is_match());
    assert!(eval(r().ctstate(false, &["NEW"]), &packet).is_match());
    assert!(!eval(r().ctstate(false, &["RELATED", "ESTABLISHED"]), &packet).is_match());
    assert!(!eval(r().ctstate(false, &["INVALID"]), &packet).is_match());
    assert!(!eval(r().ctstate(true, &["NEW"]), &packet).is_match());
    let unknown = eval(r().ctstate(false, &["BOGUS"]), &packet);
    assert!(matches!(unknown, Evaluation::Undecidable(_)));

    // After DNAT the packet is NEW,DNAT: the martian rule no longer matches.
    let locals = local_addresses();
    let mut ctx = MatchContext::new(&packet, &locals);
    ctx.dnatted = true;
    assert!(!evaluate(&martian().0, &ctx).is_match());
    assert!(evaluate(&r().ctstate(false, &["DNAT"]).0, &ctx).is_match());
}

#[test]
fn addrtype_local_uses_the_local_addresses() {
    let from_node = Packet::tcp(ip("192.168.1.2"), ip("10.96.0.1"), 443);
    assert!(eval(r().src_local(), &from_node).is_match());
    assert!(!eval(r().dst_local(), &from_node).is_match());
    let not_local = r().m(Match::AddrType {
        src_type: Some(Neg::not("LOCAL".into())),
        dst_type: None,
    });
    assert!(!eval(not_local, &from_node).is_match());
    let unicast = r().m(Match::AddrType {
        src_type: Some(Neg::is("UNICAST".into())),
        dst_type: None,
    });
    assert!(matches!(
        eval(unicast, &from_node),
        Evaluation::Undecidable(_)
    ));
}

#[test]
fn unknown_match_module_is_undecidable_and_not_taken() {
    let set = Match::Other {
        name: "set".into(),
        args: vec!["--match-set".into(), "allowed".into(), "src".into()],
    };
    let mut b = DumpBuilder::new(IpFamily::V4);
    b.nat("PREROUTING", [r().j("KUBE-SERVICES")]);
    b.nat(
        "KUBE-SERVICES",
        [r().d("172.30.0.41").tcp(80).m(set).j("KUBE-SVC-X")],
    );
    b.nat(
        "KUBE-SVC-X",
        [r().proto(Protocol::Tcp).dnat("10.180.0.1:80")],
    );
    let trace = tcp(&b.build(), Origin::Forwarded, POD, "172.30.0.41", 80);
    assert_eq!(trace.verdict, Verdict::NoMatch);
    assert!(!trace.is_decidable());
    let step = trace
        .steps
        .iter()
        .find(|s| s.chain == "KUBE-SERVICES")
        .unwrap();
    assert_eq!(step.action, Action::Next);
    assert_eq!(
        step.evaluation.to_string(),
        "undecidable: match -m set is not simulated"
    );

    // A definite mismatch elsewhere in the rule wins over the unknown module.
    let other = Match::Other {
        name: "set".into(),
        args: vec![],
    };
    let mismatch = eval(r().m(other).d("10.0.0.0/8"), &pod_packet());
    assert_eq!(
        mismatch.to_string(),
        "destination 172.30.0.41 not in 10.0.0.0/8"
    );
}

#[test]
fn negated_addresses() {
    let packet = pod_packet();
    assert!(eval(r().not_s("192.168.0.0/16"), &packet).is_match());
    let excluded = eval(r().not_s("10.0.0.0/8"), &packet);
    assert_eq!(
        excluded.to_string(),
        "source 10.0.0.2 is in 10.0.0.0/8 (excluded by !)"
    );
    // A v6 network never holds a v4 address.
    assert!(!eval(r().d("::/0"), &packet).is_match());
    assert!(eval(r().not_d("::/0"), &packet).is_match());
}
