//! Parses the options of one rule (the words after `-A CHAIN`) into a [`Rule`].
//!
//! The words are read left to right, as iptables does:
//!
//! * the generic options `-s -d -i -o -p` (and their long forms) fill the typed fields of [`Rule`], with a
//!   preceding `!` as negation; `[!] -f` becomes [`Match::Generic`];
//! * `-m MODULE` opens a module: the `--options` that follow belong to it until the next `-m`, `-j` or `-g`.
//!   Generic options may sit in between (`-m tcp -p tcp -d 10.0.0.1 --dport 80`, as kube-proxy writes);
//! * `-j TARGET` opens the target, whose options follow it; `-g CHAIN` is a goto;
//! * `-p tcp --dport 80` without `-m tcp` loads the protocol's module implicitly, as iptables does.
//!
//! An option of a known module or target takes exactly as many words as it has values (so `--comment -x`
//! is a comment `-x`); an option of an unknown one takes the words up to the next option or `!`.
//! A rule with no target is valid (it only counts packets).

use crate::core::rules::{Match, Neg, Protocol, Rule, Target};

use super::error::RuleError;
use super::matches::{self, ModuleKind};
use super::options::{self, Event};
use super::targets::{self, TargetKind};
use super::token::{Word, tokenize_into};
use super::value;

/// Parses the options of one rule: everything after `-A CHAIN` of a dump or restore line.
///
/// ```
/// use svcproxy::core::parse::parse_rule;
/// use svcproxy::core::rules::Target;
///
/// let rule = parse_rule(r#"-d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -m tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y"#).unwrap();
/// assert_eq!(rule.comment(), Some("default/kubernetes:https cluster IP"));
/// assert_eq!(rule.jump_chain(), Some("KUBE-SVC-NPX46M4PTMTKRN6Y"));
/// ```
pub fn parse_rule(args: &str) -> Result<Rule, RuleError> {
    RuleParser::default().parse(args)
}

/// A rule parser that keeps its buffers between rules, so a dump allocates them once.
#[derive(Debug, Default)]
pub(crate) struct RuleParser<'a> {
    words: Vec<Word<'a>>,
    events: Vec<Event>,
}

impl<'a> RuleParser<'a> {
    /// Parses the options of one rule.
    pub fn parse(&mut self, args: &'a str) -> Result<Rule, RuleError> {
        self.words.clear();
        self.events.clear();
        tokenize_into(args, &mut self.words)?;
        walk(&self.words, &mut self.events)
    }
}

/// The generic options and commands a rule may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generic {
    Source,
    Destination,
    InInterface,
    OutInterface,
    Protocol,
    Fragment,
    Match,
    Jump,
    Goto,
}

impl Generic {
    fn of(option: &str) -> Option<Generic> {
        Some(match option {
            "-s" | "--source" => Generic::Source,
            "-d" | "--destination" => Generic::Destination,
            "-i" | "--in-interface" => Generic::InInterface,
            "-o" | "--out-interface" => Generic::OutInterface,
            "-p" | "--protocol" => Generic::Protocol,
            "-f" | "--fragment" => Generic::Fragment,
            "-m" | "--match" => Generic::Match,
            "-j" | "--jump" => Generic::Jump,
            "-g" | "--goto" => Generic::Goto,
            _ => return None,
        })
    }
}

/// What the options being read belong to.
enum Ctx<'w> {
    /// Nothing yet (or after `-g`).
    None,
    /// `-m name`; its match is inserted at `rule.matches[slot]` once complete (after it, only `-f`
    /// can have been pushed meanwhile).
    Module {
        name: &'w str,
        kind: ModuleKind,
        slot: usize,
        /// No generic option since `-m name`: bare words may still follow it.
        contiguous: bool,
    },
    /// `-j name`.
    Target {
        name: &'w str,
        kind: TargetKind,
        contiguous: bool,
    },
}

