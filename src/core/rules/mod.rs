//! Typed iptables rules: the vocabulary shared by the planner, the renderer, the dump parser and the tracer.
//!
//! A [`Rule`] keeps the generic options (`-s`, `-d`, `-i`, `-o`, `-p`) as typed fields and every `-m` match
//! in the order it was written, because the kernel prints matches back in that order. Two printed forms
//! exist (see [`format`]): the restore form kube-proxy feeds to `iptables-restore`, and the save form the
//! kernel prints back through `iptables-save`. [`Rule::normalized`] folds both into one comparable value.

pub mod dump;
pub mod format;
pub mod hash;
pub mod names;

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use dump::{Counters, Dump, DumpChain, DumpRule, DumpTable};
pub use hash::{endpoint_chain_hash, service_port_chain_hash};

/// An iptables table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    /// `*filter`
    Filter,
    /// `*nat`
    Nat,
    /// `*mangle`
    Mangle,
    /// `*raw`
    Raw,
    /// `*security`
    Security,
}

impl Table {
    /// The table name as written after `*` in a dump.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Filter => "filter",
            Table::Nat => "nat",
            Table::Mangle => "mangle",
            Table::Raw => "raw",
            Table::Security => "security",
        }
    }

    /// The built-in chains of this table, in the order `iptables-save` prints them.
    pub fn builtin_chains(self) -> &'static [&'static str] {
        match self {
            Table::Filter => &["INPUT", "FORWARD", "OUTPUT"],
            Table::Nat => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
            Table::Mangle => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
            Table::Raw => &["PREROUTING", "OUTPUT"],
            Table::Security => &["INPUT", "FORWARD", "OUTPUT"],
        }
    }

    /// Whether `chain` is one of this table's built-in chains.
    pub fn is_builtin_chain(self, chain: &str) -> bool {
        self.builtin_chains().contains(&chain)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Table {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "filter" => Ok(Table::Filter),
            "nat" => Ok(Table::Nat),
            "mangle" => Ok(Table::Mangle),
            "raw" => Ok(Table::Raw),
            "security" => Ok(Table::Security),
            other => Err(format!("unknown table {other:?}")),
        }
    }
}

/// IP family of a ruleset: `iptables` (IPv4) or `ip6tables` (IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum IpFamily {
    /// IPv4, programmed with `iptables`.
    #[serde(rename = "IPv4")]
    V4,
    /// IPv6, programmed with `ip6tables`.
    #[serde(rename = "IPv6")]
    V6,
}

impl IpFamily {
    /// The family of an address.
    pub fn of(ip: &std::net::IpAddr) -> IpFamily {
        if ip.is_ipv4() {
            IpFamily::V4
        } else {
            IpFamily::V6
        }
    }

    /// The full-length prefix of the family (32 or 128).
    pub fn max_prefix(self) -> u8 {
        match self {
            IpFamily::V4 => 32,
            IpFamily::V6 => 128,
        }
    }
}

impl IpFamily {
    /// `IPv4` or `IPv6`, as messages and documents name the family.
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A layer-4 protocol as used by `-p` and `-m <proto>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP
    Tcp,
    /// UDP
    Udp,
    /// SCTP
    Sctp,
    /// Anything else a foreign rule may name (`icmp`, `all`, a number, …), kept verbatim in lowercase.
    Other(String),
}

impl Protocol {
    /// The lowercase name used in rules and in chain-name hashes.
    pub fn as_str(&self) -> &str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
            Protocol::Other(s) => s,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            other => Protocol::Other(other.to_string()),
        })
    }
}

/// A value that may be negated with `!`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Neg<T> {
    /// `true` when the option was preceded by `!`.
    pub negated: bool,
    /// The option's value.
    pub value: T,
}

impl<T> Neg<T> {
    /// A plain (non-negated) value.
    pub fn is(value: T) -> Self {
        Neg {
            negated: false,
            value,
        }
    }

    /// A negated value (`! <option> <value>`).
    pub fn not(value: T) -> Self {
        Neg {
            negated: true,
            value,
        }
    }
}

/// A port or port range as used by `--dport`/`--sport` (`80` or `1000:2000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    /// First port of the range (or the single port).
    pub first: u16,
    /// Last port of the range; equal to `first` for a single port.
    pub last: u16,
}

impl PortSpec {
    /// A single port.
    pub fn single(port: u16) -> Self {
        PortSpec {
            first: port,
            last: port,
        }
    }

    /// Whether `port` falls in this spec.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}:{}", self.first, self.last)
        }
    }
}

/// A `statistic --mode random --probability` value.
///
/// kube-proxy writes 1/k with exactly ten decimals; the kernel stores `round(p × 2^31)` and prints that back
/// with eleven decimals. Two probabilities are equal when they quantize to the same kernel value, so
/// `0.3333333333` (written) equals `0.33333333349` (read back).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Probability(pub f64);

impl Probability {
    /// The value the kernel stores: `round(p × 2^31)`.
    pub fn quantized(self) -> u32 {
        let scaled = (self.0 * 2_147_483_648.0).round();
        scaled.clamp(0.0, u32::MAX as f64) as u32
    }

