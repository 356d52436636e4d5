//! `trace` and `chains` as a user runs them: the built binary on snapshot bundles. The seed bundle
//! shows its stale node; the real kube-proxy bundles are clean; damaged copies of them produce every
//! finding kind; bad input gets an error that names the input and the fix.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn bin() -> Command {
    let mut cmd = Command::cargo_bin("kubectl-svcproxy").expect("binary builds");
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1");
    cmd
}

fn fixture(scenario: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kube-proxy-v1.36")
        .join(scenario)
}

/// A copy of bundle `from` in a temp dir, with `edit` applied to its node dump and `edit_cluster` to
/// its parsed `cluster.json`.
fn damaged_bundle(
    from: &Path,
    node_file: &str,
    edit: impl Fn(&str) -> String,
    edit_cluster: impl Fn(&mut Value),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::create_dir(dir.path().join("nodes")).expect("nodes dir");
    let mut cluster: Value =
        serde_json::from_str(&fs::read_to_string(from.join("cluster.json")).expect("cluster.json"))
            .expect("json");
    edit_cluster(&mut cluster);
    fs::write(
        dir.path().join("cluster.json"),
        serde_json::to_string_pretty(&cluster).expect("json"),
    )
    .expect("write cluster.json");
    let dump = fs::read_to_string(from.join("nodes").join(node_file)).expect("dump");
    fs::write(dir.path().join("nodes").join(node_file), edit(&dump)).expect("write dump");
    dir
}

/// `trace -o json` on `args`: the exit code and the finding kinds.
fn trace_json(args: &[&str]) -> (i32, Value) {
    let output = bin()
        .arg("trace")
        .args(args)
        .args(["-o", "json"])
        .output()
        .expect("runs");
    let code = output.status.code().unwrap_or(-1);
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}); exit {code}; stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (code, doc)
}

fn kinds(doc: &Value) -> Vec<String> {
    doc["findings"]
        .as_array()
        .expect("findings list")
        .iter()
        .map(|f| f["kind"].as_str().expect("kind").to_string())
        .collect()
}

fn without_lines(text: &str, drop: impl Fn(&str) -> bool) -> String {
    text.lines()
        .filter(|l| !drop(l))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn the_seed_bundle_shows_the_stale_endpoint_on_node8() {
    let output = bin()
        .args(["trace", "my-service", "--snapshot", "examples/seed"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1), "findings give exit code 1");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    insta::assert_snapshot!("seed_trace", text);
    let (code, doc) = trace_json(&["my-service", "--snapshot", "examples/seed"]);
    assert_eq!(code, 1);
    assert_eq!(kinds(&doc), vec!["stale-endpoint"]);
    let finding = &doc["findings"][0];
    assert_eq!(finding["node"], "node8");
    assert_eq!(finding["endpoint"], "10.42.1.2:80");
    assert_eq!(finding["severity"], "error");
    assert_eq!(doc["apiVersion"], "svcproxy/v1");
    assert_eq!(doc["kind"], "ServiceTrace");
    assert_eq!(doc["disagreeingNodes"], serde_json::json!(["node8"]));
}

#[test]
fn the_seed_bundle_node10_alone_is_clean_and_exits_0() {
    bin()
        .args([
            "trace",
            "my-service",
            "--snapshot",
            "examples/seed",
            "--node",
            "node10",
        ])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "the node's rules match the cluster",
        ));
}

#[test]
fn wide_and_yaml_outputs() {
    let output = bin()
        .args([
            "trace",
            "my-service",
            "--snapshot",
            "examples/seed",
            "--node",
            "node8",
            "-o",
            "wide",
        ])
        .output()
        .expect("runs");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    insta::assert_snapshot!("seed_trace_wide_node8", text);
    let output = bin()
        .args([
            "trace",
            "my-service",
            "--snapshot",
            "examples/seed",
            "-o",
            "yaml",
        ])
        .output()
        .expect("runs");
    let yaml = String::from_utf8(output.stdout).expect("utf-8");
    assert!(yaml.contains("apiVersion: svcproxy/v1"), "{yaml}");
    assert!(yaml.contains("kind: stale-endpoint"), "{yaml}");
}

