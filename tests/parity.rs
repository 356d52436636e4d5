//! Parity with real kube-proxy v1.36: the bundles in `tests/fixtures/kube-proxy-v1.36/` hold the objects
//! a real kube-proxy synced and the `iptables-save` it left behind. Our rules for the same objects must
//! equal the captured dumps chain by chain — offline (our printing of what the kernel would show), and
//! through a real kernel (rendered, restored into a throwaway network namespace, read back).

mod support;

use std::path::PathBuf;

use support::dumpcmp::differences;
use support::netns::{NetNs, skip_unless_available};
use svcproxy::core::model::bundle::load_cluster_json;
use svcproxy::core::model::settings::load_node_context;
use svcproxy::core::model::{ClusterState, NodeContext};
use svcproxy::core::plan::{RuleSet, jump_rules, plan};
use svcproxy::core::render::{render_full, render_node_dump, render_transactions};
use svcproxy::core::rules::IpFamily;
use svcproxy::iptables::{Backend, Iptables};

const SCENARIOS: [&str; 2] = ["basic", "extended"];
const NFACCT_OBJECTS: [&str; 2] = [
    "ct_state_invalid_dropped_pkts",
    "localhost_nps_accepted_pkts",
];

fn fixture_dir(scenario: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kube-proxy-v1.36")
        .join(scenario)
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The cluster state and the node's settings of one captured scenario.
fn load(scenario: &str) -> (ClusterState, NodeContext) {
    let dir = fixture_dir(scenario);
    let state = load_cluster_json(&read(dir.join("cluster.json")), "cluster.json")
        .expect("fixture cluster.json loads");
    let mut ctx = load_node_context(&read(dir.join("node-context.json")), "node-context.json")
        .expect("fixture node context loads");
    let node = state
        .nodes
        .get(&ctx.node_name)
        .expect("fixture has its node")
        .clone();
    ctx.apply_node(&node);
    (state, ctx)
}

fn captured(scenario: &str, family: IpFamily) -> String {
    let file = match family {
        IpFamily::V4 => "testnode.iptables-save",
        IpFamily::V6 => "testnode.ip6tables-save",
    };
    read(fixture_dir(scenario).join("nodes").join(file))
}

#[track_caller]
fn assert_no_differences(what: &str, expected: &str, actual: &str) {
    let diffs = differences(expected, actual);
    assert!(
        diffs.is_empty(),
        "{what}: {} differences:\n{}\n--- actual ---\n{actual}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn offline_rendering_equals_the_captured_kube_proxy_dumps() {
    for scenario in SCENARIOS {
        let (state, ctx) = load(scenario);
        for family in [IpFamily::V4, IpFamily::V6] {
            let rules = plan(&state, &ctx, family);
            assert_no_differences(
                &format!("{scenario} {family}"),
                &captured(scenario, family),
                &render_node_dump(&rules),
            );
        }
    }
}

#[test]
fn the_comparison_notices_a_changed_rule() {
    let (state, ctx) = load("basic");
    let ours = render_node_dump(&plan(&state, &ctx, IpFamily::V4));
    let tampered = ours.replacen(
        "--probability 0.33333333349",
        "--probability 0.25000000000",
        1,
    );
    assert_ne!(
        ours, tampered,
        "the basic scenario has a three-endpoint ladder"
    );
    assert!(!differences(&captured("basic", IpFamily::V4), &tampered).is_empty());
}

/// Programs a fresh namespace the way the proxy programs a node: canaries, jumps from the built-in
/// chains, then the restore payloads in order. Returns what `iptables-save` prints afterwards.
fn program_namespace(ns: &NetNs, rules: &RuleSet, payloads: &[String]) -> String {
    ns.create_nfacct(&NFACCT_OBJECTS).expect("nfacct objects");
    let tools = Iptables::new(rules.family, Backend::Default).with_prefix(vec![
        "ip".into(),
        "netns".into(),
        "exec".into(),
        ns.name().into(),
    ]);
    tools.ensure_canaries().expect("canary chains");
    tools.ensure_jumps(&jump_rules()).expect("jump rules");
    for payload in payloads {
        tools
            .restore(payload)
            .unwrap_or_else(|e| panic!("kernel rejected the payload: {e}\n{payload}"));
    }
    ns.iptables_save(rules.family).expect("iptables-save")
}

#[test]
fn kernel_round_trip_equals_the_captured_kube_proxy_dumps() {
    if !skip_unless_available("kernel_round_trip_equals_the_captured_kube_proxy_dumps") {
        return;
    }
    for scenario in SCENARIOS {
        let (state, ctx) = load(scenario);
        for family in [IpFamily::V4, IpFamily::V6] {
            let rules = plan(&state, &ctx, family);
            let ns = NetNs::create("svcp-parity").expect("namespace");
            let saved = program_namespace(&ns, &rules, &[render_full(&rules)]);
            assert_no_differences(
                &format!("{scenario} {family} via the kernel"),
                &captured(scenario, family),
                &saved,
            );
        }
    }
}

#[test]
fn bounded_transactions_leave_the_same_rules_as_one_payload() {
    if !skip_unless_available("bounded_transactions_leave_the_same_rules_as_one_payload") {
        return;
    }
    let (state, ctx) = load("extended");
    let rules = plan(&state, &ctx, IpFamily::V4);
    let transactions = render_transactions(&rules, &[], 6);
    assert!(
        transactions.len() > 3,
        "small transactions for this test: {}",
        transactions.len()
    );
    let ns = NetNs::create("svcp-txn").expect("namespace");
    let saved = program_namespace(&ns, &rules, &transactions);
    assert_no_differences(
        "extended via transactions",
        &captured("extended", IpFamily::V4),
        &saved,
    );
}

#[test]
fn a_second_full_sync_changes_nothing_and_restarts_do_not_duplicate_jumps() {
    if !skip_unless_available(
        "a_second_full_sync_changes_nothing_and_restarts_do_not_duplicate_jumps",
    ) {
        return;
    }
    let (state, ctx) = load("extended");
    let rules = plan(&state, &ctx, IpFamily::V4);
    let ns = NetNs::create("svcp-resync").expect("namespace");
    let first = program_namespace(&ns, &rules, &[render_full(&rules)]);
    let tools = Iptables::new(IpFamily::V4, Backend::Default).with_prefix(vec![
        "ip".into(),
        "netns".into(),
        "exec".into(),
        ns.name().into(),
    ]);
    assert_eq!(
        tools.ensure_jumps(&jump_rules()).expect("jumps"),
        0,
        "no jump is inserted twice"
    );
    tools.restore(&render_full(&rules)).expect("second restore");
    let second = ns.iptables_save(IpFamily::V4).expect("save");
    assert!(
        differences(&first, &second).is_empty(),
        "{:#?}",
        differences(&first, &second)
    );
}

/// Every drift finding on `saved` (one node's `iptables-save`) for `state`, with the node's settings
/// resolved the way `trace` resolves them (here: from the node's own rules).
fn drift_on(state: &ClusterState, node: &str, saved: &str) -> Vec<svcproxy::core::drift::Finding> {
    let dump = svcproxy::core::parse::parse_dump(saved).expect("the kernel's dump parses");
    let resolved =
        svcproxy::core::model::resolve_node_context(state, node, Some(&dump), &Default::default())
            .expect("settings resolve");
    let actual = svcproxy::core::path::ActualRules::new(&dump);
    svcproxy::core::drift::node_drift(state, &resolved.context, &actual, None)
}

#[test]
fn dumps_the_kernel_printed_back_show_no_drift() {
    if !skip_unless_available("dumps_the_kernel_printed_back_show_no_drift") {
        return;
    }
    for scenario in SCENARIOS {
        let (state, mut ctx) = load(scenario);
        // Normal mode, and large-cluster mode (no per-endpoint comments) read with the default
        // threshold: neither is drift.
        for threshold in [1000, 0] {
            ctx.large_cluster_threshold = threshold;
            for family in [IpFamily::V4, IpFamily::V6] {
                let rules = plan(&state, &ctx, family);
                let ns = NetNs::create("svcp-drift").expect("namespace");
                let saved = program_namespace(&ns, &rules, &render_transactions(&rules, &[], 7));
                let findings = drift_on(&state, &ctx.node_name, &saved);
                assert!(
                    findings.is_empty(),
                    "{scenario} {family} threshold {threshold}: {findings:#?}\n{saved}"
                );
            }
        }
    }
}

#[test]
fn a_synthetic_cluster_through_the_kernel_shows_no_drift_until_an_endpoint_goes() {
    if !skip_unless_available(
        "a_synthetic_cluster_through_the_kernel_shows_no_drift_until_an_endpoint_goes",
    ) {
        return;
    }
    let mut state = ClusterState::default();
    for i in 0..150 {
        state.insert_service(svcproxy::synthetic::service(i));
        state.insert_slice(svcproxy::synthetic::slice(i, 1 + i % 12, 0));
    }
    let node = svcproxy::core::model::Node {
        name: "node-0".into(),
        labels: Default::default(),
        pod_cidrs: vec!["10.128.0.0/24".parse().expect("CIDR")],
        addresses: vec![svcproxy::core::model::NodeAddress {
            kind: "InternalIP".into(),
            address: "192.168.0.10".into(),
        }],
        taints: Vec::new(),
        being_deleted: false,
    };
    let mut ctx = NodeContext::new(node.name.clone(), node.primary_ips());
    ctx.apply_node(&node);
    state.nodes.insert(node.name.clone(), node);
    let rules = plan(&state, &ctx, IpFamily::V4);
    let ns = NetNs::create("svcp-drift").expect("namespace");
    let saved = program_namespace(&ns, &rules, &render_transactions(&rules, &[], 20));
    assert_eq!(drift_on(&state, &ctx.node_name, &saved), Vec::new());
    // The cluster loses one endpoint of a Service with several; the node's rules do not know yet.
    let slice = state
        .endpoint_slices
        .values_mut()
        .find(|s| s.endpoints.len() > 3)
        .expect("a slice with several endpoints");
    let gone = slice.endpoints.remove(1).addresses[0].clone();
    let findings = drift_on(&state, &ctx.node_name, &saved);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(
        findings[0].kind,
        svcproxy::core::drift::FindingKind::StaleEndpoint
    );
    assert!(
        findings[0]
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with(&format!("{gone}:")))
    );
}
