//! What the sync loop reports, fanned out to health, metrics, the debug endpoints and the
//! health-check node ports.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot, watch};

use super::health::ProxyHealth;
use super::http::{AppliedPayload, DebugSource, SyncFailure};
use super::metrics::{NfacctCounter, ProxyMetrics};
use super::runner::{StateQuery, SyncObserver};
use super::syncer::{SyncError, SyncKind, SyncOutcome};
use crate::core::model::{ClusterState, NamespacedName, Node, ServiceType, TrafficPolicy};
use crate::core::rules::{IpFamily, Table};
use crate::iptables::{Iptables, nfacct};

/// The health-check node ports wanted, and the local ready endpoint count of each Service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthCheckPorts {
    /// Service → its `healthCheckNodePort`.
    pub ports: BTreeMap<NamespacedName, u16>,
    /// Service → ready endpoints on this node.
    pub local_ready: BTreeMap<NamespacedName, usize>,
}

#[derive(Default)]
struct FamilyRecord {
    applied: Option<AppliedPayload>,
    failure: Option<SyncFailure>,
}

/// The proxy's shared status: implements [`SyncObserver`] for the sync loop and [`DebugSource`] for
/// the HTTP server.
pub struct ProxyStatus {
    node_name: String,
    health: Arc<ProxyHealth>,
    metrics: Arc<ProxyMetrics>,
    tools: Vec<Iptables>,
    records: Mutex<BTreeMap<IpFamily, FamilyRecord>>,
    /// Asks the sync loop for its state, for `/debug/state`.
    queries: mpsc::Sender<StateQuery>,
    health_checks: watch::Sender<HealthCheckPorts>,
    change_totals: Mutex<(u64, u64)>,
}

impl ProxyStatus {
    /// Status for a proxy on `node_name` programming the families of `tools`, asking the sync loop
    /// behind `queries` for its state. The receiver yields the health-check node ports to serve after
    /// each sync.
    pub fn new(
        node_name: String,
        health: Arc<ProxyHealth>,
        metrics: Arc<ProxyMetrics>,
        tools: Vec<Iptables>,
        queries: mpsc::Sender<StateQuery>,
    ) -> (ProxyStatus, watch::Receiver<HealthCheckPorts>) {
        let (health_checks, receiver) = watch::channel(HealthCheckPorts::default());
        let status = ProxyStatus {
            node_name,
            health,
            metrics,
            tools,
            records: Mutex::new(BTreeMap::new()),
            queries,
            health_checks,
            change_totals: Mutex::new((0, 0)),
        };
        (status, receiver)
    }

    fn records(&self) -> std::sync::MutexGuard<'_, BTreeMap<IpFamily, FamilyRecord>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The health-check node ports of eTP=Local LoadBalancers and their ready endpoints on `node`.
pub fn health_check_ports(state: &ClusterState, node: &str) -> HealthCheckPorts {
    let mut out = HealthCheckPorts::default();
    for svc in state.services.values().filter(|s| s.is_proxied()) {
        let wanted = svc.service_type == ServiceType::LoadBalancer
            && svc.external_traffic_policy == TrafficPolicy::Local;
        let Some(port) = svc.health_check_node_port.filter(|p| wanted && *p != 0) else {
            continue;
        };
        let mut ready = std::collections::BTreeSet::new();
        for slice in state.slices_for(&svc.id) {
            for ep in &slice.endpoints {
                if ep.node_name.as_deref() == Some(node)
                    && ep.is_ready()
                    && let Some(ip) = ep.ip()
                {
                    ready.insert(ip);
                }
            }
        }
        out.ports.insert(svc.id.clone(), port);
        out.local_ready.insert(svc.id.clone(), ready.len());
    }
    out
}

/// The proxy's view of Services and endpoints for `/debug/state`.
pub(crate) fn state_document(state: &ClusterState) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "svcproxy/v1",
        "kind": "ProxyState",
        "services": state.services.values().collect::<Vec<_>>(),
        "endpointSlices": state.endpoint_slices.values().collect::<Vec<_>>(),
        "nodes": state.nodes.values().collect::<Vec<_>>(),
    })
}

fn written_rules(payloads: &[String], table: Table) -> u64 {
    let mut current = None;
    let mut count = 0;
    for line in payloads.iter().flat_map(|p| p.lines()) {
        if let Some(name) = line.strip_prefix('*') {
            current = name.parse::<Table>().ok();
        } else if current == Some(table) && (line.starts_with("-A ") || line.starts_with("-I ")) {
            count += 1;
        }
    }
    count
}

impl SyncObserver for ProxyStatus {
    fn queued(&self, now: SystemTime) {
        for tools in &self.tools {
            self.health.queued(tools.family(), now);
            self.metrics.sync_queued(tools.family(), now);
        }
    }

    fn changes(&self, pending: (u64, u64), (service_changes, endpoint_changes): (u64, u64)) {
        self.metrics.set_service_changes_pending(pending.0);
        self.metrics.set_endpoint_changes_pending(pending.1);
        let mut totals = self
            .change_totals
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.metrics
            .add_service_changes(service_changes.saturating_sub(totals.0));
        self.metrics
            .add_endpoint_changes(endpoint_changes.saturating_sub(totals.1));
        *totals = (service_changes, endpoint_changes);
    }

    fn node(&self, node: Option<&Node>) {
        self.health.set_node(node);
    }

