//! The expected-rules settings of the diagnostics: read back from real kube-proxy dumps and from our own
//! rules, taken from the kube-proxy ConfigMap, and resolved with flags first. A node whose rules match
//! the cluster must resolve to a context that plans exactly those rules.

mod support;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use proptest::prelude::*;
use support::dumpcmp::differences;
use svcproxy::core::model::bundle::load_cluster_json;
use svcproxy::core::model::detect::{DetectLocalMode, NodePortAddress};
use svcproxy::core::model::infer::{InferredDetector, InferredNodePorts, infer_settings};
use svcproxy::core::model::resolve::{Origin, Setting};
use svcproxy::core::model::settings::load_node_context;
use svcproxy::core::model::{
    ClusterState, LocalDetector, NodeContext, SettingsOverrides, resolve_node_context,
};
use svcproxy::core::parse::parse_dump;
use svcproxy::core::plan::plan;
use svcproxy::core::render::render_node_dump;
use svcproxy::core::rules::{Dump, IpFamily};

const SCENARIOS: [&str; 2] = ["basic", "extended"];
const NODE: &str = "testnode";

fn fixture_dir(scenario: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kube-proxy-v1.36")
        .join(scenario)
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn cluster(scenario: &str) -> ClusterState {
    load_cluster_json(
        &read(fixture_dir(scenario).join("cluster.json")),
        "cluster.json",
    )
    .expect("fixture cluster.json loads")
}

/// The settings the fixture was captured with.
fn captured_context(scenario: &str, state: &ClusterState) -> NodeContext {
    let mut ctx = load_node_context(
        &read(fixture_dir(scenario).join("node-context.json")),
        "node-context.json",
    )
    .expect("fixture node context loads");
    ctx.apply_node(&state.nodes[NODE]);
    ctx
}

fn captured(scenario: &str, family: IpFamily) -> String {
    let file = match family {
        IpFamily::V4 => "testnode.iptables-save",
        IpFamily::V6 => "testnode.ip6tables-save",
    };
    read(fixture_dir(scenario).join("nodes").join(file))
}

fn dump(text: &str) -> Dump {
    parse_dump(text).expect("dump parses")
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

#[track_caller]
fn assert_same_rules(what: &str, expected: &str, actual: &str) {
    let diffs = differences(expected, actual);
    assert!(
        diffs.is_empty(),
        "{what}: {} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn inference_reads_the_captured_kube_proxy_settings() {
    for scenario in SCENARIOS {
        let state = cluster(scenario);
        let expected = captured_context(scenario, &state);
        let inferred = infer_settings(&dump(&captured(scenario, IpFamily::V4)));
        let LocalDetector::ClusterCidr(cidrs) = &expected.local_detector else {
            panic!("the fixtures use ClusterCIDR detection")
        };
        assert_eq!(
            inferred.local_detector,
            Some(InferredDetector::Cidr(cidrs[0])),
            "{scenario}"
        );
        assert_eq!(
            inferred.masquerade_all,
            Some(expected.masquerade_all),
            "{scenario}"
        );
        assert_eq!(
            inferred.masquerade_bit,
            Some(expected.masquerade_bit),
            "{scenario}"
        );
        assert_eq!(
            inferred.localhost_nodeports,
            Some(expected.localhost_nodeports),
            "{scenario}"
        );
        assert_eq!(
            inferred.nodeport_addresses,
            Some(InferredNodePorts::All),
            "{scenario}"
        );
        assert_eq!(inferred.nfacct, Some(expected.nfacct), "{scenario}");
        assert_eq!(
            inferred.tcp_be_liberal,
            Some(expected.tcp_be_liberal),
            "{scenario}"
        );
        assert_eq!(
            inferred.random_fully,
            Some(expected.random_fully),
            "{scenario}"
        );
    }
}

#[test]
fn the_context_resolved_from_a_captured_dump_plans_that_dump() {
    for scenario in SCENARIOS {
        let state = cluster(scenario);
        for family in [IpFamily::V4, IpFamily::V6] {
            let text = captured(scenario, family);
            let resolved =
                resolve_node_context(&state, NODE, Some(&dump(&text)), &Default::default())
                    .expect("resolves");
            assert!(
                resolved.warnings.is_empty(),
                "{scenario} {family}: {:?}",
                resolved.warnings
            );
            let ours = render_node_dump(&plan(&state, &resolved.context, family));
            assert_same_rules(&format!("{scenario} {family}"), &text, &ours);
        }
        let resolved = resolve_node_context(
            &state,
            NODE,
            Some(&dump(&captured(scenario, IpFamily::V4))),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(
            resolved.context,
            captured_context(scenario, &state),
            "{scenario}"
        );
    }
}

#[test]
fn without_the_dump_the_defaults_miss_the_masquerade_rules() {
    // The check above can fail: kube-proxy's defaults detect no local traffic, so the cluster-IP
    // masquerade rules of the captured dump are missing.
    let state = cluster("basic");
    let resolved = resolve_node_context(&state, NODE, None, &Default::default()).unwrap();
    assert_eq!(resolved.context.local_detector, LocalDetector::None);
    assert_eq!(resolved.warnings.len(), 1, "{:?}", resolved.warnings);
    let ours = render_node_dump(&plan(&state, &resolved.context, IpFamily::V4));
    assert!(!differences(&captured("basic", IpFamily::V4), &ours).is_empty());
    assert!(
        resolved
            .provenance
            .iter()
            .all(|source| source.origin == Origin::Default)
    );
}

#[test]
fn a_node_cidr_is_told_apart_from_the_cluster_cidr() {
    let state = cluster("basic");
    let mut ctx = captured_context("basic", &state);
    ctx.local_detector = LocalDetector::NodeCidr(vec![net("10.244.1.0/24")]);
    let text = render_node_dump(&plan(&state, &ctx, IpFamily::V4));
    let resolved =
        resolve_node_context(&state, NODE, Some(&dump(&text)), &Default::default()).unwrap();
    assert_eq!(resolved.context.local_detector, ctx.local_detector);
}

#[test]
fn an_unknown_node_still_resolves() {
    let state = cluster("basic");
    let text = captured("basic", IpFamily::V4);
    let resolved =
        resolve_node_context(&state, "ghost", Some(&dump(&text)), &Default::default()).unwrap();
    assert!(resolved.context.node_ips.is_empty());
    assert_eq!(resolved.context.node_name, "ghost");
    assert!(
        resolved.warnings.iter().any(|w| w.contains("\"ghost\"")),
        "{:?}",
        resolved.warnings
    );
    assert_eq!(
        resolved.context.local_detector,
        LocalDetector::ClusterCidr(vec![net("10.244.0.0/16")])
    );
}

fn with_config(mut state: ClusterState, config: &str) -> ClusterState {
    state.kube_proxy_config = Some(BTreeMap::from([(
        "config.conf".to_string(),
        config.to_string(),
    )]));
    state
}

fn origin_of(resolved: &svcproxy::core::model::ResolvedContext, setting: Setting) -> Origin {
    resolved
        .provenance
        .iter()
        .find(|s| s.setting == setting)
        .map(|s| s.origin)
        .expect("every setting has a source")
}

#[test]
fn flags_beat_the_config_map_which_beats_the_rules_which_beat_the_defaults() {
    let state = with_config(
        cluster("basic"),
        "kind: KubeProxyConfiguration\nclusterCIDR: 10.200.0.0/16\niptables:\n  masqueradeAll: true\n  masqueradeBit: 13\nunknownField: [1]\n",
    );
    let text = captured("basic", IpFamily::V4);
    let overrides = SettingsOverrides {
        masquerade_all: Some(false),
        ..Default::default()
    };
    let resolved = resolve_node_context(&state, NODE, Some(&dump(&text)), &overrides).unwrap();
    let ctx = &resolved.context;
    assert!(!ctx.masquerade_all);
    assert_eq!(origin_of(&resolved, Setting::MasqueradeAll), Origin::Flag);
    assert_eq!(ctx.masquerade_bit, 13);
    assert_eq!(
        origin_of(&resolved, Setting::MasqueradeBit),
        Origin::ConfigMap
    );
    assert_eq!(
        ctx.local_detector,
        LocalDetector::ClusterCidr(vec![net("10.200.0.0/16")])
    );
    assert_eq!(
        origin_of(&resolved, Setting::LocalDetection),
        Origin::ConfigMap
    );
    assert!(ctx.localhost_nodeports);
    assert_eq!(
        origin_of(&resolved, Setting::LocalhostNodePorts),
        Origin::Inferred
    );
    assert_eq!(origin_of(&resolved, Setting::Nfacct), Origin::Inferred);
    // The ConfigMap contradicts the node's rules twice: the mark bit and the cluster CIDR.
    assert_eq!(resolved.warnings.len(), 2, "{:?}", resolved.warnings);
    assert!(resolved.warnings[0].contains("10.244.0.0/16"));
    assert!(resolved.warnings[1].contains("masquerade bit"));

    let flagged = SettingsOverrides {
        cluster_cidrs: Some(vec![net("10.244.0.0/16")]),
        masquerade_bit: Some(14),
        ..overrides
    };
    let resolved = resolve_node_context(&state, NODE, Some(&dump(&text)), &flagged).unwrap();
    assert!(resolved.warnings.is_empty(), "{:?}", resolved.warnings);
    assert_eq!(origin_of(&resolved, Setting::LocalDetection), Origin::Flag);
    let ours = render_node_dump(&plan(&state, &resolved.context, IpFamily::V4));
    assert_same_rules("flags over the ConfigMap", &text, &ours);

    let resolved = resolve_node_context(&state, NODE, None, &Default::default()).unwrap();
    assert_eq!(origin_of(&resolved, Setting::RandomFully), Origin::Default);
    assert_eq!(
        origin_of(&resolved, Setting::MasqueradeAll),
        Origin::ConfigMap
    );
}

#[test]
fn a_broken_config_map_is_an_error_naming_it() {
    let state = with_config(cluster("basic"), "iptables:\n  masqueradeBit: lots\n");
    let error = resolve_node_context(&state, NODE, None, &Default::default()).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("kube-system/kube-proxy ConfigMap key config.conf line 2: "),
        "{error}"
    );
}

#[test]
fn an_interface_mode_without_its_interface_is_filled_from_the_rules_or_refused() {
    let state = cluster("basic");
    let mut ctx = captured_context("basic", &state);
    ctx.local_detector = LocalDetector::BridgeInterface("cbr0".into());
    let text = render_node_dump(&plan(&state, &ctx, IpFamily::V4));
    let overrides = SettingsOverrides {
        detect_local_mode: Some(DetectLocalMode::BridgeInterface),
        ..Default::default()
    };
    let resolved = resolve_node_context(&state, NODE, Some(&dump(&text)), &overrides).unwrap();
    assert_eq!(resolved.context.local_detector, ctx.local_detector);
    let error = resolve_node_context(&state, NODE, None, &overrides).unwrap_err();
    assert!(
        error.to_string().contains("--pod-bridge-interface"),
        "{error}"
    );
}

// ---- Our own rules, rendered for many settings, read back ----

#[derive(Debug, Clone)]
enum Detector {
    None,
    Cluster,
    Node,
    Bridge(String),
    Prefix(String),
}

#[derive(Debug, Clone)]
enum NodePorts {
    All,
    Primary,
    Cidrs(Vec<IpNet>),
}

#[derive(Debug, Clone)]
struct Settings {
    detector: Detector,
    masquerade_all: bool,
    masquerade_bit: u8,
    localhost_nodeports: bool,
    nodeports: NodePorts,
    nfacct: bool,
    tcp_be_liberal: bool,
    random_fully: bool,
}

fn settings() -> impl Strategy<Value = Settings> {
    let detector = prop_oneof![
        Just(Detector::None),
        Just(Detector::Cluster),
        Just(Detector::Node),
        "[a-z][a-z0-9]{0,6}".prop_map(Detector::Bridge),
        "[a-z][a-z0-9]{0,6}".prop_map(Detector::Prefix),
    ];
    // NodePort CIDRs always hold a local address: a list matching none leaves no rule to read.
    let nodeports = prop_oneof![
        Just(NodePorts::All),
        Just(NodePorts::Primary),
        Just(NodePorts::Cidrs(vec![net("198.18.0.0/15")])),
        Just(NodePorts::Cidrs(vec![
            net("198.18.0.2/32"),
            net("127.0.0.0/8")
        ])),
    ];
    (
        detector,
        any::<bool>(),
        0u8..=31,
        any::<bool>(),
        nodeports,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                detector,
                masquerade_all,
                masquerade_bit,
                localhost_nodeports,
                nodeports,
                nfacct,
                tcp_be_liberal,
                random_fully,
            )| Settings {
                detector,
                masquerade_all,
                masquerade_bit,
                localhost_nodeports,
                nodeports,
                nfacct,
                tcp_be_liberal,
                random_fully,
            },
        )
}

fn context_for(state: &ClusterState, settings: &Settings) -> NodeContext {
    let node = &state.nodes[NODE];
    let mut ctx = NodeContext::new(NODE, node.primary_ips());
    ctx.local_detector = match &settings.detector {
        Detector::None => LocalDetector::None,
        Detector::Cluster => LocalDetector::ClusterCidr(vec![net("10.244.0.0/16")]),
        Detector::Node => LocalDetector::NodeCidr(node.pod_cidrs.clone()),
        Detector::Bridge(name) => LocalDetector::BridgeInterface(name.clone()),
        Detector::Prefix(prefix) => LocalDetector::InterfaceNamePrefix(prefix.clone()),
    };
    ctx.apply_node(node);
    ctx.masquerade_all = settings.masquerade_all;
    ctx.masquerade_bit = settings.masquerade_bit;
    ctx.localhost_nodeports = settings.localhost_nodeports;
    ctx.nodeport_addresses = match &settings.nodeports {
        NodePorts::All => Vec::new(),
        NodePorts::Primary => node.primary_ips().into_iter().map(IpNet::from).collect(),
        NodePorts::Cidrs(nets) => nets.clone(),
    };
    ctx.nfacct = settings.nfacct;
    ctx.tcp_be_liberal = settings.tcp_be_liberal;
    ctx.random_fully = settings.random_fully;
    ctx
}

fn expected_detector(detector: &Detector) -> InferredDetector {
    match detector {
        Detector::None => InferredDetector::None,
        Detector::Cluster => InferredDetector::Cidr(net("10.244.0.0/16")),
        Detector::Node => InferredDetector::Cidr(net("10.244.1.0/24")),
        Detector::Bridge(name) => InferredDetector::BridgeInterface(name.clone()),
        Detector::Prefix(prefix) => InferredDetector::InterfaceNamePrefix(prefix.clone()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn inference_recovers_the_settings_our_rules_were_planned_with(
        scenario in prop::sample::select(SCENARIOS.to_vec()),
        settings in settings(),
    ) {
        let state = cluster(scenario);
        let ctx = context_for(&state, &settings);
        let text = render_node_dump(&plan(&state, &ctx, IpFamily::V4));
        let parsed = dump(&text);
        let inferred = infer_settings(&parsed);

        prop_assert_eq!(inferred.masquerade_all, Some(settings.masquerade_all));
        prop_assert_eq!(inferred.masquerade_bit, Some(settings.masquerade_bit));
        prop_assert_eq!(inferred.random_fully, Some(settings.random_fully));
        prop_assert_eq!(inferred.tcp_be_liberal, Some(settings.tcp_be_liberal));
        // With masquerade-all, only the eTP=Local pod short-circuit shows the detector; with no
        // detector there is none.
        let detector_shown = !settings.masquerade_all
            || !matches!(settings.detector, Detector::None);
        if detector_shown {
            prop_assert_eq!(inferred.local_detector, Some(expected_detector(&settings.detector)));
        } else {
            prop_assert_eq!(inferred.local_detector, None);
        }
        match &settings.nodeports {
            NodePorts::All => {
                prop_assert_eq!(inferred.nodeport_addresses, Some(InferredNodePorts::All));
                prop_assert_eq!(inferred.localhost_nodeports, Some(settings.localhost_nodeports));
            }
            NodePorts::Primary | NodePorts::Cidrs(_) => {
                let Some(InferredNodePorts::Addresses(ips)) = &inferred.nodeport_addresses else {
                    panic!("addresses expected, got {:?}", inferred.nodeport_addresses)
                };
                prop_assert!(ips.contains(&"198.18.0.2".parse::<IpAddr>().unwrap()));
            }
        }
        if !settings.tcp_be_liberal {
            prop_assert_eq!(inferred.nfacct, Some(settings.nfacct));
        }

        // And the context resolved from these rules plans them again.
        let resolved = resolve_node_context(&state, NODE, Some(&parsed), &Default::default())
            .expect("resolves");
        let again = render_node_dump(&plan(&state, &resolved.context, IpFamily::V4));
        let diffs = differences(&text, &again);
        prop_assert!(diffs.is_empty(), "{}", diffs.join("\n"));
        prop_assert!(resolved.warnings.is_empty(), "{:?}", resolved.warnings);
    }
}

#[test]
fn config_map_node_port_addresses_resolve_primary() {
    let state = with_config(
        cluster("basic"),
        "nodePortAddresses: [primary]\niptables:\n  localhostNodePorts: false\n",
    );
    let resolved = resolve_node_context(&state, NODE, None, &Default::default()).unwrap();
    assert_eq!(
        resolved.context.nodeport_addresses,
        vec![net("198.18.0.2/32")]
    );
    assert!(!resolved.context.localhost_nodeports);
    let overrides = SettingsOverrides {
        nodeport_addresses: Some(vec![NodePortAddress::Cidr(net("10.0.0.0/8"))]),
        ..Default::default()
    };
    let resolved = resolve_node_context(&state, NODE, None, &overrides).unwrap();
    assert_eq!(resolved.context.nodeport_addresses, vec![net("10.0.0.0/8")]);
    assert_eq!(
        origin_of(&resolved, Setting::NodePortAddresses),
        Origin::Flag
    );
}
