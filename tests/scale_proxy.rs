//! The proxy at scale (run by `scripts/scale`; ignored in the normal suite): a real `proxy` process in a
//! network namespace, watching the test API server that holds N Services x 10 endpoints. Prints the
//! first full sync time, event -> rules-in-the-kernel latency (p50/p99 over many endpoint changes) and
//! the proxy's peak RSS.

mod support;

use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use support::netns::skip_unless_available;
use support::testbed::{NODE_NAME, Testbed};

fn services() -> Vec<usize> {
    std::env::var("SVCPROXY_SCALE")
        .unwrap_or_else(|_| "1000,5000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn slice(i: usize, generation: usize) -> serde_json::Value {
    let endpoints: Vec<_> = (0..10)
        .map(|j| {
            let n = (i * 10 + j) * 4 + generation;
            json!({
                "addresses": [format!("10.{}.{}.{}", 128 + n / 65536, n / 256 % 256, n % 256)],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "nodeName": if j == 0 { NODE_NAME.to_string() } else { format!("node-{j}") },
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("svc-{i}-abc"), "namespace": "scale",
                     "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        "endpoints": endpoints,
    })
}

/// Parses the proxy's log lines `… synced family=IPv4 kind=Partial … ms=…` into (timestamp, kind, ms).
fn syncs(log: &str) -> Vec<(SystemTime, String, f64)> {
    log.lines()
        .filter(|l| l.contains(" synced ") && l.contains("family=IPv4"))
        .filter_map(|l| {
            let stamp = l.split_whitespace().next()?;
            let kind = l
                .split("kind=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .to_string();
            let ms: f64 = l
                .split("ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((parse_rfc3339(stamp)?, kind, ms))
        })
        .collect()
}

fn parse_rfc3339(stamp: &str) -> Option<SystemTime> {
    // 2026-11-21T23:39:07.609992Z
    let (date, time) = stamp.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, s) = (t.next()??, t.next()??, t.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    let nanos: u32 = format!("{frac:0<9}")[..9].parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs as u64, nanos))
}

/// A `/proc/PID/status` memory line (`VmHWM:` is the peak RSS, `VmRSS:` the current one), in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).map(str::to_string))
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

#[test]
#[ignore = "scale measurement: run scripts/scale"]
fn proxy_at_scale() {
    if !skip_unless_available("proxy_at_scale") {
        return;
    }
    for n in services() {
        let mut bed = Testbed::new(0);
        bed.node_object();
        for i in 0..n {
            bed.api.apply_json(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("svc-{i}"), "namespace": "scale"},
                "spec": {"clusterIP": format!("10.96.{}.{}", i / 250, i % 250 + 1),
                         "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]},
            }));
            bed.api.apply_json(slice(i, 0));
        }
        let started = Instant::now();
        bed.start_proxy(&["--iptables-sync-period=30s"]);
        bed.wait(Duration::from_secs(300), "the first full sync", || {
            syncs(&bed.proxy_log())
                .iter()
                .any(|(_, kind, _)| kind == "Full")
        });
        let first = syncs(&bed.proxy_log())
            .into_iter()
            .find(|(_, k, _)| k == "Full")
            .map(|(_, _, ms)| ms);
        println!(
            "{n:>6} services: first full sync {:>8.0} ms (proxy up to synced: {:.1} s)",
            first.unwrap_or_default(),
            started.elapsed().as_secs_f64()
        );

        let mut latencies = Vec::new();
        for change in 0..40 {
            let i = (change * 7919) % n;
            let before = syncs(&bed.proxy_log()).len();
            let at = SystemTime::now();
            bed.api.apply_json(slice(i, 1 + change % 3));
            bed.wait(Duration::from_secs(30), "a partial sync", || {
                syncs(&bed.proxy_log()).len() > before
            });
            let (done, _, _) = syncs(&bed.proxy_log())[before].clone();
            latencies.push(done.duration_since(at).unwrap_or_default());
        }
        latencies.sort();
        let pct = |p: f64| {
            latencies[((latencies.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
        };
        let pid = bed.proxy_pid().expect("proxy runs");
        println!(
            "{n:>6} services: endpoint change -> rules in the kernel: p50 {:.0} ms  p99 {:.0} ms; \
             proxy RSS {:.1} MiB (anonymous {:.1}, file {:.1}; peak {:.1} MiB)",
            pct(0.5),
            pct(0.99),
            status_mib(pid, "VmRSS:"),
            status_mib(pid, "RssAnon:"),
            status_mib(pid, "RssFile:"),
            status_mib(pid, "VmHWM:")
        );
    }
}
