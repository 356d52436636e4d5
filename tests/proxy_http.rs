//! The proxy's HTTP side over real loopback sockets: health and metrics servers, debug views, and
//! per-service health-check node ports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use svcproxy::core::model::{NamespacedName, Node, Taint};
use svcproxy::core::rules::{IpFamily, Table};
use svcproxy::proxy::health::{Clock, HealthBody, ManualClock, ProxyHealth, TO_BE_DELETED_TAINT};
use svcproxy::proxy::http::debug::ProxyDebug;
use svcproxy::proxy::http::{
    AppliedPayload, DebugSource, HttpState, RunningServer, ServeError, SyncFailure, serve_health,
    serve_metrics,
};
use svcproxy::proxy::metrics::{NfacctCounter, ProxyMetrics};
use svcproxy::proxy::service_health::{ServiceHealthBody, ServiceHealthServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(10);
const V4: IpFamily = IpFamily::V4;
const V6: IpFamily = IpFamily::V6;
const LOOPBACK: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client.

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    timeout(LIMIT, get_inner(addr, path))
        .await
        .unwrap_or_else(|_| panic!("GET {path} on {addr} timed out"))
}

async fn get_inner(addr: SocketAddr, path: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read reply");
    let raw = String::from_utf8(raw).expect("UTF-8 reply");
    let (head, body) = raw.split_once("\r\n\r\n").expect("header end");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").expect("chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        s = &rest[size + 2..];
    }
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} timed out"))
}

async fn refused(addr: SocketAddr) -> bool {
    matches!(
        timeout(LIMIT, TcpStream::connect(addr)).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

async fn stop(cancel: &CancellationToken, server: RunningServer) {
    let addr = server.local_addr();
    cancel.cancel();
    timeout(LIMIT, server.wait())
        .await
        .expect("server stops in time")
        .expect("server stops cleanly");
    assert!(refused(addr).await, "{addr} still accepts connections");
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

#[derive(Default)]
struct FakeDebug {
    saves: AtomicUsize,
    failure: Mutex<Option<SyncFailure>>,
}

impl DebugSource for FakeDebug {
    fn families(&self) -> Vec<IpFamily> {
        vec![V4, V6]
    }

    fn last_applied(&self, family: IpFamily) -> Option<AppliedPayload> {
        (family == V4).then(|| AppliedPayload {
            at: t0(),
            full_sync: true,
            transactions: vec!["*filter\n:KUBE-SERVICES - [0:0]\nCOMMIT\n*nat\nCOMMIT\n".into()],
        })
    }

    fn last_failure(&self, _family: IpFamily) -> Option<SyncFailure> {
        self.failure.lock().expect("lock").clone()
    }

    fn fresh_save(&self, family: IpFamily) -> Result<String, String> {
        let n = self.saves.fetch_add(1, Ordering::SeqCst) + 1;
        match family {
            IpFamily::V4 => Ok(format!("# save number {n}\n*nat\nCOMMIT\n")),
            IpFamily::V6 => Err("ip6tables-save: command not found".into()),
        }
    }

    fn state(&self) -> Result<Value, String> {
        Ok(serde_json::json!({"services": [{"name": "default/web", "endpoints": ["10.0.0.5:80"]}]}))
    }
}

struct Setup {
    clock: Arc<ManualClock>,
    health: Arc<ProxyHealth>,
    metrics: Arc<ProxyMetrics>,
    debug: Arc<FakeDebug>,
    state: HttpState,
}

fn setup() -> Setup {
    let clock = Arc::new(ManualClock::new(t0()));
    let health = Arc::new(ProxyHealth::new(Duration::from_secs(10)));
    let metrics = Arc::new(ProxyMetrics::new());
    let debug = Arc::new(FakeDebug::default());
    let state = HttpState {
        health: health.clone(),
        metrics: metrics.clone(),
        clock: clock.clone(),
        debug: debug.clone(),
    };
    Setup {
        clock,
        health,
        metrics,
        debug,
        state,
    }
}

fn node(taints: &[&str], being_deleted: bool) -> Node {
    Node {
        name: "node-a".into(),
        labels: BTreeMap::new(),
        pod_cidrs: vec![],
        addresses: vec![],
        taints: taints
            .iter()
            .map(|k| Taint {
                key: (*k).into(),
                effect: "NoSchedule".into(),
            })
            .collect(),
        being_deleted,
    }
}

// ---------------------------------------------------------------------------------------------
// The Prometheus text format, parsed.

#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut e = Exposition::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE line");
                let previous = e.types.insert(name.into(), kind.into());
                assert!(previous.is_none(), "{name} declared twice");
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    let labels = body
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once("=\"").expect("label pair");
                            (k.to_string(), v.trim_end_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
            };
            e.samples.push((name, labels, value));
        }
        e
    }

    /// The family a sample belongs to, per the declared types.
    fn family_of(&self, sample: &str) -> Option<&str> {
        if self.types.contains_key(sample) {
            return self.types.get_key_value(sample).map(|(k, _)| k.as_str());
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample.strip_suffix(suffix)
                && self.types.get(base).map(String::as_str) == Some("histogram")
            {
                return self.types.get_key_value(base).map(|(k, _)| k.as_str());
            }
        }
        None
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
    }

    fn label_keys(&self, family: &str) -> BTreeSet<String> {
        self.samples
            .iter()
            .filter(|(n, _, _)| self.family_of(n) == Some(family))
            .flat_map(|(_, l, _)| l.keys().filter(|k| *k != "le").cloned())
            .collect()
    }

    fn buckets(&self, family: &str, ip_family: &str) -> Vec<String> {
        let name = format!("{family}_bucket");
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                *n == name && l.get("ip_family").map(String::as_str) == Some(ip_family)
            })
            .map(|(_, l, _)| l["le"].clone())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The health server.

