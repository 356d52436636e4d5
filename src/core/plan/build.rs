//! A small builder for the rule shapes kube-proxy writes, so the planner reads like the spec.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::core::rules::{
    MarkOp, Match, Neg, PortSpec, Probability, Protocol, RecentAction, RecentMatch, Rule, Target,
};

/// Builds one [`Rule`]; matches are kept in the order the builder methods are called.
#[derive(Debug, Default)]
pub(crate) struct RuleBuilder {
    rule: Rule,
}

impl RuleBuilder {
    pub(crate) fn new() -> Self {
        RuleBuilder::default()
    }

    /// A builder with room for exactly `matches` matches, for the rules planned once per endpoint.
    pub(crate) fn with_matches(matches: usize) -> Self {
        let mut builder = RuleBuilder::default();
        builder.rule.matches.reserve_exact(matches);
        builder
    }

    pub(crate) fn comment(mut self, text: impl Into<String>) -> Self {
        self.rule.matches.push(Match::Comment { text: text.into() });
        self
    }

    /// A comment only when `keep` (per-endpoint comments are left out in large-cluster mode).
    pub(crate) fn comment_if(self, keep: bool, text: impl FnOnce() -> String) -> Self {
        if keep { self.comment(text()) } else { self }
    }

    /// `-m <p> -p <p> [--dport <port>]`.
    pub(crate) fn proto(mut self, protocol: &Protocol, dport: Option<u16>) -> Self {
        self.rule.protocol = Some(Neg::is(protocol.clone()));
        self.rule.matches.push(Match::Proto {
            protocol: protocol.clone(),
            sport: None,
            dport: dport.map(|p| Neg::is(PortSpec::single(p))),
        });
        self
    }

    pub(crate) fn source(mut self, net: IpNet) -> Self {
        self.rule.source = Some(Neg::is(net));
        self
    }

    pub(crate) fn source_ip(self, ip: IpAddr) -> Self {
        self.source(IpNet::from(ip))
    }

    pub(crate) fn not_source(mut self, net: IpNet) -> Self {
        self.rule.source = Some(Neg::not(net));
        self
    }

    pub(crate) fn destination(mut self, net: IpNet) -> Self {
        self.rule.destination = Some(Neg::is(net));
        self
    }

    pub(crate) fn destination_ip(self, ip: IpAddr) -> Self {
        self.destination(IpNet::from(ip))
    }

    pub(crate) fn not_destination(mut self, net: IpNet) -> Self {
        self.rule.destination = Some(Neg::not(net));
        self
    }

    pub(crate) fn in_interface(mut self, iface: Neg<String>) -> Self {
        self.rule.in_interface = Some(iface);
        self
    }

    pub(crate) fn ctstate(mut self, negated: bool, states: &[&str]) -> Self {
        self.rule.matches.push(Match::Conntrack {
            negated,
            states: states.iter().map(|s| (*s).to_string()).collect(),
        });
        self
    }

    pub(crate) fn src_type_local(mut self) -> Self {
        self.rule.matches.push(Match::AddrType {
            src_type: Some(Neg::is("LOCAL".into())),
            dst_type: None,
        });
        self
    }

    pub(crate) fn dst_type_local(mut self) -> Self {
        self.rule.matches.push(Match::AddrType {
            src_type: None,
            dst_type: Some(Neg::is("LOCAL".into())),
        });
        self
    }

    pub(crate) fn mark(mut self, negated: bool, mark: u32) -> Self {
        self.rule.matches.push(Match::Mark {
            negated,
            value: mark,
            mask: Some(mark),
        });
        self
    }

    pub(crate) fn nfacct(mut self, name: &str) -> Self {
        self.rule.matches.push(Match::Nfacct {
            name: name.to_string(),
        });
        self
    }

    pub(crate) fn probability(mut self, probability: Probability) -> Self {
        self.rule.matches.push(Match::Statistic { probability });
        self
    }

    pub(crate) fn recent_set(mut self, name: &str) -> Self {
        self.rule.matches.push(Match::Recent(RecentMatch {
            action: RecentAction::Set,
            name: name.to_string(),
            seconds: None,
            reap: false,
            mask: None,
            rsource: None,
        }));
        self
    }

    pub(crate) fn recent_rcheck(mut self, name: &str, seconds: u32) -> Self {
        self.rule.matches.push(Match::Recent(RecentMatch {
            action: RecentAction::Rcheck,
            name: name.to_string(),
            seconds: Some(seconds),
            reap: true,
            mask: None,
            rsource: None,
        }));
        self
    }

    pub(crate) fn jump(self, chain: impl Into<String>) -> Rule {
        self.target(Target::jump(chain))
    }

    pub(crate) fn target(mut self, target: Target) -> Rule {
        self.rule.target = Some(target);
        self.no_target()
    }

    pub(crate) fn mark_target(self, op: MarkOp) -> Rule {
        self.target(Target::Mark(op))
    }

    /// A rule without a target.
    pub(crate) fn no_target(mut self) -> Rule {
        // A first push reserves room for four matches; most rules have one or two, and a large
        // cluster's plan holds hundreds of thousands of rules. (Nothing to do after `with_matches`.)
        self.rule.matches.shrink_to_fit();
        self.rule
    }
}
