//! From EndpointSlices to the endpoints of one service port, and which of them a node uses
//! (spec §3.2 and §3.3).

use std::net::IpAddr;

use crate::core::model::{
    ClusterState, EndpointSlice, HEADLESS_LABEL, NamespacedName, NodeContext, ServicePort,
};
use crate::core::rules::IpFamily;
use crate::core::rules::format::{push_decimal, push_ipv4};

/// One endpoint of one service port, merged across the Service's slices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    /// The endpoint's address (`addresses[0]`).
    pub ip: IpAddr,
    /// The target port from the slice.
    pub port: u16,
    /// `ip:port`, or `[ip]:port` for IPv6: the DNAT destination and part of the chain hash.
    pub address: String,
    /// Ready condition.
    pub ready: bool,
    /// Serving condition.
    pub serving: bool,
    /// Terminating condition.
    pub terminating: bool,
    /// `nodeName` equals this node.
    pub is_local: bool,
    /// The node the endpoint runs on.
    pub node_name: Option<String>,
    /// Zone hints, if the endpoint has any.
    pub zone_hints: Vec<String>,
    /// Node hints, if the endpoint has any.
    pub node_hints: Vec<String>,
}

/// The EndpointSlices of every Service, indexed once (a Service's slices may have any name, so a
/// per-Service lookup would otherwise scan its whole namespace).
pub fn slices_by_service(
    state: &ClusterState,
) -> std::collections::HashMap<NamespacedName, Vec<&EndpointSlice>> {
    let mut index: std::collections::HashMap<NamespacedName, Vec<&EndpointSlice>> =
        std::collections::HashMap::new();
    for slice in state.endpoint_slices.values() {
        index.entry(slice.service()).or_default().push(slice);
    }
    index
}

/// Every EndpointSlice under its Service's borrowed `(namespace, name)`, sorted by that key: the same
/// grouping as [`slices_by_service`] without hashing or copying two names per slice.
pub(super) struct SliceIndex<'a> {
    keys: Vec<(&'a str, &'a str)>,
    slices: Vec<&'a EndpointSlice>,
}

impl<'a> SliceIndex<'a> {
    pub(super) fn new(state: &'a ClusterState) -> Self {
        let mut entries: Vec<((&str, &str), &EndpointSlice)> = state
            .endpoint_slices
            .values()
            .map(|slice| {
                (
                    (slice.id.namespace.as_str(), slice.service_name.as_str()),
                    slice,
                )
            })
            .collect();
        // Stable, so each Service's slices stay in name order. Slices are usually named after their
        // Service, so this input is nearly sorted already.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let (keys, slices) = entries.into_iter().unzip();
        SliceIndex { keys, slices }
    }

    /// The slices of `service`, in name order.
    pub(super) fn of(&self, service: &NamespacedName) -> &[&'a EndpointSlice] {
        let key = (service.namespace.as_str(), service.name.as_str());
        let start = self.keys.partition_point(|k| *k < key);
        let len = self.keys[start..].partition_point(|k| *k == key);
        &self.slices[start..start + len]
    }
}

/// Formats `ip:port` the way kube-proxy does (IPv6 in brackets).
pub fn host_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => {
            // `255.255.255.255:65535` fits, so the string is allocated once.
            let mut text = String::with_capacity(21);
            push_ipv4(&mut text, v4);
            text.push(':');
            push_decimal(&mut text, u32::from(port));
            text
        }
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// The endpoints of `port` of `service` in `family`, merged across its slices, de-duplicated by
/// `ip:port` and sorted by that string (the order of the load-balancing rules).
pub fn endpoints_for_port(
    slices: &[&EndpointSlice],
    port: &ServicePort,
    family: IpFamily,
    node_name: &str,
) -> Vec<EndpointInfo> {
    let mut endpoints: Vec<EndpointInfo> =
        Vec::with_capacity(slices.iter().map(|s| s.endpoints.len()).sum());
    for slice in slices {
        if slice.address_type.family() != Some(family) || slice.labels.contains_key(HEADLESS_LABEL)
        {
            continue;
        }
        let Some(target_port) = slice.ports.iter().find_map(|p| match (&p.name, p.port) {
            (Some(name), Some(number))
                if number != 0 && *name == port.name && p.protocol == port.protocol =>
            {
                Some(number)
            }
            _ => None,
        }) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let Some(ip) = endpoint.ip() else {
                continue;
            };
            if IpFamily::of(&ip) != family {
                continue;
            }
            let info = EndpointInfo {
                ip,
                port: target_port,
                address: host_port(ip, target_port),
                ready: endpoint.is_ready(),
                serving: endpoint.is_serving(),
                terminating: endpoint.is_terminating(),
                is_local: endpoint.node_name.as_deref() == Some(node_name),
                node_name: endpoint.node_name.clone(),
                zone_hints: endpoint.zone_hints.clone().unwrap_or_default(),
                node_hints: endpoint.node_hints.clone().unwrap_or_default(),
            };
            endpoints.push(info);
        }
    }
    // Sorting is stable, so duplicates of an address stay in the order they were seen; a later duplicate
    // replaces the kept one unless it is terminating (a terminating duplicate never replaces an entry we
    // already have). Slices rarely repeat an address, so this is a plain sort in practice.
    endpoints.sort_by(|a, b| a.address.cmp(&b.address));
    endpoints.dedup_by(|later, kept| {
        if later.address != kept.address {
            return false;
        }
        if !later.terminating {
            std::mem::swap(later, kept);
        }
        true
    });
    endpoints
}

