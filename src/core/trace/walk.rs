//! Walking chains: following jumps, splitting traffic at probabilistic rungs, and collecting where each
//! share of the traffic ends.
//!
//! The walker carries [`Flows`]: the fraction of new connections still walking a chain, split by whether
//! they are marked for masquerade. Whether a rule matches depends only on the packet, so each rule is
//! evaluated once for all flows. A rule with a `statistic` match sends its probability's share of every flow
//! through its target and leaves the rest walking; a rule without one sends everything. A jump whose target
//! chain ends every flow (DNAT, ACCEPT…) therefore ends the calling chain too unless the jump was
//! probabilistic, and a ladder of rungs yields every endpoint with its share.

use crate::core::rules::names::KUBE_MARK_MASQ;
use crate::core::rules::{DumpChain, DumpRule, Match, Rule, Table, Target};

use super::index::ChainIndex;
use super::matcher::{Evaluation, MatchContext, evaluate};
use super::result::{Action, Stage, Step};

/// Chains nest at most this deep (kube-proxy's deepest path is 5).
pub const MAX_DEPTH: usize = 64;

/// By default a whole trace evaluates at most this many rules; beyond, the walk stops with
/// [`Action::StepLimit`]. Ten times the largest real rulesets, yet it bounds time and memory on a dump
/// whose chains jump into each other exponentially often.
pub const MAX_RULE_EVALUATIONS: usize = 1_000_000;

/// Non-terminating targets that change neither addresses nor the verdict.
const IGNORABLE_TARGETS: [&str; 17] = [
    "LOG",
    "NFLOG",
    "ULOG",
    "TRACE",
    "AUDIT",
    "CONNMARK",
    "CT",
    "NOTRACK",
    "CLASSIFY",
    "DSCP",
    "TOS",
    "TTL",
    "HL",
    "TCPMSS",
    "CHECKSUM",
    "SECMARK",
    "CONNSECMARK",
];

/// A share of the traffic and whether it is marked for masquerade.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flow {
    /// Fraction of new connections, in (0, 1].
    pub weight: f64,
    /// Marked for masquerade.
    pub masquerade: bool,
}

/// The traffic walking a chain: at most one [`Flow`] per masquerade state, all with positive weight.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flows(Vec<Flow>);

impl Flows {
    /// All the traffic, unmarked.
    pub fn whole() -> Flows {
        Flows(vec![Flow {
            weight: 1.0,
            masquerade: false,
        }])
    }

    /// Whether no traffic is left.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The flows.
    pub fn iter(&self) -> impl Iterator<Item = &Flow> {
        self.0.iter()
    }

    /// Whether some of the traffic is marked for masquerade.
    pub fn any_masquerade(&self) -> bool {
        self.0.iter().any(|f| f.masquerade)
    }

    fn add(&mut self, flow: Flow) {
        if flow.weight <= 0.0 {
            return;
        }
        match self.0.iter_mut().find(|f| f.masquerade == flow.masquerade) {
            Some(same) => same.weight += flow.weight,
            None => self.0.push(flow),
        }
    }

    fn merge(&mut self, other: Flows) {
        for flow in other.0 {
            self.add(flow);
        }
    }

    fn scaled(&self, factor: f64) -> Flows {
        let mut out = Flows::default();
        for f in &self.0 {
            out.add(Flow {
                weight: f.weight * factor,
                masquerade: f.masquerade,
            });
        }
        out
    }

    fn remarked(self, mark: impl Fn(bool) -> bool) -> Flows {
        let mut out = Flows::default();
        for f in self.0 {
            out.add(Flow {
                weight: f.weight,
                masquerade: mark(f.masquerade),
            });
        }
        out
    }
}

/// How a share of the traffic left the walk for good.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// `DNAT --to-destination to`, in chain `chain`.
    Dnat {
        /// `--to-destination`.
        to: String,
        /// The chain of the DNAT rule.
        chain: String,
    },
    /// `ACCEPT`
    Accept,
    /// `DROP`
    Drop,
    /// `REJECT`
    Reject,
}

/// A share of the traffic that ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Terminal {
    /// How it ended.
    pub ending: Ending,
    /// Which traffic.
    pub flow: Flow,
}

/// What came out of a chain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChainOutcome {
    /// Traffic that ended, in walk order.
    pub terminals: Vec<Terminal>,
    /// Traffic that returned or fell off the end.
    pub through: Flows,
}

/// The steps of a trace and its rule budget, shared by all its passes.
#[derive(Debug)]
pub struct Log {
    /// The steps so far.
    pub steps: Vec<Step>,
    remaining: usize,
    limit_hit: bool,
}

