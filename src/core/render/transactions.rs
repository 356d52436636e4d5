//! A full sync as bounded `iptables-restore` transactions: per-service chains in groups of whole
//! Services, then one final transaction that switches the entry chains and deletes stale chains.
//!
//! [`TransactionWriter`] takes Services one at a time, so a full sync can render each Service as soon
//! as it is planned and keep only its compact [`ProgrammedPort`](crate::core::plan::ProgrammedPort):
//! the whole [`RuleSet`] never has to exist at once.

use std::collections::BTreeMap;

use super::{FixedChains, push_declaration, write_chain_rules, write_entry_tables};
use crate::core::model::{ClusterState, NodeContext};
use crate::core::plan::{ProgrammedPort, ProgrammedRules, RuleSet, ServiceRules, plan_by_service};
use crate::core::rules::{Chain, IpFamily};

/// Plans a full sync Service by Service: each Service's own chains go into a writer of transactions
/// of about `max_rules` rules as soon as they are planned, and only their compact form is kept.
/// Returns what the sync will program and the writer, to [`finish`](TransactionWriter::finish) once
/// the stale chains are known.
pub fn plan_full_sync(
    state: &ClusterState,
    ctx: &NodeContext,
    family: IpFamily,
    max_rules: usize,
) -> (ProgrammedRules, TransactionWriter) {
    let mut writer = TransactionWriter::new(family, max_rules);
    let mut ports = BTreeMap::new();
    let frame = plan_by_service(state, ctx, family, |service| {
        writer.add_service(service.iter().map(|(_, rules)| rules));
        ports.extend(
            service
                .into_iter()
                .map(|(name, rules)| (name, ProgrammedPort::from(rules))),
        );
    });
    let mut programmed = ProgrammedRules::from(frame);
    programmed.services = ports;
    (programmed, writer)
}

/// Renders Services' own chains into transactions of whole Services, each of at most about
/// `max_rules` rules (a Service larger than that gets a transaction of its own).
#[derive(Debug)]
pub struct TransactionWriter {
    family: IpFamily,
    max_rules: usize,
    done: Vec<String>,
    declarations: String,
    rules: String,
    group_rules: usize,
}

impl TransactionWriter {
    /// A writer of `family` transactions of about `max_rules` rules.
    pub fn new(family: IpFamily, max_rules: usize) -> TransactionWriter {
        TransactionWriter {
            family,
            max_rules: max_rules.max(1),
            done: Vec::new(),
            declarations: String::new(),
            rules: String::new(),
            group_rules: 0,
        }
    }

    /// Adds every port of one Service (all of them, in name order); a Service is never split
    /// between transactions.
    pub fn add_service<'a>(&mut self, ports: impl IntoIterator<Item = &'a ServiceRules> + Clone) {
        let chains = || ports.clone().into_iter().flat_map(|s| &s.chains);
        let size: usize = chains().map(|c| c.rules.len()).sum();
        if size == 0 {
            return;
        }
        if self.group_rules > 0 && self.group_rules + size > self.max_rules {
            self.flush();
        }
        for chain in chains() {
            push_declaration(&mut self.declarations, &chain.name);
            write_chain_rules(
                &mut self.rules,
                &chain.name,
                chain.rules.iter(),
                self.family,
            );
        }
        self.group_rules += size;
    }

    fn flush(&mut self) {
        if self.group_rules == 0 {
            return;
        }
        let mut transaction =
            String::with_capacity(self.declarations.len() + self.rules.len() + 16);
        transaction.push_str("*nat\n");
        transaction.push_str(&self.declarations);
        transaction.push_str(&self.rules);
        transaction.push_str("COMMIT\n");
        self.done.push(transaction);
        self.declarations.clear();
        self.rules.clear();
        self.group_rules = 0;
    }

    /// The transactions, ending with the one that switches the entry chains to `programmed` (which
    /// must hold the Services added) and deletes the `stale` chains.
    pub fn finish(self, programmed: &ProgrammedRules, stale: &[String]) -> Vec<String> {
        let fixed = FixedChains::of_programmed(programmed);
        self.finish_with(&fixed, &programmed.nat_chains, stale)
    }

    fn finish_with(
        mut self,
        fixed: &FixedChains<'_>,
        nat_chains: &[Chain],
        stale: &[String],
    ) -> Vec<String> {
        self.flush();
        let mut transactions = self.done;
        // Service chains jump to KUBE-MARK-MASQ: on a fresh node the first transaction must create
        // it, and rewriting the static nat chains whole is harmless on a node that has them.
        if let Some(first) = transactions.first_mut() {
            *first = with_static_nat_chains(first, nat_chains, self.family);
        }
        let mut last = String::new();
        write_entry_tables(&mut last, fixed, self.family, std::iter::empty(), stale);
        transactions.push(last);
        transactions
    }
}

