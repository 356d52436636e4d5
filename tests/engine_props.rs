//! Property tests over random clusters: rendering then parsing then rendering again gives the same text
//! (restore form and save form), and every planned ruleset's jumps are consistent.

mod support;

use std::collections::BTreeSet;

use proptest::prelude::*;
use support::builders::*;
use support::checks::assert_jumps_consistent;
use svcproxy::core::model::{ClusterState, LocalDetector, NodeContext};
use svcproxy::core::parse::parse_dump;
use svcproxy::core::plan::plan;
use svcproxy::core::render::{render_full, render_node_dump};
use svcproxy::core::rules::format::{Form, chain_declaration, write_append};
use svcproxy::core::rules::{Dump, IpFamily};

/// One random Service with its endpoints.
#[derive(Debug, Clone)]
struct ServiceSpec {
    kind: u8,
    protocols: Vec<u8>,
    external_ip: bool,
    source_range: bool,
    etp_local: bool,
    itp_local: bool,
    affinity: bool,
    endpoints: Vec<(u8, bool)>,
}

fn service_spec() -> impl Strategy<Value = ServiceSpec> {
    (
        0u8..3,
        prop::collection::vec(0u8..3, 1..3),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec((0u8..4, any::<bool>()), 0..5),
    )
        .prop_map(
            |(
                kind,
                protocols,
                external_ip,
                source_range,
                etp_local,
                itp_local,
                affinity,
                endpoints,
            )| {
                ServiceSpec {
                    kind,
                    protocols,
                    external_ip,
                    source_range,
                    etp_local,
                    itp_local,
                    affinity,
                    endpoints,
                }
            },
        )
}

fn build(specs: &[ServiceSpec]) -> ClusterState {
    let conditions = [READY, TERMINATING_SERVING, TERMINATING, NOT_READY];
    let protocols = ["tcp", "udp", "sctp"];
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let name = format!("svc{i}");
        let mut svc = service("ns", &name, &format!("172.30.1.{}", i + 1));
        let mut ports: BTreeSet<(&str, usize)> = BTreeSet::new();
        for (p, proto) in spec.protocols.iter().enumerate() {
            let proto = protocols[*proto as usize];
            if ports.insert((proto, p)) {
                svc = svc.port(&format!("p{p}"), proto, 80 + p as u16);
                if spec.kind >= 1 {
                    svc = svc.node_port(30000 + (i * 10 + p) as u16);
                }
            }
        }
        if spec.kind == 2 {
            svc = svc.load_balancer(&[&format!("1.2.3.{}", i + 1)]);
            if spec.source_range {
                svc = svc
                    .source_range("203.0.113.0/25")
                    .source_range("192.168.0.0/24");
            }
            if spec.etp_local {
                svc = svc.health_check_node_port(32000 + i as u16);
            }
        }
        if spec.external_ip {
            svc = svc.external_ip(&format!("192.168.99.{}", i + 1));
        }
        if spec.etp_local {
            svc = svc.etp_local();
        }
        if spec.itp_local {
            svc = svc.itp_local();
        }
        if spec.affinity {
            svc = svc.affinity(10800);
        }
        services.push(svc.build());
        let mut slice = slice("ns", &name, &format!("{name}-a"));
        for (proto, p) in &ports {
            slice = slice.port(&format!("p{p}"), proto, 8080 + *p as u16);
        }
        for (e, (condition, local)) in spec.endpoints.iter().enumerate() {
            let node = if *local { "test-node" } else { "host2" };
            slice = slice.endpoint(
                &format!("10.180.{i}.{}", e + 1),
                node,
                conditions[*condition as usize],
            );
        }
        slices.push(slice.build());
    }
    cluster(services, slices)
}

fn context(detector: u8, masquerade_all: bool, localhost: bool) -> NodeContext {
    let mut ctx = test_node();
    ctx.local_detector = match detector {
        0 => LocalDetector::None,
        1 => LocalDetector::ClusterCidr(vec!["10.0.0.0/8".parse().expect("cidr")]),
        _ => LocalDetector::InterfaceNamePrefix("veth".into()),
    };
    ctx.masquerade_all = masquerade_all;
    ctx.localhost_nodeports = localhost;
    ctx
}

/// Prints a parsed dump back: per table, chains in declaration order, then their rules.
fn print(dump: &Dump, form: Form) -> String {
    let mut out = String::new();
    for table in &dump.tables {
        out.push_str(&format!("*{}\n", table.table));
        for chain in &table.chains {
            let policy = chain.policy.as_deref();
            out.push_str(&chain_declaration(&chain.name, policy));
            out.push('\n');
        }
        for chain in &table.chains {
            for rule in &chain.rules {
                write_append(&mut out, &chain.name, &rule.rule, form, dump.family);
                out.push('\n');
            }
        }
        out.push_str("COMMIT\n");
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn render_parse_render_is_the_identity(
        specs in prop::collection::vec(service_spec(), 1..6),
        detector in 0u8..3,
        masquerade_all in any::<bool>(),
        localhost in any::<bool>(),
    ) {
        let rules = plan(&build(&specs), &context(detector, masquerade_all, localhost), IpFamily::V4);
        assert_jumps_consistent(&rules);

        let restore = render_full(&rules);
        let parsed = parse_dump(&restore).map_err(|e| TestCaseError::fail(format!("{e}\n{restore}")))?;
        prop_assert_eq!(print(&parsed, Form::Restore), restore);

        let saved = render_node_dump(&rules);
        let parsed = parse_dump(&saved).map_err(|e| TestCaseError::fail(format!("{e}\n{saved}")))?;
        let printed = print(&parsed, Form::Save);
        prop_assert_eq!(printed, saved);
    }
}
