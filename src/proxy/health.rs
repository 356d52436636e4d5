//! The proxy's own health, as kube-proxy reports it on `/healthz` and `/livez`.
//!
//! Health is tracked per IP family. The sync loop calls [`ProxyHealth::queued`] when a change is queued
//! and [`ProxyHealth::updated`] when a sync succeeded. A family is unhealthy when its oldest pending
//! change has waited `health_timeout` or longer without a successful sync. kube-proxy uses
//! `2 × --iptables-sync-period` as the timeout ([`ProxyHealth::for_sync_period`]).
//!
//! Like kube-proxy (since its health server became per-family), only families that have synced at
//! least once are judged: a proxy that is still starting up counts as healthy, so a slow first sync
//! does not fail liveness probes.
//!
//! `/healthz` additionally reports the Node's eligibility: a Node that is missing, being deleted, or
//! tainted `ToBeDeletedByClusterAutoscaler` makes `/healthz` answer 503 (so load balancers drain it),
//! while `/livez` stays 200.
//!
//! Nothing here reads the wall clock: every method takes `now`, and the HTTP layer asks a [`Clock`].

mod rfc3339;

use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::core::model::Node;
use crate::core::rules::IpFamily;

pub use rfc3339::{ZERO_TIME, format as format_time};

/// The taint the Cluster Autoscaler puts on a Node before deleting it.
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to, for deterministic tests and replays.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: SystemTime) -> Self {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: SystemTime) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether a Node may receive load-balancer traffic: it exists, is not being deleted, and does not
/// carry the [`TO_BE_DELETED_TAINT`].
pub fn node_eligible(node: Option<&Node>) -> bool {
    match node {
        None => false,
        Some(node) => {
            !node.being_deleted && !node.taints.iter().any(|t| t.key == TO_BE_DELETED_TAINT)
        }
    }
}

/// The health of one IP family's proxier at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyHealth {
    /// When this family last synced successfully.
    pub last_updated: SystemTime,
    /// Whether it is healthy.
    pub healthy: bool,
}

/// The proxy's health at one instant, ignoring the Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// The instant judged.
    pub current_time: SystemTime,
    /// All judged families are healthy (true while none has synced yet).
    pub healthy: bool,
    /// The most recent successful sync of any family; `None` before the first.
    pub last_updated: Option<SystemTime>,
    /// Per family, only families that have synced at least once.
    pub families: BTreeMap<IpFamily, FamilyHealth>,
}

/// A rendered `/healthz` or `/livez` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthResponse {
    /// HTTP status: 200 or 503.
    pub status: u16,
    /// The JSON body ([`HealthBody`]).
    pub body: String,
}

/// The JSON body of `/healthz` and `/livez`, field for field kube-proxy's.
///
/// Times are RFC 3339 in UTC with up to nine fraction digits; a family that never synced reports
/// [`ZERO_TIME`]. When the answer is 200, `lastUpdated` is the current time (kube-proxy keeps this
/// for backward compatibility); otherwise it is the most recent successful sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthBody {
    /// See the type's documentation.
    pub last_updated: String,
    /// The instant judged.
    pub current_time: String,
    /// `/healthz` only: whether the Node is eligible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_eligible: Option<bool>,
    /// The proxy's health, ignoring the Node.
    pub healthy: bool,
    /// Per IP family (`IPv4`, `IPv6`); omitted before the first sync.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status: BTreeMap<String, FamilyBody>,
}

/// One family's entry in [`HealthBody::status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FamilyBody {
    /// When this family last synced successfully.
    pub last_updated: String,
    /// Whether it is healthy.
    pub healthy: bool,
}

#[derive(Debug)]
struct State {
    last_updated: BTreeMap<IpFamily, SystemTime>,
    oldest_pending: BTreeMap<IpFamily, SystemTime>,
    node_eligible: bool,
}

/// The proxy's health state, shared between the sync loop and the HTTP servers.
#[derive(Debug)]
pub struct ProxyHealth {
    timeout: Duration,
    state: RwLock<State>,
}

impl ProxyHealth {
    /// A health tracker that judges a family unhealthy once a queued change waited `health_timeout`.
    /// The Node counts as eligible until [`ProxyHealth::set_node`] says otherwise.
    pub fn new(health_timeout: Duration) -> Self {
        ProxyHealth {
            timeout: health_timeout,
            state: RwLock::new(State {
                last_updated: BTreeMap::new(),
                oldest_pending: BTreeMap::new(),
                node_eligible: true,
            }),
        }
    }

    /// kube-proxy's choice: a timeout of twice the sync period (`--iptables-sync-period`).
    pub fn for_sync_period(sync_period: Duration) -> Self {
        ProxyHealth::new(sync_period.saturating_mul(2))
    }

