//! Sync at scale, into a real kernel: first full sync, then partial syncs after one endpoint change,
//! at 1k, 5k and 10k Services x 10 endpoints, in a throwaway network namespace. Needs root, `ip` and
//! `nfacct`. Run with `cargo bench --bench sync_scale`; under `cargo test` it runs once at a small size
//! as a smoke test (and says so when it cannot run).
//!
//! After the partial syncs it measures the kernel's floor at that size: the time of a restore that
//! only appends one `-j RETURN` rule to a scratch chain. With nf_tables, every transaction that adds a
//! rule makes the kernel re-validate every chain reachable from the table's base chains
//! (`nft_table_validate`), so no partial sync that adds a rule can be faster than this.
//!
//! `SVCPROXY_SCALE` (comma-separated sizes) and `SVCPROXY_BACKEND` (`nft`, `legacy`; default: what
//! plain `iptables` is) choose what to run.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use svcproxy::core::model::NodeContext;
use svcproxy::core::rules::IpFamily;
use svcproxy::iptables::{Backend, Iptables};
use svcproxy::proxy::syncer::{FamilySyncer, SyncKind};
use svcproxy::synthetic;

/// A namespace deleted on drop.
struct Namespace(String);

impl Namespace {
    fn create() -> Result<Namespace, String> {
        let name = format!("svcp-scale-{}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        let ns = Namespace(name);
        for object in [
            "ct_state_invalid_dropped_pkts",
            "localhost_nps_accepted_pkts",
        ] {
            run("ip", &["netns", "exec", &ns.0, "nfacct", "add", object])?;
        }
        Ok(ns)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "delete", &self.0]);
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The backend `SVCPROXY_BACKEND` names.
fn backend() -> Backend {
    match std::env::var("SVCPROXY_BACKEND").as_deref() {
        Ok("legacy") => Backend::Legacy,
        Ok("nft") => Backend::Nft,
        _ => Backend::Default,
    }
}

/// p50 and p99 of `rounds` restores that each add one rule to a scratch chain, then removes it.
fn kernel_floor(tools: &Iptables, rounds: usize) -> Result<(Duration, Duration), String> {
    const ADD: &str = "*nat\n:SVCPROXY-FLOOR - [0:0]\n-A SVCPROXY-FLOOR -j RETURN\nCOMMIT\n";
    const REMOVE: &str = "*nat\n:SVCPROXY-FLOOR - [0:0]\n-X SVCPROXY-FLOOR\nCOMMIT\n";
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        tools.restore(ADD).map_err(|e| e.to_string())?;
        times.push(start.elapsed());
    }
    tools.restore(REMOVE).map_err(|e| e.to_string())?;
    times.sort();
    Ok((percentile(&times, 0.5), percentile(&times, 0.99)))
}

fn scale(services: usize, changes: usize) -> Result<(), String> {
    let ns = Namespace::create()?;
    let tools = Iptables::new(IpFamily::V4, backend()).with_prefix(vec![
        "ip".into(),
        "netns".into(),
        "exec".into(),
        ns.0.clone(),
    ]);
    let mut syncer = FamilySyncer::new(tools.clone());
    let ctx = NodeContext::new(
        "node-0",
        vec!["192.168.0.10".parse().map_err(|e| format!("{e}"))?],
    );
    let mut state = synthetic::cluster(services, 10);

    let outcome = syncer
        .sync(&state, &ctx, &BTreeSet::new(), false)
        .map_err(|e| e.to_string())?;
    assert_eq!(outcome.kind, SyncKind::Full);
    let (filter, nat) = outcome.total_rules;
    println!(
        "{services:>6} services: first full sync {:>8.0} ms in {} transactions ({} rules)",
        ms(outcome.duration),
        outcome.payloads.len(),
        filter + nat
    );

    let mut times = Vec::with_capacity(changes);
    let mut bytes = 0;
    for n in 0..changes {
        let i = (n * 7919) % services;
        state.insert_slice(synthetic::slice(i, 10, 1 + n % 3));
        let changed = BTreeSet::from([synthetic::service(i).id]);
        let start = Instant::now();
        let outcome = syncer
            .sync(&state, &ctx, &changed, false)
            .map_err(|e| e.to_string())?;
        times.push(start.elapsed());
        assert_eq!(outcome.kind, SyncKind::Partial);
        bytes += outcome.payloads.iter().map(String::len).sum::<usize>();
    }
    times.sort();
    println!(
        "{services:>6} services: one endpoint change -> rules in the kernel: p50 {:>6.1} ms  p99 {:>6.1} ms  \
         ({} changes, {} bytes per payload)",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        changes,
        bytes / changes.max(1)
    );
    let (floor_p50, floor_p99) = kernel_floor(&tools, changes.min(30))?;
    println!(
        "{services:>6} services: kernel floor, a restore adding one rule to this table: p50 {:>6.1} ms  p99 {:>6.1} ms",
        ms(floor_p50),
        ms(floor_p99)
    );
    Ok(())
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = match std::env::var("SVCPROXY_SCALE") {
        Ok(list) if benchmarking => list
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
        _ if benchmarking => vec![1_000, 5_000, 10_000],
        _ => vec![50],
    };
    println!("backend: {:?}", backend());
    let changes = if benchmarking { 100 } else { 5 };
    for &services in &sizes {
        if let Err(e) = scale(services, changes) {
            println!(
                "sync_scale cannot run here ({e}); it needs root, iproute2, iptables and nfacct"
            );
            return;
        }
    }
    println!(
        "peak RSS of the benchmark process: {:.1} MiB",
        peak_rss_mib()
    );
}
