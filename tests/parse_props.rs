//! Property tests for `core::parse`.
//!
//! * The parsers return `Ok` or `Err` and never panic: on arbitrary text, on "iptables-looking" word soup,
//!   and on random mutations of a real kube-proxy dump.
//! * Any valid [`Rule`] printed in either form parses back to an equal rule (under [`Rule::normalized`]),
//!   alone and inside a whole dump.

use ipnet::IpNet;
use proptest::prelude::*;
use proptest::sample::select;

use svcproxy::core::parse::{parse_dump, parse_payload, parse_rule};
use svcproxy::core::rules::format::{Form, chain_declaration, rule_args, write_append};
use svcproxy::core::rules::{
    IpFamily, MarkOp, Match, Neg, PortSpec, Probability, Protocol, RecentAction, RecentMatch, Rule,
    Table, Target,
};

const REAL_DUMP: &str =
    include_str!("fixtures/kube-proxy-v1.36/extended/nodes/testnode.iptables-save");

// ---------------------------------------------------------------------------------------------
// Strategies for valid rules.

fn neg<T: std::fmt::Debug + Clone>(
    inner: impl Strategy<Value = T>,
) -> impl Strategy<Value = Neg<T>> {
    (any::<bool>(), inner).prop_map(|(negated, value)| Neg { negated, value })
}

fn ip_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32)
            .prop_map(|(a, len)| { IpNet::new(std::net::IpAddr::from(a), len).unwrap().trunc() }),
        (any::<[u8; 16]>(), 0u8..=128)
            .prop_map(|(a, len)| { IpNet::new(std::net::IpAddr::from(a), len).unwrap().trunc() }),
    ]
}

fn interface() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,8}\\+?"
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Sctp),
        select(vec!["icmp", "all", "esp", "gre", "ipv6-icmp", "47"])
            .prop_map(|p| Protocol::Other(p.to_string())),
    ]
}

fn port_spec() -> impl Strategy<Value = PortSpec> {
    (any::<u16>(), any::<u16>()).prop_map(|(a, b)| PortSpec {
        first: a.min(b),
        last: a.max(b),
    })
}

/// Free text: printable ASCII with the awkward characters, and some non-ASCII. Never a lone `!`, which
/// the restore form would print bare (iptables itself cannot take `--comment !` either).
fn free_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,24}",
        "[a-zé∂ß\"'\\\\! \t-]{0,12}",
        select(vec!["-j", "--comment", "-", "\"", "\\", "'", "a b", ""]).prop_map(String::from),
    ]
    .prop_filter("a lone ! is a negation", |t| t != "!")
}

fn chain_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "KUBE-[A-Z0-9]{1,16}",
        "cali-[a-z0-9-]{1,12}",
        "DOCKER(-[A-Z0-9]{1,6})?"
    ]
}

const KNOWN_MODULES: &[&str] = &[
    "comment",
    "tcp",
    "udp",
    "sctp",
    "statistic",
    "recent",
    "conntrack",
    "addrtype",
    "mark",
    "nfacct",
];

const GENERIC_LONG: &[&str] = &[
    "--source",
    "--destination",
    "--in-interface",
    "--out-interface",
    "--protocol",
    "--fragment",
    "--match",
    "--jump",
    "--goto",
];

/// Words for an `Other` module or target: groups of `[!] --option values…`, maybe led by bare values.
fn other_args() -> impl Strategy<Value = Vec<String>> {
    let value = prop_oneof![
        "[a-zA-Z0-9,:._/]{1,10}",
        "[a-z]{1,4} [a-z]{1,4}",
        Just(String::new())
    ];
    let group = (
        any::<bool>(),
        "--[a-z][a-z-]{1,12}"
            .prop_filter("generic option", |o| !GENERIC_LONG.contains(&o.as_str())),
        prop::collection::vec(value.clone(), 0..3),
    );
    (
        prop::collection::vec(value, 0..2),
        prop::collection::vec(group, 0..3),
    )
        .prop_map(|(lead, groups)| {
            let mut args = lead;
            for (negated, option, values) in groups {
                if negated {
                    args.push("!".into());
                }
                args.push(option);
                args.extend(values);
            }
            args
        })
}

fn recent() -> impl Strategy<Value = RecentMatch> {
    (
        select(vec![
            RecentAction::Set,
            RecentAction::Rcheck,
            RecentAction::Update,
            RecentAction::Remove,
        ]),
        "[A-Z0-9-]{1,20}",
        prop::option::of(any::<u32>()),
        any::<bool>(),
        prop::option::of(select(vec![
            "255.255.255.255",
            "255.255.255.0",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "ffff:ffff::",
        ])),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(action, name, seconds, reap, mask, rsource)| RecentMatch {
            action,
            name,
            seconds,
            reap,
            mask: mask.map(String::from),
            rsource,
        })
}

