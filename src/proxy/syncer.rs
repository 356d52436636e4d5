//! Keeps one IP family's rules in the kernel equal to the plan.
//!
//! A full sync ensures the canaries and the jumps from the built-in chains, plans everything, and
//! applies it as bounded `iptables-restore --noflush` transactions of whole Services followed by one
//! switch of the entry chains (which also deletes stale chains). A partial sync replans only the changed
//! Services and applies one payload with just their chains and the entry-chain rules that changed. Any
//! failure leaves the kernel state unknown, so the next sync is a full one.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::core::model::{ClusterState, NamespacedName, NodeContext};
use crate::core::parse::declared_chains;
use crate::core::plan::{ProgrammedRules, jump_rules, plan, plan_service};
use crate::core::render::{plan_full_sync, render_service_updates};
use crate::core::rules::names::is_service_chain;
use crate::core::rules::{IpFamily, Protocol, Table};
use crate::iptables::{Iptables, IptablesError};
use crate::proxy::conntrack::{Conntrack, udp_targets};

/// Largest number of per-service rules in one restore transaction of a full sync.
pub const DEFAULT_TRANSACTION_RULES: usize = 4000;

/// Whether a sync rewrote everything or only what changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// Every owned chain was written.
    Full,
    /// Only changed Services' chains and entry rules were written.
    Partial,
}

/// What a successful sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Full or partial.
    pub kind: SyncKind,
    /// How long it took, planning included.
    pub duration: Duration,
    /// The payloads applied, in order (empty when nothing changed).
    pub payloads: Vec<String>,
    /// Rules in the whole ruleset now: (filter, nat).
    pub total_rules: (usize, usize),
    /// Services with a Local policy and no local endpoint: (internal, external).
    pub no_local_endpoints: (usize, usize),
    /// Stale chains deleted.
    pub stale_chains: usize,
    /// UDP conntrack entries deleted after the sync (answered by backends that no longer serve).
    pub conntrack_deleted: usize,
    /// How long the conntrack cleanup took, when it ran.
    pub conntrack_duration: Option<Duration>,
}

/// Why a sync failed.
#[derive(Debug, Error)]
pub enum SyncError {
    /// An iptables command failed.
    #[error("{kind:?} sync of {family} rules failed: {source}")]
    Iptables {
        /// The family.
        family: IpFamily,
        /// Full or partial.
        kind: SyncKind,
        /// The failure.
        #[source]
        source: IptablesError,
    },
}

/// The sync state of one family.
#[derive(Debug)]
pub struct FamilySyncer {
    tools: Iptables,
    conntrack: Option<Conntrack>,
    transaction_rules: usize,
    /// What the kernel holds after the last successful sync; `None` when unknown.
    current: Option<ProgrammedRules>,
    last_full: Option<Instant>,
}

impl FamilySyncer {
    /// A syncer driving `tools` (whose family it manages).
    pub fn new(tools: Iptables) -> FamilySyncer {
        FamilySyncer {
            tools,
            conntrack: None,
            transaction_rules: DEFAULT_TRANSACTION_RULES,
            current: None,
            last_full: None,
        }
    }

    /// Cleans up stale UDP conntrack entries (through ctnetlink) after syncs that changed UDP Services.
    pub fn with_conntrack(mut self, conntrack: Conntrack) -> FamilySyncer {
        self.conntrack = Some(conntrack);
        self
    }

    /// Overrides the size of full-sync transactions.
    pub fn with_transaction_rules(mut self, rules: usize) -> FamilySyncer {
        self.transaction_rules = rules.max(1);
        self
    }

    /// The family.
    pub fn family(&self) -> IpFamily {
        self.tools.family()
    }

    /// The iptables tools in use.
    pub fn tools(&self) -> &Iptables {
        &self.tools
    }

    /// What the kernel holds, as far as this syncer knows.
    pub fn current(&self) -> Option<&ProgrammedRules> {
        self.current.as_ref()
    }

    /// When the last full sync succeeded.
    pub fn last_full(&self) -> Option<Instant> {
        self.last_full
    }

    /// Forgets what the kernel holds, so the next sync is full (after a flush, for example).
    pub fn invalidate(&mut self) {
        self.current = None;
    }

    /// Syncs: partially when possible (the kernel state is known and only `changed` Services need
    /// work), else fully. `force_full` always does a full sync.
    pub fn sync(
        &mut self,
        state: &ClusterState,
        ctx: &NodeContext,
        changed: &BTreeSet<NamespacedName>,
        force_full: bool,
    ) -> Result<SyncOutcome, SyncError> {
        let start = Instant::now();
        let mut outcome = None;
        if !force_full && let Some(current) = self.current.take() {
            outcome = self.partial(state, ctx, changed, current, start)?;
        }
        let mut outcome = match outcome {
            Some(outcome) => outcome,
            None => self.full(state, ctx, start)?,
        };
        let cleanup_start = Instant::now();
        if let Some(deleted) = self.clean_conntrack(state, changed, outcome.kind) {
            outcome.conntrack_deleted = deleted;
            outcome.conntrack_duration = Some(cleanup_start.elapsed());
        }
        Ok(outcome)
    }