impl Ctx<'_> {
    fn specs(&self) -> Option<&'static [options::OptSpec]> {
        match self {
            Ctx::None => None,
            Ctx::Module { kind, .. } => kind.specs(),
            Ctx::Target { kind, .. } => kind.specs(),
        }
    }

    fn owner(&self) -> String {
        match self {
            Ctx::None => "the rule".to_string(),
            Ctx::Module { name, .. } => format!("-m {name}"),
            Ctx::Target { name, .. } => format!("-j {name}"),
        }
    }

    /// Whether bare words are welcome here: right after the header of an unknown module or target.
    fn takes_bare_words(&self) -> bool {
        match self {
            Ctx::None => false,
            Ctx::Module {
                contiguous, kind, ..
            } => *contiguous && kind.specs().is_none(),
            Ctx::Target {
                contiguous, kind, ..
            } => *contiguous && kind.specs().is_none(),
        }
    }

    fn break_contiguity(&mut self) {
        match self {
            Ctx::None => {}
            Ctx::Module { contiguous, .. } | Ctx::Target { contiguous, .. } => *contiguous = false,
        }
    }
}

/// The index of the first word at or after `from` that is an option or a `!`.
fn run_end(words: &[Word<'_>], from: usize) -> usize {
    let mut end = from;
    while words
        .get(end)
        .is_some_and(|w| !w.is_option() && !w.is_bang())
    {
        end += 1;
    }
    end
}

/// The one value of the option at `i`.
fn value_of<'w>(words: &'w [Word<'w>], i: usize, option: &str) -> Result<&'w str, RuleError> {
    match words.get(i + 1) {
        None => Err(RuleError::MissingValue {
            option: option.to_string(),
            expected: 1,
        }),
        Some(w) if w.is_bang() => Err(RuleError::IntrapositionedNegation {
            option: option.to_string(),
        }),
        Some(w) => Ok(w.as_str()),
    }
}

fn not_negatable(negated: bool, option: &str) -> Result<(), RuleError> {
    if negated {
        return Err(RuleError::NotNegatable {
            option: option.to_string(),
        });
    }
    Ok(())
}

fn non_empty<'w>(value: &'w str, option: &str, what: &str) -> Result<&'w str, RuleError> {
    if value.is_empty() {
        return Err(RuleError::BadValue {
            option: option.to_string(),
            value: String::new(),
            reason: format!("{what} is empty"),
        });
    }
    Ok(value)
}