#[tokio::test]
async fn healthz_and_livez_follow_the_sync_loop_and_the_node() {
    let s = setup();
    let cancel = CancellationToken::new();
    let server = within(
        "serve",
        serve_health(LOOPBACK, s.state.clone(), cancel.clone()),
    )
    .await
    .expect("health server starts");
    let addr = server.local_addr();

    // Starting up: healthy.
    let r = get(addr, "/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let keys: BTreeSet<String> = r
        .json()
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect();
    let want: BTreeSet<String> = ["lastUpdated", "currentTime", "nodeEligible", "healthy"]
        .map(String::from)
        .into();
    assert_eq!(keys, want, "{}", r.body);
    assert_eq!(
        r.body,
        r#"{"lastUpdated":"2023-11-14T22:13:20Z","currentTime":"2023-11-14T22:13:20Z","nodeEligible":true,"healthy":true}"#
    );

    // Synced: per-family status appears.
    s.health.updated(V4, s.clock.now());
    s.clock.advance(Duration::from_millis(1500));
    let r = get(addr, "/livez").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        r.body,
        concat!(
            r#"{"lastUpdated":"2023-11-14T22:13:21.5Z","currentTime":"2023-11-14T22:13:21.5Z","#,
            r#""healthy":true,"status":{"IPv4":{"lastUpdated":"2023-11-14T22:13:20Z","healthy":true}}}"#
        )
    );

    // A queued change that waits past the timeout: both endpoints fail.
    s.health.queued(V4, s.clock.now());
    s.clock.advance(Duration::from_secs(9));
    assert_eq!(get(addr, "/livez").await.status, 200, "9s < 10s timeout");
    s.clock.advance(Duration::from_secs(2));
    for path in ["/healthz", "/livez"] {
        let r = get(addr, path).await;
        assert_eq!(r.status, 503, "{path}");
        let body: HealthBody = serde_json::from_str(&r.body).expect("health body");
        assert!(!body.healthy);
        assert!(!body.status["IPv4"].healthy);
        assert_eq!(
            body.last_updated, "2023-11-14T22:13:20Z",
            "the last real sync"
        );
        assert_eq!(body.current_time, "2023-11-14T22:13:32.5Z");
    }

    // The sync lands: healthy again.
    s.health.updated(V4, s.clock.now());
    assert_eq!(get(addr, "/healthz").await.status, 200);
    assert_eq!(get(addr, "/livez").await.status, 200);

    // A Node going away fails /healthz only.
    let tainted = node(&[TO_BE_DELETED_TAINT], false);
    let deleting = node(&[], true);
    for n in [Some(&tainted), Some(&deleting), None] {
        s.health.set_node(n);
        let r = get(addr, "/healthz").await;
        assert_eq!(r.status, 503, "{n:?}");
        let body = r.json();
        assert_eq!(body["nodeEligible"], false);
        assert_eq!(body["healthy"], true);
        let live = get(addr, "/livez").await;
        assert_eq!(live.status, 200);
        assert!(live.json().get("nodeEligible").is_none());
    }
    s.health.set_node(Some(&node(&["other-taint"], false)));
    assert_eq!(get(addr, "/healthz").await.status, 200);

    // Every answer was counted. healthz: 200 ×3, 503 ×4 (queued-late 1 + node 3); livez: 200 ×6, 503 ×1.
    let m = Exposition::parse(&s.metrics.encode());
    assert_eq!(
        m.value("kubeproxy_proxy_healthz_total", &[("code", "200")]),
        Some(3.0)
    );
    assert_eq!(
        m.value("kubeproxy_proxy_healthz_total", &[("code", "503")]),
        Some(4.0)
    );
    assert_eq!(
        m.value("kubeproxy_proxy_livez_total", &[("code", "200")]),
        Some(6.0)
    );
    assert_eq!(
        m.value("kubeproxy_proxy_livez_total", &[("code", "503")]),
        Some(1.0)
    );

    assert_eq!(get(addr, "/metrics").await.status, 404, "not on this port");
    stop(&cancel, server).await;
}

