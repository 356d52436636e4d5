//! Following jumps through a service port's actual chains: which per-service chains it reaches, and the
//! share of traffic a load-balancing ladder gives each endpoint.

use std::collections::BTreeSet;

use crate::core::rules::{DumpChain, DumpRule, Table};

use super::actual::{ActualRules, ChainKind, EntryRef, is_affinity_check, rule_target_chain};

/// The per-service chains reached from `entries` and from `named` (chains the Service's hash names,
/// reached or not), following jumps between per-service chains. Chains that do not exist are skipped.
/// The order is the order of discovery: entries first, then each chain's jumps in rule order.
pub fn reached_chains<'d>(
    actual: &ActualRules<'d>,
    entries: &[EntryRef<'d>],
    named: &[&str],
) -> Vec<&'d DumpChain> {
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut order: Vec<&'d DumpChain> = Vec::new();
    let mut queue: Vec<&str> = Vec::new();
    for entry in entries.iter().filter(|e| e.table == Table::Nat) {
        if let Some(chain) = rule_target_chain(&entry.rule.rule) {
            queue.push(chain);
        }
    }
    queue.extend(named.iter().copied());
    let mut next = 0;
    while next < queue.len() {
        let name = queue[next];
        next += 1;
        if ChainKind::of(name).is_none() || !seen.insert(name) {
            continue;
        }
        let Some(chain) = actual.nat_chain(name) else {
            continue;
        };
        order.push(chain);
        for rule in &chain.rules {
            if let Some(target) = rule_target_chain(&rule.rule)
                && !seen.contains(target)
            {
                queue.push(target);
            }
        }
    }
    order
}

/// One rung of a load-balancing ladder.
#[derive(Debug, Clone, Copy)]
pub struct Rung<'d> {
    /// The endpoint chain the rung jumps to.
    pub target: &'d str,
    /// The share of the chain's new connections it receives (0..=1).
    pub share: f64,
    /// The rule.
    pub rule: &'d DumpRule,
}

/// The load-balancing ladder of a `KUBE-SVC`/`KUBE-SVL` chain: its jumps to `KUBE-SEP` chains that are
/// not affinity checks, each with its share: a rung with probability p takes p of what is left, a rung
/// without `statistic` takes all of it.
pub fn ladder(chain: &DumpChain) -> Vec<Rung<'_>> {
    let mut remaining = 1.0_f64;
    let mut rungs = Vec::new();
    for rule in &chain.rules {
        let Some(target) = rule_target_chain(&rule.rule) else {
            continue;
        };
        if ChainKind::of(target) != Some(ChainKind::Sep) || is_affinity_check(&rule.rule) {
            continue;
        }
        let probability = rule
            .rule
            .probability()
            .map(|p| p.quantized() as f64 / 2_147_483_648.0)
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        let share = remaining * probability;
        remaining -= share;
        rungs.push(Rung {
            target,
            share,
            rule,
        });
    }
    rungs
}

/// Whether every rung of `rungs` gets the same share (within rounding of the kernel's fixed point),
/// and together they take all traffic.
pub fn is_even(rungs: &[Rung<'_>]) -> bool {
    if rungs.is_empty() {
        return true;
    }
    let even = 1.0 / rungs.len() as f64;
    let total: f64 = rungs.iter().map(|r| r.share).sum();
    (total - 1.0).abs() < 1e-6 && rungs.iter().all(|r| (r.share - even).abs() < 1e-6)
}