/// The topology preference the ready endpoints' hints allow on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopologyMode {
    None,
    PreferSameNode,
    PreferSameZone,
}

fn topology_mode(endpoints: &[EndpointInfo], ctx: &NodeContext) -> TopologyMode {
    let zone = ctx.zone().unwrap_or("");
    let mut all_node_hinted = true;
    let mut hinted_for_node = false;
    let mut all_zone_hinted = true;
    let mut hinted_for_zone = false;
    for ep in endpoints.iter().filter(|ep| ep.ready) {
        if ep.node_hints.is_empty() {
            all_node_hinted = false;
        } else if ep.node_hints.contains(&ctx.node_name) {
            hinted_for_node = true;
        }
        if ep.zone_hints.is_empty() {
            all_zone_hinted = false;
        } else if ep.zone_hints.iter().any(|z| z == zone) {
            hinted_for_zone = true;
        }
    }
    if ctx.prefer_same_node_gate && all_node_hinted && hinted_for_node {
        TopologyMode::PreferSameNode
    } else if all_zone_hinted && hinted_for_zone {
        TopologyMode::PreferSameZone
    } else {
        TopologyMode::None
    }
}

fn allowed_by_topology(ep: &EndpointInfo, mode: TopologyMode, ctx: &NodeContext) -> bool {
    match mode {
        TopologyMode::None => true,
        TopologyMode::PreferSameNode => ep.node_hints.contains(&ctx.node_name),
        TopologyMode::PreferSameZone => {
            let zone = ctx.zone().unwrap_or("");
            ep.zone_hints.iter().any(|z| z == zone)
        }
    }
}

/// Which endpoints a node uses for one service port (spec §3.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Categorized {
    /// Endpoints for Cluster-policy traffic (the `KUBE-SVC-` chain).
    pub cluster: Vec<EndpointInfo>,
    /// Endpoints for Local-policy traffic (the `KUBE-SVL-` chain).
    pub local: Vec<EndpointInfo>,
    /// Every endpoint this node can reach: the ones that get `KUBE-SEP-` chains.
    pub reachable: Vec<EndpointInfo>,
    /// Whether the service has any usable endpoint anywhere (else traffic is REJECTed).
    pub has_any: bool,
}

/// Which endpoints a node uses for one service port, as positions in the endpoint list: what
/// [`Categorized`] holds, without copying the endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Selection {
    /// Positions of the endpoints for Cluster-policy traffic.
    pub(super) cluster: Vec<usize>,
    /// Positions of the endpoints for Local-policy traffic.
    pub(super) local: Vec<usize>,
    /// Positions of every endpoint this node can reach, in address order.
    pub(super) reachable: Vec<usize>,
    /// Whether the service has any usable endpoint anywhere.
    pub(super) has_any: bool,
}

/// Splits `endpoints` into the cluster and local lists, with kube-proxy's topology and
/// terminating-endpoint fallbacks.
pub fn categorize(
    endpoints: &[EndpointInfo],
    uses_cluster: bool,
    uses_local: bool,
    ctx: &NodeContext,
) -> Categorized {
    let selection = select(endpoints, uses_cluster, uses_local, ctx);
    let pick = |positions: &[usize]| -> Vec<EndpointInfo> {
        positions.iter().map(|&i| endpoints[i].clone()).collect()
    };
    Categorized {
        cluster: pick(&selection.cluster),
        local: pick(&selection.local),
        reachable: pick(&selection.reachable),
        has_any: selection.has_any,
    }
}

