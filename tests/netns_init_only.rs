//! `proxy --init-only` against the real kernel, run with `ip netns exec` in throw-away network
//! namespaces: it applies the namespace's conntrack settings from kube-proxy's flags, leaves the
//! node-wide limits (which a child namespace cannot change) as the node has them with a warning when
//! they are too low, and never touches the settings of the host's own namespace.

mod support;

use std::path::Path;
use std::process::Output;

use support::netns::{NetNs, skip_unless_available};
use svcproxy::core::rules::IpFamily;

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-svcproxy");
const MAX: &str = "net.netfilter.nf_conntrack_max";
const HASHSIZE: &str = "/sys/module/nf_conntrack/parameters/hashsize";
const ESTABLISHED: &str = "net.netfilter.nf_conntrack_tcp_timeout_established";
const CLOSE_WAIT: &str = "net.netfilter.nf_conntrack_tcp_timeout_close_wait";
const BE_LIBERAL: &str = "net.netfilter.nf_conntrack_tcp_be_liberal";
const UDP: &str = "net.netfilter.nf_conntrack_udp_timeout";
const UDP_STREAM: &str = "net.netfilter.nf_conntrack_udp_timeout_stream";
/// What `-v` logs for every setting `--init-only` writes.
const CHANGED: &str = "conntrack setting changed";

fn proc_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

fn number(text: &str, what: &str) -> u64 {
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{what}: {text:?} is not a number"))
}

/// A value in the test's own namespace, the host's initial one (read only, never written).
fn host_value(path: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    number(&text, path)
}

/// A sysctl as a process inside `ns` sees it (`sysctl -n`, or the /proc file without procps).
fn ns_sysctl(ns: &NetNs, key: &str) -> u64 {
    let text = ns
        .exec("sysctl", &["-n", key], None)
        .or_else(|_| ns.exec("cat", &[&proc_path(key)], None))
        .unwrap_or_else(|e| panic!("read {key} in {}: {e}", ns.name()));
    number(&text, key)
}

/// The node-wide values and this namespace's ones, as the host's namespace has them.
fn host_snapshot() -> Vec<(String, u64)> {
    let mut paths: Vec<String> = [MAX, ESTABLISHED, CLOSE_WAIT, BE_LIBERAL, UDP, UDP_STREAM]
        .iter()
        .map(|key| proc_path(key))
        .collect();
    paths.push(HASHSIZE.to_owned());
    paths
        .into_iter()
        .map(|path| {
            let value = host_value(&path);
            (path, value)
        })
        .collect()
}

/// Makes sure the namespace has the conntrack sysctls: they exist once the `nf_conntrack` module is
/// loaded, which a rule matching on conntrack state does (the kernel loads what the rule needs).
fn ensure_conntrack(ns: &NetNs) {
    let present = || ns.exec("cat", &[&proc_path(ESTABLISHED)], None).is_ok();
    if present() {
        return;
    }
    let rules =
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m conntrack --ctstate INVALID -j DROP\nCOMMIT\n";
    ns.iptables_restore(IpFamily::V4, rules, false)
        .expect("a rule matching on conntrack state");
    assert!(
        present(),
        "the conntrack sysctls do not exist in {} even with nf_conntrack in use",
        ns.name()
    );
}

/// Whether the kernel keeps a child namespace from writing `nf_conntrack_max` (read-only there since
/// Linux 5.13). Older kernels let it through to the node-wide value, which a test must not change.
fn node_limit_is_read_only_in(ns: &NetNs) -> bool {
    let mode = ns
        .exec("stat", &["-c", "%a", &proc_path(MAX)], None)
        .expect("stat nf_conntrack_max");
    mode.trim() == "444"
}

