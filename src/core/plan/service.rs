//! The rules of one service port (spec §1.4, §3.4, §3.5).

use std::net::IpAddr;

use ipnet::IpNet;

use super::build::RuleBuilder;
use super::endpoints::{EndpointInfo, endpoints_for_port, select};
use super::{EntryRule, ServiceRules};
use crate::core::model::{
    EndpointSlice, LocalDetector, NodeContext, Service, ServicePort, ServicePortName, ServiceType,
    TrafficPolicy,
};
use crate::core::rules::hash::endpoint_chain_name;
use crate::core::rules::names::{
    EXT_PREFIX, FW_PREFIX, KUBE_EXTERNAL_SERVICES, KUBE_MARK_MASQ, KUBE_NODEPORTS,
    KUBE_PROXY_FIREWALL, KUBE_SERVICES, SVC_PREFIX, SVL_PREFIX,
};
use crate::core::rules::{
    Chain, IpFamily, Neg, Probability, Protocol, Rule, Table, Target, service_port_chain_hash,
};

/// The nfacct object counting accepted localhost NodePort packets.
pub(crate) const LOCALHOST_NODEPORTS_NFACCT: &str = "localhost_nps_accepted_pkts";

/// Plans every port of `svc` that this family's proxier handles.
pub(super) fn plan_service(
    slices: &[&EndpointSlice],
    ctx: &NodeContext,
    family: IpFamily,
    large_cluster: bool,
    svc: &Service,
) -> Vec<(ServicePortName, ServiceRules)> {
    service_endpoints(slices, ctx, family, svc)
        .into_iter()
        .map(|(port, endpoints)| plan_port(ctx, family, large_cluster, svc, port, endpoints))
        .collect()
}

/// The endpoints of each port of `svc` this family's proxier handles (none when the Service is not
/// proxied or has no cluster IP of the family).
pub(super) fn service_endpoints<'a>(
    slices: &[&EndpointSlice],
    ctx: &NodeContext,
    family: IpFamily,
    svc: &'a Service,
) -> Vec<(&'a ServicePort, Vec<EndpointInfo>)> {
    if !svc.is_proxied() || svc.cluster_ip(family).is_none() {
        return Vec::new();
    }
    svc.ports
        .iter()
        .map(|port| {
            (
                port,
                endpoints_for_port(slices, port, family, &ctx.node_name),
            )
        })
        .collect()
}

/// Plans one port of a proxied Service from its endpoints (consumed: their addresses move into the
/// DNAT rules).
pub(super) fn plan_port(
    ctx: &NodeContext,
    family: IpFamily,
    large_cluster: bool,
    svc: &Service,
    port: &ServicePort,
    endpoints: Vec<EndpointInfo>,
) -> (ServicePortName, ServiceRules) {
    let name = svc.port_name(port);
    let cluster_ip = svc
        .cluster_ip(family)
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let rules =
        PortPlanner::new(svc, port, &name, cluster_ip, ctx, family, large_cluster).plan(endpoints);
    (name, rules)
}

/// The plan of one service port, with everything derived once.
struct PortPlanner<'a> {
    svc: &'a Service,
    port: &'a ServicePort,
    spn: String,
    protocol: &'a Protocol,
    cluster_ip: IpAddr,
    ctx: &'a NodeContext,
    family: IpFamily,
    large_cluster: bool,
    /// The hash shared by the port's `KUBE-SVC-`, `KUBE-SVL-`, `KUBE-EXT-` and `KUBE-FW-` chains; each
    /// name is built where it is used (see [`Self::chain`]), as most ports need only one or two.
    hash: String,
    external_ips: Vec<IpAddr>,
    lb_vips: Vec<IpAddr>,
    source_ranges: Vec<IpNet>,
    node_port: Option<u16>,
    health_check_node_port: Option<u16>,
    internal_local: bool,
    external_local: bool,
}

