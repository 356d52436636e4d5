//! The order of evaluation: the nat pass, then the filter pass for each place the packet may be DNATed to,
//! and how their results combine into one verdict.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::core::rules::names::{
    KUBE_EXTERNAL_SERVICES, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL, KUBE_SERVICES,
};
use crate::core::rules::{Dump, Table};

use super::dnat::{format_destination, parse_to_destination};
use super::index::ChainIndex;
use super::matcher::MatchContext;
use super::packet::{Origin, Packet};
use super::result::{Candidate, Stage, Trace, Verdict};
use super::walk::{ChainOutcome, Ending, Log, MAX_RULE_EVALUATIONS, Walker};

/// The filter chains run after nat, directly and in this order, as kube-proxy's own test tracer does
/// (`tracePacket` in `pkg/proxy/iptables/proxier_test.go`): the real INPUT/FORWARD/OUTPUT hooks are not
/// modelled. The first chain that ends the packet decides the filter result.
pub const FILTER_CHAINS: [&str; 4] = [
    KUBE_SERVICES,
    KUBE_EXTERNAL_SERVICES,
    KUBE_NODEPORTS,
    KUBE_PROXY_FIREWALL,
];

/// A dump indexed for tracing; build it once and trace many packets.
#[derive(Debug, Clone)]
pub struct Tracer<'d> {
    index: ChainIndex<'d>,
    rule_limit: usize,
}

impl<'d> Tracer<'d> {
    /// Index `dump`'s chains by name.
    pub fn new(dump: &'d Dump) -> Tracer<'d> {
        Tracer {
            index: ChainIndex::new(dump),
            rule_limit: MAX_RULE_EVALUATIONS,
        }
    }

    /// The same tracer, stopping each trace after `limit` rule evaluations (default
    /// [`MAX_RULE_EVALUATIONS`]).
    pub fn with_rule_limit(mut self, limit: usize) -> Tracer<'d> {
        self.rule_limit = limit;
        self
    }

    /// The masquerade bits in use (from nat `KUBE-MARK-MASQ`, or `0x4000`).
    pub fn masquerade_mark(&self) -> u32 {
        self.index.masquerade_mark()
    }

    /// Trace `packet` entering through `origin`; `local_addresses` are the node's addresses (loopback
    /// included), which decide `addrtype LOCAL`.
    pub fn trace(&self, packet: &Packet, origin: Origin, local_addresses: &[IpAddr]) -> Trace {
        let mut log = Log::new(self.rule_limit);
        let ctx = MatchContext::new(packet, local_addresses);
        let nat = Walker::new(&self.index, ctx, Stage::Nat, Table::Nat, &mut log, true)
            .run(origin.nat_hook());
        let NatResult {
            candidates,
            blocked,
            masquerade,
        } = NatResult::from(nat);

        let verdict = if candidates.is_empty() {
            match blocked {
                Some(verdict) => verdict,
                None => self.filter(ctx, &mut log, true).unwrap_or(Verdict::NoMatch),
            }
        } else {
            self.filter_candidates(ctx, candidates, &mut log)
        };
        Trace {
            steps: log.steps,
            verdict,
            masquerade,
        }
    }

