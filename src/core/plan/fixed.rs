//! The fixed chains' static rules, the tail of nat `KUBE-SERVICES`, and the jumps from the built-in
//! chains (spec §1.1–§1.3).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;

use super::build::RuleBuilder;
use crate::core::model::NodeContext;
use crate::core::rules::names::{
    KUBE_EXTERNAL_SERVICES, KUBE_FIREWALL, KUBE_FORWARD, KUBE_MARK_MASQ, KUBE_NODEPORTS,
    KUBE_POSTROUTING, KUBE_PROXY_FIREWALL, KUBE_SERVICES,
};
use crate::core::rules::{Chain, IpFamily, MarkOp, Rule, Table, Target};

/// The nfacct object counting packets dropped as conntrack INVALID.
pub(crate) const CT_INVALID_NFACCT: &str = "ct_state_invalid_dropped_pkts";

const NODEPORTS_TAIL_COMMENT: &str =
    "kubernetes service nodeports; NOTE: this must be the last rule in this chain";

/// IPv4 loopback, `127.0.0.0/8`.
pub(crate) const LOOPBACK_V4: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8);
/// IPv6 loopback, `::1/128`.
pub(crate) const LOOPBACK_V6: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128);

/// The fixed filter chains kube-proxy flushes and rewrites on every sync, with their static rules.
/// `KUBE-FIREWALL` is included only where kube-proxy writes it (IPv4 with localhost NodePorts).
pub(super) fn filter_chains(ctx: &NodeContext, family: IpFamily) -> Vec<Chain> {
    let mark = ctx.masquerade_mark();
    let mut forward = Chain::new(KUBE_FORWARD);
    if !ctx.tcp_be_liberal {
        let mut invalid = RuleBuilder::new().ctstate(false, &["INVALID"]);
        if ctx.nfacct {
            invalid = invalid.nfacct(CT_INVALID_NFACCT);
        }
        forward.rules.push(invalid.target(Target::Drop));
    }
    forward.rules.push(
        RuleBuilder::new()
            .comment("kubernetes forwarding rules")
            .mark(false, mark)
            .target(Target::Accept),
    );
    forward.rules.push(
        RuleBuilder::new()
            .comment("kubernetes forwarding conntrack rule")
            .ctstate(false, &["RELATED", "ESTABLISHED"])
            .target(Target::Accept),
    );
    let mut chains = vec![
        Chain::new(KUBE_SERVICES),
        Chain::new(KUBE_EXTERNAL_SERVICES),
        forward,
        Chain::new(KUBE_NODEPORTS),
        Chain::new(KUBE_PROXY_FIREWALL),
    ];
    if ctx.localhost_nodeports_for(family) {
        let mut firewall = Chain::new(KUBE_FIREWALL);
        firewall.rules.push(
            RuleBuilder::new()
                .comment("block incoming localnet connections")
                .destination(IpNet::V4(LOOPBACK_V4))
                .not_source(IpNet::V4(LOOPBACK_V4))
                .ctstate(true, &["RELATED", "ESTABLISHED", "DNAT"])
                .target(Target::Drop),
        );
        chains.push(firewall);
    }
    chains
}

/// The fixed nat chains with their static rules.
pub(super) fn nat_chains(ctx: &NodeContext) -> Vec<Chain> {
    let mark = ctx.masquerade_mark();
    let postrouting = Chain {
        name: KUBE_POSTROUTING.to_string(),
        rules: vec![
            RuleBuilder::new().mark(true, mark).target(Target::Return),
            RuleBuilder::new().mark_target(MarkOp::Xor(mark)),
            RuleBuilder::new()
                .comment("kubernetes service traffic requiring SNAT")
                .target(Target::Masquerade {
                    random_fully: ctx.random_fully,
                }),
        ],
    };
    let mark_masq = Chain {
        name: KUBE_MARK_MASQ.to_string(),
        rules: vec![RuleBuilder::new().mark_target(MarkOp::Or(mark))],
    };
    vec![
        Chain::new(KUBE_SERVICES),
        Chain::new(KUBE_NODEPORTS),
        postrouting,
        mark_masq,
    ]
}