    fn programmed(&self, family: IpFamily, latencies: &[std::time::Duration]) {
        for latency in latencies {
            self.metrics.observe_network_programming(family, *latency);
        }
    }

    fn synced(
        &self,
        family: IpFamily,
        outcome: SyncOutcome,
        state: &ClusterState,
        now: SystemTime,
    ) {
        let full = outcome.kind == SyncKind::Full;
        self.health.updated(family, now);
        self.metrics.observe_sync(family, full, outcome.duration);
        self.metrics.sync_succeeded(family, now);
        let (filter, nat) = outcome.total_rules;
        self.metrics.set_rules(
            family,
            Table::Filter,
            filter as u64,
            written_rules(&outcome.payloads, Table::Filter),
        );
        self.metrics.set_rules(
            family,
            Table::Nat,
            nat as u64,
            written_rules(&outcome.payloads, Table::Nat),
        );
        let (internal, external) = outcome.no_local_endpoints;
        self.metrics
            .set_no_local_endpoints(family, internal as u64, external as u64);
        self.metrics.set_service_changes_pending(0);
        self.metrics.set_endpoint_changes_pending(0);
        if let Some(duration) = outcome.conntrack_duration {
            self.metrics.observe_conntrack_reconcile(
                family,
                duration,
                outcome.conntrack_deleted as u64,
            );
        }
        for counter in [
            NfacctCounter::CtStateInvalidDropped,
            NfacctCounter::LocalhostNodePortsAccepted,
        ] {
            if let Ok(counts) = nfacct::counts(counter.nfacct_name()) {
                self.metrics.set_nfacct_packets(counter, counts.packets);
            }
        }
        if !outcome.payloads.is_empty() {
            self.records().entry(family).or_default().applied = Some(AppliedPayload {
                at: now,
                full_sync: full,
                transactions: outcome.payloads,
            });
        }
        self.health_checks
            .send_replace(health_check_ports(state, &self.node_name));
    }

    fn failed(&self, family: IpFamily, error: &SyncError, now: SystemTime) {
        let SyncError::Iptables { kind, .. } = error;
        self.metrics
            .restore_failed(family, *kind == SyncKind::Partial);
        self.records().entry(family).or_default().failure = Some(SyncFailure {
            at: now,
            full_sync: *kind == SyncKind::Full,
            error: format!("{error:#}"),
            payload: None,
        });
    }
}

impl DebugSource for ProxyStatus {
    fn families(&self) -> Vec<IpFamily> {
        self.tools.iter().map(Iptables::family).collect()
    }

    fn last_applied(&self, family: IpFamily) -> Option<AppliedPayload> {
        self.records().get(&family).and_then(|r| r.applied.clone())
    }

    fn last_failure(&self, family: IpFamily) -> Option<SyncFailure> {
        self.records().get(&family).and_then(|r| r.failure.clone())
    }

    fn fresh_save(&self, family: IpFamily) -> Result<String, String> {
        let tools = self
            .tools
            .iter()
            .find(|t| t.family() == family)
            .ok_or_else(|| format!("{family} is not programmed"))?;
        tools.save(true).map_err(|e| e.to_string())
    }

    fn state(&self) -> Result<serde_json::Value, String> {
        let (reply, answer) = oneshot::channel();
        let query: StateQuery = Box::new(move |state| {
            // The asker gave up (timed out): do not spend the loop's time on it.
            if !reply.is_closed() {
                let _ = reply.send(state_document(state));
            }
        });
        let stopped = || "the sync loop is not running".to_string();
        match self.queries.try_send(query) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err("other /debug/state requests are waiting; try again".into());
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(stopped()),
        }
        answer.blocking_recv().map_err(|_| stopped())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic;

    fn status(queries: mpsc::Sender<StateQuery>) -> ProxyStatus {
        let (status, _) = ProxyStatus::new(
            "node-0".into(),
            Arc::new(ProxyHealth::for_sync_period(
                std::time::Duration::from_secs(30),
            )),
            Arc::new(ProxyMetrics::new()),
            Vec::new(),
            queries,
        );
        status
    }

    #[test]
    fn state_is_answered_by_the_sync_loop() {
        let (queries, mut loop_side) = mpsc::channel::<StateQuery>(1);
        let status = status(queries);
        let state = synthetic::cluster(2, 1);
        let answering = std::thread::spawn(move || {
            let query = loop_side.blocking_recv().expect("a query");
            query(&state);
        });
        let document = status.state().expect("answered");
        answering.join().expect("the loop side ran");
        assert_eq!(document["kind"], "ProxyState");
        assert_eq!(document["services"].as_array().map(Vec::len), Some(2));
        assert_eq!(document["endpointSlices"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn state_requests_beyond_the_queue_are_turned_away() {
        let (queries, _loop_side) = mpsc::channel::<StateQuery>(1);
        let status = status(queries);
        // Fill the queue without an answering loop: the next request must not wait.
        let (reply, _answer) = oneshot::channel::<serde_json::Value>();
        status
            .queries
            .try_send(Box::new(move |_| drop(reply)))
            .expect("room for one");
        let error = status.state().expect_err("queue full");
        assert!(error.contains("waiting"), "{error}");
    }

    #[test]
    fn state_says_so_when_the_sync_loop_is_gone() {
        let (queries, loop_side) = mpsc::channel::<StateQuery>(1);
        drop(loop_side);
        let error = status(queries).state().expect_err("no loop");
        assert_eq!(error, "the sync loop is not running");
    }
}
