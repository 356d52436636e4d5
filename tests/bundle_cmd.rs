//! `kubectl-svcproxy bundle`, the real binary against the test API server over real HTTP: what it
//! writes loads back with the same loaders the offline diagnostics use, nodes that fail are listed,
//! and a non-empty directory is only written with --force.

mod support;

use std::fs;
use std::path::Path;

use assert_cmd::Command;
use support::apiserver::{ApiServer, ExecReply};
use support::diagsrv::{
    DebugServer, V4_DUMP, V6_DUMP, app_pod, kube_proxy_config, kube_proxy_pod, node, proxy_pod,
    service, slice,
};
use svcproxy::core::model::bundle::load_cluster_json;
use svcproxy::core::parse::parse_dump;
use svcproxy::kube::diag::{ClusterScope, fetch_cluster};

/// A cluster of three nodes: our proxy on node-a, kube-proxy on node-b, nothing on node-c.
struct Cluster {
    api: ApiServer,
    _debug: DebugServer,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Cluster {
        let api = ApiServer::start();
        for (name, ip) in [
            ("node-a", "192.168.1.1"),
            ("node-b", "192.168.1.2"),
            ("node-c", "192.168.1.3"),
        ] {
            api.apply_json(node(name, ip));
        }
        api.apply_json(service("shop", "web", "10.96.0.10"));
        api.apply_json(slice("shop", "web", "web-1", "10.244.1.10", "node-a"));
        api.apply_json(app_pod("shop", "web-1", "web", "10.244.1.10", "node-a"));
        api.apply_json(kube_proxy_config());
        api.apply_json(proxy_pod("svcproxy-aaaaa", "node-a", "Running"));
        api.apply_json(kube_proxy_pod("kube-proxy-bbbbb", "node-b"));
        let debug = DebugServer::start(Ok(V4_DUMP.to_string()), Some(Ok(V6_DUMP.to_string())));
        api.register_pod_proxy("kube-system", "svcproxy-aaaaa", 10249, &debug.url());
        api.set_exec_reply(
            "kube-system",
            "kube-proxy-bbbbb",
            "iptables-save",
            ExecReply::ok(V4_DUMP),
        );
        let dir = tempfile::tempdir().expect("temp dir");
        api.write_kubeconfig(dir.path());
        Cluster {
            api,
            _debug: debug,
            dir,
        }
    }

    fn bundle(&self, args: &[&str]) -> std::process::Output {
        Command::cargo_bin("kubectl-svcproxy")
            .expect("the binary")
            .arg("bundle")
            .args(args)
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .env("NO_COLOR", "1")
            .env_remove("KUBECONFIG")
            .output()
            .expect("run bundle")
    }

    fn out(&self) -> String {
        self.dir.path().join("out").display().to_string()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_bundle_loads_back_to_the_live_state_and_its_dumps_parse() {
    let cluster = Cluster::new();
    let out = cluster.out();
    let run = cluster.bundle(&[&out, "--node", "node-a", "--node", "node-b"]);
    let stderr = text(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        text(&run.stdout).contains("the rules of 2 of 2 nodes"),
        "{}",
        text(&run.stdout)
    );
    // Piped stderr: no progress lines.
    assert!(!stderr.contains("[1/2]"), "{stderr}");

    let out = Path::new(&out);
    assert_eq!(names(out), ["cluster.json", "nodes"]);
    assert_eq!(
        names(&out.join("nodes")),
        [
            "node-a.ip6tables-save",
            "node-a.iptables-save",
            "node-b.iptables-save"
        ]
    );
    let json = fs::read_to_string(out.join("cluster.json")).expect("cluster.json");
    let loaded = load_cluster_json(&json, "cluster.json").expect("cluster.json loads");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let live = runtime
        .block_on(async {
            let mut config = cluster.api.config().await;
            config.default_retry = false;
            let client = kube::Client::try_from(config).expect("client");
            fetch_cluster(&client, &ClusterScope::All).await
        })
        .expect("fetch");
    assert_eq!(loaded, live.state);
    assert_eq!(loaded.nodes.len(), 3);
    assert_eq!(loaded.pods.len(), 3, "the app pod and both proxy pods");
    assert!(loaded.kube_proxy_config.is_some());

    for file in [
        "node-a.iptables-save",
        "node-a.ip6tables-save",
        "node-b.iptables-save",
    ] {
        let dump = fs::read_to_string(out.join("nodes").join(file)).expect("dump");
        parse_dump(&dump).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    assert_eq!(
        fs::read_to_string(out.join("nodes/node-b.iptables-save")).expect("dump"),
        V4_DUMP
    );
}

#[test]
fn failing_nodes_are_listed_and_the_others_still_written() {
    let cluster = Cluster::new();
    let out = cluster.out();
    let run = cluster.bundle(&[&out]);
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    for needle in [
        "could not read the rules of 1 of 3 nodes (node-c)",
        "node-c: cannot read the rules of node \"node-c\"",
        "--rules FILE",
    ] {
        assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    }
    assert!(text(&run.stdout).contains("the rules of 2 of 3 nodes"));
    assert_eq!(
        names(&Path::new(&out).join("nodes")),
        [
            "node-a.ip6tables-save",
            "node-a.iptables-save",
            "node-b.iptables-save"
        ]
    );
}

#[test]
fn a_non_empty_directory_needs_force() {
    let cluster = Cluster::new();
    let out = cluster.out();
    fs::create_dir_all(Path::new(&out).join("nodes")).expect("mkdir");
    fs::write(
        Path::new(&out).join("nodes/old-node.iptables-save"),
        "stale",
    )
    .expect("write");
    let run = cluster.bundle(&[&out, "--node", "node-a"]);
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr.contains("is not empty; pass --force"), "{stderr}");
    assert!(!Path::new(&out).join("cluster.json").exists());
    assert!(
        cluster.api.requests().is_empty(),
        "nothing is read before the check"
    );

    let run = cluster.bundle(&[&out, "--node", "node-a", "--force"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(
        names(&Path::new(&out).join("nodes")),
        ["node-a.ip6tables-save", "node-a.iptables-save"],
        "the old dumps are replaced"
    );
}

#[test]
fn errors_before_anything_is_written_say_what_to_fix() {
    let cluster = Cluster::new();
    let out = cluster.out();

    cluster.api.forbid("list", "services");
    let run = cluster.bundle(&[&out]);
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    for needle in [
        "cannot read the cluster state",
        "list services",
        "svcproxy-diagnostics",
        "deploy/diagnostics-rbac.yaml",
    ] {
        assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    }
    assert!(!Path::new(&out).exists(), "nothing written");

    let bad = cluster.dir.path().join("broken-kubeconfig");
    fs::write(&bad, "apiVersion: v1\nkind: Config\nclusters: [oops\n").expect("write");
    let run = Command::cargo_bin("kubectl-svcproxy")
        .expect("the binary")
        .args(["bundle", &out, "--kubeconfig"])
        .arg(&bad)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run");
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot use kubeconfig"), "{stderr}");
    assert!(stderr.contains("broken-kubeconfig"), "{stderr}");

    let run = Command::cargo_bin("kubectl-svcproxy")
        .expect("the binary")
        .args(["bundle", &out, "--kubeconfig", "/nonexistent/kubeconfig"])
        .output()
        .expect("run");
    assert_eq!(run.status.code(), Some(2));
    assert!(
        text(&run.stderr).contains("/nonexistent/kubeconfig does not exist"),
        "{}",
        text(&run.stderr)
    );
}
