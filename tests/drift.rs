//! Drift detection against real kube-proxy v1.36 dumps: a correct node shows no finding, and each kind
//! of damage to the cluster state or to the rules shows the finding it should, on the right chain and
//! endpoint.

use std::path::PathBuf;

use svcproxy::core::drift::{
    Finding, FindingKind, Scope, cluster_findings, local_findings, node_drift, node_findings,
    service_findings,
};
use svcproxy::core::model::bundle::load_cluster_json;
use svcproxy::core::model::settings::load_node_context;
use svcproxy::core::model::{ClusterState, NamespacedName, NodeContext};
use svcproxy::core::parse::parse_dump;
use svcproxy::core::path::ActualRules;
use svcproxy::core::plan::plan_service;
use svcproxy::core::rules::IpFamily;

fn fixture_dir(scenario: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kube-proxy-v1.36")
        .join(scenario)
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn load(scenario: &str) -> (ClusterState, NodeContext, String) {
    let dir = fixture_dir(scenario);
    let state = load_cluster_json(&read(dir.join("cluster.json")), "cluster.json").expect("loads");
    let mut ctx = load_node_context(&read(dir.join("node-context.json")), "node-context.json")
        .expect("loads");
    let node = state.nodes.get(&ctx.node_name).expect("node").clone();
    ctx.apply_node(&node);
    let dump = read(dir.join("nodes/testnode.iptables-save"));
    (state, ctx, dump)
}

/// Every finding for every Service the cluster or the dump knows, on the fixture's node.
fn all_findings(state: &ClusterState, ctx: &NodeContext, dump_text: &str) -> Vec<Finding> {
    let dump = parse_dump(dump_text).expect("dump parses");
    let actual = ActualRules::new(&dump);
    let scope = Scope {
        node: &ctx.node_name,
        family: IpFamily::V4,
    };
    let mut services: Vec<NamespacedName> = state.services.keys().cloned().collect();
    for spn in actual.all_service_ports() {
        let base = spn.split(':').next().unwrap_or(spn);
        let (ns, name) = base.split_once('/').expect("ns/name");
        let id = NamespacedName::new(ns, name);
        if !services.contains(&id) {
            services.push(id);
        }
    }
    let mut findings = node_findings(&ctx.node_name, &actual, None);
    for id in &services {
        let expected = plan_service(state, ctx, IpFamily::V4, false, id);
        findings.extend(service_findings(scope, id, &expected, &actual));
    }
    findings
}

#[test]
fn node_drift_covers_every_service_the_cluster_or_the_node_knows() {
    let (mut state, ctx, dump) = load("basic");
    let parsed = parse_dump(&dump).expect("parses");
    let actual = ActualRules::new(&parsed);
    assert!(node_drift(&state, &ctx, &actual, None).is_empty());
    assert!(
        state
            .services
            .remove(&NamespacedName::new("default", "sticky"))
            .is_some()
    );
    let findings = node_drift(&state, &ctx, &actual, None);
    assert_eq!(kinds(&findings), vec![FindingKind::StaleService]);
    assert_eq!(findings, all_findings(&state, &ctx, &dump));
}

fn kinds(findings: &[Finding]) -> Vec<FindingKind> {
    findings.iter().map(|f| f.kind).collect()
}

#[test]
fn real_kube_proxy_dumps_show_no_drift() {
    for scenario in ["basic", "extended"] {
        let (state, ctx, dump) = load(scenario);
        let findings = all_findings(&state, &ctx, &dump);
        assert!(findings.is_empty(), "{scenario}: {findings:#?}");
    }
}

#[test]
fn cluster_side_findings_of_the_extended_scenario() {
    let (state, ctx, _) = load("extended");
    let no_endpoints = NamespacedName::new("default", "no-endpoints");
    let expected = plan_service(&state, &ctx, IpFamily::V4, false, &no_endpoints);
    let findings = cluster_findings(&state, &no_endpoints, &expected);
    assert_eq!(kinds(&findings), vec![FindingKind::NoEndpoints]);
    let web = NamespacedName::new("default", "web");
    let expected = plan_service(&state, &ctx, IpFamily::V4, false, &web);
    assert!(cluster_findings(&state, &web, &expected).is_empty());
    // `terminating` (eTP=Local) has only a serving-terminating local endpoint, which kube-proxy uses:
    // no Local drop. `lb-local` has one local endpoint too. Only Services without one get the finding.
    let mut local = Vec::new();
    for id in state.services.keys() {
        let expected = plan_service(&state, &ctx, IpFamily::V4, false, id);
        local.extend(local_findings(&ctx.node_name, &expected));
    }
    for finding in &local {
        assert_eq!(finding.kind, FindingKind::NoLocalEndpoints);
        assert_eq!(finding.node.as_deref(), Some("testnode"));
    }
}

/// Removes the endpoint with `ip` from every slice.
fn remove_endpoint(state: &mut ClusterState, ip: &str) {
    for slice in state.endpoint_slices.values_mut() {
        slice
            .endpoints
            .retain(|e| e.addresses.first().map(String::as_str) != Some(ip));
    }
}

#[test]
fn a_deleted_endpoint_still_in_the_rules_is_a_stale_endpoint() {
    let (mut state, ctx, dump) = load("basic");
    // `web` has three endpoints; the cluster loses one, the node does not know yet.
    let web = state
        .endpoint_slices
        .values()
        .find(|s| s.service_name == "web")
        .expect("web slice")
        .clone();
    let gone = web.endpoints[0].addresses[0].clone();
    remove_endpoint(&mut state, &gone);
    let findings = all_findings(&state, &ctx, &dump);
    assert_eq!(
        kinds(&findings),
        vec![FindingKind::StaleEndpoint],
        "{findings:#?}"
    );
    let finding = &findings[0];
    assert!(
        finding
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with(&gone))
    );
    assert!(
        finding
            .chain
            .as_deref()
            .is_some_and(|c| c.starts_with("KUBE-SEP-"))
    );
    assert_eq!(finding.service.as_deref(), Some("default/web:http"));
    assert_eq!(finding.node.as_deref(), Some("testnode"));
}

