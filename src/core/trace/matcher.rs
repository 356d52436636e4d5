//! Deciding whether one rule matches the simulated packet.
//!
//! Every present field must match (they are ANDed). A field can be decided (match or mismatch) or
//! undecidable (a match module the tracer does not simulate). One mismatch settles the rule; otherwise one
//! undecidable field makes the rule undecidable, which the walker treats as "does not match" while the
//! step keeps the reason.
//!
//! State the tracer has no history for:
//! - `recent --rcheck`/`--update`/`--remove` never match (no address was ever recorded); `recent --set`
//!   always matches (it records, and matches, every packet).
//! - `mark` never matches: packet marks are not simulated (the masquerade bit is tracked separately).
//! - `conntrack --ctstate`: the packet is the first of a new connection, so its state set is `NEW`, plus
//!   `DNAT` once the nat pass rewrote its destination. `--ctstate NEW` therefore matches,
//!   `--ctstate RELATED,ESTABLISHED` and `INVALID` do not, and `! --ctstate RELATED,ESTABLISHED,DNAT` matches
//!   a packet that was not DNATed. Unknown state names are undecidable.
//! - `comment`, `statistic` (probabilistic; the walker splits the traffic), `nfacct` always match.
//! - `addrtype LOCAL` is membership in the caller's local addresses; `MULTICAST` is read off the address;
//!   other address types are undecidable.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Serialize, Serializer};

use crate::core::rules::{Match, Neg, PortSpec, Protocol, RecentAction, Rule};

use super::packet::Packet;

/// What the matcher knows about the packet at one point of the walk.
#[derive(Debug, Clone, Copy)]
pub struct MatchContext<'a> {
    /// Source address.
    pub source: IpAddr,
    /// Current destination address (rewritten by DNAT for the filter pass).
    pub destination: IpAddr,
    /// Current destination port.
    pub destination_port: u16,
    /// The packet, for its protocol, source port and interfaces.
    pub packet: &'a Packet,
    /// Node-local addresses, for `addrtype LOCAL`.
    pub local_addresses: &'a [IpAddr],
    /// Whether the nat pass rewrote the destination (conntrack state `DNAT`).
    pub dnatted: bool,
}

impl<'a> MatchContext<'a> {
    /// The context of `packet` before any NAT.
    pub fn new(packet: &'a Packet, local_addresses: &'a [IpAddr]) -> MatchContext<'a> {
        MatchContext {
            source: packet.source,
            destination: packet.destination,
            destination_port: packet.destination_port,
            packet,
            local_addresses,
            dnatted: false,
        }
    }

    fn is_local(&self, address: IpAddr) -> bool {
        self.local_addresses.contains(&address)
    }
}

/// The result of matching one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "reason", rename_all = "kebab-case")]
pub enum Evaluation {
    /// Every field matched.
    Matched,
    /// A field did not match.
    NotMatched(Mismatch),
    /// No field mismatched but one cannot be decided; the rule is treated as not matching.
    Undecidable(Undecidable),
    /// No rule was evaluated: the step reports an event of the walk (a missing chain, a loop…).
    NotEvaluated,
}

impl Evaluation {
    /// Whether the rule matched.
    pub fn is_match(&self) -> bool {
        matches!(self, Evaluation::Matched)
    }
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Evaluation::Matched => f.write_str("matched"),
            Evaluation::NotMatched(why) => why.fmt(f),
            Evaluation::Undecidable(why) => write!(f, "undecidable: {why}"),
            Evaluation::NotEvaluated => f.write_str("not evaluated"),
        }
    }
}

