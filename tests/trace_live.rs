//! `trace` and `chains` live: the real binary and the real kube client against the test API server,
//! with the seed cluster's objects. node10 runs our proxy (its rules come through `pods/proxy` from
//! `/debug/iptables`), node8 runs kube-proxy (its rules come from `iptables-save` run by exec), and
//! node8's rules still hold a deleted pod's endpoint.

mod support;

use std::fs;
use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;
use support::apiserver::{ApiServer, ExecReply};
use support::diagsrv::{DebugServer, kube_proxy_pod, proxy_pod};

fn seed(file: &str) -> String {
    fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/seed")
            .join(file),
    )
    .expect("seed file")
}

struct Live {
    api: ApiServer,
    _debug: DebugServer,
    dir: tempfile::TempDir,
}

impl Live {
    fn new() -> Live {
        let api = ApiServer::start();
        let cluster: Value = serde_json::from_str(&seed("cluster.json")).expect("json");
        for item in cluster["items"].as_array().expect("items") {
            api.apply_json(item.clone());
        }
        api.apply_json(proxy_pod("svcproxy-node10", "node10", "Running"));
        api.apply_json(kube_proxy_pod("kube-proxy-node8", "node8"));
        let debug = DebugServer::start(Ok(seed("nodes/node10.iptables-save")), None);
        api.register_pod_proxy("kube-system", "svcproxy-node10", 10249, &debug.url());
        api.set_exec_reply(
            "kube-system",
            "kube-proxy-node8",
            "iptables-save",
            ExecReply::ok(&seed("nodes/node8.iptables-save")),
        );
        let dir = tempfile::tempdir().expect("temp dir");
        api.write_kubeconfig(dir.path());
        Live {
            api,
            _debug: debug,
            dir,
        }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::cargo_bin("kubectl-svcproxy")
            .expect("the binary")
            .args(args)
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .env("NO_COLOR", "1")
            .env_remove("KUBECONFIG")
            .output()
            .expect("runs")
    }
}

fn json(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}); stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn live_trace_reads_both_nodes_and_flags_the_stale_one() {
    let live = Live::new();
    let output = live.run(&["trace", "my-service", "-o", "json"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let doc = json(&output);
    let nodes: Vec<(&str, &str)> = doc["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["node"].as_str().expect("node"),
                n["source"].as_str().expect("source"),
            )
        })
        .collect();
    assert_eq!(nodes.len(), 2, "{doc:#}");
    assert!(
        nodes
            .iter()
            .any(|(n, s)| *n == "node10" && s.contains("/debug/iptables")),
        "{nodes:?}"
    );
    assert!(
        nodes
            .iter()
            .any(|(n, s)| *n == "node8" && s.contains("iptables-save")),
        "{nodes:?}"
    );
    let findings = doc["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 1, "{doc:#}");
    assert_eq!(findings[0]["kind"], "stale-endpoint");
    assert_eq!(findings[0]["node"], "node8");
    assert_eq!(findings[0]["endpoint"], "10.42.1.2:80");
    // The expected settings came from the kube-proxy ConfigMap the seed cluster carries.
    let settings = doc["nodes"][0]["settings"].to_string();
    assert!(settings.contains("ConfigMap"), "{settings}");
    // Exactly one exec, of iptables-save in node8's kube-proxy pod (ip6tables-save may follow).
    assert!(
        live.api
            .execs()
            .iter()
            .any(|e| format!("{e:?}").contains("kube-proxy-node8"))
    );
}

#[test]
fn live_chains_diff_for_one_node() {
    let live = Live::new();
    let output = live.run(&["chains", "my-service", "--node", "node10", "--diff"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = live.run(&["chains", "my-service", "--node", "node8", "--diff"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("10.42.1.2:80"));
}

#[test]
fn a_forbidden_pods_proxy_names_the_permission() {
    let live = Live::new();
    live.api.forbid("get", "pods/proxy");
    let output = live.run(&["trace", "my-service", "--node", "node10"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("pods/proxy"), "{stderr}");
}

#[test]
fn a_forbidden_service_list_names_the_permission_and_an_unknown_service_is_an_error() {
    let live = Live::new();
    let output = live.run(&["trace", "nope", "-n", "default"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Service default/nope not found"),
        "{stderr}"
    );
    live.api.forbid("get", "services");
    let output = live.run(&["trace", "my-service"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("get services"), "{stderr}");
}

#[test]
fn a_bad_kubeconfig_is_named_with_a_way_out() {
    let output = Command::cargo_bin("kubectl-svcproxy")
        .expect("the binary")
        .args([
            "trace",
            "my-service",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
        ])
        .env("NO_COLOR", "1")
        .env_remove("KUBECONFIG")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/kubeconfig"), "{stderr}");
    assert!(
        stderr.contains("--snapshot"),
        "offline reading is offered: {stderr}"
    );
}

#[test]
fn a_forbidden_endpointslice_list_names_the_group_and_the_role() {
    let live = Live::new();
    live.api.forbid("list", "endpointslices.discovery.k8s.io");
    let output = live.run(&["trace", "my-service"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("endpointslices") && stderr.contains("discovery.k8s.io"),
        "{stderr}"
    );
    assert!(
        stderr.contains("svcproxy-diagnostics"),
        "the role to bind: {stderr}"
    );
}