#[tokio::test]
async fn bind_errors_name_the_address_and_the_flag() {
    let s = setup();
    let taken = TcpListener::bind(LOOPBACK).await.expect("probe listener");
    let addr = taken.local_addr().expect("address");
    let cancel = CancellationToken::new();

    let e = within("serve", serve_health(addr, s.state.clone(), cancel.clone()))
        .await
        .expect_err("address in use");
    assert!(matches!(e, ServeError::Bind { .. }));
    let text = e.to_string();
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(text.contains("--healthz-bind-address"), "{text}");

    let e = within(
        "serve",
        serve_metrics(addr, s.state.clone(), cancel.clone()),
    )
    .await
    .expect_err("address in use");
    let text = e.to_string();
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(text.contains("--metrics-bind-address"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// The metrics server.

fn record_everything(m: &ProxyMetrics) {
    m.observe_sync(V4, true, Duration::from_millis(3));
    m.observe_sync(V4, false, Duration::from_millis(1));
    m.sync_succeeded(V4, t0());
    m.sync_queued(V4, t0());
    m.observe_network_programming(V4, Duration::from_millis(700));
    m.set_endpoint_changes_pending(2);
    m.add_endpoint_changes(5);
    m.set_service_changes_pending(1);
    m.add_service_changes(4);
    m.restore_failed(V4, true);
    m.set_rules(V4, Table::Filter, 10, 10);
    m.set_rules(V4, Table::Nat, 100, 12);
    m.set_no_local_endpoints(V4, 0, 1);
    m.count_healthz(200);
    m.count_livez(200);
    m.set_nfacct_packets(NfacctCounter::CtStateInvalidDropped, 7);
    m.set_nfacct_packets(NfacctCounter::LocalhostNodePortsAccepted, 9);
    m.observe_conntrack_reconcile(V4, Duration::from_millis(4), 3);
    m.set_drift_findings([("missing_chain", "error", 1)]);
}

#[tokio::test]
async fn metrics_use_kube_proxy_names_types_labels_and_buckets() {
    let s = setup();
    record_everything(&s.metrics);
    let cancel = CancellationToken::new();
    let server = within(
        "serve",
        serve_metrics(LOOPBACK, s.state.clone(), cancel.clone()),
    )
    .await
    .expect("metrics server starts");
    let r = get(server.local_addr(), "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let m = Exposition::parse(&r.body);

    let expected: &[(&str, &str, &[&str])] = &[
        (
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "histogram",
            &["ip_family"],
        ),
        (
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "histogram",
            &["ip_family"],
        ),
        (
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "histogram",
            &["ip_family"],
        ),
        (
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "gauge",
            &["ip_family"],
        ),
        (
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "gauge",
            &["ip_family"],
        ),
        (
            "kubeproxy_network_programming_duration_seconds",
            "histogram",
            &["ip_family"],
        ),
        (
            "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
            "gauge",
            &[],
        ),
        (
            "kubeproxy_sync_proxy_rules_endpoint_changes_total",
            "counter",
            &[],
        ),
        (
            "kubeproxy_sync_proxy_rules_service_changes_pending",
            "gauge",
            &[],
        ),
        (
            "kubeproxy_sync_proxy_rules_service_changes_total",
            "counter",
            &[],
        ),
        (
            "kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
            "counter",
            &["ip_family"],
        ),
        (
            "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total",
            "counter",
            &["ip_family"],
        ),
        (
            "kubeproxy_sync_proxy_rules_iptables_total",
            "gauge",
            &["ip_family", "table"],
        ),
        (
            "kubeproxy_sync_proxy_rules_iptables_last",
            "gauge",
            &["ip_family", "table"],
        ),
        (
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
            "gauge",
            &["ip_family", "traffic_policy"],
        ),
        ("kubeproxy_proxy_healthz_total", "counter", &["code"]),
        ("kubeproxy_proxy_livez_total", "counter", &["code"]),
        (
            "kubeproxy_iptables_ct_state_invalid_dropped_packets_total",
            "counter",
            &[],
        ),
        (
            "kubeproxy_iptables_localhost_nodeports_accepted_packets_total",
            "counter",
            &[],
        ),
        (
            "kubeproxy_conntrack_reconciler_sync_duration_seconds",
            "histogram",
            &["ip_family"],
        ),
        (
            "kubeproxy_conntrack_reconciler_deleted_entries_total",
            "counter",
            &["ip_family"],
        ),
        ("svcproxy_drift_findings", "gauge", &["kind", "severity"]),
    ];
    for (name, kind, labels) in expected {
        assert_eq!(
            m.types.get(*name).map(String::as_str),
            Some(*kind),
            "{name}"
        );
        let want: BTreeSet<String> = labels.iter().map(|l| l.to_string()).collect();
        assert_eq!(m.label_keys(name), want, "{name}");
    }
    assert_eq!(
        m.types.len(),
        expected.len(),
        "no other families: {:?}",
        m.types.keys()
    );

    // Every sample belongs to a declared family; counter samples end in `_total`.
    for (name, _, _) in &m.samples {
        let family = m
            .family_of(name)
            .unwrap_or_else(|| panic!("sample {name} has no TYPE line"));
        if m.types[family] == "counter" {
            assert!(name.ends_with("_total"), "{name}");
        }
    }

    let sync_le: Vec<String> = [
        "0.001", "0.002", "0.004", "0.008", "0.016", "0.032", "0.064", "0.128", "0.256", "0.512",
        "1.024", "2.048", "4.096", "8.192", "16.384", "+Inf",
    ]
    .map(String::from)
    .into();
    for family in [
        "kubeproxy_sync_proxy_rules_duration_seconds",
        "kubeproxy_sync_full_proxy_rules_duration_seconds",
        "kubeproxy_sync_partial_proxy_rules_duration_seconds",
        "kubeproxy_conntrack_reconciler_sync_duration_seconds",
    ] {
        assert_eq!(m.buckets(family, "IPv4"), sync_le, "{family}");
    }
    let mut npl: Vec<String> = vec!["0".into(), "0.25".into(), "0.5".into()];
    npl.extend((1..=59).map(|i| i.to_string()));
    npl.extend((60..=115).step_by(5).map(|i| i.to_string()));
    npl.extend((120..=300).step_by(30).map(|i| i.to_string()));
    npl.push("+Inf".into());
    assert_eq!(
        m.buckets("kubeproxy_network_programming_duration_seconds", "IPv4"),
        npl
    );

    // Values land where the sync loop put them.
    let v4 = [("ip_family", "IPv4")];
    assert_eq!(
        m.value("kubeproxy_sync_proxy_rules_duration_seconds_count", &v4),
        Some(2.0)
    );
    assert_eq!(
        m.value(
            "kubeproxy_sync_full_proxy_rules_duration_seconds_count",
            &v4
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "kubeproxy_network_programming_duration_seconds_bucket",
            &[("ip_family", "IPv4"), ("le", "0.5")]
        ),
        Some(0.0)
    );
    assert_eq!(
        m.value(
            "kubeproxy_network_programming_duration_seconds_bucket",
            &[("ip_family", "IPv4"), ("le", "1")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value("kubeproxy_sync_proxy_rules_last_timestamp_seconds", &v4),
        Some(1_700_000_000.0)
    );
    assert_eq!(
        m.value(
            "kubeproxy_sync_proxy_rules_iptables_total",
            &[("ip_family", "IPv4"), ("table", "nat")]
        ),
        Some(100.0)
    );
    assert_eq!(
        m.value(
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
            &[("ip_family", "IPv4"), ("traffic_policy", "external")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
            &v4
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "kubeproxy_iptables_ct_state_invalid_dropped_packets_total",
            &[]
        ),
        Some(7.0)
    );
    assert_eq!(
        m.value("kubeproxy_conntrack_reconciler_deleted_entries_total", &v4),
        Some(3.0)
    );

    stop(&cancel, server).await;
}

#[tokio::test]
async fn metrics_port_serves_healthz_and_proxy_mode() {
    let s = setup();
    let cancel = CancellationToken::new();
    let server = within(
        "serve",
        serve_metrics(LOOPBACK, s.state.clone(), cancel.clone()),
    )
    .await
    .expect("metrics server starts");
    let addr = server.local_addr();

    let r = get(addr, "/healthz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let r = get(addr, "/healthz?verbose").await;
    assert_eq!(r.body, "[+]ping ok\nhealthz check passed\n");
    assert_eq!(get(addr, "/healthz/ping").await.body, "ok");

    let r = get(addr, "/proxyMode").await;
    assert_eq!((r.status, r.body.as_str()), (200, "iptables"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));

    // The component ping is not the proxy's health and is not counted as such.
    s.health.set_node(None);
    assert_eq!(get(addr, "/healthz").await.status, 200);
    let m = Exposition::parse(&s.metrics.encode());
    assert_eq!(
        m.value("kubeproxy_proxy_healthz_total", &[("code", "200")]),
        None
    );

    assert_eq!(get(addr, "/livez").await.status, 404);
    stop(&cancel, server).await;
}

// ---------------------------------------------------------------------------------------------
// Debug views.

#[tokio::test]
async fn debug_iptables_reports_applied_failed_and_a_fresh_save() {
    let s = setup();
    *s.debug.failure.lock().expect("lock") = Some(SyncFailure {
        at: t0() + Duration::from_secs(30),
        full_sync: false,
        error: "iptables-restore: line 3 failed".into(),
        payload: Some("*nat\n-A BROKEN\nCOMMIT\n".into()),
    });
    s.clock.advance(Duration::from_secs(60));
    let cancel = CancellationToken::new();
    let server = within(
        "serve",
        serve_metrics(LOOPBACK, s.state.clone(), cancel.clone()),
    )
    .await
    .expect("metrics server starts");
    let addr = server.local_addr();

    let r = get(addr, "/debug/iptables").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["apiVersion"], "svcproxy/v1");
    assert_eq!(v["kind"], "ProxyDebug");
    assert_eq!(v["generatedAt"], "2023-11-14T22:14:20Z");
    let families = v["families"].as_array().expect("families");
    assert_eq!(families.len(), 2);

    let ipv4 = &families[0];
    assert_eq!(ipv4["family"], "IPv4");
    assert_eq!(ipv4["lastApplied"]["time"], "2023-11-14T22:13:20Z");
    assert_eq!(ipv4["lastApplied"]["fullSync"], true);
    assert_eq!(ipv4["lastApplied"]["lines"], 5);
    assert!(
        ipv4["lastApplied"]["payload"]
            .as_str()
            .is_some_and(|p| p.starts_with("*filter\n"))
    );
    assert_eq!(ipv4["lastFailure"]["time"], "2023-11-14T22:13:50Z");
    assert_eq!(ipv4["lastFailure"]["fullSync"], false);
    assert_eq!(
        ipv4["lastFailure"]["error"],
        "iptables-restore: line 3 failed"
    );
    assert_eq!(ipv4["lastFailure"]["payload"], "*nat\n-A BROKEN\nCOMMIT\n");
    assert_eq!(ipv4["save"]["output"], "# save number 1\n*nat\nCOMMIT\n");
    assert!(ipv4["save"]["error"].is_null());
    assert_eq!(ipv4["save"]["takenAt"], "2023-11-14T22:14:20Z");

    let ipv6 = &families[1];
    assert_eq!(ipv6["family"], "IPv6");
    assert!(ipv6["lastApplied"].is_null());
    assert!(ipv6["save"]["output"].is_null());
    assert_eq!(ipv6["save"]["error"], "ip6tables-save: command not found");

    // The schema round-trips through the public document type.
    let doc: ProxyDebug = serde_json::from_str(&r.body).expect("ProxyDebug");
    assert_eq!(doc.families.len(), 2);

    // Each request takes a new save; `family` filters.
    let v = get(addr, "/debug/iptables?family=IPv4").await.json();
    let families = v["families"].as_array().expect("families");
    assert_eq!(families.len(), 1);
    assert_eq!(
        families[0]["save"]["output"],
        "# save number 3\n*nat\nCOMMIT\n"
    );

    let r = get(addr, "/debug/iptables?format=text&family=IPv4").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(
        r.body
            .starts_with("# svcproxy/v1 ProxyDebug, generated 2023-11-14T22:14:20Z\n")
    );
    assert!(r.body.contains("\n## IPv4\n"));
    assert!(r.body.contains(
        "### last applied 2023-11-14T22:13:20Z (full sync, 5 lines)\n*filter\n:KUBE-SERVICES - [0:0]\n"
    ));
    assert!(r.body.contains(
        "### last failure 2023-11-14T22:13:50Z (partial sync): iptables-restore: line 3 failed\n*nat\n-A BROKEN\n"
    ));
    assert!(
        r.body
            .contains("### iptables-save at 2023-11-14T22:14:20Z\n# save number 4\n")
    );
    assert!(!r.body.contains("IPv6"));

    assert_eq!(get(addr, "/debug/iptables?format=yaml").await.status, 400);
    assert_eq!(get(addr, "/debug/iptables?family=IPv5").await.status, 400);
    assert_eq!(
        s.debug.saves.load(Ordering::SeqCst),
        4,
        "no save for rejected requests"
    );

    stop(&cancel, server).await;
}

#[tokio::test]
async fn debug_state_wraps_the_proxy_view() {
    let s = setup();
    let cancel = CancellationToken::new();
    let server = within(
        "serve",
        serve_metrics(LOOPBACK, s.state.clone(), cancel.clone()),
    )
    .await
    .expect("metrics server starts");
    let r = get(server.local_addr(), "/debug/state").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["apiVersion"], "svcproxy/v1");
    assert_eq!(v["kind"], "ProxyState");
    assert_eq!(v["generatedAt"], "2023-11-14T22:13:20Z");
    assert_eq!(v["state"]["services"][0]["name"], "default/web");
    assert_eq!(s.debug.saves.load(Ordering::SeqCst), 0);
    stop(&cancel, server).await;
}

// ---------------------------------------------------------------------------------------------
// Health-check node ports.

fn svc(name: &str) -> NamespacedName {
    NamespacedName::new("default", name)
}

async fn only_addr(server: &ServiceHealthServer, name: &NamespacedName) -> SocketAddr {
    let addrs = within("local_addrs", server.local_addrs(name)).await;
    assert_eq!(addrs.len(), 1, "{name}: {addrs:?}");
    addrs[0]
}

async fn free_port() -> u16 {
    let probe = TcpListener::bind(LOOPBACK).await.expect("probe");
    probe.local_addr().expect("address").port()
}

#[tokio::test]
async fn health_check_node_ports_open_answer_and_close() {
    let s = setup();
    s.health.updated(V4, s.clock.now());
    let cancel = CancellationToken::new();
    let hc = ServiceHealthServer::new(
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        s.health.clone(),
        s.clock.clone(),
        cancel.clone(),
    );
    let (web, db) = (svc("web"), svc("db"));

    let errors = within(
        "sync_services",
        hc.sync_services(&BTreeMap::from([(web.clone(), 0), (db.clone(), 0)])),
    )
    .await;
    assert!(errors.is_empty(), "{errors:?}");
    let web_addr = only_addr(&hc, &web).await;
    let db_addr = only_addr(&hc, &db).await;
    assert_ne!(web_addr, db_addr);

    // No endpoints yet: 503, weight 0, on any path.
    let r = get(web_addr, "/anything/at/all").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-load-balancing-endpoint-weight"), Some("0"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body: ServiceHealthBody = serde_json::from_str(&r.body).expect("body");
    assert_eq!(
        body,
        ServiceHealthBody {
            service: web.clone(),
            local_endpoints: 0,
            service_proxy_healthy: true
        }
    );

    // Ready local endpoints: 200 with the count as weight. Listeners stay put.
    hc.sync_endpoints(&BTreeMap::from([(web.clone(), 2)]));
    let r = get(web_addr, "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-load-balancing-endpoint-weight"), Some("2"));
    assert_eq!(
        r.body,
        "{\n\t\"service\": {\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"web\"\n\t},\n\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}"
    );
    assert_eq!(get(db_addr, "/").await.status, 503);
    assert_eq!(
        only_addr(&hc, &web).await,
        web_addr,
        "not reopened by counts"
    );

    let errors = within(
        "sync_services",
        hc.sync_services(&BTreeMap::from([(web.clone(), 0), (db.clone(), 0)])),
    )
    .await;
    assert!(errors.is_empty());
    assert_eq!(
        only_addr(&hc, &web).await,
        web_addr,
        "not reopened by an unchanged set"
    );
    assert_eq!(only_addr(&hc, &db).await, db_addr);

    // An unhealthy proxy fails every check, endpoints or not.
    s.health.queued(V4, s.clock.now());
    s.clock.advance(Duration::from_secs(11));
    let r = get(web_addr, "/").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-load-balancing-endpoint-weight"), Some("2"));
    assert!(r.body.contains("\"serviceProxyHealthy\": false"));
    s.health.updated(V4, s.clock.now());
    assert_eq!(get(web_addr, "/").await.status, 200);

    // Removing a Service closes its port; the other keeps serving.
    let errors = within(
        "sync_services",
        hc.sync_services(&BTreeMap::from([(web.clone(), 0)])),
    )
    .await;
    assert!(errors.is_empty());
    assert!(refused(db_addr).await, "db's port is closed");
    assert!(within("local_addrs", hc.local_addrs(&db)).await.is_empty());
    assert_eq!(get(web_addr, "/").await.status, 200);

    // A new port for a Service reopens it there.
    let port = free_port().await;
    let errors = within(
        "sync_services",
        hc.sync_services(&BTreeMap::from([(web.clone(), port)])),
    )
    .await;
    assert!(errors.is_empty(), "{errors:?}");
    let moved = only_addr(&hc, &web).await;
    assert_eq!(moved.port(), port);
    assert!(refused(web_addr).await, "the old port is closed");
    assert_eq!(get(moved, "/").await.status, 200);
    assert_eq!(
        within("services", hc.services()).await,
        BTreeMap::from([(web.clone(), port)])
    );

    within("shutdown", hc.shutdown()).await;
    assert!(refused(moved).await);
    assert!(within("services", hc.services()).await.is_empty());
    cancel.cancel();
}

#[tokio::test]
async fn a_port_that_cannot_be_opened_is_reported_and_retried() {
    let s = setup();
    let cancel = CancellationToken::new();
    let hc = ServiceHealthServer::new(
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        s.health.clone(),
        s.clock.clone(),
        cancel.clone(),
    );
    let blocker = TcpListener::bind(LOOPBACK).await.expect("blocker");
    let port = blocker.local_addr().expect("address").port();
    let (busy, fine) = (svc("busy"), svc("fine"));
    let desired = BTreeMap::from([(busy.clone(), port), (fine.clone(), 0)]);

    let errors = within("sync_services", hc.sync_services(&desired)).await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].service, busy);
    assert_eq!(errors[0].port, port);
    let text = errors[0].to_string();
    assert!(
        text.contains("default/busy") && text.contains(&port.to_string()),
        "{text}"
    );
    assert!(
        within("local_addrs", hc.local_addrs(&busy))
            .await
            .is_empty()
    );
    let fine_addr = only_addr(&hc, &fine).await;

    drop(blocker);
    let errors = within("sync_services", hc.sync_services(&desired)).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(only_addr(&hc, &busy).await.port(), port);
    assert_eq!(only_addr(&hc, &fine).await, fine_addr);
    hc.sync_endpoints(&BTreeMap::from([(busy.clone(), 1)]));
    assert_eq!(
        get(only_addr(&hc, &busy).await, "/healthz").await.status,
        200
    );

    // Shutting down closes every port.
    let busy_addr = only_addr(&hc, &busy).await;
    cancel.cancel();
    within("shutdown", hc.shutdown()).await;
    assert!(refused(busy_addr).await);
    assert!(refused(fine_addr).await);
}