/// Why a rule did not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// `[!] -s` failed.
    Source {
        /// The packet's source.
        address: IpAddr,
        /// The rule's `-s`.
        rule: Neg<IpNet>,
    },
    /// `[!] -d` failed.
    Destination {
        /// The packet's current destination.
        address: IpAddr,
        /// The rule's `-d`.
        rule: Neg<IpNet>,
    },
    /// `[!] -i` failed.
    InInterface {
        /// The packet's input interface, if known.
        interface: Option<String>,
        /// The rule's `-i`.
        rule: Neg<String>,
    },
    /// `[!] -o` failed.
    OutInterface {
        /// The packet's output interface, if known.
        interface: Option<String>,
        /// The rule's `-o`.
        rule: Neg<String>,
    },
    /// `[!] -p` failed, or a `-m tcp|udp|sctp` module met another protocol.
    Protocol {
        /// The packet's protocol.
        protocol: Protocol,
        /// The protocol the rule asks for.
        rule: Neg<Protocol>,
    },
    /// `[!] --dport` failed.
    DestinationPort {
        /// The packet's current destination port.
        port: u16,
        /// The rule's `--dport`.
        rule: Neg<PortSpec>,
    },
    /// `[!] --sport` failed.
    SourcePort {
        /// The packet's source port, if known.
        port: Option<u16>,
        /// The rule's `--sport`.
        rule: Neg<PortSpec>,
    },
    /// `addrtype [!] --src-type` or `--dst-type` failed.
    AddressType {
        /// `"source"` or `"destination"`.
        side: &'static str,
        /// The address tested.
        address: IpAddr,
        /// The rule's type.
        rule: Neg<String>,
    },
    /// `conntrack [!] --ctstate` failed.
    Conntrack {
        /// The packet's states (`NEW`, maybe `DNAT`).
        packet: &'static str,
        /// `!` in the rule.
        negated: bool,
        /// The rule's states.
        states: Vec<String>,
    },
    /// `recent --rcheck` and friends: no address was ever recorded.
    RecentHistory {
        /// The list name.
        name: String,
    },
    /// `mark`: packet marks are not simulated.
    MarkHistory,
    /// `-f`: a simulated packet is the first of its connection, never a later fragment.
    Fragment,
}

/// Why a rule cannot be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undecidable {
    /// A `-m` module the tracer does not simulate.
    UnknownModule {
        /// The module name.
        module: String,
    },
    /// An `addrtype` type other than `LOCAL` or `MULTICAST`.
    AddressType {
        /// The type.
        kind: String,
    },
    /// A `conntrack` state name the tracer does not know.
    ConntrackState {
        /// The state.
        state: String,
    },
    /// A generic option (outside any `-m` module) the tracer does not simulate.
    UnknownOption {
        /// The option, e.g. `--some-option`.
        option: String,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Source { address, rule } => address_reason(f, "source", *address, rule),
            Mismatch::Destination { address, rule } => {
                address_reason(f, "destination", *address, rule)
            }
            Mismatch::InInterface { interface, rule } => {
                interface_reason(f, "-i", "input", interface, rule)
            }
            Mismatch::OutInterface { interface, rule } => {
                interface_reason(f, "-o", "output", interface, rule)
            }
            Mismatch::Protocol { protocol, rule } if rule.negated => {
                write!(f, "protocol {protocol} excluded by ! -p {}", rule.value)
            }
            Mismatch::Protocol { protocol, rule } => {
                write!(f, "protocol {protocol} is not {}", rule.value)
            }
            Mismatch::DestinationPort { port, rule } if rule.negated => {
                write!(
                    f,
                    "destination port {port} excluded by ! --dport {}",
                    rule.value
                )
            }
            Mismatch::DestinationPort { port, rule } => {
                write!(f, "destination port {port} is not {}", rule.value)
            }
            Mismatch::SourcePort { port: None, rule } => {
                write!(f, "source port unknown, taken as not {}", rule.value)
            }
            Mismatch::SourcePort {
                port: Some(port),
                rule,
            } if rule.negated => {
                write!(f, "source port {port} excluded by ! --sport {}", rule.value)
            }
            Mismatch::SourcePort {
                port: Some(port),
                rule,
            } => {
                write!(f, "source port {port} is not {}", rule.value)
            }
            Mismatch::AddressType {
                side,
                address,
                rule,
            } if rule.negated => {
                write!(f, "{side} {address} is {}", rule.value)
            }
            Mismatch::AddressType {
                side,
                address,
                rule,
            } => {
                write!(f, "{side} {address} is not {}", rule.value)
            }
            Mismatch::Conntrack {
                packet,
                negated,
                states,
            } => {
                let states = states.join(",");
                if *negated {
                    write!(
                        f,
                        "conntrack state {packet} excluded by ! --ctstate {states}"
                    )
                } else {
                    write!(
                        f,
                        "conntrack state {packet} not in {states} (no history for a new packet)"
                    )
                }
            }
            Mismatch::RecentHistory { name } => {
                write!(
                    f,
                    "recent list {name} is empty (no history for a new packet)"
                )
            }
            Mismatch::MarkHistory => {
                f.write_str("mark matches are not simulated (no mark history)")
            }
            Mismatch::Fragment => f.write_str("the packet is not a fragment"),
        }
    }
}

