//! What a trace returns: the steps walked, the verdict, and the masquerade flag.

use serde::Serialize;

use crate::core::rules::Table;

use super::matcher::Evaluation;

/// The outcome of tracing one packet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    /// Every rule evaluated and every event of the walk, in walk order.
    pub steps: Vec<Step>,
    /// Where the packet ends up.
    pub verdict: Verdict,
    /// Whether the packet is marked for masquerade on some path through nat (kube-proxy's `masq`). POSTROUTING
    /// is represented only by this flag.
    pub masquerade: bool,
}

impl Trace {
    /// kube-proxy's test outcome string for the verdict (see [`Verdict::outcome_string`]).
    pub fn outcome_string(&self) -> String {
        self.verdict.outcome_string()
    }

    /// Whether every rule on the way could be decided and the walk hit no limit, loop or missing chain.
    /// When `false`, the verdict rests on treating the undecidable rules as not matching.
    pub fn is_decidable(&self) -> bool {
        self.steps.iter().all(|s| {
            !matches!(s.evaluation, Evaluation::Undecidable(_))
                && !matches!(
                    s.action,
                    Action::MissingChain
                        | Action::Loop
                        | Action::DepthLimit
                        | Action::StepLimit
                        | Action::Unsimulated { .. }
                )
        })
    }

    /// The steps whose rule matched.
    pub fn matched_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.evaluation.is_match())
    }
}

/// Which part of the walk a step belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "stage", rename_all = "kebab-case")]
pub enum Stage {
    /// The nat pass, from `PREROUTING` or `OUTPUT`.
    Nat,
    /// A filter pass, with the destination the packet has during it (after DNAT, one pass per candidate).
    Filter {
        /// `ip:port` (`[ip]:port` for IPv6) the filter rules are matched against.
        destination: String,
    },
}

/// One evaluated rule, or one event of the walk.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Nat pass or filter pass.
    #[serde(flatten)]
    pub stage: Stage,
    /// The table walked.
    pub table: Table,
    /// The chain walked (for [`Action::MissingChain`], the chain that does not exist).
    pub chain: String,
    /// Nesting depth: 0 for the chain the pass starts in.
    pub depth: usize,
    /// 0-based position of the rule in its chain; `None` for an event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_index: Option<usize>,
    /// 1-based line of the rule in the dump; `None` for an event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Whether the rule matched, and why not.
    pub evaluation: Evaluation,
    /// What the walk did.
    pub action: Action,
}

/// What the walk did at a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// The rule did not match: on to the next rule.
    Next,
    /// The rule matched and has no target: it only counts the packet.
    Passed,
    /// A jump to `KUBE-MARK-MASQ`: the packet is marked for masquerade; the walk continues.
    MarkMasquerade,
    /// A `MARK` target; `masquerade` is whether the masquerade bits are set afterwards.
    Mark {
        /// The masquerade bits after the mark operation.
        masquerade: bool,
    },
    /// A jump into a user chain.
    Jump {
        /// The chain jumped to.
        chain: String,
        /// The rule's `statistic` probability, when it is a rung of a load-balancing ladder.
        #[serde(skip_serializing_if = "Option::is_none")]
        probability: Option<f64>,
    },
    /// `RETURN`: back to the calling chain.
    Return,
    /// `ACCEPT`: stop.
    Accept,
    /// `DROP`: stop.
    Drop,
    /// `REJECT`: stop.
    Reject,
    /// `DNAT`: the destination is rewritten; stop.
    Dnat {
        /// `--to-destination`.
        to: String,
    },
    /// A target that neither ends the walk nor changes addresses or the verdict (`LOG`, `CONNMARK`, `CT`…):
    /// the walk continues.
    Ignored {
        /// The target's name.
        target: String,
    },
    /// A target the tracer does not simulate (`SNAT`, `REDIRECT`, `MASQUERADE` outside POSTROUTING…): it is
    /// ignored and the walk continues, so the trace is no longer decidable.
    Unsimulated {
        /// The target's name.
        target: String,
    },
    /// Event: a pass's entry chain (nat `PREROUTING`/`OUTPUT`, or one of the filter chains) is not in the
    /// dump, so there is nothing to walk there.
    EntryChainAbsent,
    /// Event: a jump's target chain does not exist in the dump; the jump returns at once.
    MissingChain,
    /// Event: the jump would re-enter a chain already being walked; it is not followed.
    Loop,
    /// Event: chains nest deeper than the tracer follows; the jump is not followed.
    DepthLimit,
    /// Event: the walk evaluated more rules than the tracer allows; it stops here.
    StepLimit,
}

/// Where the packet ends up.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", content = "candidates", rename_all = "kebab-case")]
pub enum Verdict {
    /// DNATed to one of these endpoints, each with its share of the traffic.
    Dnat(Vec<Candidate>),
    /// Rejected (ICMP error or TCP reset).
    Reject,
    /// Dropped silently.
    Drop,
    /// Explicitly accepted by a filter rule without DNAT (a health-check node port).
    Accept,
    /// No kube-proxy rule decided anything: the packet goes on unchanged.
    NoMatch,
}

impl Verdict {
    /// kube-proxy's test outcome format: the candidates' `--to-destination` joined with `", "`, or
    /// `"REJECT"`, `"DROP"`, `"ACCEPT"`, or `""`.
    pub fn outcome_string(&self) -> String {
        match self {
            Verdict::Dnat(candidates) => candidates
                .iter()
                .map(|c| c.destination.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            Verdict::Reject => "REJECT".to_string(),
            Verdict::Drop => "DROP".to_string(),
            Verdict::Accept => "ACCEPT".to_string(),
            Verdict::NoMatch => String::new(),
        }
    }

    /// The DNAT candidates; empty for every other verdict.
    pub fn candidates(&self) -> &[Candidate] {
        match self {
            Verdict::Dnat(candidates) => candidates,
            _ => &[],
        }
    }
}

/// One endpoint the packet may be DNATed to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// `ip:port` as in `--to-destination` (`[ip]:port` for IPv6).
    pub destination: String,
    /// The chain holding the DNAT rule (`KUBE-SEP-…`).
    pub endpoint_chain: String,
    /// The fraction of new connections that land here: the product of the "not taken" probabilities of the
    /// earlier rungs times this rung's probability. A complete ladder's shares sum to 1.
    pub share: f64,
    /// Whether a path to this candidate marks the packet for masquerade (hairpin traffic marks only the
    /// path to its own endpoint).
    pub masquerade: bool,
}