    /// `1/k` as kube-proxy computes it for the k-th-from-last endpoint of a load-balancing ladder.
    pub fn one_in(k: usize) -> Probability {
        Probability(1.0 / k as f64)
    }

    /// The ten-decimal form kube-proxy writes (Go's `%0.10f`).
    pub fn restore_text(self) -> String {
        format!("{:.10}", self.0)
    }

    /// The eleven-decimal form `iptables-save` prints after the kernel's fixed-point round trip.
    pub fn save_text(self) -> String {
        format!("{:.11}", self.quantized() as f64 / 2_147_483_648.0)
    }
}

impl PartialEq for Probability {
    fn eq(&self, other: &Self) -> bool {
        self.quantized() == other.quantized()
    }
}

impl Eq for Probability {}

impl std::hash::Hash for Probability {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.quantized().hash(state);
    }
}

/// The `recent` match's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecentAction {
    /// `--set`: record the source address.
    Set,
    /// `--rcheck`: match if the source address is in the list.
    Rcheck,
    /// `--update`: like rcheck, refreshing the timestamp.
    Update,
    /// `--remove`: remove the source address.
    Remove,
}

/// The `-m recent` match used for ClientIP session affinity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecentMatch {
    /// `--set`, `--rcheck`, …
    pub action: RecentAction,
    /// `--name`.
    pub name: String,
    /// `--seconds`, with `--rcheck`.
    pub seconds: Option<u32>,
    /// `--reap`.
    pub reap: bool,
    /// `--mask`, as printed (the kernel adds the all-ones mask of the family).
    pub mask: Option<String>,
    /// `--rsource` (`true`, the default) or `--rdest` (`false`); `None` when not printed.
    pub rsource: Option<bool>,
}

/// One `-m <module> …` match of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "module", rename_all = "lowercase")]
pub enum Match {
    /// `-m comment --comment TEXT`.
    Comment {
        /// The comment text, unquoted.
        text: String,
    },
    /// `-m tcp|udp|sctp [--sport P] [--dport P]`.
    Proto {
        /// The protocol module.
        protocol: Protocol,
        /// `--sport`.
        sport: Option<Neg<PortSpec>>,
        /// `--dport`.
        dport: Option<Neg<PortSpec>>,
    },
    /// `-m statistic --mode random --probability P`.
    Statistic {
        /// The probability of matching.
        probability: Probability,
    },
    /// `-m recent …`.
    Recent(RecentMatch),
    /// `-m conntrack [!] --ctstate S1,S2`.
    Conntrack {
        /// `!` before `--ctstate`.
        negated: bool,
        /// The states, uppercase, in printed order.
        states: Vec<String>,
    },
    /// `-m addrtype [[!] --src-type T] [[!] --dst-type T]`.
    AddrType {
        /// `--src-type`.
        src_type: Option<Neg<String>>,
        /// `--dst-type`.
        dst_type: Option<Neg<String>>,
    },
    /// `-m mark [!] --mark VALUE[/MASK]`.
    Mark {
        /// `!` before `--mark`.
        negated: bool,
        /// The mark value.
        value: u32,
        /// The mask, if given.
        mask: Option<u32>,
    },
    /// `-m nfacct --nfacct-name NAME`.
    Nfacct {
        /// The accounting object's name.
        name: String,
    },
    /// Any other match module, kept as its words.
    Other {
        /// The module name after `-m`.
        name: String,
        /// The module's options, as words.
        args: Vec<String>,
    },
    /// A generic (non-`-m`) option that has no typed field in [`Rule`], such as `[!] -f` (IPv4 fragments).
    ///
    /// It is kept in [`Rule::matches`] at the position it was written; `iptables-save` prints it right after
    /// `-p`, before every `-m`, which is where a parsed dump puts it.
    Generic {
        /// `!` before the option.
        negated: bool,
        /// The option as written, e.g. `-f`.
        option: String,
        /// Its values, as words (none for `-f`).
        args: Vec<String>,
    },
}

/// How a `MARK` target changes the mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MarkOp {
    /// `--or-mark BITS` (as kube-proxy writes it).
    Or(u32),
    /// `--xor-mark BITS`.
    Xor(u32),
    /// `--set-xmark VALUE/MASK` (as the kernel prints every MARK target).
    SetXmark {
        /// Bits to xor in after clearing `mask`.
        value: u32,
        /// Bits to clear first.
        mask: u32,
    },
}

impl MarkOp {
    /// The `--set-xmark VALUE/MASK` pair this operation is equivalent to.
    pub fn as_set_xmark(self) -> (u32, u32) {
        match self {
            MarkOp::Or(bits) => (bits, bits),
            MarkOp::Xor(bits) => (bits, 0),
            MarkOp::SetXmark { value, mask } => (value, mask),
        }
    }
}