fn address_reason(
    f: &mut fmt::Formatter<'_>,
    side: &str,
    address: IpAddr,
    rule: &Neg<IpNet>,
) -> fmt::Result {
    if rule.negated {
        write!(f, "{side} {address} is in {} (excluded by !)", rule.value)
    } else {
        write!(f, "{side} {address} not in {}", rule.value)
    }
}

fn interface_reason(
    f: &mut fmt::Formatter<'_>,
    flag: &str,
    what: &str,
    interface: &Option<String>,
    rule: &Neg<String>,
) -> fmt::Result {
    match interface {
        None => write!(f, "{what} interface unknown, taken as not {}", rule.value),
        Some(name) if rule.negated => write!(
            f,
            "{what} interface {name} excluded by ! {flag} {}",
            rule.value
        ),
        Some(name) => write!(f, "{what} interface {name} is not {}", rule.value),
    }
}

impl fmt::Display for Undecidable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Undecidable::UnknownModule { module } => {
                write!(f, "match -m {module} is not simulated")
            }
            Undecidable::UnknownOption { option } => write!(f, "option {option} is not simulated"),
            Undecidable::AddressType { kind } => write!(f, "addrtype {kind} is not simulated"),
            Undecidable::ConntrackState { state } => {
                write!(f, "conntrack state {state} is not simulated")
            }
        }
    }
}

