//! The sync loop: applies watch events to the tracker and syncs every family's rules, no more often
//! than the minimum sync period, with full syncs on start, after failures, after a flush (canary
//! check every sync period) and periodically.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at};

use super::deadline::Deadline;
use tokio_util::sync::CancellationToken;

use super::events::ClusterEvent;
use super::syncer::{FamilySyncer, SyncError, SyncOutcome};
use super::tracker::ChangeTracker;
use crate::core::model::{ClusterState, Node, NodeContext};
use crate::core::rules::IpFamily;

/// Timing of the sync loop (kube-proxy's flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncTiming {
    /// `--iptables-min-sync-period`: the shortest time between two syncs.
    pub min_sync_period: Duration,
    /// `--iptables-sync-period`: how often the canaries are checked, and the retry delay after a
    /// failure.
    pub sync_period: Duration,
    /// The longest time between two full syncs.
    pub full_sync_period: Duration,
}

impl Default for SyncTiming {
    fn default() -> Self {
        SyncTiming {
            min_sync_period: Duration::from_secs(1),
            sync_period: Duration::from_secs(30),
            full_sync_period: Duration::from_secs(3600),
        }
    }
}

/// Who wants to know how syncing goes: health, metrics, debug views.
pub trait SyncObserver: Send + Sync {
    /// A change arrived and a sync is pending.
    fn queued(&self, _now: SystemTime) {}
    /// Service and EndpointSlice changes waiting for a sync, and those seen so far.
    fn changes(&self, _pending: (u64, u64), _totals: (u64, u64)) {}
    /// The node object changed (or is gone).
    fn node(&self, _node: Option<&Node>) {}
    /// A family synced successfully; the outcome is handed over (its payloads can be kept without
    /// a copy).
    fn synced(
        &self,
        _family: IpFamily,
        _outcome: SyncOutcome,
        _state: &ClusterState,
        _now: SystemTime,
    ) {
    }
    /// A family's sync failed; the next one will be full.
    fn failed(&self, _family: IpFamily, _error: &SyncError, _now: SystemTime) {}
    /// A family's sync put EndpointSlice changes into the kernel, each `latencies` after the change
    /// was triggered (its `endpoints.kubernetes.io/last-change-trigger-time`).
    fn programmed(&self, _family: IpFamily, _latencies: &[Duration]) {}
}

/// An observer that only logs.
#[derive(Debug, Default)]
pub struct LogObserver;

impl SyncObserver for LogObserver {}

/// A question about the sync loop's cluster state, answered on the loop itself (for `/debug/state`):
/// the loop calls it with its state between syncs, so no copy of the state is kept for it.
pub type StateQuery = Box<dyn FnOnce(&ClusterState) + Send>;

/// Builds the node's context from its Node object (or its absence); an error delays syncing.
pub type ContextBuilder = Box<dyn Fn(Option<&Node>) -> anyhow::Result<NodeContext> + Send + Sync>;

