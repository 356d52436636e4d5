//! What drift detection reports: [`Finding`]s of a fixed set of [`FindingKind`]s.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kinds of finding (DESIGN §3). Names are part of the output schema: extend, never rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// The Service has no usable endpoints; traffic is REJECTed.
    NoEndpoints,
    /// Local traffic policy and no endpoint on this node; traffic is DROPped here.
    NoLocalEndpoints,
    /// The selector matches pods that are absent from the slices, or matches nothing.
    SelectorMismatch,
    /// The cluster says the node should capture this Service; the node has no rules for it.
    MissingServiceRules,
    /// A usable endpoint has no `KUBE-SEP` chain, or no jump to it, on the node.
    MissingEndpoint,
    /// The node still DNATs to an address that is no longer a usable endpoint.
    StaleEndpoint,
    /// Rules or chains for a Service (or port) that no longer exists.
    StaleService,
    /// A REJECT/DROP rule for a Service that now has endpoints.
    StaleReject,
    /// The load-balancing ladder does not give each endpoint an equal share.
    WrongProbability,
    /// Any other difference between expected and actual rules.
    RuleMismatch,
    /// A built-in chain no longer jumps to `KUBE-SERVICES`, `KUBE-POSTROUTING`, ….
    MissingJump,
    /// The canary chains are gone: the tables were flushed.
    RulesFlushed,
    /// `KUBE-*` rules exist in both iptables-legacy and iptables-nft.
    BackendMismatch,
}

impl FindingKind {
    /// Every kind, in declaration order.
    pub const ALL: [FindingKind; 13] = [
        FindingKind::NoEndpoints,
        FindingKind::NoLocalEndpoints,
        FindingKind::SelectorMismatch,
        FindingKind::MissingServiceRules,
        FindingKind::MissingEndpoint,
        FindingKind::StaleEndpoint,
        FindingKind::StaleService,
        FindingKind::StaleReject,
        FindingKind::WrongProbability,
        FindingKind::RuleMismatch,
        FindingKind::MissingJump,
        FindingKind::RulesFlushed,
        FindingKind::BackendMismatch,
    ];

    /// The kebab-case name used in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::NoEndpoints => "no-endpoints",
            FindingKind::NoLocalEndpoints => "no-local-endpoints",
            FindingKind::SelectorMismatch => "selector-mismatch",
            FindingKind::MissingServiceRules => "missing-service-rules",
            FindingKind::MissingEndpoint => "missing-endpoint",
            FindingKind::StaleEndpoint => "stale-endpoint",
            FindingKind::StaleService => "stale-service",
            FindingKind::StaleReject => "stale-reject",
            FindingKind::WrongProbability => "wrong-probability",
            FindingKind::RuleMismatch => "rule-mismatch",
            FindingKind::MissingJump => "missing-jump",
            FindingKind::RulesFlushed => "rules-flushed",
            FindingKind::BackendMismatch => "backend-mismatch",
        }
    }

    /// How bad a finding of this kind is.
    pub fn severity(self) -> Severity {
        match self {
            FindingKind::NoLocalEndpoints => Severity::Info,
            FindingKind::NoEndpoints
            | FindingKind::SelectorMismatch
            | FindingKind::StaleService
            | FindingKind::WrongProbability
            | FindingKind::RuleMismatch => Severity::Warning,
            FindingKind::MissingServiceRules
            | FindingKind::MissingEndpoint
            | FindingKind::StaleEndpoint
            | FindingKind::StaleReject
            | FindingKind::MissingJump
            | FindingKind::RulesFlushed
            | FindingKind::BackendMismatch => Severity::Error,
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Expected behaviour worth knowing (for example, eTP=Local drops on a node without endpoints).
    Info,
    /// Something is off and may hurt traffic.
    Warning,
    /// Traffic goes somewhere it should not, or nowhere.
    Error,
}

impl Severity {
    /// The lowercase name used in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Finding {
    /// What kind of problem.
    pub kind: FindingKind,
    /// How bad it is.
    pub severity: Severity,
    /// The node whose rules show it; `None` for cluster-side findings that hold on every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The service port (`namespace/name[:port]`) or Service it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The chain it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// The endpoint (`ip:port`) it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// One sentence for a human.
    pub message: String,
}

impl Finding {
    /// A finding of `kind` with its default severity and `message`.
    pub fn new(kind: FindingKind, message: impl Into<String>) -> Finding {
        Finding {
            kind,
            severity: kind.severity(),
            node: None,
            service: None,
            chain: None,
            endpoint: None,
            message: message.into(),
        }
    }

    /// The same finding for `node`.
    pub fn on_node(mut self, node: impl Into<String>) -> Finding {
        self.node = Some(node.into());
        self
    }

    /// The same finding about `service`.
    pub fn for_service(mut self, service: impl Into<String>) -> Finding {
        self.service = Some(service.into());
        self
    }

    /// The same finding about `chain`.
    pub fn in_chain(mut self, chain: impl Into<String>) -> Finding {
        self.chain = Some(chain.into());
        self
    }

    /// The same finding about `endpoint`.
    pub fn at_endpoint(mut self, endpoint: impl Into<String>) -> Finding {
        self.endpoint = Some(endpoint.into());
        self
    }
}