#[test]
fn a_new_endpoint_the_node_lacks_is_a_missing_endpoint() {
    let (mut state, ctx, dump) = load("basic");
    let slice = state
        .endpoint_slices
        .values_mut()
        .find(|s| s.service_name == "web")
        .expect("web slice");
    let mut extra = slice.endpoints[0].clone();
    extra.addresses = vec!["10.244.1.99".into()];
    extra.target_ref = None;
    slice.endpoints.push(extra);
    let findings = all_findings(&state, &ctx, &dump);
    assert_eq!(
        kinds(&findings),
        vec![FindingKind::MissingEndpoint],
        "{findings:#?}"
    );
    assert!(
        findings[0]
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("10.244.1.99:"))
    );
}

#[test]
fn a_deleted_service_with_rules_left_is_a_stale_service() {
    let (mut state, ctx, dump) = load("basic");
    let sticky = NamespacedName::new("default", "sticky");
    assert!(state.services.remove(&sticky).is_some());
    let findings = all_findings(&state, &ctx, &dump);
    assert_eq!(
        kinds(&findings),
        vec![FindingKind::StaleService],
        "{findings:#?}"
    );
    assert!(
        findings[0]
            .service
            .as_deref()
            .is_some_and(|s| s.starts_with("default/sticky"))
    );
}

#[test]
fn a_service_the_node_lacks_is_missing_service_rules() {
    let (state, ctx, dump) = load("basic");
    // Drop every line that mentions `web-nodeport` or its chains.
    let text = parse_dump(&dump).expect("parses");
    let actual = ActualRules::new(&text);
    let chains: Vec<String> = actual
        .entries_of("default/web-nodeport:http")
        .iter()
        .chain(actual.entries_of("default/web-nodeport"))
        .filter_map(|e| e.rule.rule.jump_chain().map(str::to_string))
        .collect();
    assert!(!chains.is_empty(), "the fixture has web-nodeport rules");
    let damaged: String = dump
        .lines()
        .filter(|l| !l.contains("web-nodeport") && !chains.iter().any(|c| l.contains(c.as_str())))
        .map(|l| format!("{l}\n"))
        .collect();
    let findings = all_findings(&state, &ctx, &damaged);
    assert!(
        findings
            .iter()
            .any(|f| f.kind == FindingKind::MissingServiceRules
                && f.service
                    .as_deref()
                    .is_some_and(|s| s.starts_with("default/web-nodeport"))),
        "{findings:#?}"
    );
    // Its endpoint chains are shared with nothing else, and go unreferenced: not reported on their own.
    assert!(
        findings
            .iter()
            .all(|f| f.kind == FindingKind::MissingServiceRules),
        "{findings:#?}"
    );
}

