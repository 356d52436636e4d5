//! Rule-engine benchmarks (DESIGN §7): full plan + render, partial render after one endpoint change,
//! and dump parsing. Run with `cargo bench --bench engine`; every number is printed.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use svcproxy::core::model::NodeContext;
use svcproxy::core::plan::{plan, plan_service};
use svcproxy::core::render::{
    render_full, render_node_dump, render_partial, render_service_update,
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

/// Peak resident set size of this process so far, from /proc (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let ctx = NodeContext::new("node-0", vec!["192.168.0.10".parse().expect("literal IP")]);
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, as a quick
    // smoke test on small sizes.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let quick = !benchmarking || std::env::args().any(|a| a == "--quick");
    let runs = if quick { 3 } else { 11 };
    let sizes: &[usize] = if benchmarking {
        &[1_000, 10_000]
    } else {
        &[100, 1_000]
    };
    let partial_size = sizes[sizes.len() - 1];

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
    }

    // One endpoint of one Service changes: replan that Service, render the difference.
    let services = partial_size;
    let mut state = synthetic::cluster(services, 10);
    let old = plan(&state, &ctx, IpFamily::V4);
    let full_size = render_full(&old).len();
    let changed = synthetic::service(services / 2).id;
    state.insert_slice(synthetic::slice(services / 2, 10, 1));
    let mut current = old.clone();
    let (median, min) = measure(runs * 10, || {
        let after = plan_service(&state, &ctx, IpFamily::V4, current.large_cluster, &changed);
        let before = current.replace_service(&changed, after.clone());
        let payload = render_service_update(IpFamily::V4, &before, &after);
        current.replace_service(&changed, before);
        payload
    });
    let after = plan_service(&state, &ctx, IpFamily::V4, old.large_cluster, &changed);
    let before = current.replace_service(&changed, after.clone());
    let partial = render_service_update(IpFamily::V4, &before, &after);
    let mut new = old.clone();
    new.replace_service(
        &changed,
        plan_service(&state, &ctx, IpFamily::V4, old.large_cluster, &changed),
    );
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

    let dump = render_node_dump(&old);
    println!(
        "node dump at {services} services: {} lines",
        dump.lines().count()
    );
    if let Some(peak) = peak_rss_mib() {
        println!("peak RSS of the benchmark process: {peak:.1} MiB");
    }
}