#[test]
fn real_kube_proxy_bundles_are_clean_for_every_service() {
    for scenario in ["basic", "extended"] {
        let cluster: Value = serde_json::from_str(
            &fs::read_to_string(fixture(scenario).join("cluster.json")).expect("cluster.json"),
        )
        .expect("json");
        for item in cluster["items"].as_array().expect("items") {
            if item["kind"] != "Service" {
                continue;
            }
            let id = format!(
                "{}/{}",
                item["metadata"]["namespace"].as_str().expect("ns"),
                item["metadata"]["name"].as_str().expect("name")
            );
            let dir = fixture(scenario);
            let (_, doc) = trace_json(&[
                &id,
                "--snapshot",
                dir.to_str().expect("path"),
                "--node",
                "testnode",
            ]);
            let drift: Vec<String> = kinds(&doc)
                .into_iter()
                .filter(|k| {
                    !["no-endpoints", "no-local-endpoints", "selector-mismatch"]
                        .contains(&k.as_str())
                })
                .collect();
            assert!(drift.is_empty(), "{scenario} {id}: {doc:#}");
        }
    }
}

#[test]
fn a_packet_from_a_pod_is_simulated_step_by_step() {
    let output = bin()
        .args([
            "trace",
            "my-service",
            "--snapshot",
            "examples/seed",
            "--node",
            "node10",
            "--from",
            "pod/nginx-deployment-6b474476c4-mp8vw",
        ])
        .output()
        .expect("runs");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    insta::assert_snapshot!("seed_trace_from_pod", text);
    let (_, doc) = trace_json(&[
        "my-service",
        "--snapshot",
        "examples/seed",
        "--node",
        "node8",
        "--from",
        "external",
    ]);
    let sim = &doc["nodes"][0]["simulation"];
    assert!(
        sim["notes"][0]
            .as_str()
            .is_some_and(|n| n.contains("not reachable from outside")),
        "{sim:#}"
    );
    let (_, doc) = trace_json(&[
        "my-service",
        "--snapshot",
        "examples/seed",
        "--node",
        "node8",
        "--from",
        "10.42.1.50",
    ]);
    let sim = &doc["nodes"][0]["simulation"];
    assert_eq!(sim["verdict"]["verdict"], "dnat");
    assert_eq!(
        sim["verdict"]["candidates"].as_array().map(Vec::len),
        Some(4)
    );
    assert_eq!(
        sim["masquerade"], false,
        "pod traffic from inside the cluster CIDR to another pod keeps its source"
    );
}

