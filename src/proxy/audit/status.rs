//! What the audit loop reports, fanned out to health, metrics and the debug endpoints.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::Serialize;

use super::FamilyFindings;
use crate::core::drift::{Finding, FindingKind};
use crate::core::model::ClusterState;
use crate::core::rules::IpFamily;
use crate::iptables::RulesReader;
use crate::proxy::health::{ProxyHealth, format_time};
use crate::proxy::http::debug::API_VERSION;
use crate::proxy::http::{AppliedPayload, DebugSource, SyncFailure};
use crate::proxy::metrics::ProxyMetrics;
use crate::proxy::status::state_document;

/// The `kind` of the `/debug/drift` document.
pub const KIND_DRIFT_REPORT: &str = "DriftReport";

/// The number of findings of every kind (every kind present, 0 when none), in [`FindingKind::ALL`]
/// order.
pub fn drift_counts<'a>(
    findings: impl IntoIterator<Item = &'a Finding>,
) -> Vec<(FindingKind, u64)> {
    let mut counts: Vec<(FindingKind, u64)> = FindingKind::ALL.iter().map(|k| (*k, 0)).collect();
    for finding in findings {
        if let Some(slot) = counts.iter_mut().find(|(k, _)| *k == finding.kind) {
            slot.1 += 1;
        }
    }
    counts
}

/// Sets `svcproxy_drift_findings` to the counts of `findings`, every kind present.
pub fn export_drift<'a>(metrics: &ProxyMetrics, findings: impl IntoIterator<Item = &'a Finding>) {
    let counts = drift_counts(findings);
    metrics.set_drift_findings(
        counts
            .iter()
            .map(|(kind, n)| (kind.as_str(), kind.severity().as_str(), *n)),
    );
}

#[derive(Default)]
struct Report {
    checked_at: Option<SystemTime>,
    families: Vec<FamilyFindings>,
    failure: Option<SyncFailure>,
    state: Option<Arc<ClusterState>>,
}

/// The audit's shared status: health (a check counts as a sync), metrics, and the debug views.
pub struct AuditStatus {
    node_name: String,
    health: Arc<ProxyHealth>,
    metrics: Arc<ProxyMetrics>,
    readers: Vec<RulesReader>,
    report: Mutex<Report>,
}

/// One finding in `/debug/drift`, with its family.
#[derive(Serialize)]
struct DocFinding<'a> {
    family: IpFamily,
    #[serde(flatten)]
    finding: &'a Finding,
}

impl AuditStatus {
    /// Status for an audit of `node_name` reading the families of `readers`. Sets the drift gauge to 0
    /// for every kind until the first check.
    pub fn new(
        node_name: String,
        health: Arc<ProxyHealth>,
        metrics: Arc<ProxyMetrics>,
        readers: Vec<RulesReader>,
    ) -> AuditStatus {
        export_drift(&metrics, []);
        AuditStatus {
            node_name,
            health,
            metrics,
            readers,
            report: Mutex::new(Report::default()),
        }
    }

    fn report(&self) -> std::sync::MutexGuard<'_, Report> {
        self.report.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A check is due: health waits for it like for a queued sync.
    pub fn check_queued(&self, now: SystemTime) {
        for reader in &self.readers {
            self.health.queued(reader.family(), now);
        }
    }

    /// A check succeeded at `now` with `families`' findings, planned from `state`.
    pub fn check_succeeded(
        &self,
        families: Vec<FamilyFindings>,
        state: Arc<ClusterState>,
        now: SystemTime,
    ) {
        export_drift(
            &self.metrics,
            families.iter().flat_map(|f| f.findings.iter()),
        );
        self.metrics.drift_checked(now);
        for family in &families {
            self.health.updated(family.family, now);
        }
        let mut report = self.report();
        report.checked_at = Some(now);
        report.families = families;
        report.state = Some(state);
    }

    /// A check failed at `now`. The findings of the last successful check stay exported; health
    /// turns bad once no check succeeded for the health timeout.
    pub fn check_failed(&self, error: &str, now: SystemTime) {
        self.metrics.drift_check_failed();
        self.report().failure = Some(SyncFailure {
            at: now,
            full_sync: false,
            error: error.to_string(),
            payload: None,
        });
    }