#[test]
fn a_reject_left_for_a_service_with_endpoints_is_a_stale_reject() {
    let (state, ctx, dump) = load("basic");
    let parsed = parse_dump(&dump).expect("parses");
    let actual = ActualRules::new(&parsed);
    let web = actual
        .entries_of("default/web")
        .iter()
        .chain(actual.entries_of("default/web:http"))
        .find(|e| e.chain == "KUBE-SERVICES")
        .map(|e| e.rule.rule.clone())
        .expect("web cluster IP entry");
    let spn = web
        .comment()
        .and_then(|c| c.split_whitespace().next())
        .expect("spn")
        .to_string();
    let destination = web.destination.as_ref().expect("-d").value.to_string();
    let dport = web.dport().expect("--dport").value.to_string();
    let reject = format!(
        "-A KUBE-SERVICES -d {destination} -p tcp -m comment --comment \"{spn} has no endpoints\" -m tcp --dport {dport} -j REJECT --reject-with icmp-port-unreachable\n"
    );
    let damaged = insert_after_chain_rules(&dump, "*filter", "KUBE-SERVICES", &reject);
    let findings = all_findings(&state, &ctx, &damaged);
    assert_eq!(
        kinds(&findings),
        vec![FindingKind::StaleReject],
        "{findings:#?}"
    );
    assert_eq!(findings[0].chain.as_deref(), Some("KUBE-SERVICES"));
}

/// `dump` with `line` inserted just after the `:CHAIN` declarations of `table`.
fn insert_after_chain_rules(dump: &str, table: &str, _chain: &str, line: &str) -> String {
    let mut out = String::new();
    let mut in_table = false;
    let mut done = false;
    for l in dump.lines() {
        if l.starts_with('*') {
            in_table = l == table;
        }
        if in_table && !done && l.starts_with("-A ") {
            out.push_str(line);
            done = true;
        }
        out.push_str(l);
        out.push('\n');
    }
    assert!(done, "table {table} has rules");
    out
}

#[test]
fn an_uneven_ladder_is_a_wrong_probability() {
    let (state, ctx, dump) = load("basic");
    // The first rung of a three-endpoint ladder gets 1/2 instead of 1/3.
    let damaged = dump.replacen(
        "--probability 0.33333333349",
        "--probability 0.50000000000",
        1,
    );
    assert_ne!(damaged, dump, "the fixture has a three-endpoint ladder");
    let findings = all_findings(&state, &ctx, &damaged);
    assert_eq!(
        kinds(&findings),
        vec![FindingKind::WrongProbability],
        "{findings:#?}"
    );
    assert!(
        findings[0]
            .chain
            .as_deref()
            .is_some_and(|c| c.starts_with("KUBE-SVC-"))
    );
}

#[test]
fn a_changed_rule_is_a_rule_mismatch() {
    let (state, ctx, dump) = load("basic");
    // Masquerade rules that name another pod CIDR.
    let damaged = dump.replace("! -s 10.244.0.0/16", "! -s 10.245.0.0/16");
    assert_ne!(damaged, dump);
    let findings = all_findings(&state, &ctx, &damaged);
    assert!(!findings.is_empty());
    assert!(
        findings.iter().all(|f| f.kind == FindingKind::RuleMismatch),
        "{findings:#?}"
    );
    // Session affinity lost: named as such.
    let damaged = dump
        .lines()
        .filter(|l| !l.contains("--rcheck"))
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    let findings = all_findings(&state, &ctx, &damaged);
    assert!(
        findings
            .iter()
            .any(|f| f.kind == FindingKind::RuleMismatch && f.message.contains("session affinity")),
        "{findings:#?}"
    );
}

#[test]
fn flushed_tables_and_lost_jumps_are_node_findings() {
    let (state, ctx, dump) = load("basic");
    let damaged: String = dump
        .lines()
        .filter(|l| !l.starts_with("-A PREROUTING") && !l.contains("KUBE-PROXY-CANARY"))
        .map(|l| format!("{l}\n"))
        .collect();
    let findings = all_findings(&state, &ctx, &damaged);
    let kinds = kinds(&findings);
    assert!(kinds.contains(&FindingKind::RulesFlushed), "{findings:#?}");
    assert!(
        findings.iter().any(|f| f.kind == FindingKind::MissingJump && f.chain.as_deref() == Some("PREROUTING")),
        "{findings:#?}"
    );
}

#[test]
fn kube_proxy_chains_in_both_backends_are_a_backend_mismatch() {
    let (_, ctx, dump) = load("basic");
    let parsed = parse_dump(&dump).expect("parses");
    let actual = ActualRules::new(&parsed);
    let legacy = parse_dump(&dump.replace("(nf_tables)", "(legacy)")).expect("parses");
    let findings = node_findings(&ctx.node_name, &actual, Some(&legacy));
    assert_eq!(kinds(&findings), vec![FindingKind::BackendMismatch]);
    let empty = parse_dump("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n").expect("parses");
    assert!(node_findings(&ctx.node_name, &actual, Some(&empty)).is_empty());
}
