//! Tests for the tracer. Dumps are built from typed rules here (no parser), in the shapes kube-proxy
//! writes (spec §1.4), with the addresses of kube-proxy's test conventions (spec §6.1).

mod cluster;
mod matching;
mod output;
mod scenarios;
mod walking;

use std::net::IpAddr;

use ipnet::IpNet;

use crate::core::rules::{
    Counters, Dump, DumpChain, DumpRule, DumpTable, IpFamily, MarkOp, Match, Neg, PortSpec,
    Probability, Protocol, RecentAction, RecentMatch, Rule, Table, Target,
};

use super::{Origin, Packet, Trace, Tracer};

/// An address.
pub(super) fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A CIDR; a bare address gets its full-length prefix, as `iptables-save` prints it.
pub(super) fn net(text: &str) -> IpNet {
    match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => IpNet::from(ip(text)),
    }
}

/// A rule under construction.
#[derive(Debug, Clone, Default)]
pub(super) struct R(Rule);

/// A new, empty rule.
pub(super) fn r() -> R {
    R::default()
}

impl R {
    pub fn s(mut self, cidr: &str) -> R {
        self.0.source = Some(Neg::is(net(cidr)));
        self
    }
    pub fn not_s(mut self, cidr: &str) -> R {
        self.0.source = Some(Neg::not(net(cidr)));
        self
    }
    pub fn d(mut self, cidr: &str) -> R {
        self.0.destination = Some(Neg::is(net(cidr)));
        self
    }
    pub fn not_d(mut self, cidr: &str) -> R {
        self.0.destination = Some(Neg::not(net(cidr)));
        self
    }
    pub fn i(mut self, interface: &str) -> R {
        self.0.in_interface = Some(Neg::is(interface.to_string()));
        self
    }
    pub fn not_i(mut self, interface: &str) -> R {
        self.0.in_interface = Some(Neg::not(interface.to_string()));
        self
    }
    /// `-p P -m P` without ports (the DNAT rule of a SEP chain).
    pub fn proto(mut self, protocol: Protocol) -> R {
        self.0.protocol = Some(Neg::is(protocol.clone()));
        self.m(Match::Proto {
            protocol,
            sport: None,
            dport: None,
        })
    }
    /// `-p P -m P --dport PORT`.
    pub fn dport(mut self, protocol: Protocol, port: u16) -> R {
        self.0.protocol = Some(Neg::is(protocol.clone()));
        self.m(Match::Proto {
            protocol,
            sport: None,
            dport: Some(Neg::is(PortSpec::single(port))),
        })
    }
    /// `-p tcp -m tcp --dport PORT`.
    pub fn tcp(self, port: u16) -> R {
        self.dport(Protocol::Tcp, port)
    }
    pub fn comment(self, text: &str) -> R {
        self.m(Match::Comment {
            text: text.to_string(),
        })
    }
    pub fn probability(self, p: f64) -> R {
        self.m(Match::Statistic {
            probability: Probability(p),
        })
    }
    pub fn src_local(self) -> R {
        self.m(Match::AddrType {
            src_type: Some(Neg::is("LOCAL".to_string())),
            dst_type: None,
        })
    }
    pub fn dst_local(self) -> R {
        self.m(Match::AddrType {
            src_type: None,
            dst_type: Some(Neg::is("LOCAL".to_string())),
        })
    }
    pub fn ctstate(self, negated: bool, states: &[&str]) -> R {
        self.m(Match::Conntrack {
            negated,
            states: states.iter().map(|s| s.to_string()).collect(),
        })
    }
    pub fn recent(self, action: RecentAction, name: &str) -> R {
        self.m(Match::Recent(RecentMatch {
            action,
            name: name.to_string(),
            seconds: (action == RecentAction::Rcheck).then_some(10800),
            reap: action == RecentAction::Rcheck,
            mask: Some("255.255.255.255".to_string()),
            rsource: Some(true),
        }))
    }
    pub fn nfacct(self, name: &str) -> R {
        self.m(Match::Nfacct {
            name: name.to_string(),
        })
    }
    pub fn m(mut self, m: Match) -> R {
        self.0.matches.push(m);
        self
    }
    pub fn j(self, chain: &str) -> R {
        self.target(Target::jump(chain))
    }
    pub fn dnat(self, to: &str) -> R {
        self.target(Target::Dnat { to: to.to_string() })
    }
    pub fn accept(self) -> R {
        self.target(Target::Accept)
    }
    pub fn drop(self) -> R {
        self.target(Target::Drop)
    }
    pub fn reject(self) -> R {
        self.target(Target::Reject {
            with: Some("icmp-port-unreachable".to_string()),
        })
    }
    pub fn ret(self) -> R {
        self.target(Target::Return)
    }
    pub fn mark(self, value: u32, mask: u32) -> R {
        self.target(Target::Mark(MarkOp::SetXmark { value, mask }))
    }
    pub fn target(mut self, target: Target) -> R {
        self.0.target = Some(target);
        self
    }
}

