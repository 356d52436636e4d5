//! UDP conntrack cleanup (spec §4.6): after endpoints change, UDP flows whose reply comes from an
//! address that no longer serves the Service are deleted, so clients stop talking to gone backends
//! (the classic stale-DNS problem). Listing and deleting use the `conntrack` tool.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Command;

use crate::core::model::{ClusterState, ServiceType};
use crate::core::plan::endpoints::endpoints_for_port;
use crate::core::rules::{IpFamily, Protocol};

/// One UDP flow as conntrack lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpFlow {
    /// Original source address and port.
    pub source: (IpAddr, u16),
    /// Original destination address and port (the Service VIP or NodePort).
    pub destination: (IpAddr, u16),
    /// Where replies come from (the endpoint after DNAT).
    pub reply_source: (IpAddr, u16),
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

/// Parses `conntrack -L -p udp` output (one flow a line: the original tuple's `src= dst= sport=
/// dport=`, then the reply tuple's). Lines that do not parse are skipped.
pub fn parse_flows(text: &str) -> Vec<UdpFlow> {
    text.lines().filter_map(parse_flow).collect()
}

fn parse_flow(line: &str) -> Option<UdpFlow> {
    let mut src = Vec::new();
    let mut dst = Vec::new();
    let mut sport = Vec::new();
    let mut dport = Vec::new();
    for word in line.split_whitespace() {
        if let Some(v) = word.strip_prefix("src=") {
            src.push(v.parse::<IpAddr>().ok()?);
        } else if let Some(v) = word.strip_prefix("dst=") {
            dst.push(v.parse::<IpAddr>().ok()?);
        } else if let Some(v) = word.strip_prefix("sport=") {
            sport.push(v.parse::<u16>().ok()?);
        } else if let Some(v) = word.strip_prefix("dport=") {
            dport.push(v.parse::<u16>().ok()?);
        }
    }
    Some(UdpFlow {
        source: (*src.first()?, *sport.first()?),
        destination: (*dst.first()?, *dport.first()?),
        reply_source: (*src.get(1)?, *sport.get(1)?),
    })
}

/// Runs the conntrack tool (optionally through a prefix such as `ip netns exec NAME`).
#[derive(Debug, Clone, Default)]
pub struct Conntrack {
    prefix: Vec<String>,
}

impl Conntrack {
    /// The tool on this host.
    pub fn new() -> Conntrack {
        Conntrack::default()
    }

    /// Runs every command through `prefix`.
    pub fn with_prefix(prefix: Vec<String>) -> Conntrack {
        Conntrack { prefix }
    }

    fn run(&self, args: &[String]) -> Result<String, String> {
        let mut argv = self.prefix.clone();
        argv.push("conntrack".into());
        argv.extend(args.iter().cloned());
        let output = Command::new(&argv[0])
            .args(&argv[1..])
            .output()
            .map_err(|e| format!("cannot run conntrack: {e}; install the conntrack package"))?;
        // conntrack reports counts on stderr and exits 1 when a delete matched nothing.
        if output.status.success() || output.status.code() == Some(1) {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "{} failed: {}",
                argv.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// Deletes the stale UDP flows of `family` for `targets`. Returns how many were deleted.
    pub fn cleanup(&self, family: IpFamily, targets: &[UdpTarget]) -> Result<usize, String> {
        if targets.is_empty() {
            return Ok(0);
        }
        let family_flag = match family {
            IpFamily::V4 => "ipv4",
            IpFamily::V6 => "ipv6",
        };
        let listing = self.run(&[
            "-L".into(),
            "-p".into(),
            "udp".into(),
            "-f".into(),
            family_flag.into(),
        ])?;
        let flows = parse_flows(&listing);
        let stale = stale_flows(&flows, targets);
        for flow in &stale {
            self.run(&[
                "-D".into(),
                "-p".into(),
                "udp".into(),
                "-f".into(),
                family_flag.into(),
                "--orig-src".into(),
                flow.source.0.to_string(),
                "--orig-dst".into(),
                flow.destination.0.to_string(),
                "--orig-port-src".into(),
                flow.source.1.to_string(),
                "--orig-port-dst".into(),
                flow.destination.1.to_string(),
                "--reply-src".into(),
                flow.reply_source.0.to_string(),
            ])?;
        }
        Ok(stale.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "\
udp      17 29 src=10.0.0.2 dst=10.96.0.10 sport=40000 dport=53 src=10.244.1.5 dst=10.0.0.2 sport=5353 dport=40000 mark=0 use=1
udp      17 12 src=10.0.0.3 dst=10.96.0.10 sport=40001 dport=53 [UNREPLIED] src=10.244.1.9 dst=10.0.0.3 sport=5353 dport=40001 mark=0 use=1
udp      17 12 src=10.0.0.4 dst=192.168.0.2 sport=40002 dport=30053 src=10.244.1.9 dst=10.0.0.4 sport=5353 dport=40002 mark=0 use=1
udp      17 12 src=10.0.0.5 dst=8.8.8.8 sport=40003 dport=53 src=8.8.8.8 dst=10.0.0.5 sport=53 dport=40003 mark=0 use=1
conntrack v1.4.7 (conntrack-tools): 4 flow entries have been shown.
";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_original_and_reply_tuples() {
        let flows = parse_flows(LISTING);
        assert_eq!(flows.len(), 4);
        assert_eq!(flows[0].destination, (ip("10.96.0.10"), 53));
        assert_eq!(flows[0].reply_source, (ip("10.244.1.5"), 5353));
        assert_eq!(
            flows[1].reply_source,
            (ip("10.244.1.9"), 5353),
            "[UNREPLIED] is skipped"
        );
    }

    #[test]
    fn only_flows_to_the_service_from_gone_backends_are_stale() {
        let flows = parse_flows(LISTING);
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
}