impl<'a> PortPlanner<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        svc: &'a Service,
        port: &'a ServicePort,
        name: &ServicePortName,
        cluster_ip: IpAddr,
        ctx: &'a NodeContext,
        family: IpFamily,
        large_cluster: bool,
    ) -> Self {
        let spn = name.spn();
        let hash = service_port_chain_hash(&spn, port.protocol.as_str());
        let external_ips: Vec<IpAddr> = svc.external_ips(family).collect();
        let lb_vips: Vec<IpAddr> = if svc.service_type == ServiceType::LoadBalancer {
            svc.load_balancer_vips(family).collect()
        } else {
            Vec::new()
        };
        let node_port = match svc.service_type {
            ServiceType::NodePort | ServiceType::LoadBalancer => port.node_port.filter(|p| *p != 0),
            _ => None,
        };
        let externally_accessible =
            node_port.is_some() || !lb_vips.is_empty() || !external_ips.is_empty();
        let external_local =
            externally_accessible && svc.external_traffic_policy == TrafficPolicy::Local;
        let health_check_node_port =
            if svc.service_type == ServiceType::LoadBalancer && external_local {
                svc.health_check_node_port.filter(|p| *p != 0)
            } else {
                None
            };
        PortPlanner {
            svc,
            port,
            protocol: &port.protocol,
            cluster_ip,
            ctx,
            family,
            large_cluster,
            hash,
            external_ips,
            source_ranges: if lb_vips.is_empty() {
                Vec::new()
            } else {
                svc.source_ranges(family).collect()
            },
            lb_vips,
            node_port,
            health_check_node_port,
            internal_local: svc.internal_traffic_policy == TrafficPolicy::Local,
            external_local,
            spn,
        }
    }

    /// The name of this port's chain with `prefix` (`KUBE-SVC-`, `KUBE-SVL-`, `KUBE-EXT-`, `KUBE-FW-`),
    /// allocated once at its final size.
    fn chain(&self, prefix: &str) -> String {
        [prefix, &self.hash].concat()
    }

    fn externally_accessible(&self) -> bool {
        self.node_port.is_some() || !self.lb_vips.is_empty() || !self.external_ips.is_empty()
    }

    /// `-s <pod range>` / `-i <iface>` for traffic from local pods, if a detector is configured.
    fn if_local(&self) -> Option<LocalMatch> {
        match &self.ctx.local_detector {
            LocalDetector::None => None,
            LocalDetector::ClusterCidr(cidrs) | LocalDetector::NodeCidr(cidrs) => cidrs
                .iter()
                .find(|net| IpFamily::of(&net.addr()) == self.family)
                .map(|net| LocalMatch::Source(*net)),
            LocalDetector::BridgeInterface(bridge) => Some(LocalMatch::Interface(bridge.clone())),
            LocalDetector::InterfaceNamePrefix(prefix) => {
                Some(LocalMatch::Interface(format!("{prefix}+")))
            }
        }
    }

    /// The standard capture match: comment, `-m <p> -p <p> -d <ip> --dport <port>`.
    fn capture(&self, comment: String, destination: IpAddr, dport: u16) -> RuleBuilder {
        RuleBuilder::with_matches(2)
            .comment(comment)
            .proto(self.protocol, Some(dport))
            .destination_ip(destination)
    }

    fn plan(&self, mut endpoints: Vec<EndpointInfo>) -> ServiceRules {
        let uses_cluster = !self.internal_local || self.externally_accessible();
        let uses_local = self.internal_local || self.external_local;
        let cat = select(&endpoints, uses_cluster, uses_local, self.ctx);
        let has_endpoints = cat.has_any;
        // Each endpoint's chain name is hashed once, though the load-balancing rules and the chain itself
        // both need it.
        let mut sep_names = EndpointChainNames::new(self, endpoints.len());

        let (internal_prefix, has_internal) = if self.internal_local {
            (SVL_PREFIX, has_endpoints && !cat.local.is_empty())
        } else {
            (SVC_PREFIX, has_endpoints)
        };
        let (external_policy_prefix, has_external) = if self.external_local {
            (SVL_PREFIX, has_endpoints && !cat.local.is_empty())
        } else {
            (SVC_PREFIX, has_endpoints)
        };
        let uses_fw = has_endpoints && !self.lb_vips.is_empty() && !self.source_ranges.is_empty();
        let lb_prefix = if uses_fw { FW_PREFIX } else { EXT_PREFIX };

        let filter_target = if has_endpoints {
            Target::Drop
        } else {
            Target::Reject { with: None }
        };
        let filter_comment = || {
            if has_endpoints {
                format!("{} has no local endpoints", self.spn)
            } else {
                format!("{} has no endpoints", self.spn)
            }
        };

        let mut out = ServiceRules {
            endpoint_count: endpoints.len(),
            no_local_internal: has_endpoints && !has_internal,
            no_local_external: has_endpoints && !has_external,
            ..ServiceRules::default()
        };
        let port = self.port.port;
        let mut entry = |table: Table, chain: &'static str, rule: Rule| {
            out.entries.push(EntryRule { table, chain, rule })
        };

        // Cluster IP.
        if has_internal {
            entry(
                Table::Nat,
                KUBE_SERVICES,
                self.capture([&self.spn, " cluster IP"].concat(), self.cluster_ip, port)
                    .jump(self.chain(internal_prefix)),
            );
        } else {
            entry(
                Table::Filter,
                KUBE_SERVICES,
                self.capture(filter_comment(), self.cluster_ip, port)
                    .target(filter_target.clone()),
            );
        }

        // External IPs.
        for ip in &self.external_ips {
            if has_endpoints {
                entry(
                    Table::Nat,
                    KUBE_SERVICES,
                    self.capture(format!("{} external IP", self.spn), *ip, port)
                        .jump(self.chain(EXT_PREFIX)),
                );
            }
            if !has_external {
                entry(
                    Table::Filter,
                    KUBE_EXTERNAL_SERVICES,
                    self.capture(filter_comment(), *ip, port)
                        .target(filter_target.clone()),
                );
            }
        }

        // Load-balancer IPs.
        for ip in &self.lb_vips {
            if has_endpoints {
                entry(
                    Table::Nat,
                    KUBE_SERVICES,
                    self.capture(format!("{} loadbalancer IP", self.spn), *ip, port)
                        .jump(self.chain(lb_prefix)),
                );
            }
            if uses_fw {
                entry(
                    Table::Filter,
                    KUBE_PROXY_FIREWALL,
                    self.capture(
                        format!(
                            "{} traffic not accepted by {FW_PREFIX}{}",
                            self.spn, self.hash
                        ),
                        *ip,
                        port,
                    )
                    .target(Target::Drop),
                );
            }
        }
        if !has_external {
            for ip in &self.lb_vips {
                entry(
                    Table::Filter,
                    KUBE_EXTERNAL_SERVICES,
                    self.capture(filter_comment(), *ip, port)
                        .target(filter_target.clone()),
                );
            }
        }

        // NodePort.
        if let Some(node_port) = self.node_port {
            if has_endpoints {
                if self.ctx.localhost_nodeports_for(self.family) && self.ctx.nfacct {
                    entry(
                        Table::Nat,
                        KUBE_NODEPORTS,
                        RuleBuilder::new()
                            .comment(self.spn.clone())
                            .proto(self.protocol, Some(node_port))
                            .destination(loopback_v4())
                            .nfacct(LOCALHOST_NODEPORTS_NFACCT)
                            .jump(self.chain(EXT_PREFIX)),
                    );
                }
                entry(
                    Table::Nat,
                    KUBE_NODEPORTS,
                    RuleBuilder::new()
                        .comment(self.spn.clone())
                        .proto(self.protocol, Some(node_port))
                        .jump(self.chain(EXT_PREFIX)),
                );
            }
            if !has_external {
                entry(
                    Table::Filter,
                    KUBE_EXTERNAL_SERVICES,
                    RuleBuilder::new()
                        .comment(filter_comment())
                        .dst_type_local()
                        .proto(self.protocol, Some(node_port))
                        .target(filter_target.clone()),
                );
            }
        }

        // Health-check node port.
        if let Some(hc_port) = self.health_check_node_port {
            entry(
                Table::Filter,
                KUBE_NODEPORTS,
                RuleBuilder::new()
                    .comment(format!("{} health check node port", self.spn))
                    .proto(&Protocol::Tcp, Some(hc_port))
                    .target(Target::Accept),
            );
        }

        // Per-service chains: SVC, SVL, EXT, FW, then the SEP chains.
        let uses_cluster_chain = uses_cluster && !cat.cluster.is_empty();
        let uses_local_chain = uses_local && !cat.local.is_empty();
        let mut svc_rules = Vec::new();
        let mut svl_rules = Vec::new();

        if has_internal {
            let masquerade = || {
                RuleBuilder::new()
                    .comment(format!("{} cluster IP", self.spn))
                    .proto(self.protocol, Some(port))
                    .destination_ip(self.cluster_ip)
            };
            let rule = if self.ctx.masquerade_all {
                Some(masquerade().jump(KUBE_MARK_MASQ))
            } else {
                self.if_local()
                    .map(|local| local.negated(masquerade()).jump(KUBE_MARK_MASQ))
            };
            if let Some(rule) = rule {
                if self.internal_local {
                    svl_rules.push(rule);
                } else {
                    svc_rules.push(rule);
                }
            }
        }
        if uses_cluster_chain {
            self.balance(&mut svc_rules, &endpoints, &cat.cluster, &mut sep_names);
        }
        if uses_local_chain {
            self.balance(&mut svl_rules, &endpoints, &cat.local, &mut sep_names);
        }
        let uses_external_chain = has_endpoints && self.externally_accessible();
        out.chains.reserve_exact(
            usize::from(uses_cluster_chain)
                + usize::from(uses_local_chain)
                + usize::from(uses_external_chain)
                + usize::from(uses_fw)
                + cat.reachable.len(),
        );
        if uses_cluster_chain {
            out.chains.push(Chain {
                name: self.chain(SVC_PREFIX),
                rules: svc_rules,
            });
        }
        if uses_local_chain {
            out.chains.push(Chain {
                name: self.chain(SVL_PREFIX),
                rules: svl_rules,
            });
        }

        if uses_external_chain {
            out.chains
                .push(self.external_chain(external_policy_prefix, has_external));
        }
        if uses_fw {
            out.chains.push(self.firewall_chain());
        }
        // Each reachable endpoint gets one chain, so its cached name and its address (the DNAT
        // destination) move into that chain instead of being copied.
        for &i in &cat.reachable {
            let ep = &mut endpoints[i];
            let name = sep_names.take(i, &ep.address);
            let address = std::mem::take(&mut ep.address);
            out.chains
                .push(self.endpoint_chain_rules(ep.ip, address, name));
        }
        // Entry rules were pushed one by one; keep only the room they use.
        out.entries.shrink_to_fit();
        out
    }

    /// The `KUBE-EXT-` chain; `policy_prefix` names the chain of the external traffic policy.
    fn external_chain(&self, policy_prefix: &str, has_external: bool) -> Chain {
        let mut chain = Chain::new(self.chain(EXT_PREFIX));
        if !self.external_local {
            chain.rules.push(
                RuleBuilder::new()
                    .comment(format!(
                        "masquerade traffic for {} external destinations",
                        self.spn
                    ))
                    .jump(KUBE_MARK_MASQ),
            );
        } else {
            if let Some(local) = self.if_local() {
                let rule = RuleBuilder::new().comment(format!(
                    "pod traffic for {} external destinations",
                    self.spn
                ));
                chain
                    .rules
                    .push(local.positive(rule).jump(self.chain(SVC_PREFIX)));
            }
            chain.rules.push(
                RuleBuilder::new()
                    .comment(format!(
                        "masquerade LOCAL traffic for {} external destinations",
                        self.spn
                    ))
                    .src_type_local()
                    .jump(KUBE_MARK_MASQ),
            );
            chain.rules.push(
                RuleBuilder::new()
                    .comment(format!(
                        "route LOCAL traffic for {} external destinations",
                        self.spn
                    ))
                    .src_type_local()
                    .jump(self.chain(SVC_PREFIX)),
            );
        }
        if has_external {
            chain
                .rules
                .push(RuleBuilder::new().jump(self.chain(policy_prefix)));
        }
        chain
    }

    /// The `KUBE-FW-` chain applying `loadBalancerSourceRanges`.
    fn firewall_chain(&self) -> Chain {
        let mut chain = Chain::new(self.chain(FW_PREFIX));
        let comment = format!("{} loadbalancer IP", self.spn);
        let node_ip = self.ctx.node_ip(self.family);
        let mut allow_from_node = false;
        for range in &self.source_ranges {
            chain.rules.push(
                RuleBuilder::new()
                    .comment(comment.clone())
                    .source(*range)
                    .jump(self.chain(EXT_PREFIX)),
            );
            allow_from_node |= node_ip.is_some_and(|ip| range.contains(&ip));
        }
        if allow_from_node {
            for ip in &self.lb_vips {
                chain.rules.push(
                    RuleBuilder::new()
                        .comment(comment.clone())
                        .source_ip(*ip)
                        .jump(self.chain(EXT_PREFIX)),
                );
            }
        }
        chain.rules.push(
            RuleBuilder::new()
                .comment(format!(
                    "other traffic to {} will be dropped by KUBE-PROXY-FIREWALL",
                    self.spn
                ))
                .no_target(),
        );
        chain
    }

    /// Appends the affinity and load-balancing rules of a SVC/SVL chain to the endpoints at `positions`.
    fn balance(
        &self,
        rules: &mut Vec<Rule>,
        endpoints: &[EndpointInfo],
        positions: &[usize],
        names: &mut EndpointChainNames<'_>,
    ) {
        let comments = !self.large_cluster;
        let affinity = self.svc.session_affinity_timeout;
        let n = positions.len();
        rules.reserve_exact(if affinity.is_some() { 2 * n } else { n });
        if let Some(timeout) = affinity {
            for &i in positions {
                let ep = &endpoints[i];
                let sep = names.get(i, &ep.address);
                rules.push(
                    RuleBuilder::with_matches(usize::from(comments) + 1)
                        .comment_if(comments, || [&self.spn, " -> ", &ep.address].concat())
                        .recent_rcheck(sep, timeout)
                        .jump(sep),
                );
            }
        }
        for (k, &i) in positions.iter().enumerate() {
            let ep = &endpoints[i];
            let last = k + 1 == n;
            let mut rule = RuleBuilder::with_matches(usize::from(comments) + usize::from(!last))
                .comment_if(comments, || [&self.spn, " -> ", &ep.address].concat());
            if !last {
                rule = rule.probability(Probability::one_in(n - k));
            }
            rules.push(rule.jump(names.get(i, &ep.address)));
        }
    }

    /// A `KUBE-SEP-` chain named `name` for the endpoint at `ip`, DNAT to `address`: hairpin
    /// masquerade, then DNAT.
    fn endpoint_chain_rules(&self, ip: IpAddr, address: String, name: String) -> Chain {
        let comments = !self.large_cluster;
        let affinity = self.svc.session_affinity_timeout.is_some();
        let hairpin = RuleBuilder::with_matches(usize::from(comments))
            .comment_if(comments, || self.spn.clone())
            .source_ip(ip)
            .jump(KUBE_MARK_MASQ);
        let mut dnat = RuleBuilder::with_matches(usize::from(comments) + usize::from(affinity) + 1)
            .comment_if(comments, || self.spn.clone());
        if affinity {
            dnat = dnat.recent_set(&name);
        }
        let dnat = dnat
            .proto(self.protocol, None)
            .target(Target::Dnat { to: address });
        let mut chain = Chain::new(name);
        chain.rules = vec![hairpin, dnat];
        chain
    }
}

