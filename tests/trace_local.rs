//! `trace --local` and `chains --local`: the binary reads the rules of the machine it runs on with
//! `iptables-save -c`. Here the "machine" is a throwaway network namespace holding the seed bundle's
//! node8 rules, loaded with `iptables-restore` and printed back by the kernel, so the tool reads the
//! kernel's own normalized printing, with counters.

mod support;

use std::path::Path;

use serde_json::Value;
use support::netns::{NetNs, skip_unless_available};
use svcproxy::core::rules::IpFamily;

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-svcproxy");

fn seed_dump(node: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/seed/nodes")
            .join(format!("{node}.iptables-save")),
    )
    .expect("seed dump")
}

fn run_in(ns: &NetNs, args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), BIN])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .env_remove("KUBECONFIG")
        .output()
        .expect("runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn local_rules_of_a_stale_and_a_clean_node() {
    if !skip_unless_available("local_rules_of_a_stale_and_a_clean_node") {
        return;
    }
    for (node, stale) in [("node8", true), ("node10", false)] {
        let ns = NetNs::create("svcp-local").expect("namespace");
        ns.create_nfacct(&[
            "ct_state_invalid_dropped_pkts",
            "localhost_nps_accepted_pkts",
        ])
        .expect("nfacct objects");
        ns.iptables_restore(IpFamily::V4, &seed_dump(node), false)
            .expect("the seed rules load into the kernel");
        let (code, stdout, stderr) = run_in(
            &ns,
            &[
                "trace",
                "my-service",
                "--snapshot",
                "examples/seed",
                "--local",
                "--node",
                node,
                "-o",
                "json",
            ],
        );
        let doc: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{node}: not JSON ({e}): {stdout}\n{stderr}"));
        let kinds: Vec<&str> = doc["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter_map(|f| f["kind"].as_str())
            .collect();
        assert_eq!(doc["nodes"][0]["source"], "iptables-save on this machine");
        if stale {
            assert_eq!(code, 1, "{stderr}");
            assert_eq!(kinds, vec!["stale-endpoint"], "{doc:#}");
        } else {
            assert_eq!(code, 0, "{stderr}");
            assert!(kinds.is_empty(), "{doc:#}");
        }
        // `-c` counters are read: every endpoint of the kernel's dump has them.
        let endpoint = &doc["nodes"][0]["path"]["ports"][0]["endpoints"][0];
        assert!(endpoint["counters"]["packets"].is_u64(), "{endpoint:#}");
        let (code, stdout, _) = run_in(
            &ns,
            &[
                "chains",
                "my-service",
                "--snapshot",
                "examples/seed",
                "--local",
                "--node",
                node,
                "--diff",
            ],
        );
        assert_eq!(code, i32::from(stale), "{stdout}");
    }
}