impl Log {
    /// An empty log that allows `rule_limit` rule evaluations.
    pub fn new(rule_limit: usize) -> Log {
        Log {
            steps: Vec::new(),
            remaining: rule_limit,
            limit_hit: false,
        }
    }

    /// Take one rule evaluation from the budget; `false` once it is spent.
    fn spend(&mut self) -> bool {
        if self.remaining == 0 {
            return false;
        }
        self.remaining -= 1;
        true
    }
}

/// One pass (nat, or filter for one destination) over one table.
pub struct Walker<'w, 'd> {
    index: &'w ChainIndex<'d>,
    ctx: MatchContext<'w>,
    stage: Stage,
    table: Table,
    log: &'w mut Log,
    record_misses: bool,
    stack: Vec<&'d str>,
}

impl<'w, 'd> Walker<'w, 'd> {
    /// A pass over `table` for the packet in `ctx`. With `record_misses` false, rules that plainly did not
    /// match leave no step (undecidable ones always do).
    pub fn new(
        index: &'w ChainIndex<'d>,
        ctx: MatchContext<'w>,
        stage: Stage,
        table: Table,
        log: &'w mut Log,
        record_misses: bool,
    ) -> Walker<'w, 'd> {
        Walker {
            index,
            ctx,
            stage,
            table,
            log,
            record_misses,
            stack: Vec::new(),
        }
    }

    /// Walk `entry` with all the traffic. A missing entry chain is recorded and lets everything through.
    pub fn run(&mut self, entry: &str) -> ChainOutcome {
        match self.index.chain(self.table, entry) {
            Some(chain) => self.walk(chain, Flows::whole(), 0),
            None => {
                self.event(entry, 0, Action::EntryChainAbsent);
                ChainOutcome {
                    terminals: Vec::new(),
                    through: Flows::whole(),
                }
            }
        }
    }

    fn walk(&mut self, chain: &'d DumpChain, flows: Flows, depth: usize) -> ChainOutcome {
        let mut out = ChainOutcome::default();
        let mut live = flows;
        self.stack.push(&chain.name);
        for (index, dump_rule) in chain.rules.iter().enumerate() {
            if live.is_empty() {
                break;
            }
            if !self.log.spend() {
                if !self.log.limit_hit {
                    self.log.limit_hit = true;
                    self.event(&chain.name, depth, Action::StepLimit);
                }
                break;
            }
            let evaluation = evaluate(&dump_rule.rule, &self.ctx);
            if !evaluation.is_match() {
                if self.record_misses || matches!(evaluation, Evaluation::Undecidable(_)) {
                    self.rule_step(chain, depth, index, dump_rule, evaluation, Action::Next);
                }
                continue;
            }
            let probability = rule_probability(&dump_rule.rule);
            let taken = match probability {
                Some(p) => {
                    let taken = live.scaled(p);
                    live = live.scaled(1.0 - p);
                    taken
                }
                None => std::mem::take(&mut live),
            };
            let step = |action| (chain, depth, index, dump_rule, action);
            match &dump_rule.rule.target {
                None => {
                    self.matched(step(Action::Passed));
                    live.merge(taken);
                }
                Some(Target::Jump { chain: target }) => {
                    let returned = self.jump(step, target, probability, taken, depth, &mut out);
                    live.merge(returned);
                }
                Some(Target::Goto { chain: target }) => {
                    // What comes back from a goto returns to this chain's caller.
                    let returned = self.jump(step, target, probability, taken, depth, &mut out);
                    out.through.merge(returned);
                }
                Some(Target::Mark(op)) => {
                    let marked =
                        taken.remarked(|before| self.index.mark_sets_masquerade(*op, before));
                    self.matched(step(Action::Mark {
                        masquerade: marked.any_masquerade(),
                    }));
                    live.merge(marked);
                }
                Some(Target::Return) => {
                    self.matched(step(Action::Return));
                    out.through.merge(taken);
                }
                Some(Target::Accept) => {
                    self.end(step(Action::Accept), Ending::Accept, taken, &mut out)
                }
                Some(Target::Drop) => self.end(step(Action::Drop), Ending::Drop, taken, &mut out),
                Some(Target::Reject { .. }) => {
                    self.end(step(Action::Reject), Ending::Reject, taken, &mut out)
                }
                Some(Target::Dnat { to }) => {
                    let ending = Ending::Dnat {
                        to: to.clone(),
                        chain: chain.name.clone(),
                    };
                    self.end(
                        step(Action::Dnat { to: to.clone() }),
                        ending,
                        taken,
                        &mut out,
                    );
                }
                Some(Target::Masquerade { .. }) => {
                    self.matched(step(Action::Unsimulated {
                        target: "MASQUERADE".to_string(),
                    }));
                    live.merge(taken);
                }
                Some(Target::Other { name, .. })
                    if self.index.chain(self.table, name).is_some() =>
                {
                    let returned = self.jump(step, name, probability, taken, depth, &mut out);
                    live.merge(returned);
                }
                Some(Target::Other { name, .. }) => {
                    self.matched(step(extension_target(name)));
                    live.merge(taken);
                }
            }
        }
        out.through.merge(live);
        self.stack.pop();
        out
    }