fn a_match() -> impl Strategy<Value = Match> {
    let state = select(vec![
        "NEW",
        "ESTABLISHED",
        "RELATED",
        "INVALID",
        "UNTRACKED",
        "DNAT",
        "SNAT",
    ]);
    let addr_type =
        select(vec!["LOCAL", "UNICAST", "BROADCAST", "MULTICAST"]).prop_map(String::from);
    prop_oneof![
        free_text().prop_map(|text| Match::Comment { text }),
        (
            select(vec![Protocol::Tcp, Protocol::Udp, Protocol::Sctp]),
            prop::option::of(neg(port_spec())),
            prop::option::of(neg(port_spec())),
        )
            .prop_map(|(protocol, sport, dport)| Match::Proto {
                protocol,
                sport,
                dport
            }),
        (0u32..=1 << 31).prop_map(|q| Match::Statistic {
            probability: Probability(f64::from(q) / 2_147_483_648.0)
        }),
        recent().prop_map(Match::Recent),
        (any::<bool>(), prop::collection::vec(state, 1..4)).prop_map(|(negated, states)| {
            Match::Conntrack {
                negated,
                states: states.into_iter().map(String::from).collect(),
            }
        }),
        (
            prop::option::of(neg(addr_type.clone())),
            prop::option::of(neg(addr_type))
        )
            .prop_filter("addrtype needs a type", |(s, d)| s.is_some() || d.is_some())
            .prop_map(|(src_type, dst_type)| Match::AddrType { src_type, dst_type }),
        (any::<bool>(), any::<u32>(), prop::option::of(any::<u32>())).prop_map(
            |(negated, value, mask)| Match::Mark {
                negated,
                value,
                mask
            }
        ),
        "[a-z_]{1,20}".prop_map(|name| Match::Nfacct { name }),
        (
            "[a-z][a-z0-9]{1,8}"
                .prop_filter("known module", |n| !KNOWN_MODULES.contains(&n.as_str())),
            other_args()
        )
            .prop_map(|(name, args)| Match::Other { name, args }),
        any::<bool>().prop_map(|negated| Match::Generic {
            negated,
            option: "-f".into(),
            args: vec![]
        }),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        chain_name().prop_map(|chain| Target::Jump { chain }),
        chain_name().prop_map(|chain| Target::Goto { chain }),
        Just(Target::Accept),
        Just(Target::Drop),
        Just(Target::Return),
        prop::option::of(select(vec![
            "icmp-port-unreachable",
            "icmp6-port-unreachable",
            "tcp-reset",
            "icmp-host-prohibited"
        ]))
        .prop_map(|with| Target::Reject {
            with: with.map(String::from)
        }),
        select(vec![
            "10.244.1.11:8080",
            "[fd00:10:244::5]:80",
            "198.18.0.1:6443"
        ])
        .prop_map(|to| Target::Dnat { to: to.into() }),
        any::<bool>().prop_map(|random_fully| Target::Masquerade { random_fully }),
        prop_oneof![
            any::<u32>().prop_map(MarkOp::Or),
            any::<u32>().prop_map(MarkOp::Xor),
            (any::<u32>(), any::<u32>()).prop_map(|(value, mask)| MarkOp::SetXmark { value, mask }),
        ]
        .prop_map(Target::Mark),
        (
            select(vec!["LOG", "SNAT", "CT", "NFLOG", "NOTRACK", "TPROXY"]),
            other_args()
        )
            .prop_map(|(name, args)| Target::Other {
                name: name.into(),
                args
            }),
        (chain_name(), other_args())
            .prop_filter("a bare name is a jump", |(_, args)| !args.is_empty())
            .prop_map(|(name, args)| Target::Other { name, args }),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop::option::of(neg(ip_net())),
        prop::option::of(neg(ip_net())),
        prop::option::of(neg(interface())),
        prop::option::of(neg(interface())),
        prop::option::of(neg(protocol())),
        prop::collection::vec(a_match(), 0..5),
        prop::option::of(target()),
    )
        .prop_map(
            |(source, destination, in_interface, out_interface, protocol, matches, target)| Rule {
                source,
                destination,
                in_interface,
                out_interface,
                protocol,
                matches,
                target,
            },
        )
}

fn family() -> impl Strategy<Value = IpFamily> {
    select(vec![IpFamily::V4, IpFamily::V6])
}

fn form() -> impl Strategy<Value = Form> {
    select(vec![Form::Restore, Form::Save])
}

// ---------------------------------------------------------------------------------------------
// Strategies for hostile input.

/// A mutation of a dump's lines.
#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    InsertChar(usize, usize, char),
    DeleteChar(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        select(vec![
            '"', '\\', '!', '-', ' ', '\t', '[', ']', ':', '*', '/', '#', 'é', '\u{0}'
        ]),
        any::<char>(),
    ];
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), any::<usize>(), interesting)
            .prop_map(|(l, c, ch)| Mutation::InsertChar(l, c, ch)),
        (any::<usize>(), any::<usize>()).prop_map(|(l, c)| Mutation::DeleteChar(l, c)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for m in mutations {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match *m {
            Mutation::DeleteLine(i) => {
                lines.remove(i % n);
            }
            Mutation::DuplicateLine(i) => {
                let line = lines[i % n].clone();
                lines.insert(i % n, line);
            }
            Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
            Mutation::InsertChar(l, c, ch) => {
                let line = &mut lines[l % n];
                let at = line
                    .char_indices()
                    .map(|(i, _)| i)
                    .chain([line.len()])
                    .nth(c % (line.chars().count() + 1))
                    .unwrap();
                line.insert(at, ch);
            }
            Mutation::DeleteChar(l, c) => {
                let line = &mut lines[l % n];
                if let Some((at, _)) = line.char_indices().nth(c % (line.chars().count().max(1))) {
                    line.remove(at);
                }
            }
            Mutation::Truncate(i) => lines.truncate(i % n),
        }
    }
    lines.join("\n")
}