impl Serialize for Mismatch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Serialize for Undecidable {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The result of one field.
enum Field {
    Yes,
    No(Mismatch),
    Unknown(Undecidable),
}

fn field(matches: bool, mismatch: impl FnOnce() -> Mismatch) -> Field {
    if matches {
        Field::Yes
    } else {
        Field::No(mismatch())
    }
}

/// Match `rule` against the packet in `ctx`.
pub fn evaluate(rule: &Rule, ctx: &MatchContext<'_>) -> Evaluation {
    let mut undecidable = None;
    let generic = [
        rule.source.as_ref().map(|s| {
            field(s.negated != s.value.contains(&ctx.source), || {
                Mismatch::Source {
                    address: ctx.source,
                    rule: s.clone(),
                }
            })
        }),
        rule.destination.as_ref().map(|d| {
            field(d.negated != d.value.contains(&ctx.destination), || {
                Mismatch::Destination {
                    address: ctx.destination,
                    rule: d.clone(),
                }
            })
        }),
        rule.in_interface.as_ref().map(|i| {
            let interface = &ctx.packet.in_interface;
            field(interface_matches(interface.as_deref(), i), || {
                Mismatch::InInterface {
                    interface: interface.clone(),
                    rule: i.clone(),
                }
            })
        }),
        rule.out_interface.as_ref().map(|o| {
            let interface = &ctx.packet.out_interface;
            field(interface_matches(interface.as_deref(), o), || {
                Mismatch::OutInterface {
                    interface: interface.clone(),
                    rule: o.clone(),
                }
            })
        }),
        rule.protocol.as_ref().map(|p| {
            field(
                p.negated != protocol_matches(&p.value, &ctx.packet.protocol),
                || Mismatch::Protocol {
                    protocol: ctx.packet.protocol.clone(),
                    rule: p.clone(),
                },
            )
        }),
    ];
    for result in generic
        .into_iter()
        .flatten()
        .chain(rule.matches.iter().map(|m| match_module(m, ctx)))
    {
        match result {
            Field::Yes => {}
            Field::No(mismatch) => return Evaluation::NotMatched(mismatch),
            Field::Unknown(why) => {
                undecidable.get_or_insert(why);
            }
        }
    }
    match undecidable {
        Some(why) => Evaluation::Undecidable(why),
        None => Evaluation::Matched,
    }
}

/// `-i`/`-o`: a trailing `+` is a prefix match; an unknown interface matches only negated tests.
fn interface_matches(interface: Option<&str>, rule: &Neg<String>) -> bool {
    let equal = match interface {
        None => false,
        Some(name) => match rule.value.strip_suffix('+') {
            Some(prefix) => name.starts_with(prefix),
            None => name == rule.value,
        },
    };
    rule.negated != equal
}

/// `-p`: `all` and `0` match every protocol; IANA numbers of tcp, udp and sctp are understood.
fn protocol_matches(rule: &Protocol, packet: &Protocol) -> bool {
    let canonical = |p: &Protocol| -> Protocol {
        match p {
            Protocol::Other(s) if s == "6" => Protocol::Tcp,
            Protocol::Other(s) if s == "17" => Protocol::Udp,
            Protocol::Other(s) if s == "132" => Protocol::Sctp,
            other => other.clone(),
        }
    };
    match rule {
        Protocol::Other(s) if s == "all" || s == "0" => true,
        _ => canonical(rule) == canonical(packet),
    }
}

fn port_matches(rule: &Neg<PortSpec>, port: Option<u16>) -> bool {
    rule.negated != port.is_some_and(|p| rule.value.contains(p))
}

fn match_module(m: &Match, ctx: &MatchContext<'_>) -> Field {
    match m {
        Match::Comment { .. } | Match::Statistic { .. } | Match::Nfacct { .. } => Field::Yes,
        Match::Proto {
            protocol,
            sport,
            dport,
        } => {
            if !protocol_matches(protocol, &ctx.packet.protocol) {
                return Field::No(Mismatch::Protocol {
                    protocol: ctx.packet.protocol.clone(),
                    rule: Neg::is(protocol.clone()),
                });
            }
            if let Some(rule) = sport
                && !port_matches(rule, ctx.packet.source_port)
            {
                return Field::No(Mismatch::SourcePort {
                    port: ctx.packet.source_port,
                    rule: rule.clone(),
                });
            }
            if let Some(rule) = dport
                && !port_matches(rule, Some(ctx.destination_port))
            {
                return Field::No(Mismatch::DestinationPort {
                    port: ctx.destination_port,
                    rule: rule.clone(),
                });
            }
            Field::Yes
        }
        Match::Recent(recent) => match recent.action {
            RecentAction::Set => Field::Yes,
            RecentAction::Rcheck | RecentAction::Update | RecentAction::Remove => {
                Field::No(Mismatch::RecentHistory {
                    name: recent.name.clone(),
                })
            }
        },
        Match::Mark { .. } => Field::No(Mismatch::MarkHistory),
        Match::Conntrack { negated, states } => conntrack(*negated, states, ctx.dnatted),
        Match::AddrType { src_type, dst_type } => {
            for (side, address, rule) in [
                ("source", ctx.source, src_type.as_ref()),
                ("destination", ctx.destination, dst_type.as_ref()),
            ] {
                let Some(rule) = rule else { continue };
                let is_type = match rule.value.to_ascii_uppercase().as_str() {
                    "LOCAL" => ctx.is_local(address),
                    "MULTICAST" => address.is_multicast(),
                    _ => {
                        return Field::Unknown(Undecidable::AddressType {
                            kind: rule.value.clone(),
                        });
                    }
                };
                if rule.negated == is_type {
                    return Field::No(Mismatch::AddressType {
                        side,
                        address,
                        rule: rule.clone(),
                    });
                }
            }
            Field::Yes
        }
        Match::Other { name, .. } => Field::Unknown(Undecidable::UnknownModule {
            module: name.clone(),
        }),
        Match::Generic {
            negated, option, ..
        } if option == "-f" || option == "--fragment" => {
            if *negated {
                Field::Yes
            } else {
                Field::No(Mismatch::Fragment)
            }
        }
        Match::Generic { option, .. } => Field::Unknown(Undecidable::UnknownOption {
            option: option.clone(),
        }),
    }
}

/// A new packet is `NEW`, and `NEW,DNAT` after the nat pass rewrote its destination.
fn conntrack(negated: bool, states: &[String], dnatted: bool) -> Field {
    let mut any = false;
    for state in states {
        let has = match state.to_ascii_uppercase().as_str() {
            "NEW" => true,
            "DNAT" => dnatted,
            "INVALID" | "ESTABLISHED" | "RELATED" | "UNTRACKED" | "SNAT" => false,
            _ => {
                return Field::Unknown(Undecidable::ConntrackState {
                    state: state.clone(),
                });
            }
        };
        any |= has;
    }
    let packet = if dnatted { "NEW,DNAT" } else { "NEW" };
    field(negated != any, || Mismatch::Conntrack {
        packet,
        negated,
        states: states.to_vec(),
    })
}