    /// Deletes UDP flows answered by backends that stopped serving, when a UDP Service changed (or
    /// after any full sync). Failures are logged: stale flows expire on their own eventually.
    fn clean_conntrack(
        &self,
        state: &ClusterState,
        changed: &BTreeSet<NamespacedName>,
        kind: SyncKind,
    ) -> Option<usize> {
        let conntrack = self.conntrack.as_ref()?;
        let touches_udp = kind == SyncKind::Full
            || changed.iter().any(|id| {
                state
                    .services
                    .get(id)
                    .is_some_and(|svc| svc.ports.iter().any(|p| p.protocol == Protocol::Udp))
            });
        if !touches_udp {
            return None;
        }
        let family = self.family();
        match conntrack.cleanup(family, &udp_targets(state, family)) {
            Ok(deleted) => {
                if deleted > 0 {
                    tracing::info!(%family, deleted, "deleted stale UDP conntrack entries");
                }
                Some(deleted)
            }
            Err(e) => {
                tracing::warn!(%family, error = %e, "UDP conntrack cleanup failed");
                // Entries deleted despite a refused deletion still count.
                Some(e.deleted()).filter(|&deleted| deleted > 0)
            }
        }
    }

    fn full(
        &mut self,
        state: &ClusterState,
        ctx: &NodeContext,
        start: Instant,
    ) -> Result<SyncOutcome, SyncError> {
        let family = self.family();
        let fail = |source| SyncError::Iptables {
            family,
            kind: SyncKind::Full,
            source,
        };
        self.current = None;
        self.tools.ensure_canaries().map_err(fail)?;
        self.tools.ensure_jumps(&jump_rules()).map_err(fail)?;
        // Each Service is rendered as soon as it is planned and only its compact form is kept: the
        // whole ruleset would be about 45 MiB at 5,000 Services.
        let (programmed, writer) = plan_full_sync(state, ctx, family, self.transaction_rules);
        let stale = match self.tools.save_table(Table::Nat) {
            Ok(text) => programmed.stale_chains(
                declared_chains(&text, Table::Nat)
                    .into_iter()
                    .filter(|name| is_service_chain(name)),
            ),
            Err(e) => {
                tracing::warn!(%family, error = %e, "cannot list chains; stale chains are kept until the next full sync");
                Vec::new()
            }
        };
        let payloads = writer.finish(&programmed, &stale);
        for payload in &payloads {
            self.tools.restore(payload).map_err(fail)?;
        }
        let outcome = SyncOutcome {
            kind: SyncKind::Full,
            duration: start.elapsed(),
            payloads,
            total_rules: programmed.rule_counts(),
            no_local_endpoints: programmed.no_local_counts(),
            stale_chains: stale.len(),
            conntrack_deleted: 0,
            conntrack_duration: None,
        };
        self.current = Some(programmed);
        self.last_full = Some(Instant::now());
        Ok(outcome)
    }

    /// A partial sync, or `None` when the change needs a full one (settings or large-cluster mode
    /// changed). On failure the kernel state is unknown and `current` stays empty.
    fn partial(
        &mut self,
        state: &ClusterState,
        ctx: &NodeContext,
        changed: &BTreeSet<NamespacedName>,
        mut current: ProgrammedRules,
        start: Instant,
    ) -> Result<Option<SyncOutcome>, SyncError> {
        let family = self.family();
        // Settings that shape the fixed chains changed: only a full sync rewrites those.
        if !current.same_fixed_chains(&plan(&ClusterState::default(), ctx, family)) {
            return Ok(None);
        }
        let mut updates = Vec::with_capacity(changed.len());
        for service in changed {
            let after = plan_service(state, ctx, family, current.large_cluster, service);
            let before = current.replace_service(service, &after);
            updates.push((before, after));
        }
        if (current.endpoint_count() > ctx.large_cluster_threshold) != current.large_cluster {
            return Ok(None);
        }
        let payload = render_service_updates(family, &updates);
        if !payload.is_empty()
            && let Err(source) = self.tools.restore(&payload)
        {
            return Err(SyncError::Iptables {
                family,
                kind: SyncKind::Partial,
                source,
            });
        }
        let outcome = SyncOutcome {
            kind: SyncKind::Partial,
            duration: start.elapsed(),
            payloads: if payload.is_empty() {
                Vec::new()
            } else {
                vec![payload]
            },
            total_rules: current.rule_counts(),
            no_local_endpoints: current.no_local_counts(),
            stale_chains: 0,
            conntrack_deleted: 0,
            conntrack_duration: None,
        };
        self.current = Some(current);
        Ok(Some(outcome))
    }

    /// Whether every canary chain still exists; `false` means the tables were flushed.
    pub fn canaries_present(&self) -> Result<bool, IptablesError> {
        for table in [Table::Mangle, Table::Nat, Table::Filter] {
            if !self.tools.canary_exists(table)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
