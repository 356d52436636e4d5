//! The proxy's Prometheus metrics, named, typed, labelled and bucketed exactly like kube-proxy's
//! (iptables mode, Kubernetes 1.33+, where most metrics carry `ip_family`), plus our own audit-mode
//! drift gauge.
//!
//! The metrics live in a prometheus-client [`Registry`]. The sync loop records through typed methods
//! (for example [`ProxyMetrics::observe_sync`]); [`ProxyMetrics::encode`] renders the Prometheus text
//! format 0.0.4 ([`CONTENT_TYPE`]) with kube-proxy's exact sample names (see [`exposition`]).
//!
//! | name | type | labels |
//! |---|---|---|
//! | `kubeproxy_sync_proxy_rules_duration_seconds` | histogram, 15 buckets ×2 from 1 ms | `ip_family` |
//! | `kubeproxy_sync_full_proxy_rules_duration_seconds` | histogram, same buckets | `ip_family` |
//! | `kubeproxy_sync_partial_proxy_rules_duration_seconds` | histogram, same buckets | `ip_family` |
//! | `kubeproxy_sync_proxy_rules_last_timestamp_seconds` | gauge | `ip_family` |
//! | `kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds` | gauge | `ip_family` |
//! | `kubeproxy_network_programming_duration_seconds` | histogram, 0, 0.25, 0.5, 1…59, 60…115 by 5, 120…300 by 30 | `ip_family` |
//! | `kubeproxy_sync_proxy_rules_endpoint_changes_pending` | gauge | |
//! | `kubeproxy_sync_proxy_rules_endpoint_changes_total` | counter | |
//! | `kubeproxy_sync_proxy_rules_service_changes_pending` | gauge | |
//! | `kubeproxy_sync_proxy_rules_service_changes_total` | counter | |
//! | `kubeproxy_sync_proxy_rules_iptables_restore_failures_total` | counter | `ip_family` |
//! | `kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total` | counter | `ip_family` |
//! | `kubeproxy_sync_proxy_rules_iptables_total` | gauge | `ip_family`, `table` |
//! | `kubeproxy_sync_proxy_rules_iptables_last` | gauge | `ip_family`, `table` |
//! | `kubeproxy_sync_proxy_rules_no_local_endpoints_total` | gauge | `ip_family`, `traffic_policy` |
//! | `kubeproxy_proxy_healthz_total` | counter | `code` |
//! | `kubeproxy_proxy_livez_total` | counter | `code` |
//! | `kubeproxy_iptables_ct_state_invalid_dropped_packets_total` | counter (from nfacct) | |
//! | `kubeproxy_iptables_localhost_nodeports_accepted_packets_total` | counter (from nfacct) | |
//! | `kubeproxy_conntrack_reconciler_sync_duration_seconds` | histogram, 15 buckets ×2 from 1 ms | `ip_family` |
//! | `kubeproxy_conntrack_reconciler_deleted_entries_total` | counter | `ip_family` |
//! | `svcproxy_drift_findings` | gauge | `kind`, `severity` |
//! | `svcproxy_drift_last_check_timestamp_seconds` | gauge | |
//! | `svcproxy_drift_check_failures_total` | counter | |
//!
//! The two nfacct counters are read from the kernel by the proxy; like kube-proxy, they are absent
//! from the output until a value has been recorded.

pub mod exposition;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::core::rules::{IpFamily, Table};

pub use exposition::CONTENT_TYPE;

/// kube-proxy's sync-duration buckets: `ExponentialBuckets(0.001, 2, 15)` (1 ms … 16.384 s).
pub fn sync_duration_buckets() -> Vec<f64> {
    (0..15).map(|i| 0.001 * f64::from(1u32 << i)).collect()
}

/// kube-proxy's network-programming buckets. Its `MergeBuckets` helper starts from a zero bucket, so
/// the list is 0, then 0.25 and 0.5, then 1…59 by 1, 60…115 by 5, 120…300 by 30 (81 bounds).
pub fn network_programming_buckets() -> Vec<f64> {
    let mut b = vec![0.0, 0.25, 0.5];
    b.extend((1..=59).map(f64::from));
    b.extend((0..12).map(|i| f64::from(60 + 5 * i)));
    b.extend((0..7).map(|i| f64::from(120 + 30 * i)));
    b
}

