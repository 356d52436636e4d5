//! `trace --from`: one packet to the Service, walked through a node's actual rules.

use std::net::IpAddr;
use std::str::FromStr;

use serde::Serialize;

use crate::core::model::{ClusterState, NamespacedName, NodeContext, Service, ServicePort};
use crate::core::rules::{Dump, IpFamily};
use crate::core::trace::{Origin, Packet, Step, Tracer, Verdict};

/// Where the simulated packet comes from (`--from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketSource {
    /// `pod/NAME` or `pod/NAMESPACE/NAME`: a pod, by name.
    Pod(String),
    /// An IP address: a pod or host with that address.
    Ip(IpAddr),
    /// `node`: a process on the node itself.
    Node,
    /// `external`: a client outside the cluster, through the Service's external entry points.
    External,
}

impl FromStr for PacketSource {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(name) = text.strip_prefix("pod/") {
            if name.is_empty() {
                return Err("--from pod/ needs a pod name, e.g. pod/web-7d4b9".into());
            }
            return Ok(PacketSource::Pod(name.to_string()));
        }
        match text {
            "node" => return Ok(PacketSource::Node),
            "external" => return Ok(PacketSource::External),
            _ => {}
        }
        text.parse().map(PacketSource::Ip).map_err(|_| {
            format!(
                "{text:?} is not a packet source: use pod/NAME, an IP address, `node` or `external`"
            )
        })
    }
}

/// The outcome of one simulated packet.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Simulation {
    /// `--from` as given.
    pub from: String,
    /// `forwarded` (from a local pod), `arriving` (from outside the node) or `node`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<&'static str>,
    /// The packet's source address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
    /// `ip:port/PROTO` it is sent to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The rules that matched, in order.
    pub steps: Vec<Step>,
    /// What happens to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Whether it is masqueraded (SNAT to the node) on its way out.
    pub masquerade: bool,
    /// Why the packet could not be simulated, or something to know about it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The TEST-NET address an `external` packet comes from.
fn external_client(family: IpFamily) -> IpAddr {
    match family {
        IpFamily::V4 => IpAddr::from([192, 0, 2, 10]),
        IpFamily::V6 => IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10]),
    }
}

fn pick_port<'s>(svc: &'s Service, port: Option<&str>) -> Option<&'s ServicePort> {
    match port {
        Some(port) => svc
            .ports
            .iter()
            .find(|p| p.name == port || p.port.to_string() == port),
        None => svc.ports.first(),
    }
}

/// Simulates one packet from `source` to the Service on the node whose rules are `dump`.
pub fn simulate(
    cluster: &ClusterState,
    svc: Option<&Service>,
    ctx: &NodeContext,
    dump: &Dump,
    source: &PacketSource,
    port: Option<&str>,
) -> Simulation {
    let from = match source {
        PacketSource::Pod(name) => format!("pod/{name}"),
        PacketSource::Ip(ip) => ip.to_string(),
        PacketSource::Node => "node".into(),
        PacketSource::External => "external".into(),
    };
    let mut sim = Simulation {
        from,
        origin: None,
        source: None,
        destination: None,
        steps: Vec::new(),
        verdict: None,
        masquerade: false,
        notes: Vec::new(),
    };
    let family = dump.family;
    let Some(svc) = svc else {
        sim.notes.push(
            "the Service no longer exists in the cluster: there is no address to send to".into(),
        );
        return sim;
    };
    let Some(service_port) = pick_port(svc, port) else {
        sim.notes.push("the Service has no port to send to".into());
        return sim;
    };
    let cluster_ip = svc.cluster_ip(family);
    let (origin, src) = match source {
        PacketSource::Pod(name) => {
            let id = match name.split_once('/') {
                Some((ns, n)) => NamespacedName::new(ns, n),
                None => NamespacedName::new(svc.id.namespace.clone(), name.clone()),
            };
            let Some(pod) = cluster.pods.get(&id) else {
                sim.notes.push(format!(
                    "the cluster state has no pod {id}; use an IP address instead (--from 10.0.0.5)"
                ));
                return sim;
            };
            let Some(ip) = pod
                .pod_ips
                .iter()
                .copied()
                .find(|ip| IpFamily::of(ip) == family)
            else {
                sim.notes
                    .push(format!("pod {id} has no {} address", family.as_str()));
                return sim;
            };
            if let Some(node) = pod.node_name.as_deref().filter(|n| *n != ctx.node_name) {
                sim.notes.push(format!(
                    "pod {id} runs on {node}, whose rules decide its packets; this is what {} would do with them",
                    ctx.node_name
                ));
            }
            let origin = if pod.host_network {
                Origin::Node
            } else {
                Origin::Forwarded
            };
            (origin, ip)
        }
        PacketSource::Ip(ip) => {
            if ctx.local_addresses.contains(ip) {
                (Origin::Node, *ip)
            } else {
                (Origin::Forwarded, *ip)
            }
        }
        PacketSource::Node => (
            Origin::Node,
            ctx.node_ip(family).unwrap_or(match family {
                IpFamily::V4 => IpAddr::from([127, 0, 0, 1]),
                IpFamily::V6 => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            }),
        ),
        PacketSource::External => (Origin::Arriving, external_client(family)),
    };
    if IpFamily::of(&src) != family {
        sim.notes.push(format!(
            "{src} is not an {} address; these are the node's {} rules",
            family.as_str(),
            family.as_str()
        ));
        return sim;
    }
    let destination = match source {
        PacketSource::External => external_destination(svc, service_port, ctx, family),
        _ => cluster_ip.map(|ip| (ip, service_port.port)),
    };
    let Some((dst, dport)) = destination else {
        sim.notes.push(match source {
            PacketSource::External => "the Service has no NodePort, load-balancer IP or external IP: it is not reachable from outside".into(),
            _ => format!("the Service has no {} cluster IP", family.as_str()),
        });
        return sim;
    };
    let packet = Packet::new(src, dst, service_port.protocol.clone(), dport);
    let trace = Tracer::new(dump).trace(&packet, origin, &ctx.local_addresses);
    sim.origin = Some(match origin {
        Origin::Forwarded => "forwarded",
        Origin::Arriving => "arriving",
        Origin::Node => "node",
    });
    sim.source = Some(src);
    sim.destination = Some(format!(
        "{}/{}",
        crate::core::plan::endpoints::host_port(dst, dport),
        service_port.protocol.as_str().to_uppercase()
    ));
    sim.masquerade = trace.masquerade;
    sim.steps = trace
        .steps
        .into_iter()
        .filter(|s| s.evaluation.is_match())
        .collect();
    sim.verdict = Some(trace.verdict);
    sim
}

/// Where an outside client reaches the Service: the node's NodePort, else a load-balancer IP, else an
/// external IP.
fn external_destination(
    svc: &Service,
    port: &ServicePort,
    ctx: &NodeContext,
    family: IpFamily,
) -> Option<(IpAddr, u16)> {
    if let (Some(node_port), Some(node_ip)) = (port.node_port, ctx.node_ip(family)) {
        return Some((node_ip, node_port));
    }
    svc.load_balancer_vips(family)
        .next()
        .or_else(|| svc.external_ips(family).next())
        .map(|ip| (ip, port.port))
}
