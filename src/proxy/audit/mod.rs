//! `proxy --audit`: compares the node's actual rules (for example upstream kube-proxy's) with the
//! rules the cluster says it should have, and reports the drift. It never writes.
//!
//! The audit watches the cluster with the proxy's own watchers and, every `--iptables-sync-period`
//! and shortly after a cluster change (no more often than `--iptables-min-sync-period`), reads each
//! family's rules with `iptables-save` ([`RulesReader`]), resolves the node's expected settings
//! (flags given on the command line, then the `kube-system/kube-proxy` ConfigMap, then what the
//! node's rules show, then kube-proxy's defaults) and runs [`node_drift`]. The findings go to
//! `svcproxy_drift_findings{kind,severity}`, `/debug/drift` ([`status::AuditStatus`]) and, once
//! confirmed by a second check, Kubernetes Events ([`dedup`], [`events`]).
//!
//! Nothing here can change the node: the loop only holds [`RulesReader`]s (which cannot run
//! `iptables`, `iptables-restore` or anything else that writes), and it never touches nfacct,
//! conntrack or sysctls. The writers of the proxy ([`crate::proxy::syncer`], the canaries, the
//! jumps) are never constructed on this path.

pub mod dedup;
pub mod events;
pub mod status;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant, SystemTime};

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_util::sync::CancellationToken;

use self::dedup::EventDedup;
use self::events::{DriftEvent, EventSink, SinkError};
use self::status::AuditStatus;
use crate::core::drift::{Finding, node_drift};
use crate::core::model::{ClusterState, SettingsOverrides, resolve_node_context};
use crate::core::parse::parse_dump;
use crate::core::path::ActualRules;
use crate::core::rules::{Dump, IpFamily};
use crate::iptables::{IptablesError, RulesReader};
use crate::proxy::deadline::Deadline;
use crate::proxy::events::ClusterEvent;
use crate::proxy::tracker::ChangeTracker;

/// The rules of one family to audit: the backend the node's proxy uses and, when both backends'
/// tools exist, the other one (kube-proxy chains there are a `backend-mismatch`).
#[derive(Debug, Clone)]
pub struct FamilyReaders {
    /// The backend in use.
    pub rules: RulesReader,
    /// The other backend, if its tools work.
    pub other_backend: Option<RulesReader>,
}

/// One family's findings of one check, and the doubts about the expected settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyFindings {
    /// The family.
    pub family: IpFamily,
    /// Every drift finding ([`node_drift`]).
    pub findings: Vec<Finding>,
    /// Warnings from resolving the expected settings (unknown node, ConfigMap contradicted by the
    /// rules, …).
    pub warnings: Vec<String>,
}

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// `iptables-save` failed.
    #[error("cannot read the {family} rules: {source}")]
    Save {
        /// The family.
        family: IpFamily,
        /// Why.
        #[source]
        source: IptablesError,
    },
    /// Its output did not parse.
    #[error("cannot parse the {family} rules: {source}")]
    Parse {
        /// The family.
        family: IpFamily,
        /// Why.
        #[source]
        source: crate::core::parse::ParseError,
    },
    /// The expected settings could not be resolved (for example a ConfigMap that does not parse).
    #[error("cannot work out the expected {family} rules: {source}")]
    Settings {
        /// The family.
        family: IpFamily,
        /// Why.
        #[source]
        source: crate::core::model::ModelError,
    },
}

/// What a check plans the expected rules with, besides the cluster state.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    /// The node's name.
    pub node_name: String,
    /// Settings given on the command line ([`crate::cli::ProxyArgs::audit_overrides`]).
    pub overrides: SettingsOverrides,
    /// The host's local addresses (NodePort rules of `--nodeport-addresses` depend on them).
    pub host_addresses: Vec<IpAddr>,
}

fn read(reader: &RulesReader) -> Result<Dump, CheckError> {
    let family = reader.family();
    let text = reader
        .save()
        .map_err(|source| CheckError::Save { family, source })?;
    let mut dump = parse_dump(&text).map_err(|source| CheckError::Parse { family, source })?;
    dump.family = family;
    Ok(dump)
}

/// One check: reads every family's rules (only `iptables-save`) and compares them with the rules
/// planned for `cluster`.
pub fn check_rules(
    readers: &[FamilyReaders],
    cluster: &ClusterState,
    expect: &Expectations,
) -> Result<Vec<FamilyFindings>, CheckError> {
    let mut out = Vec::with_capacity(readers.len());
    for family_readers in readers {
        let family = family_readers.rules.family();
        let dump = read(&family_readers.rules)?;
        let other = match &family_readers.other_backend {
            Some(reader) => match read(reader) {
                Ok(dump) => Some(dump),
                Err(e) => {
                    tracing::debug!(%family, error = %e, "the other backend's rules are not compared");
                    None
                }
            },
            None => None,
        };
        let resolved =
            resolve_node_context(cluster, &expect.node_name, Some(&dump), &expect.overrides)
                .map_err(|source| CheckError::Settings { family, source })?;
        let mut ctx = resolved.context;
        for ip in &expect.host_addresses {
            if !ctx.local_addresses.contains(ip) {
                ctx.local_addresses.push(*ip);
            }
        }
        let actual = ActualRules::new(&dump);
        let findings = node_drift(cluster, &ctx, &actual, other.as_ref());
        out.push(FamilyFindings {
            family,
            findings,
            warnings: resolved.warnings,
        });
    }
    Ok(out)
}

