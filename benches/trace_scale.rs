//! `trace` at scale (DESIGN §7: one Service offline at 10k Services, whole process, ≤ 200 ms): runs the
//! release binary on a synthetic snapshot bundle and prints wall time (min / median / p90) and the
//! child's peak RSS. Run with `cargo bench --bench trace_scale` (or `scripts/scale`).
//!
//! The bundle is `svcproxy::synthetic::write_bundle`: N Services × 10 endpoints as a `kubectl get -o json`
//! `cluster.json` (with the Nodes and the kube-proxy ConfigMap) and `nodes/node-0.iptables-save`, node-0's
//! rules right after a sync. Each run is
//! `kubectl-svcproxy trace svc-1 -n ns-1 --snapshot DIR --node node-0 [-o json]`, with stdout and
//! stderr going to files. Exit codes 0 (clean) and 1 (findings) count as success; 2 is a failure and
//! stops the benchmark with the child's stderr, except when the binary says the command is not available
//! in this version yet: that is reported as "NOT MEASURED" and the benchmark goes on.
//!
//! As a baseline it also times `render --snapshot DIR --node node-0` on the same bundle: reading and
//! converting `cluster.json` plus a full plan and render for the node, the part of the work any offline
//! trace has to do before looking at one Service.
//!
//! Options: `--services 1000,10000` (the sizes), `--runs N` (default 15; `--quick`: 5), `--keep DIR`
//! (write the bundles to `DIR/bundle-N` and keep them; a bundle already there is reused).
//!
//! Peak RSS is each run's own: `wait4` on that child, with the bundles written by a child process so
//! that this process stays small (see [`write_bundle_in_child`]).
//! `SVCPROXY_TRACE_BIN` names the binary to run instead of the release build next to this benchmark.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use svcproxy::synthetic;

const ENDPOINTS: usize = 10;
const BINARY: &str = "kubectl-svcproxy";

/// The release binary: `SVCPROXY_TRACE_BIN`, else the one Cargo built for this benchmark (benchmarks of a
/// package with binaries get them built), else `target/release/kubectl-svcproxy` next to this benchmark's
/// own executable (`target/release/deps/trace_scale-…`) or in `CARGO_TARGET_DIR`, built if missing.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SVCPROXY_TRACE_BIN") {
        return PathBuf::from(path);
    }
    if let Some(path) = option_env!("CARGO_BIN_EXE_kubectl-svcproxy").map(PathBuf::from)
        && path.is_file()
    {
        return path;
    }
    let release_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| PathBuf::from(dir).join("release"))
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release"));
    let path = release_dir.join(BINARY);
    if !path.is_file() {
        eprintln!("building {} (release)", path.display());
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "--bin", BINARY, "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --release failed");
    }
    assert!(path.is_file(), "no binary at {}", path.display());
    path
}

/// One finished run: wall time, exit code, the child's peak RSS in KiB.
struct Run {
    wall: Duration,
    code: i32,
    max_rss_kib: i64,
}

/// Runs `binary args…` once, waiting for it with `wait4` to get its own resource usage.
fn run_once(binary: &Path, args: &[String], out_dir: &Path) -> Run {
    let stdout = File::create(out_dir.join("stdout")).expect("stdout file");
    let stderr = File::create(out_dir.join("stderr")).expect("stderr file");
    let started = Instant::now();
    let child = Command::new(binary)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    let pid = child.id() as nix::libc::pid_t;
    let mut status: nix::libc::c_int = 0;
    // SAFETY: `rusage` is plain old data, written by the kernel; `pid` is our own unwaited child.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { nix::libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = if nix::libc::WIFEXITED(status) {
        nix::libc::WEXITSTATUS(status)
    } else {
        128 + nix::libc::WTERMSIG(status)
    };
    // The child is reaped; `Child` does not wait on drop.
    drop(child);
    Run {
        wall,
        code,
        max_rss_kib: usage.ru_maxrss,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Why a benchmarked command could not be measured.
enum Unavailable {
    /// The binary says the command is not in this version yet (exit 2 with that message).
    NotYet(String),
}

/// Times `runs` runs of one command (after one unmeasured warm-up run) and prints the numbers.
fn bench(
    binary: &Path,
    label: &str,
    args: &[String],
    runs: usize,
    out_dir: &Path,
) -> Result<(), Unavailable> {
    let mut results = Vec::with_capacity(runs);
    for i in 0..=runs {
        let run = run_once(binary, args, out_dir);
        if run.code != 0 && run.code != 1 {
            let stderr = std::fs::read_to_string(out_dir.join("stderr")).unwrap_or_default();
            if stderr.contains("not available in this version yet") {
                return Err(Unavailable::NotYet(stderr.trim().to_string()));
            }
            panic!(
                "{label}: `{} {}` exited with {}:\n{stderr}",
                binary.display(),
                args.join(" "),
                run.code
            );
        }
        if i > 0 {
            results.push(run);
        }
    }
    let codes: Vec<i32> = results.iter().map(|r| r.code).collect();
    let mut walls: Vec<Duration> = results.iter().map(|r| r.wall).collect();
    walls.sort();
    let peak = results.iter().map(|r| r.max_rss_kib).max().unwrap_or(0);
    let output = std::fs::metadata(out_dir.join("stdout")).map_or(0, |m| m.len());
    println!(
        "{label}: min {}  median {}  p90 {}  peak RSS {:.1} MiB  (exit {}, {output} bytes out, {runs} runs)",
        ms(walls[0]),
        ms(percentile(&walls, 0.5)),
        ms(percentile(&walls, 0.9)),
        peak as f64 / 1024.0,
        if codes.iter().all(|&c| c == codes[0]) {
            codes[0].to_string()
        } else {
            format!("{codes:?}")
        },
    );
    Ok(())
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| s.to_string()).collect()
}

