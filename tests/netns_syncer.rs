//! The proxy's syncer against a real kernel in a throwaway namespace: full and partial syncs, stale
//! chains, flush detection and repair, foreign rules left alone.

mod support;

use std::collections::BTreeSet;

use support::builders::*;
use support::dumpcmp::differences;
use support::netns::{NetNs, skip_unless_available};
use svcproxy::core::model::{ClusterState, NamespacedName};
use svcproxy::core::plan::{jump_rules, plan};
use svcproxy::core::render::render_full;
use svcproxy::core::rules::IpFamily;
use svcproxy::iptables::{Backend, Iptables};
use svcproxy::proxy::syncer::{FamilySyncer, SyncKind};

fn tools(ns: &NetNs) -> Iptables {
    Iptables::new(IpFamily::V4, Backend::Default).with_prefix(vec![
        "ip".into(),
        "netns".into(),
        "exec".into(),
        ns.name().into(),
    ])
}

fn namespace() -> NetNs {
    let ns = NetNs::create("svcp-sync").expect("namespace");
    ns.create_nfacct(&[
        "ct_state_invalid_dropped_pkts",
        "localhost_nps_accepted_pkts",
    ])
    .expect("nfacct");
    ns
}

/// What a fresh node shows after one full sync of `state`.
fn reference(state: &ClusterState) -> String {
    let ns = namespace();
    let rules = plan(state, &test_node(), IpFamily::V4);
    let t = tools(&ns);
    t.ensure_canaries().expect("canaries");
    t.ensure_jumps(&jump_rules()).expect("jumps");
    t.restore(&render_full(&rules)).expect("restore");
    ns.iptables_save(IpFamily::V4).expect("save")
}

fn state(web_endpoints: &[&str]) -> ClusterState {
    let mut web = slice("ns1", "web", "web-a").port("http", "tcp", 8080);
    for (i, ip) in web_endpoints.iter().enumerate() {
        web = web.endpoint(ip, if i == 0 { "test-node" } else { "host2" }, READY);
    }
    cluster(
        vec![
            service("ns1", "web", "172.30.0.41")
                .port("http", "tcp", 80)
                .node_port(30080)
                .build(),
            service("ns1", "api", "172.30.0.42")
                .port("http", "tcp", 80)
                .build(),
        ],
        vec![
            web.build(),
            slice("ns1", "api", "api-a")
                .port("http", "tcp", 8080)
                .endpoint("10.180.0.2", "test-node", READY)
                .build(),
        ],
    )
}