fn walk<'w>(words: &'w [Word<'w>], events: &mut Vec<Event>) -> Result<Rule, RuleError> {
    // One allocation of the right size for the matches (a value that looks like `-m` only wastes a slot).
    let modules = words
        .iter()
        .filter(|w| !w.quoted && matches!(w.as_str(), "-m" | "--match" | "-f" | "--fragment"))
        .count();
    let mut rule = Rule {
        matches: Vec::with_capacity(modules),
        ..Rule::default()
    };
    let mut ctx = Ctx::None;
    let mut negated = false;
    let mut target_name: Option<&str> = None;
    let mut i = 0;
    while let Some(word) = words.get(i) {
        if word.is_bang() {
            if negated {
                return Err(RuleError::DoubleNegation);
            }
            negated = true;
            i += 1;
            continue;
        }
        if !word.is_option() {
            if negated {
                return Err(RuleError::DanglingNegation);
            }
            if !ctx.takes_bare_words() {
                return Err(RuleError::UnexpectedWord {
                    word: word.as_str().to_string(),
                });
            }
            let end = run_end(words, i);
            events.push(Event {
                negated: false,
                option: None,
                values: i..end,
                spec: None,
            });
            i = end;
            continue;
        }
        let option = word.as_str();
        if let Some(generic) = Generic::of(option) {
            match generic {
                Generic::Match => {
                    not_negatable(negated, option)?;
                    let name = non_empty(value_of(words, i, option)?, option, "the module name")?;
                    finish(ctx, &mut rule, events, words)?;
                    ctx = Ctx::Module {
                        name,
                        kind: ModuleKind::of(name),
                        slot: rule.matches.len(),
                        contiguous: true,
                    };
                    i += 2;
                }
                Generic::Jump | Generic::Goto => {
                    not_negatable(negated, option)?;
                    let name = non_empty(value_of(words, i, option)?, option, "the target")?;
                    finish(ctx, &mut rule, events, words)?;
                    if let Some(first) = target_name.replace(name) {
                        return Err(RuleError::TwoTargets {
                            first: first.to_string(),
                            second: name.to_string(),
                        });
                    }
                    ctx = if generic == Generic::Goto {
                        rule.target = Some(Target::Goto {
                            chain: name.to_string(),
                        });
                        Ctx::None
                    } else {
                        Ctx::Target {
                            name,
                            kind: TargetKind::of(name),
                            contiguous: true,
                        }
                    };
                    i += 2;
                }
                Generic::Fragment => {
                    rule.matches.push(Match::Generic {
                        negated,
                        option: option.to_string(),
                        args: Vec::new(),
                    });
                    ctx.break_contiguity();
                    i += 1;
                }
                _ => {
                    let value = value_of(words, i, option)?;
                    set_generic(&mut rule, generic, option, negated, value)?;
                    ctx.break_contiguity();
                    i += 2;
                }
            }
            negated = false;
            continue;
        }
        if !option.starts_with("--") {
            return Err(RuleError::UnknownOption {
                option: option.to_string(),
                owner: "the rule".to_string(),
            });
        }
        if matches!(ctx, Ctx::None) {
            ctx = implicit_module(&mut rule, option).ok_or_else(|| {
                RuleError::OptionWithoutModule {
                    option: option.to_string(),
                }
            })?;
        }
        let (spec, end) = match ctx.specs() {
            Some(specs) => {
                let spec =
                    options::lookup(specs, option).ok_or_else(|| RuleError::UnknownOption {
                        option: option.to_string(),
                        owner: ctx.owner(),
                    })?;
                if negated && !spec.negatable {
                    return Err(RuleError::NotNegatable {
                        option: option.to_string(),
                    });
                }
                let end = i + 1 + usize::from(spec.arity);
                let values = words
                    .get(i + 1..end)
                    .ok_or_else(|| RuleError::MissingValue {
                        option: option.to_string(),
                        expected: usize::from(spec.arity),
                    })?;
                if values.iter().any(Word::is_bang) {
                    return Err(RuleError::IntrapositionedNegation {
                        option: option.to_string(),
                    });
                }
                (Some(spec), end)
            }
            None => (None, run_end(words, i + 1)),
        };
        events.push(Event {
            negated,
            option: Some(i),
            values: i + 1..end,
            spec,
        });
        negated = false;
        i = end;
    }
    if negated {
        return Err(RuleError::DanglingNegation);
    }
    finish(ctx, &mut rule, events, words)?;
    Ok(rule)
}

/// `-p tcp --dport 80` without `-m tcp`: iptables loads the protocol's module on its own.
fn implicit_module<'w>(rule: &mut Rule, option: &str) -> Option<Ctx<'w>> {
    let name = match &rule.protocol {
        Some(Neg {
            negated: false,
            value: Protocol::Tcp,
        }) => "tcp",
        Some(Neg {
            negated: false,
            value: Protocol::Udp,
        }) => "udp",
        Some(Neg {
            negated: false,
            value: Protocol::Sctp,
        }) => "sctp",
        _ => return None,
    };
    let kind = ModuleKind::of(name);
    options::lookup(kind.specs()?, option)?;
    Some(Ctx::Module {
        name,
        kind,
        slot: rule.matches.len(),
        contiguous: false,
    })
}