    /// The configured timeout.
    pub fn health_timeout(&self) -> Duration {
        self.timeout
    }

    /// A change for `family` was queued at `now`. Only the oldest pending change counts.
    pub fn queued(&self, family: IpFamily, now: SystemTime) {
        let mut state = self.write();
        state.oldest_pending.entry(family).or_insert(now);
    }

    /// A sync of `family` succeeded at `now`; nothing is pending for it any more.
    pub fn updated(&self, family: IpFamily, now: SystemTime) {
        let mut state = self.write();
        state.oldest_pending.remove(&family);
        state.last_updated.insert(family, now);
    }

    /// Records the latest state of this proxy's Node (`None`: it does not exist).
    pub fn set_node(&self, node: Option<&Node>) {
        self.write().node_eligible = node_eligible(node);
    }

    /// Whether the Node is eligible, as last recorded.
    pub fn node_eligible(&self) -> bool {
        self.read().node_eligible
    }

    /// The proxy's health at `now`, ignoring the Node.
    pub fn report(&self, now: SystemTime) -> HealthReport {
        let state = self.read();
        let mut families = BTreeMap::new();
        let mut healthy = true;
        for (&family, &last_updated) in &state.last_updated {
            let family_healthy = match state.oldest_pending.get(&family) {
                None => true,
                Some(&queued) => now.duration_since(queued).unwrap_or_default() < self.timeout,
            };
            healthy &= family_healthy;
            families.insert(
                family,
                FamilyHealth {
                    last_updated,
                    healthy: family_healthy,
                },
            );
        }
        HealthReport {
            current_time: now,
            healthy,
            last_updated: state.last_updated.values().max().copied(),
            families,
        }
    }

    /// Whether the proxy is healthy at `now`, ignoring the Node.
    pub fn is_healthy(&self, now: SystemTime) -> bool {
        self.report(now).healthy
    }

    /// The `/livez` answer at `now`: 200 when healthy, else 503; the Node does not matter.
    pub fn livez(&self, now: SystemTime) -> HealthResponse {
        let report = self.report(now);
        let ok = report.healthy;
        respond(&report, ok, None)
    }

