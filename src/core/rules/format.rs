//! Printing rules as text, in the two forms that matter.
//!
//! * [`Form::Restore`] is what kube-proxy hands to `iptables-restore`: host addresses without a prefix
//!   length, probabilities with ten decimals, comments quoted only when they contain spaces, MARK targets
//!   as `--or-mark`/`--xor-mark`, no printed defaults.
//! * [`Form::Save`] is what `iptables-save` prints once the kernel holds the rule: `/32` and `/128`
//!   suffixes, eleven-decimal probabilities, every comment quoted, `--set-xmark`, default
//!   `--reject-with` and `recent` options spelled out, and `--nfacct-name` followed by two spaces.
//!
//! In both forms the generic options come first (`-s`, `-d`, `-i`, `-o`, `-p`), then the matches in their
//! order, then the target — the order the kernel prints, so that restore text and saved text differ
//! only in the details above.

use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;
use std::sync::OnceLock;

use ipnet::IpNet;

use super::{IpFamily, MarkOp, Match, Neg, Probability, RecentAction, RecentMatch, Rule, Target};

/// Which textual form to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// As written to `iptables-restore` by kube-proxy.
    Restore,
    /// As printed back by `iptables-save`.
    Save,
}

/// Appends `-A <chain> <rule>` (without a newline) to `out`.
pub fn write_append(out: &mut String, chain: &str, rule: &Rule, form: Form, family: IpFamily) {
    out.push_str("-A ");
    out.push_str(chain);
    if !rule_is_empty(rule) {
        out.push(' ');
        write_rule_args(out, rule, form, family);
    }
}

/// The rule's options as one line, without `-A <chain>`.
pub fn rule_args(rule: &Rule, form: Form, family: IpFamily) -> String {
    let mut out = String::with_capacity(128);
    write_rule_args(&mut out, rule, form, family);
    out
}

fn rule_is_empty(rule: &Rule) -> bool {
    rule.source.is_none()
        && rule.destination.is_none()
        && rule.in_interface.is_none()
        && rule.out_interface.is_none()
        && rule.protocol.is_none()
        && rule.matches.is_empty()
        && rule.target.is_none()
}

/// Appends the rule's options to `out`, separated by single spaces.
pub fn write_rule_args(out: &mut String, rule: &Rule, form: Form, family: IpFamily) {
    let mut words = Words {
        sink: Sink::Text { out, first: true },
    };
    write_words(&mut words, rule, form, family);
}

/// The rule's options as separate arguments, unquoted, for running `iptables` directly
/// (restore-form values: the kernel normalizes them either way).
pub fn rule_argv(rule: &Rule, family: IpFamily) -> Vec<String> {
    let mut args = Vec::with_capacity(16);
    let mut words = Words {
        sink: Sink::Argv(&mut args),
    };
    write_words(&mut words, rule, Form::Restore, family);
    args
}

fn write_words(words: &mut Words<'_>, rule: &Rule, form: Form, family: IpFamily) {
    if let Some(src) = &rule.source {
        words.neg(src.negated);
        words.word("-s");
        write_address(words, &src.value, form);
    }
    if let Some(dst) = &rule.destination {
        words.neg(dst.negated);
        words.word("-d");
        write_address(words, &dst.value, form);
    }
    if let Some(iface) = &rule.in_interface {
        words.neg(iface.negated);
        words.word("-i");
        words.word(&iface.value);
    }
    if let Some(iface) = &rule.out_interface {
        words.neg(iface.negated);
        words.word("-o");
        words.word(&iface.value);
    }
    if let Some(proto) = &rule.protocol {
        words.neg(proto.negated);
        words.word("-p");
        words.word(proto.value.as_str());
    }
    for m in &rule.matches {
        write_match(words, m, form, family);
    }
    if let Some(target) = &rule.target {
        write_target(words, target, form, family);
    }
}

/// A host address prints bare in restore form and with its prefix length in save form.
fn write_address(words: &mut Words<'_>, net: &IpNet, form: Form) {
    let bare = form == Form::Restore && net.prefix_len() == net.max_prefix_len();
    if let IpNet::V4(v4) = net
        && let Some(out) = words.text_word()
    {
        push_ipv4(out, v4.addr());
        if !bare {
            out.push('/');
            push_decimal(out, u32::from(v4.prefix_len()));
        }
    } else if bare {
        words.word_display(&net.addr());
    } else {
        words.word_display(net);
    }
}