    /// A jump: `KUBE-MARK-MASQ` marks and continues (its `MARK` rule is not walked); any other chain is
    /// walked with the traffic taken. Returns the traffic that comes back.
    fn jump(
        &mut self,
        step: impl FnOnce(Action) -> StepAt<'d>,
        target: &str,
        probability: Option<f64>,
        taken: Flows,
        depth: usize,
        out: &mut ChainOutcome,
    ) -> Flows {
        if target == KUBE_MARK_MASQ {
            self.matched(step(Action::MarkMasquerade));
            return taken.remarked(|_| true);
        }
        self.matched(step(Action::Jump {
            chain: target.to_string(),
            probability,
        }));
        if taken.is_empty() {
            return taken;
        }
        if self.stack.contains(&target) {
            self.event(target, depth + 1, Action::Loop);
            return taken;
        }
        if depth + 1 > MAX_DEPTH {
            self.event(target, depth + 1, Action::DepthLimit);
            return taken;
        }
        let Some(sub) = self.index.chain(self.table, target) else {
            // `-j LOG` read as a jump to a chain named LOG is the LOG target, not a missing chain.
            let action = if is_extension_target(target) {
                extension_target(target)
            } else {
                Action::MissingChain
            };
            self.event(target, depth + 1, action);
            return taken;
        };
        let outcome = self.walk(sub, taken, depth + 1);
        out.terminals.extend(outcome.terminals);
        outcome.through
    }

    fn end(&mut self, at: StepAt<'d>, ending: Ending, taken: Flows, out: &mut ChainOutcome) {
        self.matched(at);
        for flow in taken.iter() {
            out.terminals.push(Terminal {
                ending: ending.clone(),
                flow: *flow,
            });
        }
    }

    fn matched(&mut self, (chain, depth, index, rule, action): StepAt<'d>) {
        self.rule_step(chain, depth, index, rule, Evaluation::Matched, action);
    }

    fn rule_step(
        &mut self,
        chain: &DumpChain,
        depth: usize,
        index: usize,
        rule: &DumpRule,
        evaluation: Evaluation,
        action: Action,
    ) {
        self.log.steps.push(Step {
            stage: self.stage.clone(),
            table: self.table,
            chain: chain.name.clone(),
            depth,
            rule_index: Some(index),
            line: Some(rule.line),
            evaluation,
            action,
        });
    }

    fn event(&mut self, chain: &str, depth: usize, action: Action) {
        self.log.steps.push(Step {
            stage: self.stage.clone(),
            table: self.table,
            chain: chain.to_string(),
            depth,
            rule_index: None,
            line: None,
            evaluation: Evaluation::NotEvaluated,
            action,
        });
    }
}

/// Targets that do something the tracer does not simulate: they change addresses or hand the packet off.
const UNSIMULATED_TARGETS: [&str; 8] = [
    "SNAT",
    "MASQUERADE",
    "REDIRECT",
    "NETMAP",
    "TPROXY",
    "QUEUE",
    "NFQUEUE",
    "SYNPROXY",
];

fn is_extension_target(name: &str) -> bool {
    IGNORABLE_TARGETS.contains(&name) || UNSIMULATED_TARGETS.contains(&name)
}

/// What the walk does with a target that is neither built in nor a chain: ignorable ones are passed
/// over, anything else is passed over but makes the trace undecidable.
fn extension_target(name: &str) -> Action {
    if IGNORABLE_TARGETS.contains(&name) {
        Action::Ignored {
            target: name.to_string(),
        }
    } else {
        Action::Unsimulated {
            target: name.to_string(),
        }
    }
}

/// Where a matched rule sits, and what the walk does with it.
type StepAt<'d> = (&'d DumpChain, usize, usize, &'d DumpRule, Action);

/// The probability the kernel applies: the product of the rule's `statistic` matches, each at its
/// fixed-point value (`round(p × 2^31) / 2^31`).
fn rule_probability(rule: &Rule) -> Option<f64> {
    rule.matches
        .iter()
        .filter_map(|m| match m {
            Match::Statistic { probability } => {
                Some((f64::from(probability.quantized()) / 2_147_483_648.0).clamp(0.0, 1.0))
            }
            _ => None,
        })
        .reduce(|a, b| a * b)
}