/// The full ruleset as bounded transactions (see [`TransactionWriter`]). Applied in order, every
/// intermediate state is consistent: new chains are unreferenced until the final switch.
pub fn render_transactions(rules: &RuleSet, stale: &[String], max_rules: usize) -> Vec<String> {
    let mut writer = TransactionWriter::new(rules.family, max_rules);
    let mut ports = rules.services.iter().peekable();
    while let Some((first, rules_of_first)) = ports.next() {
        let mut service = vec![rules_of_first];
        while let Some((_, next)) = ports.next_if(|(name, _)| name.service == first.service) {
            service.push(next);
        }
        writer.add_service(service.iter().copied());
    }
    writer.finish_with(&FixedChains::of_rules(rules), &rules.nat_chains, stale)
}

/// `transaction` (a nat transaction) with the static nat chains (`KUBE-POSTROUTING`,
/// `KUBE-MARK-MASQ`) declared and written in full at its start.
fn with_static_nat_chains(transaction: &str, nat_chains: &[Chain], family: IpFamily) -> String {
    let body = transaction.strip_prefix("*nat\n").unwrap_or(transaction);
    let mut out = String::with_capacity(transaction.len() + 512);
    out.push_str("*nat\n");
    let statics = nat_chains.iter().filter(|c| !c.rules.is_empty());
    for chain in statics.clone() {
        push_declaration(&mut out, &chain.name);
    }
    for chain in statics {
        write_chain_rules(&mut out, &chain.name, chain.rules.iter(), family);
    }
    out.push_str(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::plan;
    use crate::synthetic;

    fn context() -> NodeContext {
        NodeContext::new("node-0", vec!["192.168.0.10".parse().unwrap()])
    }

    #[test]
    fn groups_whole_services_up_to_the_bound() {
        let state = synthetic::cluster(10, 4);
        let rules = plan(&state, &context(), IpFamily::V4);
        let per_service: usize = rules
            .services
            .values()
            .next()
            .map(|s| s.chains.iter().map(|c| c.rules.len()).sum())
            .unwrap();
        // Room for two Services per transaction, not three.
        let transactions = render_transactions(&rules, &[], per_service * 2 + 1);
        assert_eq!(transactions.len(), 5 + 1, "five groups, then the switch");
        for group in &transactions[1..5] {
            assert_eq!(group.matches(":KUBE-SVC-").count(), 2, "{group}");
        }
        assert!(
            transactions[0].contains(":KUBE-MARK-MASQ"),
            "the first creates KUBE-MARK-MASQ"
        );
        let last = transactions.last().unwrap();
        assert!(last.starts_with("*filter\n") && last.contains(":KUBE-SERVICES"));
        assert!(
            !last.contains(":KUBE-SVC-"),
            "the switch declares no service chain"
        );
    }

    #[test]
    fn streaming_the_plan_renders_the_same_transactions() {
        let mut state = synthetic::cluster(30, 3);
        // A Service with two ports, so a group holds several ports of one Service.
        let mut two_ports = synthetic::service(31);
        let mut second = two_ports.ports[0].clone();
        second.name = "metrics".into();
        second.port = 9090;
        two_ports.ports[0].name = "http".into();
        two_ports.ports.push(second);
        state.insert_service(two_ports);
        let mut slice = synthetic::slice(31, 3, 0);
        let mut metrics = slice.ports[0].clone();
        metrics.name = Some("metrics".into());
        metrics.port = Some(9091);
        slice.ports.push(metrics);
        state.insert_slice(slice);
        let ctx = context();
        let stale = vec!["KUBE-SVC-GONEGONEGONEGONE".to_string()];

        let rules = plan(&state, &ctx, IpFamily::V4);
        let two_port_chains = rules
            .services
            .iter()
            .filter(|(name, _)| name.service.name == "svc-31")
            .map(|(_, s)| s.chains.len())
            .collect::<Vec<_>>();
        assert_eq!(two_port_chains.len(), 2, "both ports are planned");
        assert!(
            two_port_chains.iter().all(|&n| n > 1),
            "both have endpoints"
        );
        let whole = render_transactions(&rules, &stale, 50);
        let rules_again = rules;

        let (programmed, writer) = plan_full_sync(&state, &ctx, IpFamily::V4, 50);
        assert_eq!(programmed, ProgrammedRules::from(rules_again));
        assert_eq!(writer.finish(&programmed, &stale), whole);
    }
}
