//! Rule-engine benchmarks (DESIGN §7): full plan + render, partial render after one endpoint change,
//! and dump parsing. Run with `cargo bench --bench engine`; every number is printed.
//!
//! Timings are the median and minimum of several runs (11, or 3 with `--quick`); each timed run includes
//! dropping its result. The benchmark process itself holds several rulesets at once, so its own peak RSS
//! says little about one sync: the "one plan+render" peak is measured in a fresh child process
//! (`--peak-child N`) that builds the cluster, resets its high-water mark through
//! `/proc/self/clear_refs`, runs a single plan + full render, and reports its peak RSS and how much of
//! it plan + render added on top of the cluster state.
//!
//! The numbers depend on the global allocator: mimalloc by default, as in the binary;
//! `cargo bench --no-default-features --bench engine` measures the system allocator instead.
//!
//! `--profile N [--loops K] [--only plan|render]` runs only plan + render (or one of them) at N Services
//! in a loop, for `perf record` or callgrind.

// The same allocator as the kubectl-svcproxy binary (see src/main.rs).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The global allocator these numbers were measured with.
const ALLOCATOR: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else {
    "the system allocator"
};

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use svcproxy::core::model::NodeContext;
use svcproxy::core::parse::parse_dump;
use svcproxy::core::plan::{ProgrammedRules, plan, plan_service};
use svcproxy::core::render::{
    render_full, render_node_dump, render_partial, render_service_updates,
};
use svcproxy::core::rules::IpFamily;
use svcproxy::synthetic;

/// Median and minimum of `runs` timings of `f`.
fn measure<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[times.len() / 2], times[0])
}

/// A memory figure of this process from /proc/self/status in KiB (`VmHWM`: peak RSS, `VmRSS`: current).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Peak resident set size of this process so far, from /proc (Linux).
fn peak_rss_mib() -> Option<f64> {
    status_kib("VmHWM:").map(|kib| kib as f64 / 1024.0)
}

/// Child mode: one plan + full render at `services`; prints
/// `peak <VmHWM KiB> <VmRSS before KiB> <reset worked> <VmHWM after plan KiB>`.
fn peak_child(services: usize, ctx: &NodeContext) {
    let state = synthetic::cluster(services, 10);
    let before = status_kib("VmRSS:").unwrap_or(0);
    // Writing 5 resets the peak RSS to the current RSS (Linux ≥ 4.0), so building the cluster's
    // temporaries does not count.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rules = plan(&state, ctx, IpFamily::V4);
    let plan_peak = status_kib("VmHWM:").unwrap_or(0);
    let payload = render_full(&rules);
    black_box((&rules, &payload));
    let peak = status_kib("VmHWM:").unwrap_or(0);
    println!("peak {peak} {before} {reset} {plan_peak}");
}

