//! UDP conntrack cleanup (spec §4.6): after endpoints change, UDP flows whose reply comes from an
//! address that no longer serves the Service are deleted, so clients stop talking to gone backends
//! (the classic stale-DNS problem).
//!
//! Which flows are stale is decided here, purely ([`udp_targets`], [`stale_flows`]). The table is
//! listed and entries are deleted through ctnetlink on a netlink socket ([`netlink`]; the message
//! format is in `wire`), in the network namespace of the calling thread, so the proxy needs no
//! `conntrack` binary, only `CAP_NET_ADMIN` and the `nf_conntrack_netlink` module.

pub mod netlink;
mod wire;

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::core::model::{ClusterState, ServiceType};
use crate::core::plan::endpoints::endpoints_for_port;
use crate::core::rules::{IpFamily, Protocol};

pub use netlink::{ConntrackError, ConntrackSocket, Deleted, UdpDump};

/// One UDP conntrack entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpFlow {
    /// Original source address and port.
    pub source: (IpAddr, u16),
    /// Original destination address and port (the Service VIP or NodePort).
    pub destination: (IpAddr, u16),
    /// Where replies come from (the endpoint after DNAT).
    pub reply_source: (IpAddr, u16),
    /// The entry's conntrack zone (`CTA_ZONE`), when it is not the default zone 0.
    pub zone: Option<u16>,
    /// A zone that applies to the original direction only (`CTA_TUPLE_ZONE` of the original tuple,
    /// from `-j CT --zone-orig`).
    pub original_zone: Option<u16>,
}

impl fmt::Display for UdpFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "udp {} -> {} (replies from {})",
            SocketAddr::from(self.source),
            SocketAddr::from(self.destination),
            SocketAddr::from(self.reply_source)
        )?;
        if let Some(zone) = self.zone.or(self.original_zone) {
            write!(f, " zone {zone}")?;
        }
        Ok(())
    }
}

/// Where a UDP service port is reached, and which backends serve it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpTarget {
    /// Cluster IP, external IPs and load-balancer IPs, with the service port.
    pub vips: BTreeSet<(IpAddr, u16)>,
    /// The NodePort, if any.
    pub node_port: Option<u16>,
    /// Serving endpoints, `ip:port`.
    pub serving: BTreeSet<(IpAddr, u16)>,
}

/// The UDP service ports of `family` with at least one serving endpoint (ports with none are left
/// alone, as kube-proxy does).
pub fn udp_targets(state: &ClusterState, family: IpFamily) -> Vec<UdpTarget> {
    let mut out = Vec::new();
    for svc in state.services.values().filter(|s| s.is_proxied()) {
        let Some(cluster_ip) = svc.cluster_ip(family) else {
            continue;
        };
        let slices: Vec<_> = state.slices_for(&svc.id).collect();
        for port in svc.ports.iter().filter(|p| p.protocol == Protocol::Udp) {
            let serving: BTreeSet<(IpAddr, u16)> = endpoints_for_port(&slices, port, family, "")
                .into_iter()
                .filter(|ep| ep.serving)
                .map(|ep| (ep.ip, ep.port))
                .collect();
            if serving.is_empty() {
                continue;
            }
            let mut vips: BTreeSet<(IpAddr, u16)> = [(cluster_ip, port.port)].into();
            vips.extend(svc.external_ips(family).map(|ip| (ip, port.port)));
            if svc.service_type == ServiceType::LoadBalancer {
                vips.extend(svc.load_balancer_vips(family).map(|ip| (ip, port.port)));
            }
            let node_port = match svc.service_type {
                ServiceType::NodePort | ServiceType::LoadBalancer => port.node_port,
                _ => None,
            };
            out.push(UdpTarget {
                vips,
                node_port,
                serving,
            });
        }
    }
    out
}

/// The flows to delete: to a target's VIP (or NodePort) with a reply source that no longer serves it.
pub fn stale_flows<'a>(flows: &'a [UdpFlow], targets: &[UdpTarget]) -> Vec<&'a UdpFlow> {
    flows
        .iter()
        .filter(|flow| {
            targets.iter().any(|t| {
                let to_service =
                    t.vips.contains(&flow.destination) || t.node_port == Some(flow.destination.1);
                to_service && !t.serving.contains(&flow.reply_source)
            })
        })
        .collect()
}