fn init_only(ns: &NetNs, flags: &[&str]) -> Output {
    let mut args = vec!["-v", "proxy", "--init-only", "--hostname-override=x"];
    args.extend_from_slice(flags);
    let output = ns.output(BIN, &args).expect("run the binary");
    assert!(
        output.status.success(),
        "{args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn init_only_applies_the_conntrack_flags_in_its_network_namespace() {
    let test = "init_only_applies_the_conntrack_flags_in_its_network_namespace";
    if !skip_unless_available(test) {
        return;
    }
    assert!(Path::new(HASHSIZE).is_file(), "nf_conntrack is in use");
    let ns = NetNs::create("svcp-init").expect("namespace");
    ensure_conntrack(&ns);
    let host_before = host_snapshot();
    let mut flags = vec![
        "--conntrack-tcp-timeout-established=2h",
        "--conntrack-tcp-timeout-close-wait=30m",
        "--conntrack-tcp-be-liberal",
        "--conntrack-udp-timeout=45s",
        "--conntrack-udp-timeout-stream=3m",
    ];
    let guarded = !node_limit_is_read_only_in(&ns);
    if guarded {
        eprintln!(
            "note: {test}: this kernel lets a child namespace write {MAX}; testing with \
             --conntrack-max-per-core=0 so the node's value cannot change"
        );
        flags.push("--conntrack-max-per-core=0");
    }

    let first = stderr(&init_only(&ns, &flags));
    assert_eq!(ns_sysctl(&ns, ESTABLISHED), 7200, "{first}");
    assert_eq!(ns_sysctl(&ns, CLOSE_WAIT), 1800);
    assert_eq!(ns_sysctl(&ns, BE_LIBERAL), 1);
    assert_eq!(ns_sysctl(&ns, UDP), 45);
    assert_eq!(ns_sysctl(&ns, UDP_STREAM), 180);
    assert!(first.contains(CHANGED), "{first}");

    // The default limit is max(32768 × CPUs, 131072), capped at 1048576 for the scaled part; a node
    // that already allows that many entries is left as it is, silently.
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|text| svcproxy::core::conntrack_tuning::count_cpu_list(&text).ok())
        .expect("online CPUs");
    let wanted = svcproxy::core::conntrack_tuning::ConntrackTuning::default()
        .conntrack_max(cpus)
        .expect("a limit");
    let node_max = host_value(&proc_path(MAX));
    let node_hashsize = host_value(HASHSIZE);
    assert_eq!(ns_sysctl(&ns, MAX), node_max, "the limit is node-wide");
    if !guarded && node_max >= wanted && node_hashsize >= wanted / 4 {
        assert!(
            !first.contains("stays at"),
            "the node already allows {node_max} entries: {first}"
        );
    }

    // Run again: everything is in place, nothing is written.
    let second = stderr(&init_only(&ns, &flags));
    assert!(!second.contains(CHANGED), "{second}");
    assert_eq!(ns_sysctl(&ns, ESTABLISHED), 7200);

    assert_eq!(host_snapshot(), host_before, "the host's settings changed");
}

#[test]
fn node_wide_limits_a_child_namespace_cannot_raise_are_left_with_a_warning() {
    let test = "node_wide_limits_a_child_namespace_cannot_raise_are_left_with_a_warning";
    if !skip_unless_available(test) {
        return;
    }
    let ns = NetNs::create("svcp-init").expect("namespace");
    ensure_conntrack(&ns);
    if !node_limit_is_read_only_in(&ns) {
        // Not a skip of the kernel tests: asking for more here would change the node's own limit.
        eprintln!("note: {test}: this kernel lets a child namespace write {MAX}; not tried");
        return;
    }
    let host_before = host_snapshot();
    let node_max = host_value(&proc_path(MAX));
    let node_hashsize = host_value(HASHSIZE);
    // More than the node allows, and a hash table more than four times the node's.
    let min = (node_max + 1).max(node_hashsize * 4 + 4);
    assert!(min <= i32::MAX as u64, "{min} fits --conntrack-min");
    let min_flag = format!("--conntrack-min={min}");

    let out = stderr(&init_only(&ns, &[&min_flag]));
    for needle in [
        format!("{MAX} stays at {node_max}, below the {min} wanted"),
        format!(
            "nf_conntrack hashsize stays at {node_hashsize}, below the {} wanted",
            min / 4
        ),
        "host's network namespace".to_owned(),
        "--conntrack-max-per-core=0".to_owned(),
        format!("sysctl -w {MAX}={min}"),
    ] {
        assert!(out.contains(&needle), "{needle:?} missing in: {out}");
    }
    // The namespace's own settings were applied all the same, with kube-proxy's defaults.
    assert_eq!(ns_sysctl(&ns, ESTABLISHED), 86_400, "{out}");
    assert_eq!(ns_sysctl(&ns, CLOSE_WAIT), 3600);

    assert_eq!(host_snapshot(), host_before, "the host's settings changed");
}