    /// One filter pass per distinct candidate destination, with the DNATed address and port (as the kernel
    /// sees the packet after PREROUTING; kube-proxy's test tracer rewrites only the address of the first
    /// candidate). A candidate that filter drops or rejects is removed, its share lost; when all are, the
    /// first one's filter verdict is the verdict. Only the first pass records the rules that did not match.
    fn filter_candidates(
        &self,
        ctx: MatchContext<'_>,
        candidates: Vec<Candidate>,
        log: &mut Log,
    ) -> Verdict {
        let mut passes: HashMap<String, Option<Verdict>> = HashMap::new();
        let mut kept = Vec::new();
        let mut first_block = None;
        for (i, candidate) in candidates.into_iter().enumerate() {
            let result = match passes.get(&candidate.destination) {
                Some(result) => result.clone(),
                None => {
                    let mut dnatted = ctx;
                    dnatted.dnatted = true;
                    if let Some((address, port)) = parse_to_destination(&candidate.destination) {
                        dnatted.destination = address;
                        dnatted.destination_port = port.unwrap_or(ctx.destination_port);
                    }
                    let result = self.filter(dnatted, log, i == 0);
                    passes.insert(candidate.destination.clone(), result.clone());
                    result
                }
            };
            match result {
                Some(blocked @ (Verdict::Drop | Verdict::Reject)) => {
                    first_block.get_or_insert(blocked);
                }
                _ => kept.push(candidate),
            }
        }
        if kept.is_empty() {
            first_block.unwrap_or(Verdict::NoMatch)
        } else {
            Verdict::Dnat(kept)
        }
    }

    /// Run [`FILTER_CHAINS`] until one ends the packet; `None` when none does.
    fn filter(&self, ctx: MatchContext<'_>, log: &mut Log, record_misses: bool) -> Option<Verdict> {
        let stage = Stage::Filter {
            destination: format_destination(ctx.destination, ctx.destination_port),
        };
        for chain in FILTER_CHAINS {
            let outcome = Walker::new(
                &self.index,
                ctx,
                stage.clone(),
                Table::Filter,
                log,
                record_misses,
            )
            .run(chain);
            let verdict = outcome.terminals.iter().find_map(|t| match t.ending {
                Ending::Accept => Some(Verdict::Accept),
                Ending::Drop => Some(Verdict::Drop),
                Ending::Reject => Some(Verdict::Reject),
                // DNAT is not valid in the filter table; such a rule decides nothing here.
                Ending::Dnat { .. } => None,
            });
            if verdict.is_some() {
                return verdict;
            }
        }
        None
    }
}

/// What the nat pass decided.
struct NatResult {
    /// DNAT candidates, merged by destination and chain, in the order first reached.
    candidates: Vec<Candidate>,
    /// A nat-table DROP or REJECT (not something kube-proxy writes), first one reached.
    blocked: Option<Verdict>,
    /// Some path marked the packet for masquerade.
    masquerade: bool,
}

impl From<ChainOutcome> for NatResult {
    fn from(nat: ChainOutcome) -> NatResult {
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut positions: HashMap<(String, String), usize> = HashMap::new();
        let mut blocked = None;
        let mut masquerade = nat.through.any_masquerade();
        for terminal in nat.terminals {
            masquerade |= terminal.flow.masquerade;
            match terminal.ending {
                Ending::Dnat { to, chain } => match positions.get(&(to.clone(), chain.clone())) {
                    Some(&at) => {
                        if let Some(same) = candidates.get_mut(at) {
                            same.share += terminal.flow.weight;
                            same.masquerade |= terminal.flow.masquerade;
                        }
                    }
                    None => {
                        positions.insert((to.clone(), chain.clone()), candidates.len());
                        candidates.push(Candidate {
                            destination: to,
                            endpoint_chain: chain,
                            share: terminal.flow.weight,
                            masquerade: terminal.flow.masquerade,
                        });
                    }
                },
                Ending::Drop => {
                    blocked.get_or_insert(Verdict::Drop);
                }
                Ending::Reject => {
                    blocked.get_or_insert(Verdict::Reject);
                }
                // ACCEPT in nat ends nat traversal without rewriting anything: the packet goes on to filter.
                Ending::Accept => {}
            }
        }
        NatResult {
            candidates,
            blocked,
            masquerade,
        }
    }
}

/// Trace `packet` through `dump`, entering through `origin`. `local_addresses` are the node's addresses
/// (loopback included). Builds the chain index first; use [`Tracer`] to trace many packets over one dump.
pub fn trace(dump: &Dump, packet: &Packet, origin: Origin, local_addresses: &[IpAddr]) -> Trace {
    Tracer::new(dump).trace(packet, origin, local_addresses)
}