fn sync_histogram() -> Histogram {
    Histogram::new(sync_duration_buckets())
}

fn network_programming_histogram() -> Histogram {
    Histogram::new(network_programming_buckets())
}

/// Label set `{ip_family}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FamilyLabels {
    ip_family: String,
}

/// Label set `{ip_family, table}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    ip_family: String,
    table: String,
}

/// Label set `{ip_family, traffic_policy}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    ip_family: String,
    traffic_policy: String,
}

/// Label set `{code}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

/// Label set `{kind, severity}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriftLabels {
    kind: String,
    severity: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;
type TimestampGauge = Gauge<f64, AtomicU64>;

fn family(f: IpFamily) -> FamilyLabels {
    FamilyLabels {
        ip_family: f.to_string(),
    }
}

fn seconds_since_epoch(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Which nfacct counter a packet count comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NfacctCounter {
    /// `ct_state_invalid_dropped_pkts`: packets dropped because conntrack marked them INVALID.
    CtStateInvalidDropped,
    /// `localhost_nps_accepted_pkts`: packets accepted on NodePorts of the loopback interface.
    LocalhostNodePortsAccepted,
}

impl NfacctCounter {
    /// The nfacct object's name, as kube-proxy creates it.
    pub fn nfacct_name(self) -> &'static str {
        match self {
            NfacctCounter::CtStateInvalidDropped => "ct_state_invalid_dropped_pkts",
            NfacctCounter::LocalhostNodePortsAccepted => "localhost_nps_accepted_pkts",
        }
    }
}

/// One nfacct-backed counter: a value read from the kernel, shown only once recorded.
#[derive(Debug, Default)]
struct NfacctValue {
    value: AtomicU64,
    present: AtomicBool,
}

/// Renders the nfacct counters at scrape time, like kube-proxy's custom collectors.
#[derive(Debug, Default)]
struct NfacctCollector {
    ct_state_invalid: NfacctValue,
    localhost_nodeports: NfacctValue,
}

impl NfacctCollector {
    fn slot(&self, counter: NfacctCounter) -> &NfacctValue {
        match counter {
            NfacctCounter::CtStateInvalidDropped => &self.ct_state_invalid,
            NfacctCounter::LocalhostNodePortsAccepted => &self.localhost_nodeports,
        }
    }
}

impl Collector for NfacctCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let metrics = [
            (
                &self.ct_state_invalid,
                "kubeproxy_iptables_ct_state_invalid_dropped_packets",
                "[ALPHA] packets dropped by iptables to work around conntrack problems",
            ),
            (
                &self.localhost_nodeports,
                "kubeproxy_iptables_localhost_nodeports_accepted_packets",
                "[ALPHA] Number of packets accepted on nodeports of loopback interface",
            ),
        ];
        for (slot, name, help) in metrics {
            if !slot.present.load(Ordering::Acquire) {
                continue;
            }
            let counter = ConstCounter::new(slot.value.load(Ordering::Acquire));
            let metric_encoder =
                encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric_encoder)?;
        }
        Ok(())
    }
}

/// kube-proxy's metrics plus the drift gauge, registered in one [`Registry`].
#[derive(Debug)]
pub struct ProxyMetrics {
    registry: Registry,
    sync_duration: HistogramFamily<FamilyLabels>,
    sync_full_duration: HistogramFamily<FamilyLabels>,
    sync_partial_duration: HistogramFamily<FamilyLabels>,
    last_sync_timestamp: Family<FamilyLabels, TimestampGauge>,
    last_queued_timestamp: Family<FamilyLabels, TimestampGauge>,
    network_programming: HistogramFamily<FamilyLabels>,
    endpoint_changes_pending: Gauge,
    endpoint_changes_total: Counter,
    service_changes_pending: Gauge,
    service_changes_total: Counter,
    restore_failures: Family<FamilyLabels, Counter>,
    partial_restore_failures: Family<FamilyLabels, Counter>,
    rules_total: Family<TableLabels, Gauge>,
    rules_last: Family<TableLabels, Gauge>,
    no_local_endpoints: Family<PolicyLabels, Gauge>,
    healthz_total: Family<CodeLabels, Counter>,
    livez_total: Family<CodeLabels, Counter>,
    nfacct: Arc<NfacctCollector>,
    conntrack_duration: HistogramFamily<FamilyLabels>,
    conntrack_deleted: Family<FamilyLabels, Counter>,
    drift_findings: Family<DriftLabels, Gauge>,
    drift_last_check: TimestampGauge,
    drift_check_failures: Counter,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        ProxyMetrics::new()
    }
}

