//! `proxy --audit` end to end: kube-proxy-style rules loaded into a "node" network namespace, a real
//! `kubectl-svcproxy proxy --audit` process watching the test API server, drift found after the
//! rules are damaged and after the cluster changes, reported as metrics and Events, and the rules
//! never touched.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::netns::skip_unless_available;
use support::testbed::{NODE_IP, NODE_NAME, Testbed};
use svcproxy::core::model::bundle::load_cluster_json;
use svcproxy::core::model::{SettingsOverrides, resolve_node_context};
use svcproxy::core::plan::plan;
use svcproxy::core::render::render_node_dump;
use svcproxy::core::rules::IpFamily;

const VIP: &str = "10.96.0.10";
const WAIT: Duration = Duration::from_secs(20);
const KINDS: [&str; 13] = [
    "no-endpoints",
    "no-local-endpoints",
    "selector-mismatch",
    "missing-service-rules",
    "missing-endpoint",
    "stale-endpoint",
    "stale-service",
    "stale-reject",
    "wrong-probability",
    "rule-mismatch",
    "missing-jump",
    "rules-flushed",
    "backend-mismatch",
];

fn service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "type": "NodePort", "clusterIP": VIP, "clusterIPs": [VIP],
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080}],
        },
    })
}

fn slice(bed: &Testbed, pods: &[&str]) -> Value {
    let endpoints: Vec<Value> = pods
        .iter()
        .map(|pod| {
            json!({
                "addresses": [bed.pod(pod).ip],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "nodeName": NODE_NAME,
                "targetRef": {"kind": "Pod", "namespace": "default", "name": pod},
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": "web-abc", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        "endpoints": endpoints,
    })
}

fn node() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME}},
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]},
    })
}

/// Loads the rules kube-proxy would have for `objects` into the node namespace, both families.
fn load_kube_proxy_rules(bed: &Testbed, objects: &[Value]) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let state = load_cluster_json(&list.to_string(), "test").expect("cluster state");
    let overrides = SettingsOverrides {
        cluster_cidrs: Some(vec!["10.244.0.0/16".parse().expect("cidr")]),
        ..Default::default()
    };
    let mut ctx = resolve_node_context(&state, NODE_NAME, None, &overrides)
        .expect("context")
        .context;
    ctx.nfacct = false;
    for family in [IpFamily::V4, IpFamily::V6] {
        let text = render_node_dump(&plan(&state, &ctx, family));
        bed.node
            .iptables_restore(family, &text, false)
            .unwrap_or_else(|e| panic!("loading the {family} rules: {e}\n{text}"));
    }
}

/// `iptables-save` of both families without comments, counters and table declarations' counters.
fn rules(bed: &Testbed) -> String {
    let mut out = String::new();
    for family in [IpFamily::V4, IpFamily::V6] {
        let text = bed.node.iptables_save(family).expect("iptables-save");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let line = match line.strip_prefix('[').and_then(|r| r.split_once("] ")) {
                Some((_, rule)) => rule,
                None => line,
            };
            // Built-in chain lines carry counters: `:INPUT ACCEPT [12:345]`.
            let line = match line.rfind(" [") {
                Some(at) if line.starts_with(':') => &line[..at],
                _ => line,
            };
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn gauge(metrics: &str, kind: &str) -> Option<f64> {
    let prefix = format!("svcproxy_drift_findings{{kind=\"{kind}\",");
    metrics
        .lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn last_check(bed: &Testbed) -> f64 {
    sample(
        &bed.node_get(10249, "/metrics"),
        "svcproxy_drift_last_check_timestamp_seconds",
    )
    .unwrap_or(0.0)
}

/// Waits until two more checks have completed.
fn two_more_checks(bed: &Testbed) {
    let start = last_check(bed);
    let mut seen = start;
    let mut checks = 0;
    bed.wait(WAIT, "two more checks", || {
        let now = last_check(bed);
        if now > seen {
            seen = now;
            checks += 1;
        }
        checks >= 2
    });
}

fn drift_events<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["reason"] == "RulesDrift")
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&format!("{kind} ")))
        })
        .collect()
}