/// Lines made of words that mean something to the parser, in random order.
fn word_soup() -> impl Strategy<Value = String> {
    let word = select(vec![
        "*nat",
        "*filter",
        "*bogus",
        ":KUBE-X",
        "-",
        "ACCEPT",
        "[0:0]",
        "[1:x]",
        "COMMIT",
        "-A",
        "-I",
        "-D",
        "-X",
        "KUBE-X",
        "INPUT",
        "1",
        "0",
        "-s",
        "-d",
        "!",
        "10.0.0.1/8",
        "::1",
        "-p",
        "tcp",
        "-m",
        "comment",
        "--comment",
        "\"a b\"",
        "\"",
        "\\\"",
        "tcp",
        "--dport",
        "80:70",
        "-j",
        "DNAT",
        "--to-destination",
        "MARK",
        "--or-mark",
        "0x4000/0x4000",
        "-g",
        "recent",
        "--set",
        "--name",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.5",
        "mark",
        "--mark",
        "set",
        "--match-set",
        "-f",
        "#",
        "é",
        "",
    ]);
    prop::collection::vec(
        prop::collection::vec(word, 0..10).prop_map(|w| w.join(" ")),
        0..12,
    )
    .prop_map(|lines| lines.join("\n"))
}

// ---------------------------------------------------------------------------------------------
// Properties.

fn parse_everything(text: &str) {
    let _ = parse_dump(text);
    let _ = parse_payload(text);
    for line in text.lines() {
        let _ = parse_rule(line);
        if let Ok(e) = parse_dump(line) {
            let _ = e.rule_count();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        parse_everything(&text);
    }

    #[test]
    fn word_soup_never_panics(text in word_soup()) {
        parse_everything(&text);
    }

    #[test]
    fn mutated_real_dumps_never_panic(mutations in prop::collection::vec(mutation(), 1..8)) {
        let text = mutate(REAL_DUMP, &mutations);
        parse_everything(&text);
        // Errors always point at a line that exists and quote it.
        if let Err(e) = parse_dump(&text) {
            let line = text.lines().nth(e.line - 1);
            prop_assert_eq!(line, Some(e.text.as_str()));
        }
    }

    #[test]
    fn printed_rules_parse_back_equal(rule in rule(), family in family(), form in form()) {
        let text = rule_args(&rule, form, family);
        let parsed = parse_rule(&text).map_err(|e| TestCaseError::fail(format!("{e}\n  in: {text}")))?;
        prop_assert_eq!(parsed.normalized(), rule.normalized(), "text: {}", text);
        // Printing the parsed rule again gives the same text: printing is a fixed point.
        prop_assert_eq!(rule_args(&parsed, form, family), text);
    }

    #[test]
    fn printed_dumps_parse_back_equal(
        rules in prop::collection::vec((select(vec!["KUBE-A", "KUBE-B", "INPUT"]), rule()), 0..12),
        family in family(),
        form in form(),
        counters in any::<bool>(),
    ) {
        let program = match family {
            IpFamily::V4 => "iptables-save",
            IpFamily::V6 => "ip6tables-save",
        };
        let mut text = format!("# Generated by {program} v1.8.9 (nf_tables) on Sat Nov 21 21:08:43 2026\n*filter\n");
        for chain in ["INPUT", "KUBE-A", "KUBE-B"] {
            let policy = Table::Filter.is_builtin_chain(chain).then_some("ACCEPT");
            text.push_str(&chain_declaration(chain, policy));
            text.push('\n');
        }
        for (i, (chain, rule)) in rules.iter().enumerate() {
            if counters {
                text.push_str(&format!("[{i}:{}] ", i * 100));
            }
            write_append(&mut text, chain, rule, form, family);
            text.push('\n');
        }
        text.push_str("COMMIT\n");
        let dump = parse_dump(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(dump.family, family);
        let table = &dump.tables[0];
        for chain in ["INPUT", "KUBE-A", "KUBE-B"] {
            let got: Vec<Rule> = table.chain(chain).unwrap().rules.iter().map(|r| r.rule.normalized()).collect();
            let want: Vec<Rule> = rules.iter().filter(|(c, _)| *c == chain).map(|(_, r)| r.normalized()).collect();
            prop_assert_eq!(got, want);
        }
    }
}

#[test]
fn the_real_dump_parses_unmutated() {
    assert!(parse_dump(REAL_DUMP).unwrap().rule_count() > 100);
    assert_eq!(mutate(REAL_DUMP, &[]), REAL_DUMP.trim_end());
}