/// When the audit checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditTiming {
    /// `--iptables-min-sync-period`: the shortest time between two checks.
    pub min_period: Duration,
    /// `--iptables-sync-period`: the longest time between two checks.
    pub period: Duration,
}

/// How drift becomes Events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPolicy {
    /// How often a persisting finding is announced again.
    pub reannounce: Duration,
    /// In how many consecutive checks a finding must show before it is announced.
    pub confirmations: u32,
    /// The most Events written per check; the rest wait for the next check.
    pub max_per_check: usize,
}

impl Default for EventPolicy {
    fn default() -> Self {
        EventPolicy {
            reannounce: Duration::from_secs(3600),
            confirmations: 2,
            max_per_check: 20,
        }
    }
}

/// Runs the audit until `cancel` fires or the event stream ends. `kube_proxy_config` is the
/// `kube-system/kube-proxy` ConfigMap's data, when it could be read.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    timing: AuditTiming,
    policy: EventPolicy,
    expect: Expectations,
    mut events: mpsc::Receiver<ClusterEvent>,
    readers: Vec<FamilyReaders>,
    kube_proxy_config: Option<std::collections::BTreeMap<String, String>>,
    status: Arc<AuditStatus>,
    sink: Arc<dyn EventSink>,
    cancel: CancellationToken,
) {
    let mut tracker = ChangeTracker::new();
    tracker.set_kube_proxy_config(kube_proxy_config);
    let mut announcer = Announcer::new(policy, expect.node_name.clone(), sink);
    let mut deadline = Deadline::new(timing.min_period);
    let mut warnings: Vec<String> = Vec::new();
    let mut ticks = interval_at(Instant::now() + timing.period, timing.period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);

    loop {
        let wake = deadline.wait();
        tokio::select! {
            _ = cancel.cancelled() => break,
            event = events.recv() => {
                let Some(event) = event else { break };
                tracker.apply(event);
                let changed = tracker.pending() > 0 || tracker.node_changed();
                tracker.take_changes();
                if tracker.synced().all() && (changed || deadline.last_run().is_none()) {
                    status.check_queued(SystemTime::now());
                    deadline.request(Instant::now() + timing.min_period);
                }
            }
            _ = wake => {
                deadline.start_run(Instant::now());
                let state = tracker.state();
                let result = tokio::task::block_in_place(|| check_rules(&readers, state, &expect));
                let now = SystemTime::now();
                match result {
                    Ok(families) => {
                        let current: Vec<String> = families.iter().flat_map(|f| f.warnings.iter().cloned()).collect();
                        if current != warnings {
                            for warning in &current {
                                tracing::warn!("expected rules: {warning}");
                            }
                            warnings = current;
                        }
                        let findings: Vec<Finding> = families.iter().flat_map(|f| f.findings.iter().cloned()).collect();
                        tracing::info!(findings = findings.len(), "audited the node's rules");
                        status.check_succeeded(families, Arc::new(state.clone()), now);
                        announcer.announce(&findings).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "audit failed; retrying at the next period");
                        status.check_failed(&e.to_string(), now);
                    }
                }
            }
            _ = ticks.tick() => {
                if tracker.synced().all() {
                    status.check_queued(SystemTime::now());
                    deadline.request(Instant::now());
                }
            }
        }
    }
    tracing::info!("audit stopped");
}

/// Turns findings into Events through the dedup state.
struct Announcer {
    dedup: EventDedup,
    policy: EventPolicy,
    node: String,
    sink: Arc<dyn EventSink>,
    forbidden_logged: bool,
}

impl Announcer {
    fn new(policy: EventPolicy, node: String, sink: Arc<dyn EventSink>) -> Announcer {
        Announcer {
            dedup: EventDedup::new(policy.reannounce, policy.confirmations),
            policy,
            node,
            sink,
            forbidden_logged: false,
        }
    }

    async fn announce(&mut self, findings: &[Finding]) {
        let due = self
            .dedup
            .observe(findings, StdInstant::now(), SystemTime::now());
        if due.len() > self.policy.max_per_check {
            tracing::info!(
                due = due.len(),
                max = self.policy.max_per_check,
                "more drift Events due than written per check; the rest follow at the next checks"
            );
        }
        let mut failed: Option<String> = None;
        for item in due.into_iter().take(self.policy.max_per_check) {
            let event = DriftEvent::new(&self.node, &item, SystemTime::now());
            match self.sink.publish(&event).await {
                Ok(written) => {
                    tracing::debug!(namespace = %written.namespace, name = %written.name, "drift Event written");
                    self.dedup
                        .announced(&item.key, StdInstant::now(), Some(written));
                }
                Err(SinkError::Forbidden(message)) => {
                    if !self.forbidden_logged {
                        tracing::warn!(
                            "drift Events are not written: {message}; the audit goes on (grant create and patch on events)"
                        );
                        self.forbidden_logged = true;
                    }
                    self.dedup.announced(&item.key, StdInstant::now(), None);
                }
                Err(SinkError::Failed(message)) => {
                    failed.get_or_insert(message);
                }
            }
        }
        if let Some(message) = failed {
            tracing::warn!("writing a drift Event failed, retrying at the next check: {message}");
        }
    }
}