/// The rule(s) ending nat `KUBE-SERVICES`: the jump to `KUBE-NODEPORTS` for local destinations.
pub(super) fn services_tail(ctx: &NodeContext, family: IpFamily) -> Vec<Rule> {
    if ctx.nodeport_addresses.is_empty() {
        let mut rule = RuleBuilder::new()
            .comment(NODEPORTS_TAIL_COMMENT)
            .dst_type_local();
        match family {
            IpFamily::V6 => rule = rule.not_destination(IpNet::V6(LOOPBACK_V6)),
            IpFamily::V4 if !ctx.localhost_nodeports_for(family) => {
                rule = rule.not_destination(IpNet::V4(LOOPBACK_V4))
            }
            IpFamily::V4 => {}
        }
        return vec![rule.jump(KUBE_NODEPORTS)];
    }
    ctx.local_addresses
        .iter()
        .filter(|ip| IpFamily::of(ip) == family)
        .filter(|ip| ctx.nodeport_addresses.iter().any(|net| net.contains(*ip)))
        .filter(|ip| {
            !ip.is_loopback() || (family == IpFamily::V4 && ctx.localhost_nodeports_for(family))
        })
        .map(|ip: &IpAddr| {
            RuleBuilder::new()
                .comment(NODEPORTS_TAIL_COMMENT)
                .destination_ip(*ip)
                .jump(KUBE_NODEPORTS)
        })
        .collect()
}

/// A jump from a built-in chain to one of ours, which a full sync ensures exists (inserted at position
/// 1 when missing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JumpRule {
    /// The table.
    pub table: Table,
    /// The built-in chain the jump is in.
    pub from: &'static str,
    /// The chain jumped to.
    pub to: &'static str,
    /// The rule itself (extra matches, comment, `-j <to>`).
    pub rule: Rule,
}

/// The jumps kube-proxy ensures, in the order it ensures them. Because each missing one is inserted at
/// position 1, on a fresh node they end up in the reverse order.
pub fn jump_rules() -> Vec<JumpRule> {
    let new_only = true;
    let table = [
        (
            Table::Filter,
            "INPUT",
            KUBE_EXTERNAL_SERVICES,
            "kubernetes externally-visible service portals",
            new_only,
        ),
        (
            Table::Filter,
            "FORWARD",
            KUBE_EXTERNAL_SERVICES,
            "kubernetes externally-visible service portals",
            new_only,
        ),
        (
            Table::Filter,
            "INPUT",
            KUBE_NODEPORTS,
            "kubernetes health check service ports",
            false,
        ),
        (
            Table::Filter,
            "FORWARD",
            KUBE_SERVICES,
            "kubernetes service portals",
            new_only,
        ),
        (
            Table::Filter,
            "OUTPUT",
            KUBE_SERVICES,
            "kubernetes service portals",
            new_only,
        ),
        (
            Table::Filter,
            "FORWARD",
            KUBE_FORWARD,
            "kubernetes forwarding rules",
            false,
        ),
        (
            Table::Filter,
            "INPUT",
            KUBE_PROXY_FIREWALL,
            "kubernetes load balancer firewall",
            new_only,
        ),
        (
            Table::Filter,
            "OUTPUT",
            KUBE_PROXY_FIREWALL,
            "kubernetes load balancer firewall",
            new_only,
        ),
        (
            Table::Filter,
            "FORWARD",
            KUBE_PROXY_FIREWALL,
            "kubernetes load balancer firewall",
            new_only,
        ),
        (
            Table::Nat,
            "OUTPUT",
            KUBE_SERVICES,
            "kubernetes service portals",
            false,
        ),
        (
            Table::Nat,
            "PREROUTING",
            KUBE_SERVICES,
            "kubernetes service portals",
            false,
        ),
        (
            Table::Nat,
            "POSTROUTING",
            KUBE_POSTROUTING,
            "kubernetes postrouting rules",
            false,
        ),
        (Table::Filter, "INPUT", KUBE_FIREWALL, "", false),
        (Table::Filter, "OUTPUT", KUBE_FIREWALL, "", false),
    ];
    table
        .into_iter()
        .map(|(table, from, to, comment, ct_new)| {
            let mut rule = RuleBuilder::new();
            if ct_new {
                rule = rule.ctstate(false, &["NEW"]);
            }
            if !comment.is_empty() {
                rule = rule.comment(comment);
            }
            JumpRule {
                table,
                from,
                to,
                rule: rule.jump(to),
            }
        })
        .collect()
}