    /// The `/healthz` answer at `now`: 200 when healthy and the Node is eligible, else 503.
    pub fn healthz(&self, now: SystemTime) -> HealthResponse {
        let report = self.report(now);
        let eligible = self.node_eligible();
        let ok = report.healthy && eligible;
        respond(&report, ok, Some(eligible))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl HealthReport {
    /// The JSON body for this report; `ok` selects kube-proxy's `lastUpdated` convention.
    pub fn body(&self, ok: bool, node_eligible: Option<bool>) -> HealthBody {
        let last_updated = if ok {
            rfc3339::format(self.current_time)
        } else {
            rfc3339::format_or_zero(self.last_updated)
        };
        HealthBody {
            last_updated,
            current_time: rfc3339::format(self.current_time),
            node_eligible,
            healthy: self.healthy,
            status: self
                .families
                .iter()
                .map(|(family, h)| {
                    (
                        family.to_string(),
                        FamilyBody {
                            last_updated: rfc3339::format(h.last_updated),
                            healthy: h.healthy,
                        },
                    )
                })
                .collect(),
        }
    }
}

fn respond(report: &HealthReport, ok: bool, node_eligible: Option<bool>) -> HealthResponse {
    let body = report.body(ok, node_eligible);
    HealthResponse {
        status: if ok { 200 } else { 503 },
        // Serialising plain strings and booleans cannot fail; fall back to an empty object anyway.
        body: serde_json::to_string(&body).unwrap_or_else(|_| "{}".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Taint;
    use std::time::UNIX_EPOCH;

    const V4: IpFamily = IpFamily::V4;
    const V6: IpFamily = IpFamily::V6;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn node() -> Node {
        Node {
            name: "node-a".into(),
            labels: BTreeMap::new(),
            pod_cidrs: vec![],
            addresses: vec![],
            taints: vec![],
            being_deleted: false,
        }
    }

    fn body(r: &HealthResponse) -> HealthBody {
        serde_json::from_str(&r.body).expect("valid JSON")
    }

    #[test]
    fn healthy_before_any_sync() {
        let h = ProxyHealth::new(Duration::from_secs(10));
        let r = h.livez(t(0));
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            r#"{"lastUpdated":"2023-11-14T22:13:20Z","currentTime":"2023-11-14T22:13:20Z","healthy":true}"#
        );
    }

    #[test]
    fn a_family_that_never_synced_is_starting_up() {
        let h = ProxyHealth::new(Duration::from_secs(10));
        h.queued(V4, t(0));
        assert!(h.is_healthy(t(100)));
    }

    #[test]
    fn late_queued_update_makes_the_family_unhealthy_until_it_syncs() {
        let h = ProxyHealth::new(Duration::from_secs(10));
        h.updated(V4, t(0));
        h.updated(V6, t(0));
        assert!(h.is_healthy(t(25)), "no pending change");

        h.queued(V4, t(25));
        assert!(h.is_healthy(t(34)), "pending for 9s < 10s");
        let report = h.report(t(35));
        assert!(!report.healthy, "pending for exactly the timeout");
        assert!(!report.families[&V4].healthy);
        assert!(report.families[&V6].healthy);

        let r = h.livez(t(50));
        assert_eq!(r.status, 503);
        let b = body(&r);
        assert_eq!(b.last_updated, "2023-11-14T22:13:20Z", "the real last sync");
        assert_eq!(b.current_time, "2023-11-14T22:14:10Z");
        assert!(!b.healthy);
        assert!(!b.status["IPv4"].healthy);
        assert!(b.status["IPv6"].healthy);

        h.updated(V4, t(51));
        let r = h.livez(t(52));
        assert_eq!(r.status, 200);
        assert_eq!(
            body(&r).last_updated,
            "2023-11-14T22:14:12Z",
            "now, when healthy"
        );
        assert_eq!(body(&r).status["IPv4"].last_updated, "2023-11-14T22:14:11Z");
    }

    #[test]
    fn only_the_oldest_pending_change_counts() {
        let h = ProxyHealth::new(Duration::from_secs(10));
        h.updated(V4, t(0));
        h.queued(V4, t(1));
        h.queued(V4, t(9));
        assert!(!h.is_healthy(t(11)));
    }

    #[test]
    fn updating_one_family_does_not_heal_the_other() {
        let h = ProxyHealth::new(Duration::from_secs(10));
        h.updated(V4, t(0));
        h.updated(V6, t(0));
        h.queued(V6, t(0));
        h.updated(V4, t(30));
        assert!(!h.is_healthy(t(30)));
        h.updated(V6, t(31));
        assert!(h.is_healthy(t(31)));
    }

    #[test]
    fn clock_going_backwards_is_not_late() {
        let h = ProxyHealth::new(Duration::from_secs(10));
        h.updated(V4, t(100));
        h.queued(V4, t(100));
        assert!(h.is_healthy(t(50)));
    }

    #[test]
    fn healthz_reports_node_eligibility_livez_ignores_it() {
        let h = ProxyHealth::new(Duration::from_secs(10));
        h.updated(V4, t(0));
        let r = h.healthz(t(1));
        assert_eq!(r.status, 200);
        assert_eq!(body(&r).node_eligible, Some(true));
        assert_eq!(body(&h.livez(t(1))).node_eligible, None);
        assert!(!h.livez(t(1)).body.contains("nodeEligible"));

        let mut tainted = node();
        tainted.taints.push(Taint {
            key: TO_BE_DELETED_TAINT.into(),
            effect: "NoSchedule".into(),
        });
        for n in [None, Some(tainted)] {
            h.set_node(n.as_ref());
            let r = h.healthz(t(2));
            assert_eq!(r.status, 503, "{n:?}");
            let b = body(&r);
            assert_eq!(b.node_eligible, Some(false));
            assert!(b.healthy, "the proxy itself is fine");
            assert_eq!(b.last_updated, "2023-11-14T22:13:20Z");
            assert_eq!(h.livez(t(2)).status, 200);
        }

        let mut deleting = node();
        deleting.being_deleted = true;
        h.set_node(Some(&deleting));
        assert_eq!(h.healthz(t(3)).status, 503);

        let mut other_taint = node();
        other_taint.taints.push(Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
        });
        h.set_node(Some(&other_taint));
        assert_eq!(h.healthz(t(4)).status, 200);
    }

    #[test]
    fn body_field_order_matches_kube_proxy() {
        let h = ProxyHealth::new(Duration::from_secs(10));
        h.updated(V4, UNIX_EPOCH + Duration::new(1_700_000_000, 250_000_000));
        let r = h.healthz(t(1));
        assert_eq!(
            r.body,
            concat!(
                r#"{"lastUpdated":"2023-11-14T22:13:21Z","currentTime":"2023-11-14T22:13:21Z","#,
                r#""nodeEligible":true,"healthy":true,"#,
                r#""status":{"IPv4":{"lastUpdated":"2023-11-14T22:13:20.25Z","healthy":true}}}"#
            )
        );
    }

    #[test]
    fn timeout_is_twice_the_sync_period() {
        let h = ProxyHealth::for_sync_period(Duration::from_secs(30));
        assert_eq!(h.health_timeout(), Duration::from_secs(60));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(t(0));
        assert_eq!(c.now(), t(0));
        c.advance(Duration::from_secs(5));
        assert_eq!(c.now(), t(5));
        c.set(t(1));
        assert_eq!(c.now(), t(1));
    }
}