#[track_caller]
fn assert_same(expected: &str, actual: &str) {
    let diffs = differences(expected, actual);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

fn web() -> BTreeSet<NamespacedName> {
    [NamespacedName::new("ns1", "web")].into()
}

#[test]
fn full_then_partial_syncs_match_fresh_full_syncs() {
    if !skip_unless_available("full_then_partial_syncs_match_fresh_full_syncs") {
        return;
    }
    let ns = namespace();
    let mut syncer = FamilySyncer::new(tools(&ns)).with_transaction_rules(5);
    let ctx = test_node();

    let first = state(&["10.180.0.1", "10.180.1.1"]);
    let outcome = syncer
        .sync(&first, &ctx, &BTreeSet::new(), false)
        .expect("first sync");
    assert_eq!(outcome.kind, SyncKind::Full, "the first sync is full");
    assert!(
        outcome.payloads.len() > 2,
        "bounded transactions: {}",
        outcome.payloads.len()
    );
    assert_same(
        &reference(&first),
        &ns.iptables_save(IpFamily::V4).expect("save"),
    );

    let second = state(&["10.180.0.1", "10.180.1.1", "10.180.2.1"]);
    let outcome = syncer
        .sync(&second, &ctx, &web(), false)
        .expect("partial sync");
    assert_eq!(outcome.kind, SyncKind::Partial);
    assert_eq!(outcome.payloads.len(), 1);
    assert!(
        !outcome.payloads[0].contains(":KUBE-SERVICES"),
        "entry chains are not rewritten"
    );
    assert_same(
        &reference(&second),
        &ns.iptables_save(IpFamily::V4).expect("save"),
    );

    let none = state(&[]);
    let outcome = syncer
        .sync(&none, &ctx, &web(), false)
        .expect("scale to zero");
    assert_eq!(outcome.kind, SyncKind::Partial);
    assert_same(
        &reference(&none),
        &ns.iptables_save(IpFamily::V4).expect("save"),
    );

    let outcome = syncer
        .sync(&none, &ctx, &BTreeSet::new(), false)
        .expect("no change");
    assert!(
        outcome.payloads.is_empty(),
        "nothing to write when nothing changed"
    );
}

#[test]
fn flushes_are_detected_and_repaired_and_foreign_rules_survive() {
    if !skip_unless_available("flushes_are_detected_and_repaired_and_foreign_rules_survive") {
        return;
    }
    let ns = namespace();
    let foreign = [
        (
            "nat",
            "FOREIGN-NAT",
            "-A FOREIGN-NAT -d 192.0.2.1/32 -j RETURN",
        ),
        (
            "filter",
            "FOREIGN-FILTER",
            "-A FOREIGN-FILTER -s 192.0.2.2/32 -j ACCEPT",
        ),
    ];
    for (table, chain, rule) in foreign {
        let payload = format!("*{table}\n:{chain} - [0:0]\n{rule}\n-A INPUT -j {chain}\nCOMMIT\n");
        let payload = if table == "nat" {
            payload.replace("-A INPUT", "-A PREROUTING")
        } else {
            payload
        };
        ns.iptables_restore(IpFamily::V4, &payload, true)
            .expect("foreign rules");
    }
    let mut syncer = FamilySyncer::new(tools(&ns));
    let ctx = test_node();
    let s = state(&["10.180.0.1", "10.180.1.1"]);
    syncer
        .sync(&s, &ctx, &BTreeSet::new(), false)
        .expect("sync");
    assert!(syncer.canaries_present().expect("canary check"));

    // A stale chain left by someone (a deleted Service) is removed by the next full sync.
    ns.exec(
        "iptables",
        &["-t", "nat", "-N", "KUBE-SVC-STALESTALESTALE1"],
        None,
    )
    .expect("stale chain");
    ns.exec("iptables", &["-t", "nat", "-F"], None)
        .expect("flush nat");
    ns.exec("iptables", &["-t", "nat", "-X", "KUBE-PROXY-CANARY"], None)
        .expect("delete canary");
    assert!(
        !syncer.canaries_present().expect("canary check"),
        "the flush is detected"
    );
    let outcome = syncer
        .sync(&s, &ctx, &BTreeSet::new(), true)
        .expect("repair");
    assert_eq!(outcome.kind, SyncKind::Full);
    assert!(
        outcome.stale_chains >= 1,
        "stale chains deleted: {}",
        outcome.stale_chains
    );
    assert!(syncer.canaries_present().expect("canary check"));

    let saved = ns.iptables_save(IpFamily::V4).expect("save");
    assert!(
        !saved.contains("KUBE-SVC-STALESTALESTALE1"),
        "stale chain removed"
    );
    assert!(
        saved.contains("-A FOREIGN-FILTER -s 192.0.2.2/32 -j ACCEPT"),
        "foreign filter rule kept"
    );
    assert!(
        saved.contains("-A INPUT -j FOREIGN-FILTER"),
        "foreign jump kept"
    );
    assert!(
        saved.contains(":FOREIGN-NAT - [0:0]"),
        "foreign nat chain kept (its rules were flushed by the test)"
    );
    // After repair the rules equal a fresh node's, apart from the foreign chains.
    let ours: String = saved
        .lines()
        .filter(|l| !l.contains("FOREIGN"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_same(&reference(&s), &ours);
}

#[test]
fn a_restarted_proxy_resyncs_without_duplicating_anything() {
    if !skip_unless_available("a_restarted_proxy_resyncs_without_duplicating_anything") {
        return;
    }
    let ns = namespace();
    let ctx = test_node();
    let s = state(&["10.180.0.1"]);
    FamilySyncer::new(tools(&ns))
        .sync(&s, &ctx, &BTreeSet::new(), false)
        .expect("first run");
    let before = ns.iptables_save(IpFamily::V4).expect("save");
    let mut restarted = FamilySyncer::new(tools(&ns));
    let outcome = restarted
        .sync(&s, &ctx, &BTreeSet::new(), false)
        .expect("after restart");
    assert_eq!(
        outcome.kind,
        SyncKind::Full,
        "a restart knows nothing of the kernel: full sync"
    );
    assert_same(&before, &ns.iptables_save(IpFamily::V4).expect("save"));
}