/// The `KUBE-SEP-` chain names of one port's endpoints by position, each hashed on first use.
struct EndpointChainNames<'a> {
    spn: &'a str,
    protocol: &'a str,
    names: Vec<Option<String>>,
}

impl<'a> EndpointChainNames<'a> {
    fn new(planner: &'a PortPlanner<'_>, endpoints: usize) -> Self {
        EndpointChainNames {
            spn: &planner.spn,
            protocol: planner.protocol.as_str(),
            names: vec![None; endpoints],
        }
    }

    /// The chain name of the endpoint at position `i`, whose `ip:port` is `address`.
    fn get(&mut self, i: usize, address: &str) -> &str {
        self.names[i].get_or_insert_with(|| endpoint_chain_name(self.spn, self.protocol, address))
    }

    /// Like [`Self::get`], handing the name over.
    fn take(&mut self, i: usize, address: &str) -> String {
        self.names[i]
            .take()
            .unwrap_or_else(|| endpoint_chain_name(self.spn, self.protocol, address))
    }
}

/// How "traffic from a local pod" is matched.
enum LocalMatch {
    Source(IpNet),
    Interface(String),
}

impl LocalMatch {
    fn positive(self, rule: RuleBuilder) -> RuleBuilder {
        match self {
            LocalMatch::Source(net) => rule.source(net),
            LocalMatch::Interface(iface) => rule.in_interface(Neg::is(iface)),
        }
    }

    fn negated(self, rule: RuleBuilder) -> RuleBuilder {
        match self {
            LocalMatch::Source(net) => rule.not_source(net),
            LocalMatch::Interface(iface) => rule.in_interface(Neg::not(iface)),
        }
    }
}

fn loopback_v4() -> IpNet {
    IpNet::V4(super::fixed::LOOPBACK_V4)
}