/// Writes the bundle in a child process (this benchmark again, with `--write-bundle DIR N`). Building a
/// 10k-Service bundle takes hundreds of MiB, and a process spawned by one with a large resident set
/// inherits that high-water mark: Linux records the spawning process's peak RSS (its memory is the
/// child's until `exec`) in the child's `ru_maxrss`. Keeping this process small keeps each measured
/// run's peak RSS the command's own.
fn write_bundle_in_child(dir: &Path, services: usize) {
    let exe = std::env::current_exe().expect("this benchmark's executable");
    let status = Command::new(exe)
        .arg("--write-bundle")
        .arg(dir)
        .arg(services.to_string())
        .status()
        .expect("run the bundle writer");
    assert!(
        status.success(),
        "writing the {services}-Service bundle failed"
    );
}

/// This process's own peak RSS in KiB: the floor under every child's reported peak.
fn own_max_rss_kib() -> i64 {
    // SAFETY: `rusage` is plain old data, written by the kernel.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { nix::libc::getrusage(nix::libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--write-bundle") {
        let dir = PathBuf::from(&args[i + 1]);
        let services: usize = args[i + 2].parse().expect("a number of Services");
        synthetic::write_bundle(&dir, services, ENDPOINTS).expect("write the bundle");
        return;
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, as a quick
    // check that the benchmark still works: one small size, one run.
    let benchmarking = args.iter().any(|a| a == "--bench");
    let quick = args.iter().any(|a| a == "--quick");
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let sizes: Vec<usize> = value("--services")
        .unwrap_or_else(|| if benchmarking { "1000,10000" } else { "200" }.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let runs: usize = value("--runs")
        .and_then(|r| r.parse().ok())
        .unwrap_or(if !benchmarking {
            1
        } else if quick {
            5
        } else {
            15
        });

    let keep = value("--keep").map(PathBuf::from);

    let binary = binary();
    println!("trace benchmark: {} ({runs} runs each)", binary.display());
    let work = tempfile::tempdir().expect("temporary directory");
    for &services in &sizes {
        let dir = keep
            .as_deref()
            .unwrap_or(work.path())
            .join(format!("bundle-{services}"));
        let started = Instant::now();
        let written = if dir.join("cluster.json").is_file() {
            "reused".to_string()
        } else {
            write_bundle_in_child(&dir, services);
            format!("written in {}", ms(started.elapsed()))
        };
        let size = |file: &str| std::fs::metadata(dir.join(file)).map_or(0, |m| m.len());
        println!(
            "{services} Services x {ENDPOINTS}: bundle {written} (cluster.json {:.1} MiB, \
             node-0.iptables-save {:.1} MiB)",
            size("cluster.json") as f64 / (1024.0 * 1024.0),
            size("nodes/node-0.iptables-save") as f64 / (1024.0 * 1024.0),
        );
        let snapshot = dir.to_string_lossy().to_string();
        let node = synthetic::node_name(0);
        let out_dir = work.path();

        // The floor under any offline trace: read and convert cluster.json, plan and render the node.
        let render = strings(&[
            "render",
            "--snapshot",
            &snapshot,
            "--node",
            &node,
            "--cluster-cidr",
            synthetic::CLUSTER_CIDR,
        ]);
        let label = format!("  render (load + plan + render, baseline), {services}");
        if let Err(Unavailable::NotYet(message)) = bench(&binary, &label, &render, runs, out_dir) {
            println!("{label}: not available in this binary: {message}");
        }

        let trace = strings(&[
            "trace",
            "svc-1",
            "-n",
            "ns-1",
            "--snapshot",
            &snapshot,
            "--node",
            &node,
        ]);
        let mut trace_json = trace.clone();
        trace_json.extend(strings(&["-o", "json"]));
        for (label, args) in [("trace -o json", &trace_json), ("trace (text)", &trace)] {
            let label = format!("  {label}, {services}");
            if let Err(Unavailable::NotYet(message)) = bench(&binary, &label, args, runs, out_dir) {
                println!(
                    "{label}: NOT MEASURED: the `trace` command is not available in this binary yet \
                     (exit 2: {message})"
                );
            }
        }
    }
    println!(
        "peak RSS is each run's own (wait4 on that child); the floor, this benchmark's own peak: {:.1} MiB",
        own_max_rss_kib() as f64 / 1024.0
    );
    println!("target (DESIGN §7): ≤ 200 ms whole process at 10k Services");
}