#[test]
fn every_finding_kind_is_produced_by_some_bundle() {
    let mut seen: std::collections::BTreeSet<String> = Default::default();
    let basic = fixture("basic");
    let run = |dir: &Path, service: &str| -> Vec<String> {
        eprintln!("case {service} in {}", dir.display());
        let (code, doc) = trace_json(&[
            service,
            "--snapshot",
            dir.to_str().expect("path"),
            "--node",
            "testnode",
        ]);
        let found = kinds(&doc);
        assert_eq!(code, if found.is_empty() { 0 } else { 1 }, "{doc:#}");
        eprintln!("  -> {found:?}");
        found
    };
    let keep = |text: &str| text.to_string();
    let same = |_: &mut Value| {};
    let expect = |found: Vec<String>, kinds: &[&str]| -> Vec<String> {
        assert_eq!(
            found,
            kinds.iter().map(|k| k.to_string()).collect::<Vec<_>>()
        );
        found
    };
    // no-endpoints: a Service without a slice.
    seen.extend(expect(
        run(&basic, "default/no-endpoints"),
        &["no-endpoints"],
    ));
    // stale-endpoint and missing-endpoint: the cluster lost one endpoint and gained another.
    let dir = damaged_bundle(&basic, "testnode.iptables-save", keep, |c| {
        for item in c["items"].as_array_mut().expect("items") {
            if item["metadata"]["name"] == "web-manual" {
                let endpoints = item["endpoints"].as_array_mut().expect("endpoints");
                endpoints[0]["addresses"] = serde_json::json!(["10.244.1.99"]);
            }
        }
    });
    seen.extend(expect(
        run(dir.path(), "default/web"),
        &["missing-endpoint", "stale-endpoint"],
    ));
    // stale-service: the Service is gone, its rules are not.
    let dir = damaged_bundle(&basic, "testnode.iptables-save", keep, |c| {
        c["items"]
            .as_array_mut()
            .expect("items")
            .retain(|i| i["metadata"]["name"] != "sticky");
    });
    assert_eq!(run(dir.path(), "default/sticky"), vec!["stale-service"]);
    seen.insert("stale-service".into());
    // missing-service-rules: the node has nothing for web-nodeport.
    let dir = damaged_bundle(
        &basic,
        "testnode.iptables-save",
        |t| without_lines(t, |l| l.contains("default/web-nodeport")),
        same,
    );
    seen.extend(expect(
        run(dir.path(), "default/web-nodeport"),
        &["missing-service-rules"],
    ));
    // stale-reject: a REJECT left behind for web.
    let dir = damaged_bundle(
        &basic,
        "testnode.iptables-save",
        |t| {
            t.replacen(
            "-A KUBE-SERVICES -d 10.96.10.30/32",
            "-A KUBE-SERVICES -d 10.96.10.10/32 -p tcp -m comment --comment \"default/web:http has no endpoints\" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable\n-A KUBE-SERVICES -d 10.96.10.30/32",
            1,
        )
        },
        same,
    );
    seen.extend(expect(run(dir.path(), "default/web"), &["stale-reject"]));
    // wrong-probability: an uneven ladder.
    let dir = damaged_bundle(
        &basic,
        "testnode.iptables-save",
        |t| {
            t.replacen(
                "--probability 0.33333333349",
                "--probability 0.90000000000",
                1,
            )
        },
        same,
    );
    seen.extend(expect(
        run(dir.path(), "default/web"),
        &["wrong-probability"],
    ));
    // rule-mismatch: session affinity lost.
    let dir = damaged_bundle(
        &basic,
        "testnode.iptables-save",
        |t| without_lines(t, |l| l.contains("--rcheck")),
        same,
    );
    seen.extend(expect(
        run(dir.path(), "default/sticky"),
        &["rule-mismatch"],
    ));
    // missing-jump and rules-flushed.
    let dir = damaged_bundle(
        &basic,
        "testnode.iptables-save",
        |t| {
            without_lines(t, |l| {
                l.starts_with("-A PREROUTING") || l.contains("KUBE-PROXY-CANARY")
            })
        },
        same,
    );
    seen.extend(expect(
        run(dir.path(), "default/web"),
        &["rules-flushed", "missing-jump"],
    ));
    // backend-mismatch: the same chains in iptables-legacy.
    let dir = damaged_bundle(&basic, "testnode.iptables-save", keep, same);
    let legacy = fs::read_to_string(basic.join("nodes/testnode.iptables-save")).expect("dump");
    fs::write(
        dir.path().join("nodes/testnode.iptables-legacy-save"),
        legacy.replace("(nf_tables)", "(legacy)"),
    )
    .expect("write");
    seen.extend(expect(
        run(dir.path(), "default/web"),
        &["backend-mismatch"],
    ));
    // no-local-endpoints: web-local's local endpoint moved to the other node.
    let dir = damaged_bundle(&basic, "testnode.iptables-save", keep, |c| {
        for item in c["items"].as_array_mut().expect("items") {
            if item["metadata"]["name"] == "web-local-manual" {
                for e in item["endpoints"].as_array_mut().expect("endpoints") {
                    e["nodeName"] = "othernode".into();
                }
            }
        }
    });
    let found = run(dir.path(), "default/web-local");
    assert_eq!(found[0], "no-local-endpoints", "{found:?}");
    assert!(
        found[1..].iter().all(|k| k == "rule-mismatch"),
        "the node still routes to its old local endpoint: {found:?}"
    );
    seen.extend(found);
    // selector-mismatch: a pod with the selector's labels that no slice lists.
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/seed");
    let dir = damaged_bundle(&seed, "node10.iptables-save", keep, |c| {
        let items = c["items"].as_array_mut().expect("items");
        let mut pod = items
            .iter()
            .find(|i| i["kind"] == "Pod")
            .expect("a pod")
            .clone();
        pod["metadata"]["name"] = "nginx-unlisted".into();
        pod["status"]["podIP"] = "10.42.0.99".into();
        pod["status"]["podIPs"] = serde_json::json!([{"ip": "10.42.0.99"}]);
        items.push(pod);
    });
    let (_, doc) = trace_json(&[
        "my-service",
        "--snapshot",
        dir.path().to_str().expect("path"),
        "--node",
        "node10",
    ]);
    seen.extend(kinds(&doc));
    let all = [
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
    for kind in all {
        assert!(seen.contains(kind), "no bundle produced {kind}: {seen:?}");
    }
}

#[test]
fn chains_shows_the_nodes_chains_and_the_difference() {
    let output = bin()
        .args([
            "chains",
            "my-service",
            "--snapshot",
            "examples/seed",
            "--node",
            "node8",
            "--diff",
        ])
        .output()
        .expect("runs");
    assert_eq!(
        output.status.code(),
        Some(1),
        "a difference gives exit code 1"
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    insta::assert_snapshot!("seed_chains_diff_node8", text);
    bin()
        .args([
            "chains",
            "my-service",
            "--snapshot",
            "examples/seed",
            "--node",
            "node10",
            "--diff",
        ])
        .assert()
        .code(0);
    let output = bin()
        .args([
            "chains",
            "my-service",
            "--snapshot",
            "examples/seed",
            "--node",
            "node10",
            "-o",
            "json",
        ])
        .output()
        .expect("runs");
    let doc: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(doc["kind"], "ServiceChains");
    let names: Vec<&str> = doc["nodes"][0]["chains"]
        .as_array()
        .expect("chains")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        names.contains(&"KUBE-SERVICES") && names.iter().any(|n| n.starts_with("KUBE-SEP-")),
        "{names:?}"
    );
    let expected = bin()
        .args([
            "chains",
            "my-service",
            "--snapshot",
            "examples/seed",
            "--node",
            "node8",
            "--expected",
        ])
        .output()
        .expect("runs");
    let expected = String::from_utf8(expected.stdout).expect("utf-8");
    assert!(
        !expected.contains("10.42.1.2:80"),
        "the expected rules have no stale endpoint"
    );
}

#[test]
fn bad_inputs_name_the_input_and_the_fix() {
    // An unknown Service.
    bin()
        .args(["trace", "nope", "--snapshot", "examples/seed"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("Service default/nope not found")
                .and(predicate::str::contains("-n NAMESPACE")),
        );
    // Not a bundle.
    bin()
        .args(["trace", "my-service", "--snapshot", "no/such/dir"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no such directory"));
    // A garbage dump: file and line.
    let dir = damaged_bundle(
        &fixture("basic"),
        "testnode.iptables-save",
        |t| t.replacen("-A KUBE-SERVICES", "-A KUBE-SERVICES --bogus-option", 1),
        |_| {},
    );
    let file = dir.path().join("nodes/testnode.iptables-save");
    bin()
        .args([
            "trace",
            "web",
            "--snapshot",
            dir.path().to_str().expect("path"),
        ])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains(format!("{}:", file.display()))
                .and(predicate::str::contains("iptables-save -c")),
        );
    // A truncated dump (no COMMIT).
    let dir = damaged_bundle(
        &fixture("basic"),
        "testnode.iptables-save",
        |t| t[..t.len() / 2].to_string(),
        |_| {},
    );
    bin()
        .args([
            "trace",
            "web",
            "--snapshot",
            dir.path().to_str().expect("path"),
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("testnode.iptables-save:"));
    // --rules without a node name the file could give.
    bin()
        .args([
            "trace",
            "my-service",
            "--snapshot",
            "examples/seed",
            "--rules",
            "Cargo.toml",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--node NAME"));
    // A bad --from.
    bin()
        .args([
            "trace",
            "my-service",
            "--snapshot",
            "examples/seed",
            "--from",
            "somewhere",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "pod/NAME, an IP address, `node` or `external`",
        ));
    // An unknown port.
    bin()
        .args([
            "trace",
            "my-service",
            "--snapshot",
            "examples/seed",
            "--port",
            "https",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("has no port \"https\""));
}

#[test]
fn rules_file_with_node_named_by_the_file() {
    bin()
        .args([
            "trace",
            "my-service",
            "--snapshot",
            "examples/seed",
            "--rules",
            "examples/seed/nodes/node8.iptables-save",
        ])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("stale-endpoint"));
}

/// `trace` reads only its Service's part of a bundle: a broken object of another namespace and a
/// garbage rule in another Service's chain do not stop it (`chains` still reads everything); the same
/// damage in what the Service needs does, naming the line.
#[test]
fn trace_reads_only_what_its_service_needs() {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/seed");
    let broken_elsewhere = |cluster: &mut Value| {
        if let Some(items) = cluster["items"].as_array_mut() {
            items.push(serde_json::json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "broken", "namespace": "elsewhere"},
                "spec": {"clusterIP": "10.96.99.99", "ports": [{"port": 70000}]}
            }));
        }
    };
    let dir = damaged_bundle(
        &seed,
        "node8.iptables-save",
        |d| d.to_string(),
        broken_elsewhere,
    );
    let snapshot = dir.path().to_str().expect("utf-8 path");
    let (code, doc) = trace_json(&["my-service", "--snapshot", snapshot]);
    assert_eq!(code, 1);
    assert_eq!(kinds(&doc), vec!["stale-endpoint"]);
    bin()
        .args(["chains", "my-service", "--snapshot", snapshot])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("items[").and(predicate::str::contains("70000")));

    // A garbage rule: in another Service's endpoint chain it is not read; in this one's it is an
    // error at its line.
    let dump = fs::read_to_string(seed.join("nodes/node8.iptables-save")).expect("dump");
    let own_sep = dump
        .lines()
        .find(|l| l.starts_with("-A KUBE-SEP-") && l.contains("default/my-service"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("an endpoint chain of my-service")
        .to_string();
    let with_garbage = |chain: &str| {
        let chain = chain.to_string();
        move |d: &str| {
            let declaration = format!(":{chain} - [0:0]\n");
            let mut out = String::new();
            for line in d.lines() {
                out.push_str(line);
                out.push('\n');
                if format!("{line}\n") == declaration {
                    out.push_str(&format!("-A {chain} --no-such-option 1\n"));
                }
            }
            out
        }
    };
    let garbage_line = |text: &str| {
        text.lines()
            .position(|l| l.contains("--no-such-option"))
            .map(|i| i + 1)
            .expect("the garbage line")
    };
    let own = with_garbage(&own_sep)(&dump);
    let dir = damaged_bundle(&seed, "node8.iptables-save", with_garbage(&own_sep), |_| {});
    let snapshot = dir.path().to_str().expect("utf-8 path");
    bin()
        .args([
            "trace",
            "my-service",
            "--snapshot",
            snapshot,
            "--node",
            "node8",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "node8.iptables-save:{}:",
            garbage_line(&own)
        )));

    let other = "KUBE-SEP-NOTMYSERVICE0";
    let dump_with_other = dump.replace(
        "COMMIT",
        &format!(":{other} - [0:0]\n-A {other} --no-such-option 1\nCOMMIT"),
    );
    let dir = damaged_bundle(
        &seed,
        "node8.iptables-save",
        |_| dump_with_other.clone(),
        |_| {},
    );
    let snapshot = dir.path().to_str().expect("utf-8 path");
    let (code, doc) = trace_json(&["my-service", "--snapshot", snapshot, "--node", "node8"]);
    assert_eq!(code, 1, "{doc}");
    bin()
        .args([
            "chains",
            "my-service",
            "--snapshot",
            snapshot,
            "--node",
            "node8",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--no-such-option"));
}

#[test]
fn port_picks_service_ports_by_name_or_number() {
    let dir = fixture("extended");
    let ports = |port: &str| -> Vec<String> {
        let (_, doc) = trace_json(&[
            "ext/dns",
            "--snapshot",
            dir.to_str().expect("path"),
            "--port",
            port,
        ]);
        doc["nodes"][0]["path"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| p["servicePort"].as_str().expect("servicePort").to_string())
            .collect()
    };
    assert_eq!(ports("dns"), vec!["ext/dns:dns"]);
    assert_eq!(ports("dns-tcp"), vec!["ext/dns:dns-tcp"]);
    // Both the UDP and the TCP port are number 53.
    assert_eq!(ports("53"), vec!["ext/dns:dns", "ext/dns:dns-tcp"]);
}
