//! Sync at scale, into a real kernel: first full sync, then partial syncs after one endpoint change,
//! at 1k, 5k and 10k Services x 10 endpoints, in a throwaway network namespace. Needs root, `ip` and
//! `nfacct`. Run with `cargo bench --bench sync_scale`; under `cargo test` it runs once at a small size
//! as a smoke test (and says so when it cannot run).

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

fn scale(services: usize, changes: usize) -> Result<(), String> {
    let ns = Namespace::create()?;
    let tools = Iptables::new(IpFamily::V4, Backend::Default).with_prefix(vec![
        "ip".into(),
        "netns".into(),
        "exec".into(),
        ns.0.clone(),
    ]);
    let mut syncer = FamilySyncer::new(tools);
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
    Ok(())
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let sizes: &[usize] = if benchmarking {
        &[1_000, 5_000, 10_000]
    } else {
        &[50]
    };
    let changes = if benchmarking { 100 } else { 5 };
    for &services in sizes {
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