/// A rule's target (`-j …`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "UPPERCASE")]
pub enum Target {
    /// A jump to a user chain.
    Jump {
        /// The chain jumped to.
        chain: String,
    },
    /// `-g CHAIN`: continue in a user chain without coming back; a `RETURN` (or the end) of that chain
    /// returns to the chain that called the one holding this rule.
    Goto {
        /// The chain gone to.
        chain: String,
    },
    /// `-j ACCEPT`
    Accept,
    /// `-j DROP`
    Drop,
    /// `-j RETURN`
    Return,
    /// `-j REJECT [--reject-with T]`
    Reject {
        /// `--reject-with`, when printed.
        with: Option<String>,
    },
    /// `-j DNAT --to-destination ADDR`
    Dnat {
        /// The `--to-destination` value, e.g. `10.0.0.1:80` or `[fd00::1]:80`.
        to: String,
    },
    /// `-j MASQUERADE [--random-fully]`
    Masquerade {
        /// `--random-fully`.
        random_fully: bool,
    },
    /// `-j MARK …`
    Mark(MarkOp),
    /// Any other target, kept as its words.
    Other {
        /// The target name.
        name: String,
        /// Its options, as words.
        args: Vec<String>,
    },
}

impl Target {
    /// A jump to a user chain.
    pub fn jump(chain: impl Into<String>) -> Target {
        Target::Jump {
            chain: chain.into(),
        }
    }

    /// The chain this target jumps into, if it is a jump to a user chain.
    pub fn jump_chain(&self) -> Option<&str> {
        match self {
            Target::Jump { chain } => Some(chain),
            _ => None,
        }
    }

    /// The chain this target goes to, if it is a goto (`-g`).
    pub fn goto_chain(&self) -> Option<&str> {
        match self {
            Target::Goto { chain } => Some(chain),
            _ => None,
        }
    }
}

/// One iptables rule, without its chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// `[!] -s CIDR`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Neg<IpNet>>,
    /// `[!] -d CIDR`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<Neg<IpNet>>,
    /// `[!] -i IFACE` (`+` suffix is a prefix match)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_interface: Option<Neg<String>>,
    /// `[!] -o IFACE`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_interface: Option<Neg<String>>,
    /// `[!] -p PROTO`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Neg<Protocol>>,
    /// The `-m` matches, in written order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<Match>,
    /// The target; `None` for a rule without `-j` (it only counts packets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
}

impl Rule {
    /// The first `-m comment` text, if any.
    pub fn comment(&self) -> Option<&str> {
        self.matches.iter().find_map(|m| match m {
            Match::Comment { text } => Some(text.as_str()),
            _ => None,
        })
    }

    /// The `--dport` of the protocol match, if any.
    pub fn dport(&self) -> Option<&Neg<PortSpec>> {
        self.matches.iter().find_map(|m| match m {
            Match::Proto { dport, .. } => dport.as_ref(),
            _ => None,
        })
    }

    /// The statistic probability, if this rule is a rung of a load-balancing ladder.
    pub fn probability(&self) -> Option<Probability> {
        self.matches.iter().find_map(|m| match m {
            Match::Statistic { probability } => Some(*probability),
            _ => None,
        })
    }

    /// The user chain this rule jumps to, if any.
    pub fn jump_chain(&self) -> Option<&str> {
        self.target.as_ref().and_then(Target::jump_chain)
    }

    /// A copy in one canonical form, so that a rule as kube-proxy writes it and the same rule as the kernel
    /// prints it back compare equal: MARK targets as `--set-xmark`, REJECT without its default
    /// `--reject-with`, `recent` without its default mask and direction. (Addresses are already
    /// normalized by [`IpNet`], probabilities by [`Probability`]'s equality.)
    pub fn normalized(&self) -> Rule {
        let mut rule = self.clone();
        for m in &mut rule.matches {
            if let Match::Recent(recent) = m {
                if matches!(recent.mask.as_deref(), Some(mask) if is_all_ones_mask(mask)) {
                    recent.mask = None;
                }
                if recent.rsource == Some(true) {
                    recent.rsource = None;
                }
            }
        }
        rule.target = rule.target.map(|target| match target {
            Target::Mark(op) => {
                let (value, mask) = op.as_set_xmark();
                Target::Mark(MarkOp::SetXmark { value, mask })
            }
            Target::Reject { with: Some(w) }
                if w == "icmp-port-unreachable" || w == "icmp6-port-unreachable" =>
            {
                Target::Reject { with: None }
            }
            other => other,
        });
        rule
    }
}

fn is_all_ones_mask(mask: &str) -> bool {
    mask == "255.255.255.255" || mask == "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
}

/// A rule placed in a chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChainRule {
    /// The chain the rule is appended to.
    pub chain: String,
    /// The rule.
    pub rule: Rule,
}

/// A user chain and its rules, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// The chain's name.
    pub name: String,
    /// Its rules, in order.
    pub rules: Vec<Rule>,
}

impl Chain {
    /// An empty chain.
    pub fn new(name: impl Into<String>) -> Chain {
        Chain {
            name: name.into(),
            rules: Vec::new(),
        }
    }
}