/// A dump under construction: rules are numbered by line in the order they are added.
pub(super) struct DumpBuilder {
    dump: Dump,
    line: usize,
}

impl DumpBuilder {
    /// A dump with empty nat and filter tables holding their built-in chains.
    pub fn new(family: IpFamily) -> DumpBuilder {
        let mut line = 0;
        let tables = [Table::Filter, Table::Nat]
            .into_iter()
            .map(|table| DumpTable {
                table,
                chains: table
                    .builtin_chains()
                    .iter()
                    .map(|name| {
                        line += 1;
                        DumpChain {
                            name: name.to_string(),
                            policy: Some("ACCEPT".to_string()),
                            counters: Counters::default(),
                            rules: Vec::new(),
                            line,
                        }
                    })
                    .collect(),
            })
            .collect();
        DumpBuilder {
            dump: Dump {
                family,
                backend: Some("nf_tables".to_string()),
                tables,
            },
            line,
        }
    }

    /// Declare `chain` in `table` if needed and append `rules` to it.
    pub fn add(
        &mut self,
        table: Table,
        chain: &str,
        rules: impl IntoIterator<Item = R>,
    ) -> &mut DumpBuilder {
        let dump_table = self
            .dump
            .tables
            .iter_mut()
            .find(|t| t.table == table)
            .unwrap();
        if dump_table.chain(chain).is_none() {
            self.line += 1;
            dump_table.chains.push(DumpChain {
                name: chain.to_string(),
                policy: None,
                counters: Counters::default(),
                rules: Vec::new(),
                line: self.line,
            });
        }
        let dump_chain = dump_table
            .chains
            .iter_mut()
            .find(|c| c.name == chain)
            .unwrap();
        for rule in rules {
            self.line += 1;
            dump_chain.rules.push(DumpRule {
                rule: rule.0,
                counters: None,
                line: self.line,
            });
        }
        self
    }

    pub fn nat(&mut self, chain: &str, rules: impl IntoIterator<Item = R>) -> &mut DumpBuilder {
        self.add(Table::Nat, chain, rules)
    }

    pub fn filter(&mut self, chain: &str, rules: impl IntoIterator<Item = R>) -> &mut DumpBuilder {
        self.add(Table::Filter, chain, rules)
    }

    pub fn build(&self) -> Dump {
        self.dump.clone()
    }
}

/// The node's local addresses in kube-proxy's test conventions (`lo` and `eth0`).
pub(super) fn local_addresses() -> Vec<IpAddr> {
    [
        "127.0.0.1",
        "::1",
        "192.168.0.2",
        "192.168.1.2",
        "192.168.99.11",
        "2001:db8::1",
        "2001:db8:1::2",
    ]
    .iter()
    .map(|a| ip(a))
    .collect()
}

/// Trace a TCP packet.
pub(super) fn tcp(
    dump: &Dump,
    origin: Origin,
    source: &str,
    destination: &str,
    port: u16,
) -> Trace {
    trace_packet(
        dump,
        origin,
        &Packet::tcp(ip(source), ip(destination), port),
    )
}

/// Trace any packet with the conventional local addresses.
pub(super) fn trace_packet(dump: &Dump, origin: Origin, packet: &Packet) -> Trace {
    Tracer::new(dump).trace(packet, origin, &local_addresses())
}

/// The sum of the DNAT shares.
pub(super) fn total_share(trace: &Trace) -> f64 {
    trace.verdict.candidates().iter().map(|c| c.share).sum()
}

/// Assert two shares are equal to within the kernel's fixed-point precision.
pub(super) fn assert_share(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-8,
        "share {actual} is not {expected}"
    );
}