impl ProxyMetrics {
    /// All metrics, registered in a fresh registry.
    pub fn new() -> Self {
        let m = ProxyMetrics {
            registry: Registry::default(),
            sync_duration: Family::new_with_constructor(sync_histogram as fn() -> Histogram),
            sync_full_duration: Family::new_with_constructor(sync_histogram as fn() -> Histogram),
            sync_partial_duration: Family::new_with_constructor(
                sync_histogram as fn() -> Histogram,
            ),
            last_sync_timestamp: Family::default(),
            last_queued_timestamp: Family::default(),
            network_programming: Family::new_with_constructor(
                network_programming_histogram as fn() -> Histogram,
            ),
            endpoint_changes_pending: Gauge::default(),
            endpoint_changes_total: Counter::default(),
            service_changes_pending: Gauge::default(),
            service_changes_total: Counter::default(),
            restore_failures: Family::default(),
            partial_restore_failures: Family::default(),
            rules_total: Family::default(),
            rules_last: Family::default(),
            no_local_endpoints: Family::default(),
            healthz_total: Family::default(),
            livez_total: Family::default(),
            nfacct: Arc::new(NfacctCollector::default()),
            conntrack_duration: Family::new_with_constructor(sync_histogram as fn() -> Histogram),
            conntrack_deleted: Family::default(),
            drift_findings: Family::default(),
            drift_last_check: TimestampGauge::default(),
            drift_check_failures: Counter::default(),
        };
        m.register_all()
    }