/// Lists and deletes UDP conntrack entries through ctnetlink (no `conntrack` binary needed).
#[derive(Debug, Clone, Default)]
pub struct Conntrack;

impl Conntrack {
    /// Conntrack of the network namespace of the thread that calls its methods.
    pub fn new() -> Conntrack {
        Conntrack
    }

    /// The UDP entries of `family`'s conntrack table.
    pub fn udp_flows(&self, family: IpFamily) -> Result<UdpDump, ConntrackError> {
        ConntrackSocket::open()?.udp_flows(family)
    }

    /// Deletes the stale UDP flows of `family` for `targets`: lists the table, then deletes, on one
    /// socket, each entry [`stale_flows`] selects. Returns how many were deleted; entries that vanished
    /// in between are not counted. A dump the kernel reports as interrupted is used as far as it got.
    pub fn cleanup(
        &self,
        family: IpFamily,
        targets: &[UdpTarget],
    ) -> Result<usize, ConntrackError> {
        if targets.is_empty() {
            return Ok(0);
        }
        let mut socket = ConntrackSocket::open()?;
        let dump = socket.udp_flows(family)?;
        if dump.interrupted {
            tracing::info!(
                %family,
                listed = dump.flows.len(),
                "the conntrack table changed while it was listed; cleaning up the entries listed"
            );
        }
        let stale = stale_flows(&dump.flows, targets);
        let done = socket.delete(&stale)?;
        if done.already_gone > 0 {
            tracing::debug!(
                %family,
                already_gone = done.already_gone,
                "stale UDP conntrack entries vanished before their deletion"
            );
        }
        Ok(done.deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A flow without zones, from `(address, port)` pairs.
    pub(super) fn flow(
        source: (&str, u16),
        destination: (&str, u16),
        reply: (&str, u16),
    ) -> UdpFlow {
        UdpFlow {
            source: (ip(source.0), source.1),
            destination: (ip(destination.0), destination.1),
            reply_source: (ip(reply.0), reply.1),
            zone: None,
            original_zone: None,
        }
    }

    fn flows() -> Vec<UdpFlow> {
        vec![
            flow(
                ("10.0.0.2", 40000),
                ("10.96.0.10", 53),
                ("10.244.1.5", 5353),
            ),
            flow(
                ("10.0.0.3", 40001),
                ("10.96.0.10", 53),
                ("10.244.1.9", 5353),
            ),
            flow(
                ("10.0.0.4", 40002),
                ("192.168.0.2", 30053),
                ("10.244.1.9", 5353),
            ),
            flow(("10.0.0.5", 40003), ("8.8.8.8", 53), ("8.8.8.8", 53)),
        ]
    }

    #[test]
    fn only_flows_to_the_service_from_gone_backends_are_stale() {
        let flows = flows();
        let target = UdpTarget {
            vips: [(ip("10.96.0.10"), 53)].into(),
            node_port: Some(30053),
            serving: [(ip("10.244.1.5"), 5353)].into(),
        };
        let stale: Vec<_> = stale_flows(&flows, &[target])
            .into_iter()
            .map(|f| f.source.1)
            .collect();
        assert_eq!(
            stale,
            vec![40001, 40002],
            "the gone backend via VIP and via NodePort"
        );
    }

    #[test]
    fn flows_display_as_socket_addresses_with_their_zone() {
        let mut f = flow(
            ("fd00::2", 40000),
            ("fd00:96::a", 53),
            ("fd00:244::5", 5353),
        );
        f.zone = Some(7);
        assert_eq!(
            f.to_string(),
            "udp [fd00::2]:40000 -> [fd00:96::a]:53 (replies from [fd00:244::5]:5353) zone 7"
        );
    }

    #[test]
    fn nothing_to_clean_without_targets_needs_no_socket() {
        assert_eq!(Conntrack::new().cleanup(IpFamily::V4, &[]).unwrap(), 0);
    }
}