/// Appends `ip` in dotted-decimal form, exactly as its `Display` does. A large cluster's payload holds
/// some 100,000 addresses, and the generic formatting machinery costs several times this.
pub(crate) fn push_ipv4(out: &mut String, ip: Ipv4Addr) {
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    push_ascii(out, &text[..len]);
}

/// Appends `n` in decimal.
pub(crate) fn push_decimal(out: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    loop {
        start -= 1;
        // `n % 10` is a single digit.
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    push_ascii(out, &digits[start..]);
}

/// Appends bytes the callers above only fill with ASCII digits and dots, in one copy.
fn push_ascii(out: &mut String, text: &[u8]) {
    if let Ok(text) = std::str::from_utf8(text) {
        out.push_str(text);
    }
}

/// How many ten-decimal `1/k` texts are kept ready; a Service with more endpoints formats the rest.
const PRECOMPUTED_PROBABILITIES: usize = 1024;

/// The restore-form text of `probability`. Like kube-proxy, the `1/k` values of load-balancing ladders are
/// formatted once and reused: float formatting is the costliest part of printing a rule.
fn write_restore_probability(words: &mut Words<'_>, probability: Probability) {
    static ONE_IN: OnceLock<Vec<String>> = OnceLock::new();
    let p = probability.0;
    if p > 0.0 {
        let k = (1.0 / p).round();
        if (1.0..=PRECOMPUTED_PROBABILITIES as f64).contains(&k) {
            let k = k as usize;
            // Only a value that is exactly `1/k` may use the cached text.
            if Probability::one_in(k).0.to_bits() == p.to_bits() {
                let texts = ONE_IN.get_or_init(|| {
                    (1..=PRECOMPUTED_PROBABILITIES)
                        .map(|k| Probability::one_in(k).restore_text())
                        .collect()
                });
                if let Some(text) = texts.get(k - 1) {
                    words.word(text);
                    return;
                }
            }
        }
    }
    words.word(&probability.restore_text());
}

/// Where printed words go: one text line, or an argument vector for `iptables` itself.
enum Sink<'a> {
    Text { out: &'a mut String, first: bool },
    Argv(&'a mut Vec<String>),
}

struct Words<'a> {
    sink: Sink<'a>,
}

impl Words<'_> {
    /// Starts a word of the text line (the separating space) and returns the line to write it to;
    /// `None` when the words go to an argument vector.
    #[inline]
    fn text_word(&mut self) -> Option<&mut String> {
        match &mut self.sink {
            Sink::Text { out, first } => {
                if !*first {
                    out.push(' ');
                }
                *first = false;
                Some(out)
            }
            Sink::Argv(_) => None,
        }
    }

    /// Adds a word to the argument vector (after [`Self::text_word`] said the words go there).
    fn push_arg(&mut self, arg: String) {
        if let Sink::Argv(args) = &mut self.sink {
            args.push(arg);
        }
    }

    #[inline]
    fn word(&mut self, w: &str) {
        match self.text_word() {
            Some(out) => out.push_str(w),
            None => self.push_arg(w.to_string()),
        }
    }

    /// A word printed straight into the text, without a temporary string.
    fn word_display(&mut self, value: &dyn fmt::Display) {
        self.word_fmt(format_args!("{value}"));
    }

    /// A formatted word printed straight into the text, without a temporary string.
    fn word_fmt(&mut self, args: fmt::Arguments<'_>) {
        match self.text_word() {
            // Writing into a String cannot fail.
            Some(out) => {
                let _ = out.write_fmt(args);
            }
            None => self.push_arg(args.to_string()),
        }
    }

    /// A number, written without the formatting machinery.
    fn word_decimal(&mut self, n: u32) {
        match self.text_word() {
            Some(out) => push_decimal(out, n),
            None => self.push_arg(n.to_string()),
        }
    }

    /// Extra spacing that only exists in text (iptables-save's double space after `--nfacct-name`).
    fn text_space(&mut self) {
        if let Sink::Text { out, .. } = &mut self.sink {
            out.push(' ');
        }
    }

    #[inline]
    fn neg(&mut self, negated: bool) {
        if negated {
            self.word("!");
        }
    }

    /// A free-text argument: in text, quoted when it has to be (or always, for save-form comments);
    /// in an argument vector, verbatim.
    fn text(&mut self, text: &str, always_quote: bool) {
        let Some(out) = self.text_word() else {
            self.push_arg(text.to_string());
            return;
        };
        let needs_quotes = always_quote
            || text.is_empty()
            || text
                .chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\');
        if !needs_quotes {
            out.push_str(text);
            return;
        }
        out.push('"');
        for c in text.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
}

fn write_match(words: &mut Words<'_>, m: &Match, form: Form, family: IpFamily) {
    match m {
        Match::Comment { text } => {
            words.word("-m");
            words.word("comment");
            words.word("--comment");
            words.text(text, form == Form::Save);
        }
        Match::Proto {
            protocol,
            sport,
            dport,
        } => {
            words.word("-m");
            words.word(protocol.as_str());
            write_port(words, "--sport", sport.as_ref());
            write_port(words, "--dport", dport.as_ref());
        }
        Match::Statistic { probability } => {
            words.word("-m");
            words.word("statistic");
            words.word("--mode");
            words.word("random");
            words.word("--probability");
            match form {
                Form::Restore => write_restore_probability(words, *probability),
                Form::Save => words.word(&probability.save_text()),
            }
        }
        Match::Recent(recent) => write_recent(words, recent, form, family),
        Match::Conntrack { negated, states } => {
            words.word("-m");
            words.word("conntrack");
            words.neg(*negated);
            words.word("--ctstate");
            words.word(&states.join(","));
        }
        Match::AddrType { src_type, dst_type } => {
            words.word("-m");
            words.word("addrtype");
            for (flag, value) in [("--src-type", src_type), ("--dst-type", dst_type)] {
                if let Some(v) = value {
                    words.neg(v.negated);
                    words.word(flag);
                    words.word(&v.value);
                }
            }
        }
        Match::Mark {
            negated,
            value,
            mask,
        } => {
            words.word("-m");
            words.word("mark");
            words.neg(*negated);
            words.word("--mark");
            match mask {
                Some(mask) => words.word_fmt(format_args!("{value:#x}/{mask:#x}")),
                None => words.word_fmt(format_args!("{value:#x}")),
            }
        }
        Match::Nfacct { name } => {
            words.word("-m");
            words.word("nfacct");
            words.word("--nfacct-name");
            if form == Form::Save {
                // iptables-save prints this option with a trailing space of its own.
                words.text_space();
            }
            words.word(name);
        }
        Match::Other { name, args } => {
            words.word("-m");
            words.word(name);
            for arg in args {
                words.text(arg, false);
            }
        }
        Match::Generic {
            negated,
            option,
            args,
        } => {
            words.neg(*negated);
            words.word(option);
            for arg in args {
                words.text(arg, false);
            }
        }
    }
}

fn write_port(words: &mut Words<'_>, flag: &str, port: Option<&Neg<super::PortSpec>>) {
    if let Some(port) = port {
        words.neg(port.negated);
        words.word(flag);
        let spec = port.value;
        if spec.first == spec.last {
            words.word_decimal(u32::from(spec.first));
        } else {
            words.word_display(&spec);
        }
    }
}

fn write_recent(words: &mut Words<'_>, recent: &RecentMatch, form: Form, family: IpFamily) {
    let action = match recent.action {
        RecentAction::Set => "--set",
        RecentAction::Rcheck => "--rcheck",
        RecentAction::Update => "--update",
        RecentAction::Remove => "--remove",
    };
    words.word("-m");
    words.word("recent");
    match form {
        Form::Restore => {
            words.word("--name");
            words.word(&recent.name);
            words.word(action);
            write_recent_timing(words, recent);
            if let Some(mask) = &recent.mask {
                words.word("--mask");
                words.word(mask);
            }
            match recent.rsource {
                Some(true) => words.word("--rsource"),
                Some(false) => words.word("--rdest"),
                None => {}
            }
        }
        Form::Save => {
            words.word(action);
            write_recent_timing(words, recent);
            words.word("--name");
            words.word(&recent.name);
            words.word("--mask");
            let default_mask = match family {
                IpFamily::V4 => "255.255.255.255",
                IpFamily::V6 => "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            };
            words.word(recent.mask.as_deref().unwrap_or(default_mask));
            words.word(if recent.rsource == Some(false) {
                "--rdest"
            } else {
                "--rsource"
            });
        }
    }
}

fn write_recent_timing(words: &mut Words<'_>, recent: &RecentMatch) {
    if let Some(seconds) = recent.seconds {
        words.word("--seconds");
        words.word_decimal(seconds);
    }
    if recent.reap {
        words.word("--reap");
    }
}

fn write_target(words: &mut Words<'_>, target: &Target, form: Form, family: IpFamily) {
    words.word(if matches!(target, Target::Goto { .. }) {
        "-g"
    } else {
        "-j"
    });
    match target {
        Target::Jump { chain } | Target::Goto { chain } => words.word(chain),
        Target::Accept => words.word("ACCEPT"),
        Target::Drop => words.word("DROP"),
        Target::Return => words.word("RETURN"),
        Target::Reject { with } => {
            words.word("REJECT");
            let default = match family {
                IpFamily::V4 => "icmp-port-unreachable",
                IpFamily::V6 => "icmp6-port-unreachable",
            };
            let with = match (with, form) {
                (Some(w), _) => Some(w.as_str()),
                (None, Form::Save) => Some(default),
                (None, Form::Restore) => None,
            };
            if let Some(w) = with {
                words.word("--reject-with");
                words.word(w);
            }
        }
        Target::Dnat { to } => {
            words.word("DNAT");
            words.word("--to-destination");
            words.word(to);
        }
        Target::Masquerade { random_fully } => {
            words.word("MASQUERADE");
            if *random_fully {
                words.word("--random-fully");
            }
        }
        Target::Mark(op) => {
            words.word("MARK");
            match (form, op) {
                (Form::Restore, MarkOp::Or(bits)) => {
                    words.word("--or-mark");
                    words.word_fmt(format_args!("{bits:#x}"));
                }
                (Form::Restore, MarkOp::Xor(bits)) => {
                    words.word("--xor-mark");
                    words.word_fmt(format_args!("{bits:#x}"));
                }
                _ => {
                    let (value, mask) = op.as_set_xmark();
                    words.word("--set-xmark");
                    words.word_fmt(format_args!("{value:#x}/{mask:#x}"));
                }
            }
        }
        Target::Other { name, args } => {
            words.word(name);
            for arg in args {
                words.text(arg, false);
            }
        }
    }
}

/// Writes `text` to `out` followed by a newline; a convenience for renderers.
pub fn push_line(out: &mut String, text: &str) {
    out.push_str(text);
    out.push('\n');
}

/// Formats a chain declaration line: `:NAME - [0:0]` for user chains, `:NAME POLICY [0:0]` for built-ins.
pub fn chain_declaration(name: &str, policy: Option<&str>) -> String {
    let mut s = String::with_capacity(name.len() + 12);
    write_chain_declaration(&mut s, name, policy);
    s
}

/// Appends [`chain_declaration`] (without a newline) to `out`.
pub fn write_chain_declaration(out: &mut String, name: &str, policy: Option<&str>) {
    out.push(':');
    out.push_str(name);
    out.push(' ');
    out.push_str(policy.unwrap_or("-"));
    out.push_str(" [0:0]");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_and_decimals_print_as_display_does() {
        for ip in [
            Ipv4Addr::new(0, 0, 0, 0),
            Ipv4Addr::new(10, 128, 9, 99),
            Ipv4Addr::new(100, 200, 255, 1),
            Ipv4Addr::new(255, 255, 255, 255),
        ] {
            let mut out = String::new();
            push_ipv4(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
        for n in [0, 7, 10, 99, 100, 65535, 1_000_000, u32::MAX] {
            let mut out = String::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }

    #[test]
    fn cached_probabilities_match_formatting() {
        for k in 1..=PRECOMPUTED_PROBABILITIES + 5 {
            let probability = Probability::one_in(k);
            let rule = Rule {
                matches: vec![Match::Statistic { probability }],
                ..Rule::default()
            };
            let args = rule_args(&rule, Form::Restore, IpFamily::V4);
            assert_eq!(
                args,
                format!(
                    "-m statistic --mode random --probability {}",
                    probability.restore_text()
                )
            );
        }
        // A value that is not exactly 1/k is formatted, not looked up.
        let rule = Rule {
            matches: vec![Match::Statistic {
                probability: Probability(0.3333333),
            }],
            ..Rule::default()
        };
        assert!(rule_args(&rule, Form::Restore, IpFamily::V4).ends_with(" 0.3333333000"));
    }
}