    fn register_all(mut self) -> Self {
        // Counters are registered without their `_total` suffix: the registry appends it.
        let r = &mut self.registry;
        r.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "[ALPHA] SyncProxyRules latency in seconds",
            self.sync_duration.clone(),
        );
        r.register(
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "[ALPHA] SyncProxyRules latency in seconds for full resyncs",
            self.sync_full_duration.clone(),
        );
        r.register(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "[ALPHA] SyncProxyRules latency in seconds for partial resyncs",
            self.sync_partial_duration.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "[ALPHA] The last time proxy rules were successfully synced",
            self.last_sync_timestamp.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "[ALPHA] The last time a sync of proxy rules was queued",
            self.last_queued_timestamp.clone(),
        );
        r.register(
            "kubeproxy_network_programming_duration_seconds",
            "[ALPHA] In Cluster Network Programming Latency in seconds",
            self.network_programming.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
            "[ALPHA] Pending proxy rules Endpoint changes",
            self.endpoint_changes_pending.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_endpoint_changes",
            "[ALPHA] Cumulative proxy rules Endpoint changes",
            self.endpoint_changes_total.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_service_changes_pending",
            "[ALPHA] Pending proxy rules Service changes",
            self.service_changes_pending.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_service_changes",
            "[ALPHA] Cumulative proxy rules Service changes",
            self.service_changes_total.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_iptables_restore_failures",
            "[ALPHA] Cumulative proxy iptables restore failures",
            self.restore_failures.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures",
            "[ALPHA] Cumulative proxy iptables partial restore failures",
            self.partial_restore_failures.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_iptables_total",
            "[ALPHA] Total number of iptables rules owned by kube-proxy",
            self.rules_total.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_iptables_last",
            "[ALPHA] Number of iptables rules written by kube-proxy in last sync",
            self.rules_last.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
            "[ALPHA] Number of services with a Local traffic policy and no endpoints",
            self.no_local_endpoints.clone(),
        );
        r.register(
            "kubeproxy_proxy_healthz",
            "[ALPHA] Cumulative proxy healthz HTTP status",
            self.healthz_total.clone(),
        );
        r.register(
            "kubeproxy_proxy_livez",
            "[ALPHA] Cumulative proxy livez HTTP status",
            self.livez_total.clone(),
        );
        r.register_collector(Box::new(self.nfacct.clone()));
        r.register(
            "kubeproxy_conntrack_reconciler_sync_duration_seconds",
            "[ALPHA] ReconcileConntrackFlowsLatency latency in seconds",
            self.conntrack_duration.clone(),
        );
        r.register(
            "kubeproxy_conntrack_reconciler_deleted_entries",
            "[ALPHA] Cumulative conntrack flows deleted by conntrack reconciler",
            self.conntrack_deleted.clone(),
        );
        r.register(
            "svcproxy_drift_findings",
            "Findings of the last audit comparing the node's rules with the expected ones",
            self.drift_findings.clone(),
        );
        self
    }

    /// The same metrics plus `--audit`'s own: `svcproxy_drift_last_check_timestamp_seconds` and
    /// `svcproxy_drift_check_failures_total` (absent from the proxy's output, where no audit runs).
    pub fn with_audit_metrics(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "svcproxy_drift_last_check_timestamp_seconds",
            "Time of the last successful audit of the node's rules",
            self.drift_last_check.clone(),
        );
        r.register(
            "svcproxy_drift_check_failures",
            "Audits of the node's rules that failed (the rules could not be read or planned)",
            self.drift_check_failures.clone(),
        );
        self
    }

    /// The registry, to register further metrics before the metrics are shared.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Renders every metric in the Prometheus text format 0.0.4 ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut openmetrics = String::new();
        // Writing into a String cannot fail; an encoder error would only cut the output short.
        if prometheus_client::encoding::text::encode(&mut openmetrics, &self.registry).is_err() {
            tracing::warn!("encoding metrics failed; the output is incomplete");
        }
        exposition::to_prometheus_text(&openmetrics)
    }

    /// A sync of `family` ran for `duration` (full or partial), successful or not.
    pub fn observe_sync(&self, family_: IpFamily, full: bool, duration: Duration) {
        let labels = family(family_);
        let secs = duration.as_secs_f64();
        self.sync_duration.get_or_create(&labels).observe(secs);
        let by_kind = if full {
            &self.sync_full_duration
        } else {
            &self.sync_partial_duration
        };
        by_kind.get_or_create(&labels).observe(secs);
    }

    /// A sync of `family` succeeded at `at`.
    pub fn sync_succeeded(&self, family_: IpFamily, at: SystemTime) {
        self.last_sync_timestamp
            .get_or_create(&family(family_))
            .set(seconds_since_epoch(at));
    }

    /// A sync of `family` was queued at `at`.
    pub fn sync_queued(&self, family_: IpFamily, at: SystemTime) {
        self.last_queued_timestamp
            .get_or_create(&family(family_))
            .set(seconds_since_epoch(at));
    }

    /// An object changed at `latency` before its rules were programmed (from the
    /// `endpoints.kubernetes.io/last-change-trigger-time` annotation).
    pub fn observe_network_programming(&self, family_: IpFamily, latency: Duration) {
        self.network_programming
            .get_or_create(&family(family_))
            .observe(latency.as_secs_f64());
    }

    /// Endpoint changes seen but not yet synced.
    pub fn set_endpoint_changes_pending(&self, pending: u64) {
        self.endpoint_changes_pending.set(saturating_i64(pending));
    }

    /// `n` more endpoint changes were seen.
    pub fn add_endpoint_changes(&self, n: u64) {
        self.endpoint_changes_total.inc_by(n);
    }

    /// Service changes seen but not yet synced.
    pub fn set_service_changes_pending(&self, pending: u64) {
        self.service_changes_pending.set(saturating_i64(pending));
    }

    /// `n` more Service changes were seen.
    pub fn add_service_changes(&self, n: u64) {
        self.service_changes_total.inc_by(n);
    }

    /// An `iptables-restore` for `family` failed; `partial` when it was a partial sync (that also
    /// counts as a partial-restore failure).
    pub fn restore_failed(&self, family_: IpFamily, partial: bool) {
        let labels = family(family_);
        self.restore_failures.get_or_create(&labels).inc();
        if partial {
            self.partial_restore_failures.get_or_create(&labels).inc();
        }
    }

    /// Rule counts for one table after a sync: `total` owned by the proxy, `last` written by it.
    pub fn set_rules(&self, family_: IpFamily, table: Table, total: u64, last: u64) {
        let labels = TableLabels {
            ip_family: family_.to_string(),
            table: table.as_str().to_string(),
        };
        self.rules_total
            .get_or_create(&labels)
            .set(saturating_i64(total));
        self.rules_last
            .get_or_create(&labels)
            .set(saturating_i64(last));
    }

    /// Services with a Local traffic policy and no local endpoints, per policy.
    pub fn set_no_local_endpoints(&self, family_: IpFamily, internal: u64, external: u64) {
        for (policy, n) in [("internal", internal), ("external", external)] {
            self.no_local_endpoints
                .get_or_create(&PolicyLabels {
                    ip_family: family_.to_string(),
                    traffic_policy: policy.to_string(),
                })
                .set(saturating_i64(n));
        }
    }

    /// `/healthz` answered with `code`.
    pub fn count_healthz(&self, code: u16) {
        self.healthz_total
            .get_or_create(&CodeLabels {
                code: code.to_string(),
            })
            .inc();
    }

    /// `/livez` answered with `code`.
    pub fn count_livez(&self, code: u16) {
        self.livez_total
            .get_or_create(&CodeLabels {
                code: code.to_string(),
            })
            .inc();
    }

    /// The packet count last read from an nfacct counter.
    pub fn set_nfacct_packets(&self, counter: NfacctCounter, packets: u64) {
        let slot = self.nfacct.slot(counter);
        slot.value.store(packets, Ordering::Release);
        slot.present.store(true, Ordering::Release);
    }

    /// A UDP conntrack reconciliation for `family` took `duration` and deleted `deleted` entries.
    pub fn observe_conntrack_reconcile(&self, family_: IpFamily, duration: Duration, deleted: u64) {
        let labels = family(family_);
        self.conntrack_duration
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
        self.conntrack_deleted
            .get_or_create(&labels)
            .inc_by(deleted);
    }

    /// An audit of the node's rules succeeded at `at`.
    pub fn drift_checked(&self, at: SystemTime) {
        self.drift_last_check.set(seconds_since_epoch(at));
    }

    /// An audit of the node's rules failed.
    pub fn drift_check_failed(&self) {
        self.drift_check_failures.inc();
    }

    /// Replaces the drift gauge with the last audit's counts, as `(kind, severity, count)`.
    pub fn set_drift_findings<'a>(
        &self,
        counts: impl IntoIterator<Item = (&'a str, &'a str, u64)>,
    ) {
        self.drift_findings.clear();
        for (kind, severity, n) in counts {
            self.drift_findings
                .get_or_create(&DriftLabels {
                    kind: kind.to_string(),
                    severity: severity.to_string(),
                })
                .set(saturating_i64(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_value(text: &str, sample: &str) -> Option<String> {
        text.lines().find_map(|l| {
            l.strip_prefix(sample)?
                .strip_prefix(' ')
                .map(str::to_string)
        })
    }

    #[test]
    fn buckets_match_kube_proxy() {
        let s = sync_duration_buckets();
        assert_eq!(s.len(), 15);
        assert_eq!(s[0], 0.001);
        assert_eq!(s[14], 16.384);
        let n = network_programming_buckets();
        assert_eq!(n.len(), 81);
        assert_eq!(&n[..5], &[0.0, 0.25, 0.5, 1.0, 2.0]);
        assert_eq!(n[61], 59.0);
        assert_eq!(n[62], 60.0);
        assert_eq!(n[73], 115.0);
        assert_eq!(n[74], 120.0);
        assert_eq!(n[80], 300.0);
    }

    #[test]
    fn counters_keep_kube_proxy_names() {
        let m = ProxyMetrics::new();
        m.count_healthz(200);
        m.count_healthz(200);
        m.count_livez(503);
        m.add_endpoint_changes(3);
        m.restore_failed(IpFamily::V4, true);
        let text = m.encode();
        assert!(text.contains("# TYPE kubeproxy_proxy_healthz_total counter\n"));
        assert_eq!(
            line_value(&text, "kubeproxy_proxy_healthz_total{code=\"200\"}").as_deref(),
            Some("2")
        );
        assert_eq!(
            line_value(&text, "kubeproxy_proxy_livez_total{code=\"503\"}").as_deref(),
            Some("1")
        );
        assert_eq!(
            line_value(&text, "kubeproxy_sync_proxy_rules_endpoint_changes_total").as_deref(),
            Some("3")
        );
        assert_eq!(
            line_value(
                &text,
                "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total{ip_family=\"IPv4\"}"
            )
            .as_deref(),
            Some("1")
        );
        assert!(!text.contains("_total_total"));
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn full_and_partial_syncs_feed_their_own_histograms() {
        let m = ProxyMetrics::new();
        m.observe_sync(IpFamily::V4, true, Duration::from_millis(3));
        m.observe_sync(IpFamily::V4, false, Duration::from_millis(1));
        let text = m.encode();
        let count = |name: &str| line_value(&text, &format!("{name}_count{{ip_family=\"IPv4\"}}"));
        assert_eq!(
            count("kubeproxy_sync_proxy_rules_duration_seconds").as_deref(),
            Some("2")
        );
        assert_eq!(
            count("kubeproxy_sync_full_proxy_rules_duration_seconds").as_deref(),
            Some("1")
        );
        assert_eq!(
            count("kubeproxy_sync_partial_proxy_rules_duration_seconds").as_deref(),
            Some("1")
        );
        assert_eq!(
            line_value(
                &text,
                "kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family=\"IPv4\",le=\"0.002\"}"
            )
            .as_deref(),
            Some("1")
        );
    }

    #[test]
    fn timestamps_rules_and_policies() {
        let m = ProxyMetrics::new();
        m.sync_succeeded(
            IpFamily::V6,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        m.set_rules(IpFamily::V4, Table::Nat, 120, 7);
        m.set_no_local_endpoints(IpFamily::V4, 1, 2);
        let text = m.encode();
        assert_eq!(
            line_value(
                &text,
                "kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family=\"IPv6\"}"
            )
            .as_deref(),
            Some("1.7e+09")
        );
        assert_eq!(
            line_value(
                &text,
                "kubeproxy_sync_proxy_rules_iptables_total{ip_family=\"IPv4\",table=\"nat\"}"
            )
            .as_deref(),
            Some("120")
        );
        assert_eq!(
            line_value(
                &text,
                "kubeproxy_sync_proxy_rules_iptables_last{ip_family=\"IPv4\",table=\"nat\"}"
            )
            .as_deref(),
            Some("7")
        );
        assert_eq!(
            line_value(
                &text,
                "kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family=\"IPv4\",traffic_policy=\"external\"}"
            )
            .as_deref(),
            Some("2")
        );
    }

    #[test]
    fn nfacct_counters_appear_once_recorded() {
        let m = ProxyMetrics::new();
        assert!(!m.encode().contains("kubeproxy_iptables_ct_state_invalid"));
        m.set_nfacct_packets(NfacctCounter::CtStateInvalidDropped, 42);
        let text = m.encode();
        assert!(text.contains(
            "# TYPE kubeproxy_iptables_ct_state_invalid_dropped_packets_total counter\n"
        ));
        assert_eq!(
            line_value(
                &text,
                "kubeproxy_iptables_ct_state_invalid_dropped_packets_total"
            )
            .as_deref(),
            Some("42")
        );
        assert!(!text.contains("localhost_nodeports"));
        assert_eq!(
            NfacctCounter::LocalhostNodePortsAccepted.nfacct_name(),
            "localhost_nps_accepted_pkts"
        );
    }

    #[test]
    fn drift_findings_are_replaced_not_accumulated() {
        let m = ProxyMetrics::new();
        m.set_drift_findings([("missing_chain", "error", 2), ("extra_rule", "warning", 1)]);
        m.set_drift_findings([("extra_rule", "warning", 4)]);
        let text = m.encode();
        assert!(!text.contains("missing_chain"));
        assert_eq!(
            line_value(
                &text,
                "svcproxy_drift_findings{kind=\"extra_rule\",severity=\"warning\"}"
            )
            .as_deref(),
            Some("4")
        );
    }

    #[test]
    fn conntrack_reconcile_counts_even_zero_deletions() {
        let m = ProxyMetrics::new();
        m.observe_conntrack_reconcile(IpFamily::V4, Duration::from_millis(20), 0);
        let text = m.encode();
        assert_eq!(
            line_value(
                &text,
                "kubeproxy_conntrack_reconciler_deleted_entries_total{ip_family=\"IPv4\"}"
            )
            .as_deref(),
            Some("0")
        );
        assert_eq!(
            line_value(
                &text,
                "kubeproxy_conntrack_reconciler_sync_duration_seconds_count{ip_family=\"IPv4\"}"
            )
            .as_deref(),
            Some("1")
        );
    }
}