/// Runs until `cancel` fires or the event stream ends, answering `queries` between syncs. Rules are
/// left in place on exit: a restarted proxy takes over without a gap.
pub async fn run(
    timing: SyncTiming,
    mut events: mpsc::Receiver<ClusterEvent>,
    mut queries: mpsc::Receiver<StateQuery>,
    mut syncers: Vec<FamilySyncer>,
    context: ContextBuilder,
    observer: Arc<dyn SyncObserver>,
    cancel: CancellationToken,
) {
    let mut tracker = ChangeTracker::started_at(SystemTime::now());
    let mut triggers: BTreeMap<IpFamily, Vec<SystemTime>> = BTreeMap::new();
    let mut needs_full: BTreeMap<IpFamily, bool> =
        syncers.iter().map(|s| (s.family(), true)).collect();
    let mut deadline = Deadline::new(timing.min_sync_period);
    let mut checks = interval_at(Instant::now() + timing.sync_period, timing.sync_period);
    checks.set_missed_tick_behavior(MissedTickBehavior::Delay);

    loop {
        let wake = deadline.wait();
        tokio::select! {
            _ = cancel.cancelled() => break,
            event = events.recv() => {
                let Some(event) = event else { break };
                let node_event = matches!(event, ClusterEvent::Node(_));
                tracker.apply(event);
                if node_event {
                    observer.node(tracker.node());
                }
                observer.changes(tracker.pending_changes(), tracker.change_totals());
                if tracker.synced().all() && (tracker.pending() > 0 || tracker.node_changed() || deadline.last_run().is_none()) {
                    observer.queued(SystemTime::now());
                    deadline.request(Instant::now());
                }
            }
            Some(query) = queries.recv() => query(tracker.state()),
            _ = wake => {
                deadline.start_run(Instant::now());
                let failed = sync_all(&mut tracker, &mut syncers, &mut needs_full, &mut triggers, &context, observer.as_ref());
                if failed {
                    deadline.request(Instant::now() + timing.sync_period);
                }
            }
            _ = checks.tick() => {
                if !tracker.synced().all() {
                    continue;
                }
                for syncer in &syncers {
                    let family = syncer.family();
                    let flushed = match tokio::task::block_in_place(|| syncer.canaries_present()) {
                        Ok(present) => !present,
                        Err(e) => {
                            tracing::warn!(%family, error = %e, "cannot check the canary chains");
                            false
                        }
                    };
                    let stale = syncer.last_full().is_none_or(|t| t.elapsed() >= timing.full_sync_period);
                    if flushed {
                        tracing::warn!(%family, "canary chains are gone: the tables were flushed; resyncing everything");
                    }
                    if flushed || stale {
                        needs_full.insert(family, true);
                        deadline.request(Instant::now());
                    }
                }
            }
        }
    }
    tracing::info!("sync loop stopped; the rules stay in place");
}

/// Syncs every family once. Returns whether any failed.
fn sync_all(
    tracker: &mut ChangeTracker,
    syncers: &mut [FamilySyncer],
    needs_full: &mut BTreeMap<IpFamily, bool>,
    triggers: &mut BTreeMap<IpFamily, Vec<SystemTime>>,
    context: &ContextBuilder,
    observer: &dyn SyncObserver,
) -> bool {
    let (changed, node_changed) = tracker.take_changes();
    let fresh_triggers = tracker.take_trigger_times();
    for syncer in syncers.iter() {
        triggers
            .entry(syncer.family())
            .or_default()
            .extend(fresh_triggers.iter().copied());
    }
    let ctx = match context(tracker.node()) {
        Ok(ctx) => ctx,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot sync: the node's settings are incomplete");
            tracker.restore_changes(changed, node_changed);
            return true;
        }
    };
    let mut any_failed = false;
    for syncer in syncers.iter_mut() {
        let family = syncer.family();
        let force_full = node_changed || needs_full.get(&family).copied().unwrap_or(true);
        let result = tokio::task::block_in_place(|| {
            syncer.sync(tracker.state(), &ctx, &changed, force_full)
        });
        let now = SystemTime::now();
        match result {
            Ok(outcome) => {
                tracing::info!(
                    %family,
                    kind = ?outcome.kind,
                    services = changed.len(),
                    ms = outcome.duration.as_secs_f64() * 1000.0,
                    transactions = outcome.payloads.len(),
                    "synced"
                );
                needs_full.insert(family, false);
                observer.synced(family, outcome, tracker.state(), now);
                // Each change's trigger time to now: how long the change took to reach the kernel.
                let latencies: Vec<Duration> = triggers
                    .remove(&family)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|at| now.duration_since(at).unwrap_or_default())
                    .collect();
                if !latencies.is_empty() {
                    observer.programmed(family, &latencies);
                }
            }
            Err(error) => {
                tracing::error!(%family, error = %error, "sync failed; the next sync is a full one");
                needs_full.insert(family, true);
                observer.failed(family, &error, now);
                any_failed = true;
            }
        }
    }
    if any_failed {
        tracker.restore_changes(changed, node_changed);
    }
    any_failed
}