/// Completes the module or target being read.
fn finish(
    ctx: Ctx<'_>,
    rule: &mut Rule,
    events: &mut Vec<Event>,
    words: &[Word<'_>],
) -> Result<(), RuleError> {
    match ctx {
        Ctx::None => {}
        Ctx::Module {
            name, kind, slot, ..
        } => {
            let built = matches::build(&kind, name, events, words)?;
            rule.matches.insert(slot.min(rule.matches.len()), built);
        }
        Ctx::Target { name, kind, .. } => {
            rule.target = Some(targets::build(kind, name, events, words)?);
        }
    }
    events.clear();
    Ok(())
}

/// Sets the typed field of a generic option.
fn set_generic(
    rule: &mut Rule,
    generic: Generic,
    option: &str,
    negated: bool,
    value: &str,
) -> Result<(), RuleError> {
    let duplicate = || RuleError::DuplicateOption {
        option: option.to_string(),
        owner: "the rule".to_string(),
    };
    let address = || -> Result<Neg<ipnet::IpNet>, RuleError> {
        let net = value::address(value).map_err(|reason| RuleError::BadValue {
            option: option.to_string(),
            value: value.to_string(),
            reason,
        })?;
        Ok(Neg {
            negated,
            value: net,
        })
    };
    let text = |what: &str| -> Result<Neg<String>, RuleError> {
        Ok(Neg {
            negated,
            value: non_empty(value, option, what)?.to_string(),
        })
    };
    match generic {
        Generic::Source if rule.source.is_none() => rule.source = Some(address()?),
        Generic::Destination if rule.destination.is_none() => {
            rule.destination = Some(address()?);
        }
        Generic::InInterface if rule.in_interface.is_none() => {
            rule.in_interface = Some(text("the interface name")?);
        }
        Generic::OutInterface if rule.out_interface.is_none() => {
            rule.out_interface = Some(text("the interface name")?);
        }
        Generic::Protocol if rule.protocol.is_none() => {
            let protocol = match non_empty(value, option, "the protocol")? {
                // The common names without the lowercase copy `Protocol::from_str` makes.
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "sctp" => Protocol::Sctp,
                name => match name.parse::<Protocol>() {
                    Ok(p) => p,
                    Err(never) => match never {},
                },
            };
            rule.protocol = Some(Neg {
                negated,
                value: protocol,
            });
        }
        _ => return Err(duplicate()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::{MarkOp, PortSpec, Probability, RecentAction};
    use pretty_assertions::assert_eq;

    fn net(s: &str) -> ipnet::IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn generic_options_with_and_without_negation() {
        let rule = parse_rule("! -s 10.244.0.0/16 -d 10.96.0.1 -i eth0 ! -o cali+ -p TCP").unwrap();
        assert_eq!(rule.source, Some(Neg::not(net("10.244.0.0/16"))));
        assert_eq!(rule.destination, Some(Neg::is(net("10.96.0.1/32"))));
        assert_eq!(rule.in_interface, Some(Neg::is("eth0".to_string())));
        assert_eq!(rule.out_interface, Some(Neg::not("cali+".to_string())));
        assert_eq!(rule.protocol, Some(Neg::is(Protocol::Tcp)));
        assert_eq!(rule.target, None);
    }

    #[test]
    fn long_forms_of_generic_options() {
        let long = parse_rule("--source 1.2.3.4 --destination ::1 --in-interface lo --out-interface eth1 --protocol udp --jump ACCEPT").unwrap();
        let short = parse_rule("-s 1.2.3.4 -d ::1 -i lo -o eth1 -p udp -j ACCEPT").unwrap();
        assert_eq!(long, short);
    }

    #[test]
    fn module_options_may_follow_generic_options_as_kube_proxy_writes_them() {
        let rule = parse_rule(
            r#"-m comment --comment "ns/svc:p cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-X"#,
        )
        .unwrap();
        assert_eq!(
            rule.matches,
            vec![
                Match::Comment {
                    text: "ns/svc:p cluster IP".into()
                },
                Match::Proto {
                    protocol: Protocol::Tcp,
                    sport: None,
                    dport: Some(Neg::is(PortSpec::single(80)))
                },
            ]
        );
        assert_eq!(rule.destination, Some(Neg::is(net("172.30.0.41/32"))));
        assert_eq!(rule.jump_chain(), Some("KUBE-SVC-X"));
    }

    #[test]
    fn protocol_options_without_their_module_load_it_implicitly() {
        let rule = parse_rule("-p udp --dport 53 -j ACCEPT").unwrap();
        assert_eq!(rule.dport(), Some(&Neg::is(PortSpec::single(53))));
        assert!(matches!(
            rule.matches[0],
            Match::Proto {
                protocol: Protocol::Udp,
                ..
            }
        ));
        assert_eq!(
            parse_rule("! -p udp --dport 53"),
            Err(RuleError::OptionWithoutModule {
                option: "--dport".into()
            })
        );
    }

    #[test]
    fn ports_ranges_and_negation() {
        let rule = parse_rule("-p tcp -m tcp ! --sport 1000:2000 --destination-port 8080").unwrap();
        assert_eq!(
            rule.matches,
            vec![Match::Proto {
                protocol: Protocol::Tcp,
                sport: Some(Neg::not(PortSpec {
                    first: 1000,
                    last: 2000
                })),
                dport: Some(Neg::is(PortSpec::single(8080))),
            }]
        );
        assert_eq!(
            parse_rule("-m sctp --dport 9"),
            Ok(Rule {
                matches: vec![Match::Proto {
                    protocol: Protocol::Sctp,
                    sport: None,
                    dport: Some(Neg::is(PortSpec::single(9)))
                }],
                ..Rule::default()
            })
        );
    }

    #[test]
    fn statistic_with_ten_or_eleven_decimals() {
        for p in ["0.3333333333", "0.33333333349"] {
            let rule = parse_rule(&format!(
                "-m statistic --mode random --probability {p} -j KUBE-SEP-X"
            ))
            .unwrap();
            assert_eq!(rule.probability(), Some(Probability(1.0 / 3.0)));
        }
        let nth = parse_rule("-m statistic --mode nth --every 2 --packet 0").unwrap();
        assert!(
            matches!(&nth.matches[0], Match::Other { name, args } if name == "statistic" && args.len() == 6)
        );
        assert!(parse_rule("-m statistic --probability 0.5").is_err());
        assert!(parse_rule("-m statistic --mode random --probability 2").is_err());
    }

    #[test]
    fn recent_in_any_order() {
        let a = parse_rule("-m recent --name KUBE-SEP-X --rcheck --seconds 10800 --reap").unwrap();
        let b = parse_rule(
            "-m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-X --mask 255.255.255.255 --rsource",
        )
        .unwrap();
        assert_eq!(a.normalized(), b.normalized());
        let Match::Recent(recent) = &b.matches[0] else {
            panic!("not a recent match: {b:?}")
        };
        assert_eq!(recent.action, RecentAction::Rcheck);
        assert_eq!(recent.seconds, Some(10800));
        assert!(recent.reap);
        assert_eq!(recent.mask.as_deref(), Some("255.255.255.255"));
        assert_eq!(recent.rsource, Some(true));
        let rdest = parse_rule("-m recent --update --rdest --name N").unwrap();
        assert!(
            matches!(&rdest.matches[0], Match::Recent(r) if r.rsource == Some(false) && r.action == RecentAction::Update)
        );
        let remove = parse_rule("-m recent --remove").unwrap();
        assert!(
            matches!(&remove.matches[0], Match::Recent(r) if r.name == "DEFAULT" && r.action == RecentAction::Remove)
        );
        assert!(parse_rule("-m recent --set --rcheck").is_err());
        assert!(parse_rule("-m recent --name X").is_err());
        assert!(parse_rule("-m recent --set --rsource --rdest").is_err());
        assert!(parse_rule("-m recent --set --mask nope").is_err());
        // Valid iptables that the typed form cannot hold.
        let hit = parse_rule("-m recent --update --seconds 60 --hitcount 4 --name SSH").unwrap();
        assert!(matches!(&hit.matches[0], Match::Other { name, .. } if name == "recent"));
        let neg = parse_rule("-m recent ! --rcheck --name X").unwrap();
        assert!(matches!(&neg.matches[0], Match::Other { args, .. } if args[0] == "!"));
    }

    #[test]
    fn conntrack_addrtype_mark_nfacct() {
        let rule = parse_rule(
            "-m conntrack ! --ctstate related,ESTABLISHED -m addrtype ! --src-type LOCAL --dst-type LOCAL -m mark ! --mark 0x4000/0x4000 -m nfacct --nfacct-name  localhost_nps_accepted_pkts",
        )
        .unwrap();
        assert_eq!(
            rule.matches,
            vec![
                Match::Conntrack {
                    negated: true,
                    states: vec!["RELATED".into(), "ESTABLISHED".into()]
                },
                Match::AddrType {
                    src_type: Some(Neg::not("LOCAL".into())),
                    dst_type: Some(Neg::is("LOCAL".into()))
                },
                Match::Mark {
                    negated: true,
                    value: 0x4000,
                    mask: Some(0x4000)
                },
                Match::Nfacct {
                    name: "localhost_nps_accepted_pkts".into()
                },
            ]
        );
        assert_eq!(
            parse_rule("-m mark --mark 16384").unwrap().matches,
            vec![Match::Mark {
                negated: false,
                value: 0x4000,
                mask: None
            }]
        );
        assert!(parse_rule("-m mark").is_err());
        assert!(parse_rule("-m nfacct").is_err());
        assert!(parse_rule("-m conntrack --ctstate NEW,").is_err());
    }

    #[test]
    fn targets() {
        let target = |args: &str| parse_rule(args).unwrap().target;
        assert_eq!(target("-j ACCEPT"), Some(Target::Accept));
        assert_eq!(target("-j DROP"), Some(Target::Drop));
        assert_eq!(target("-j RETURN"), Some(Target::Return));
        assert_eq!(target("-j REJECT"), Some(Target::Reject { with: None }));
        assert_eq!(
            target("-j REJECT --reject-with icmp-port-unreachable"),
            Some(Target::Reject {
                with: Some("icmp-port-unreachable".into())
            })
        );
        assert_eq!(
            target("-j DNAT --to-destination [fd00::1]:80"),
            Some(Target::Dnat {
                to: "[fd00::1]:80".into()
            })
        );
        assert_eq!(
            target("-j MASQUERADE"),
            Some(Target::Masquerade {
                random_fully: false
            })
        );
        assert_eq!(
            target("-j MASQUERADE --random-fully"),
            Some(Target::Masquerade { random_fully: true })
        );
        assert_eq!(
            target("-j MARK --set-xmark 0x4000/0x0"),
            Some(Target::Mark(MarkOp::SetXmark {
                value: 0x4000,
                mask: 0
            }))
        );
        assert_eq!(
            target("-j MARK --or-mark 0x00004000"),
            Some(Target::Mark(MarkOp::Or(0x4000)))
        );
        assert_eq!(
            target("-j MARK --xor-mark 0x4000"),
            Some(Target::Mark(MarkOp::Xor(0x4000)))
        );
        assert_eq!(
            target("-j MARK --set-mark 0x1/0xf"),
            Some(Target::Mark(MarkOp::SetXmark {
                value: 1,
                mask: 0xf
            }))
        );
        assert_eq!(
            target("-j MARK --set-mark 0x10"),
            Some(Target::Mark(MarkOp::SetXmark {
                value: 0x10,
                mask: u32::MAX
            }))
        );
        assert_eq!(
            target("-j MARK --and-mark 0xffff0000"),
            Some(Target::Mark(MarkOp::SetXmark {
                value: 0,
                mask: 0xffff
            }))
        );
        assert_eq!(
            target("-j KUBE-SERVICES"),
            Some(Target::jump("KUBE-SERVICES"))
        );
        assert_eq!(
            target("-g cali-fw-abc"),
            Some(Target::Goto {
                chain: "cali-fw-abc".into()
            })
        );
        assert_eq!(
            target("-j NOTRACK"),
            Some(Target::Other {
                name: "NOTRACK".into(),
                args: vec![]
            })
        );
        assert_eq!(
            target(r#"-j LOG --log-prefix "x y" --log-level 4"#),
            Some(Target::Other {
                name: "LOG".into(),
                args: vec![
                    "--log-prefix".into(),
                    "x y".into(),
                    "--log-level".into(),
                    "4".into()
                ]
            })
        );
        assert!(matches!(
            target("-j DNAT --to-destination 10.0.0.1:80 --random"),
            Some(Target::Other { name, .. }) if name == "DNAT"
        ));
    }

    #[test]
    fn a_comment_only_rule_has_no_target() {
        let rule = parse_rule(
            r#"-m comment --comment "other traffic to ext/lb-local:http will be dropped by KUBE-PROXY-FIREWALL""#,
        )
        .unwrap();
        assert_eq!(rule.target, None);
        assert_eq!(parse_rule("").unwrap(), Rule::default());
    }

    #[test]
    fn foreign_modules_keep_their_words() {
        let rule = parse_rule(
            "-m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -m multiport --dports 80,443 -m physdev --physdev-is-bridged -j MASQUERADE --random-fully",
        )
        .unwrap();
        let other = |name: &str, args: &[&str]| Match::Other {
            name: name.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        assert_eq!(
            rule.matches,
            vec![
                other("set", &["--match-set", "cali40masq-ipam-pools", "src"]),
                other("set", &["!", "--match-set", "cali40all-ipam-pools", "dst"]),
                other("multiport", &["--dports", "80,443"]),
                other("physdev", &["--physdev-is-bridged"]),
            ]
        );
        let tcp = parse_rule("-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j DROP").unwrap();
        assert_eq!(
            tcp.matches,
            vec![other("tcp", &["--tcp-flags", "FIN,SYN,RST,ACK", "SYN"])]
        );
    }

    #[test]
    fn known_options_take_exactly_their_values() {
        let rule = parse_rule("-m comment --comment -j -j ACCEPT").unwrap();
        assert_eq!(rule.comment(), Some("-j"));
        assert_eq!(rule.target, Some(Target::Accept));
        assert_eq!(
            parse_rule("-m comment --comment two words"),
            Err(RuleError::UnexpectedWord {
                word: "words".into()
            })
        );
    }

    #[test]
    fn the_fragment_option_is_kept_in_place() {
        let rule = parse_rule("-p udp ! -f -m udp --dport 53 -j DROP").unwrap();
        assert_eq!(
            rule.matches[0],
            Match::Generic {
                negated: true,
                option: "-f".into(),
                args: vec![]
            }
        );
        assert!(matches!(rule.matches[1], Match::Proto { .. }));
    }

    #[test]
    fn errors_name_the_problem() {
        let err = |args: &str| parse_rule(args).unwrap_err();
        assert_eq!(
            err("-j DNAT --to-destination 10.0.0.1:80 --bogus"),
            RuleError::UnknownOption {
                option: "--bogus".into(),
                owner: "-j DNAT".into()
            }
        );
        assert_eq!(
            err("-j ACCEPT --foo"),
            RuleError::UnknownOption {
                option: "--foo".into(),
                owner: "-j ACCEPT".into()
            }
        );
        assert_eq!(
            err("-j DNAT"),
            RuleError::MissingOption {
                owner: "-j DNAT".into(),
                needs: "`--to-destination ADDRESS[:PORT]`".into()
            }
        );
        assert_eq!(
            err("-m comment --dport 80"),
            RuleError::UnknownOption {
                option: "--dport".into(),
                owner: "-m comment".into()
            }
        );
        assert_eq!(
            err("-s"),
            RuleError::MissingValue {
                option: "-s".into(),
                expected: 1
            }
        );
        assert_eq!(
            err("-s ! 1.2.3.4"),
            RuleError::IntrapositionedNegation {
                option: "-s".into()
            }
        );
        assert_eq!(
            err("-m tcp --dport ! 80"),
            RuleError::IntrapositionedNegation {
                option: "--dport".into()
            }
        );
        assert_eq!(err("! ! -s 1.2.3.4"), RuleError::DoubleNegation);
        assert_eq!(err("-j ACCEPT !"), RuleError::DanglingNegation);
        assert_eq!(err("! foo"), RuleError::DanglingNegation);
        assert_eq!(
            err("! -m tcp"),
            RuleError::NotNegatable {
                option: "-m".into()
            }
        );
        assert_eq!(
            err("-m comment ! --comment x"),
            RuleError::NotNegatable {
                option: "--comment".into()
            }
        );
        assert_eq!(
            err("-s 1.2.3.4 -s 5.6.7.8"),
            RuleError::DuplicateOption {
                option: "-s".into(),
                owner: "the rule".into()
            }
        );
        assert_eq!(
            err("-m tcp --dport 1 --destination-port 2"),
            RuleError::DuplicateOption {
                option: "--destination-port".into(),
                owner: "-m tcp".into()
            }
        );
        assert_eq!(
            err("-j ACCEPT -g X"),
            RuleError::TwoTargets {
                first: "ACCEPT".into(),
                second: "X".into()
            }
        );
        assert_eq!(
            err("--dport 80"),
            RuleError::OptionWithoutModule {
                option: "--dport".into()
            }
        );
        assert_eq!(
            err("-Z"),
            RuleError::UnknownOption {
                option: "-Z".into(),
                owner: "the rule".into()
            }
        );
        assert_eq!(
            err("garbage"),
            RuleError::UnexpectedWord {
                word: "garbage".into()
            }
        );
        assert_eq!(
            err(r#"-m comment --comment "unterminated"#),
            RuleError::UnterminatedQuote
        );
        assert!(matches!(err("-s 10.0.0.0/99"), RuleError::BadValue { .. }));
        assert!(matches!(
            err("-m tcp --dport http"),
            RuleError::BadValue { .. }
        ));
        assert!(matches!(
            err("-j MARK --or-mark 0x1/0x1"),
            RuleError::BadValue { .. }
        ));
        assert!(matches!(
            err("-j MARK --or-mark 1 --xor-mark 1"),
            RuleError::Conflict { .. }
        ));
        assert!(matches!(err("-j MARK"), RuleError::MissingOption { .. }));
        assert!(matches!(err("-m"), RuleError::MissingValue { .. }));
        assert!(matches!(err(r#"-j """#), RuleError::BadValue { .. }));
        assert!(matches!(err("-m tcp 80"), RuleError::UnexpectedWord { .. }));
        assert!(matches!(
            err("-m foo -s 1.2.3.4 bar"),
            RuleError::UnexpectedWord { .. }
        ));
    }

    #[test]
    fn bare_words_after_an_unknown_module_are_kept() {
        let rule = parse_rule("-m foo bar --baz 1 2").unwrap();
        assert_eq!(
            rule.matches,
            vec![Match::Other {
                name: "foo".into(),
                args: vec!["bar".into(), "--baz".into(), "1".into(), "2".into()]
            }]
        );
    }
}