#[test]
fn audit_reports_drift_as_metrics_and_events_and_never_writes() {
    if !skip_unless_available("audit_reports_drift_as_metrics_and_events_and_never_writes") {
        return;
    }
    let mut bed = Testbed::new(2);
    let objects = vec![
        bed.api.apply_json(node()),
        bed.api.apply_json(service()),
        bed.api.apply_json(slice(&bed, &["pod-a", "pod-b"])),
    ];
    load_kube_proxy_rules(&bed, &objects);
    let loaded = rules(&bed);
    assert!(loaded.contains("KUBE-SEP-"), "{loaded}");

    bed.start_proxy(&["--audit", "--iptables-sync-period=1s"]);

    // The rules match the cluster: every kind is exported, all at 0, and the audit is healthy.
    bed.wait(WAIT, "a first clean check", || {
        let metrics = bed.node_get(10249, "/metrics");
        sample(&metrics, "svcproxy_drift_last_check_timestamp_seconds").is_some_and(|t| t > 0.0)
            && KINDS.iter().all(|k| gauge(&metrics, k) == Some(0.0))
    });
    two_more_checks(&bed);
    let metrics = bed.node_get(10249, "/metrics");
    for kind in KINDS {
        assert_eq!(gauge(&metrics, kind), Some(0.0), "{kind}:\n{metrics}");
    }
    assert_eq!(
        sample(&metrics, "svcproxy_drift_check_failures_total"),
        Some(0.0)
    );
    assert_eq!(bed.node_status(10256, "/healthz"), "200");
    assert!(
        bed.api.events().iter().all(|e| e["reason"] != "RulesDrift"),
        "no Event while the rules match: {:#?}",
        bed.api.events()
    );
    assert_eq!(rules(&bed), loaded, "the audit changed nothing");

    // Damage 1: the jump to pod-a's KUBE-SEP chain disappears from the service chain.
    let pod_a = format!("{}:8080", bed.pod("pod-a").ip);
    let jump = bed
        .node
        .iptables_save(IpFamily::V4)
        .expect("save")
        .lines()
        .find(|l| l.starts_with("-A KUBE-SVC-") && l.contains(&pod_a) && l.contains("-j KUBE-SEP-"))
        .unwrap_or_else(|| panic!("a jump to {pod_a}'s chain"))
        .to_string();
    let delete = format!("iptables -t nat -D {}", &jump["-A ".len()..]);
    bed.node
        .exec("sh", &["-c", &delete], None)
        .expect("delete the jump");
    // Damage 2: nat's canary is deleted, as a flush would; the real proxy would recreate it.
    bed.node
        .exec("iptables", &["-t", "nat", "-X", "KUBE-PROXY-CANARY"], None)
        .expect("delete the canary");
    let damaged = rules(&bed);

    bed.wait(WAIT, "missing-endpoint and rules-flushed reported", || {
        let metrics = bed.node_get(10249, "/metrics");
        gauge(&metrics, "missing-endpoint").is_some_and(|n| n >= 1.0)
            && gauge(&metrics, "rules-flushed") == Some(1.0)
    });
    bed.wait(WAIT, "a missing-endpoint Event for the Service", || {
        !drift_events(&bed.api.events(), "missing-endpoint").is_empty()
    });
    let events = bed.api.events();
    let missing = drift_events(&events, "missing-endpoint");
    let event = missing[0];
    assert_eq!(event["involvedObject"]["kind"], "Service", "{event:#}");
    assert_eq!(event["involvedObject"]["name"], "web");
    assert_eq!(event["involvedObject"]["namespace"], "default");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reportingComponent"], "svcproxy");
    let message = event["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("default/web:http") && message.contains(&pod_a),
        "{message}"
    );
    bed.wait(WAIT, "a rules-flushed Event for the Node", || {
        drift_events(&bed.api.events(), "rules-flushed")
            .iter()
            .any(|e| {
                e["involvedObject"]["kind"] == "Node" && e["involvedObject"]["name"] == NODE_NAME
            })
    });

    // While the drift persists, no further Event is written.
    let count = bed.api.events().len();
    two_more_checks(&bed);
    two_more_checks(&bed);
    assert_eq!(
        bed.api.events().len(),
        count,
        "one Event per finding, not one per check: {:#?}",
        bed.api.events()
    );

    // A cluster change: pod-b leaves the slice, but the node's rules still send traffic there.
    let pod_b = format!("{}:8080", bed.pod("pod-b").ip);
    bed.api.apply_json(slice(&bed, &["pod-a"]));
    bed.wait(WAIT, "stale-endpoint reported", || {
        gauge(&bed.node_get(10249, "/metrics"), "stale-endpoint").is_some_and(|n| n >= 1.0)
    });
    bed.wait(WAIT, "a stale-endpoint Event naming pod-b", || {
        drift_events(&bed.api.events(), "stale-endpoint")
            .iter()
            .any(|e| {
                e["involvedObject"]["name"] == "web"
                    && e["message"].as_str().is_some_and(|m| m.contains(&pod_b))
            })
    });
    let drift = bed.node_get(10249, "/debug/drift");
    let doc: Value = serde_json::from_str(&drift).expect("/debug/drift is JSON");
    assert_eq!(doc["kind"], "DriftReport");
    assert!(
        doc["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["kind"] == "stale-endpoint")),
        "{doc:#}"
    );
    assert_eq!(bed.node_status(10256, "/healthz"), "200");

    // Nothing was written: the rules are exactly as damaged, the canary was not recreated, and the
    // only writes to the API server were Events.
    two_more_checks(&bed);
    let after = rules(&bed);
    assert_eq!(after, damaged, "the audit changed the rules");
    assert!(
        !after.split("*nat").nth(1).is_some_and(|nat| nat
            .split("COMMIT")
            .next()
            .is_some_and(|t| t.contains("KUBE-PROXY-CANARY"))),
        "the nat canary was recreated"
    );
    let writes: Vec<String> = bed
        .api
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        writes.iter().all(|w| w.contains("/events")),
        "only Events are written: {writes:#?}"
    );
    let log = bed.proxy_log();
    assert!(!log.contains("iptables-restore"), "{log}");
    bed.stop_proxy();
}