/// [`categorize`] by position in `endpoints`.
pub(super) fn select(
    endpoints: &[EndpointInfo],
    uses_cluster: bool,
    uses_local: bool,
    ctx: &NodeContext,
) -> Selection {
    let mut out = Selection::default();
    let mut topology = TopologyMode::None;
    let mut fell_back_to_terminating = false;
    let positions = |keep: &dyn Fn(&EndpointInfo) -> bool| -> Vec<usize> {
        // Sized for every endpoint: one small allocation instead of a growing one.
        let mut list = Vec::with_capacity(endpoints.len());
        list.extend(
            endpoints
                .iter()
                .enumerate()
                .filter(|(_, ep)| keep(ep))
                .map(|(i, _)| i),
        );
        list
    };

    if uses_cluster {
        topology = topology_mode(endpoints, ctx);
        out.cluster = positions(&|ep| ep.ready && allowed_by_topology(ep, topology, ctx));
        if out.cluster.is_empty() {
            out.cluster = positions(&|ep| ep.serving && ep.terminating);
            fell_back_to_terminating = !out.cluster.is_empty();
        }
        out.has_any = !out.cluster.is_empty();
    }

    if !uses_local {
        out.reachable = out.cluster.clone();
        return out;
    }

    let mut local_ready = false;
    let mut local_serving_terminating = false;
    for ep in endpoints {
        if ep.ready {
            out.has_any = true;
            local_ready |= ep.is_local;
        } else if ep.serving && ep.terminating {
            out.has_any = true;
            local_serving_terminating |= ep.is_local;
        }
    }
    if local_ready {
        out.local = positions(&|ep| ep.is_local && ep.ready);
    } else if local_serving_terminating {
        fell_back_to_terminating = true;
        out.local = positions(&|ep| ep.is_local && ep.serving && ep.terminating);
    }

    out.reachable = if !uses_cluster {
        out.local.clone()
    } else if topology == TopologyMode::None && !fell_back_to_terminating {
        // Without topology or fallbacks the local list is a subset of the cluster list.
        out.cluster.clone()
    } else {
        // The union by address, in address order; for one address the local list's entry wins.
        let mut union: Vec<usize> = out.cluster.iter().chain(&out.local).copied().collect();
        union.sort_by(|&a, &b| endpoints[a].address.cmp(&endpoints[b].address));
        union.dedup_by(|later, kept| {
            let same = endpoints[*later].address == endpoints[*kept].address;
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        union
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(last: u8, node: &str, zone_hints: &[&str], node_hints: &[&str]) -> EndpointInfo {
        let ip = IpAddr::from([10, 180, 0, last]);
        EndpointInfo {
            ip,
            port: 80,
            address: host_port(ip, 80),
            ready: true,
            serving: true,
            terminating: false,
            is_local: node == "test-node",
            node_name: Some(node.into()),
            zone_hints: zone_hints.iter().map(|s| (*s).to_string()).collect(),
            node_hints: node_hints.iter().map(|s| (*s).to_string()).collect(),
        }
    }

    fn ctx(zone: &str) -> NodeContext {
        let mut ctx = NodeContext::new("test-node", vec![IpAddr::from([192, 168, 0, 2])]);
        ctx.node_labels
            .insert(crate::core::model::ZONE_LABEL.into(), zone.into());
        ctx
    }

    fn addresses(list: &[EndpointInfo]) -> Vec<&str> {
        list.iter().map(|e| e.address.as_str()).collect()
    }

    #[test]
    fn zone_hints_keep_this_zones_endpoints() {
        let eps = [
            ep(1, "a", &["z1"], &[]),
            ep(2, "b", &["z2"], &[]),
            ep(3, "c", &["z1"], &[]),
        ];
        let got = categorize(&eps, true, false, &ctx("z1"));
        assert_eq!(addresses(&got.cluster), ["10.180.0.1:80", "10.180.0.3:80"]);
    }

    #[test]
    fn hints_are_ignored_unless_every_ready_endpoint_has_them_or_none_is_for_us() {
        let partial = [ep(1, "a", &["z1"], &[]), ep(2, "b", &[], &[])];
        assert_eq!(
            categorize(&partial, true, false, &ctx("z1")).cluster.len(),
            2
        );
        let elsewhere = [ep(1, "a", &["z2"], &[]), ep(2, "b", &["z3"], &[])];
        assert_eq!(
            categorize(&elsewhere, true, false, &ctx("z1"))
                .cluster
                .len(),
            2
        );
    }

    #[test]
    fn node_hints_win_over_zone_hints_when_the_gate_is_on() {
        let eps = [
            ep(1, "test-node", &["z1"], &["test-node"]),
            ep(2, "b", &["z1"], &["b"]),
        ];
        assert_eq!(
            addresses(&categorize(&eps, true, false, &ctx("z1")).cluster),
            ["10.180.0.1:80"]
        );
        let mut off = ctx("z1");
        off.prefer_same_node_gate = false;
        assert_eq!(
            categorize(&eps, true, false, &off).cluster.len(),
            2,
            "zone hints apply instead"
        );
    }

    #[test]
    fn topology_filtering_keeps_local_endpoints_reachable() {
        // eTP=Local with a local endpoint hinted for another zone: it still gets a SEP chain.
        let eps = [ep(1, "test-node", &["z2"], &[]), ep(2, "b", &["z1"], &[])];
        let got = categorize(&eps, true, true, &ctx("z1"));
        assert_eq!(addresses(&got.cluster), ["10.180.0.2:80"]);
        assert_eq!(addresses(&got.local), ["10.180.0.1:80"]);
        assert_eq!(
            addresses(&got.reachable),
            ["10.180.0.1:80", "10.180.0.2:80"]
        );
    }
}