    /// The `/debug/drift` document at `now`.
    pub fn drift_document(&self, now: SystemTime) -> serde_json::Value {
        let report = self.report();
        let findings: Vec<DocFinding<'_>> = report
            .families
            .iter()
            .flat_map(|f| {
                f.findings.iter().map(|finding| DocFinding {
                    family: f.family,
                    finding,
                })
            })
            .collect();
        let counts: serde_json::Map<String, serde_json::Value> =
            drift_counts(findings.iter().map(|f| f.finding))
                .into_iter()
                .map(|(k, n)| (k.as_str().to_string(), n.into()))
                .collect();
        let warnings: Vec<&String> = report.families.iter().flat_map(|f| &f.warnings).collect();
        serde_json::json!({
            "apiVersion": API_VERSION,
            "kind": KIND_DRIFT_REPORT,
            "generatedAt": format_time(now),
            "node": self.node_name,
            "lastCheck": report.checked_at.map(format_time),
            "lastFailure": report.failure.as_ref().map(|f| serde_json::json!({
                "at": format_time(f.at),
                "error": f.error,
            })),
            "counts": counts,
            "warnings": warnings,
            "findings": findings,
        })
    }
}

impl DebugSource for AuditStatus {
    fn families(&self) -> Vec<IpFamily> {
        self.readers.iter().map(RulesReader::family).collect()
    }

    fn last_applied(&self, _family: IpFamily) -> Option<AppliedPayload> {
        None
    }

    fn last_failure(&self, _family: IpFamily) -> Option<SyncFailure> {
        self.report().failure.clone()
    }

    fn fresh_save(&self, family: IpFamily) -> Result<String, String> {
        let reader = self
            .readers
            .iter()
            .find(|r| r.family() == family)
            .ok_or_else(|| format!("{family} is not audited"))?;
        reader.save().map_err(|e| e.to_string())
    }

    fn state(&self) -> Result<serde_json::Value, String> {
        let state = self.report().state.clone();
        Ok(match state {
            Some(state) => state_document(&state),
            None => state_document(&ClusterState::default()),
        })
    }

    fn drift(&self) -> Option<serde_json::Value> {
        Some(self.drift_document(SystemTime::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(metrics: &str, name: &str) -> Option<f64> {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn every_kind_is_exported_with_zero_when_clean() {
        let metrics = ProxyMetrics::new().with_audit_metrics();
        export_drift(&metrics, []);
        let text = metrics.encode();
        for kind in FindingKind::ALL {
            let name = format!(
                "svcproxy_drift_findings{{kind=\"{}\",severity=\"{}\"}}",
                kind.as_str(),
                kind.severity().as_str()
            );
            assert_eq!(sample(&text, &name), Some(0.0), "{name} in\n{text}");
        }
        assert!(
            text.contains("# TYPE svcproxy_drift_findings gauge"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE svcproxy_drift_check_failures_total counter"),
            "{text}"
        );
        assert_eq!(
            sample(&text, "svcproxy_drift_last_check_timestamp_seconds"),
            Some(0.0)
        );
    }

    #[test]
    fn findings_are_counted_per_kind_and_replaced_by_the_next_check() {
        let metrics = Arc::new(ProxyMetrics::new().with_audit_metrics());
        let health = Arc::new(ProxyHealth::new(std::time::Duration::from_secs(60)));
        let status = AuditStatus::new("n".into(), health, metrics.clone(), Vec::new());
        let stale = Finding::new(FindingKind::StaleEndpoint, "x").for_service("d/w:p");
        let jump = Finding::new(FindingKind::MissingJump, "x");
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        status.check_succeeded(
            vec![FamilyFindings {
                family: IpFamily::V4,
                findings: vec![stale.clone(), stale.clone(), jump],
                warnings: Vec::new(),
            }],
            Arc::new(ClusterState::default()),
            at,
        );
        let text = metrics.encode();
        let stale_name = "svcproxy_drift_findings{kind=\"stale-endpoint\",severity=\"error\"}";
        let jump_name = "svcproxy_drift_findings{kind=\"missing-jump\",severity=\"error\"}";
        assert_eq!(sample(&text, stale_name), Some(2.0), "{text}");
        assert_eq!(sample(&text, jump_name), Some(1.0));
        assert_eq!(
            sample(&text, "svcproxy_drift_last_check_timestamp_seconds"),
            Some(1.7e9)
        );
        status.check_failed("iptables-save failed", at);
        status.check_succeeded(
            vec![FamilyFindings {
                family: IpFamily::V4,
                findings: vec![stale],
                warnings: Vec::new(),
            }],
            Arc::new(ClusterState::default()),
            at,
        );
        let text = metrics.encode();
        assert_eq!(sample(&text, stale_name), Some(1.0));
        assert_eq!(sample(&text, jump_name), Some(0.0));
        assert_eq!(
            sample(&text, "svcproxy_drift_check_failures_total"),
            Some(1.0)
        );
        let doc = status.drift_document(at);
        assert_eq!(doc["kind"], KIND_DRIFT_REPORT);
        assert_eq!(doc["counts"]["stale-endpoint"], 1);
        assert_eq!(doc["findings"][0]["family"], "IPv4");
        assert_eq!(doc["findings"][0]["kind"], "stale-endpoint");
        assert_eq!(doc["lastFailure"]["error"], "iptables-save failed");
    }
}
