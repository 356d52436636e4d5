//! The simulated packet and the hook it enters the node through.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::core::rules::Protocol;

/// The first packet of a new connection, as the tracer sees it.
///
/// Only `source`, `destination`, `protocol` and `destination_port` are always known. The optional fields
/// describe facts a caller may or may not know; when one is `None`, a rule that tests it positively
/// (`-i cbr0`, `--sport 53`) does not match and a negated test (`! -i cbr0`) does: the packet is taken to
/// carry "some other" value. The step records this assumption in its reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Packet {
    /// Source address.
    pub source: IpAddr,
    /// Destination address before any NAT.
    pub destination: IpAddr,
    /// Layer-4 protocol.
    pub protocol: Protocol,
    /// Destination port before any NAT.
    pub destination_port: u16,
    /// Source port, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port: Option<u16>,
    /// Interface the packet came in on (`-i`), if known. Node-originated packets have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_interface: Option<String>,
    /// Interface the packet leaves through (`-o`), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_interface: Option<String>,
}

impl Packet {
    /// A packet with the four always-known fields and nothing else known.
    pub fn new(
        source: IpAddr,
        destination: IpAddr,
        protocol: Protocol,
        destination_port: u16,
    ) -> Packet {
        Packet {
            source,
            destination,
            protocol,
            destination_port,
            source_port: None,
            in_interface: None,
            out_interface: None,
        }
    }

    /// A TCP packet, the protocol kube-proxy's test scenarios default to.
    pub fn tcp(source: IpAddr, destination: IpAddr, destination_port: u16) -> Packet {
        Packet::new(source, destination, Protocol::Tcp, destination_port)
    }

    /// The same packet with a known source port.
    pub fn with_source_port(mut self, port: u16) -> Packet {
        self.source_port = Some(port);
        self
    }

    /// The same packet with a known input interface.
    pub fn with_in_interface(mut self, interface: impl Into<String>) -> Packet {
        self.in_interface = Some(interface.into());
        self
    }

    /// The same packet with a known output interface.
    pub fn with_out_interface(mut self, interface: impl Into<String>) -> Packet {
        self.out_interface = Some(interface.into());
        self
    }
}

/// Where the packet enters the node's netfilter hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Routed through the node, typically from a pod on it; enters nat `PREROUTING`.
    Forwarded,
    /// Arriving from outside the node (an external client, another node); enters nat `PREROUTING`.
    Arriving,
    /// Sent by a process on the node itself; enters nat `OUTPUT`.
    Node,
}

impl Origin {
    /// The built-in nat chain the packet is first seen in.
    pub fn nat_hook(self) -> &'static str {
        match self {
            Origin::Forwarded | Origin::Arriving => "PREROUTING",
            Origin::Node => "OUTPUT",
        }
    }
}