/// Runs [`peak_child`] in a fresh process and prints its result.
fn report_peak(services: usize) {
    let output = std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .args(["--peak-child", &services.to_string()])
            .output()
    });
    let text = match output {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => {
            println!("peak RSS one plan+render {services:>6} services: child process failed");
            return;
        }
    };
    let fields: Vec<&str> = text.split_whitespace().collect();
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    let (Some(peak), Some(before), Some(plan_peak)) = (number(1), number(2), number(4)) else {
        println!("peak RSS one plan+render {services:>6} services: unreadable child output");
        return;
    };
    let note = if fields.get(3) == Some(&"true") {
        ""
    } else {
        " (high-water mark not reset: includes building the cluster)"
    };
    println!(
        "peak RSS one plan+render {services:>6} services: {:>7.1} MiB in a fresh process \
         ({:.1} MiB cluster state, +{:.1} MiB by the end of plan, +{:.1} MiB with the payload){note}",
        peak / 1024.0,
        before / 1024.0,
        (plan_peak - before) / 1024.0,
        (peak - before) / 1024.0
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let ctx = NodeContext::new("node-0", vec!["192.168.0.10".parse().expect("literal IP")]);
    let args: Vec<String> = std::env::args().collect();
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<usize>().ok())
    };
    if let Some(services) = value_of("--peak-child") {
        peak_child(services, &ctx);
        return;
    }
    if let Some(services) = value_of("--profile") {
        let state = synthetic::cluster(services, 10);
        let loops = value_of("--loops").unwrap_or(10);
        let part = args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1))
            .map_or("both", String::as_str);
        let (median, min) = match part {
            "plan" => measure(loops, || plan(&state, &ctx, IpFamily::V4)),
            "render" => {
                let rules = plan(&state, &ctx, IpFamily::V4);
                measure(loops, || render_full(&rules))
            }
            _ => measure(loops, || render_full(&plan(&state, &ctx, IpFamily::V4))),
        };
        println!(
            "profile {part} {services} services: median {:.2} ms  min {:.2} ms",
            ms(median),
            ms(min)
        );
        return;
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, as a quick
    // smoke test on small sizes.
    let benchmarking = args.iter().any(|a| a == "--bench");
    let quick = !benchmarking || args.iter().any(|a| a == "--quick");
    let runs = if quick { 3 } else { 11 };
    let sizes: &[usize] = if benchmarking {
        &[1_000, 10_000]
    } else {
        &[100, 1_000]
    };
    let partial_size = sizes[sizes.len() - 1];
    println!("allocator: {ALLOCATOR}");

    for &services in sizes {
        let state = synthetic::cluster(services, 10);
        let (median, min) = measure(runs, || render_full(&plan(&state, &ctx, IpFamily::V4)));
        let (plan_median, _) = measure(runs, || plan(&state, &ctx, IpFamily::V4));
        let rules = plan(&state, &ctx, IpFamily::V4);
        let (render_median, _) = measure(runs, || render_full(&rules));
        println!(
            "  of which plan {:.2} ms, render {:.2} ms",
            ms(plan_median),
            ms(render_median)
        );
        let payload = render_full(&rules);
        let (filter, nat) = rules.rule_counts();
        println!(
            "plan+render full   {services:>6} services x 10 endpoints: median {:>8.2} ms  min {:>8.2} ms  \
             ({} rules, {} KiB payload)",
            ms(median),
            ms(min),
            filter + nat,
            payload.len() / 1024
        );
        drop((state, rules, payload));
        report_peak(services);
    }

    // One endpoint of one Service changes: replan that Service, render the difference.
    let services = partial_size;
    let mut state = synthetic::cluster(services, 10);
    let old = plan(&state, &ctx, IpFamily::V4);
    let full_size = render_full(&old).len();
    let changed = synthetic::service(services / 2).id;
    state.insert_slice(synthetic::slice(services / 2, 10, 1));
    // What the proxy keeps between syncs, and the path its partial syncs take.
    let mut current = ProgrammedRules::from(old.clone());
    let mut render_change = || {
        let after = plan_service(&state, &ctx, IpFamily::V4, current.large_cluster, &changed);
        let before = current.replace_service(&changed, &after);
        let updates = [(before, after)];
        let payload = render_service_updates(IpFamily::V4, &updates);
        // Put back what was programmed, so every run renders the same change.
        let [(before, after)] = updates;
        for (name, _) in &after {
            current.services.remove(name);
        }
        current.services.extend(before);
        payload
    };
    let (median, min) = measure(runs * 10, &mut render_change);
    let partial = render_change();
    let new = plan(&state, &ctx, IpFamily::V4);
    let checked =
        render_partial(&old, &new, &BTreeSet::from([changed.clone()])).expect("partial payload");
    assert_eq!(partial, checked, "both partial paths agree");
    println!(
        "partial render     {services:>6} services, 1 endpoint changed: median {:>8.3} ms  min {:>8.3} ms  \
         ({} bytes = {:.3}% of the {} KiB full payload)",
        ms(median),
        ms(min),
        partial.len(),
        100.0 * partial.len() as f64 / full_size as f64,
        full_size / 1024
    );

    // Parsing a node's iptables-save: the kernel's printing of a planned ruleset with at least 100k
    // rules (3,300 Services x 10 endpoints) when benchmarking.
    let parse_services = if benchmarking { 3_300 } else { 330 };
    let dump = render_node_dump(&plan(
        &synthetic::cluster(parse_services, 10),
        &ctx,
        IpFamily::V4,
    ));
    let rules = dump.lines().filter(|l| l.starts_with("-A ")).count();
    let (median, min) = measure(runs, || {
        parse_dump(&dump).expect("the rendered dump parses")
    });
    println!(
        "parse iptables-save {rules:>7} rules ({} KiB): median {:>8.2} ms  min {:>8.2} ms",
        dump.len() / 1024,
        ms(median),
        ms(min)
    );
    if let Some(peak) = peak_rss_mib() {
        println!("peak RSS of the benchmark process: {peak:.1} MiB");
    }
}
