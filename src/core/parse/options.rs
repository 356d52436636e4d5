//! What the rule walker collects for a module or target, and the tables of options it knows.
//!
//! A known module or target has a table of every option it really has (not only the ones [`Match`] or
//! [`Target`] can type): that table gives each option's number of values and whether `!` may precede it.
//! An option outside the table is an error; an option in the table that the typed variant cannot hold
//! (`--tcp-flags`, `DNAT --random`, …) turns the whole module or target into its `Other` form, words kept.
//!
//! [`Match`]: crate::core::rules::Match
//! [`Target`]: crate::core::rules::Target

use std::ops::Range;

use super::error::RuleError;
use super::token::Word;

/// One option of a known module or target.
#[derive(Debug)]
pub(crate) struct OptSpec {
    /// The option as written, e.g. `--destination-port`.
    pub name: &'static str,
    /// The name it is known by when it has aliases, e.g. `--dport`.
    pub canonical: &'static str,
    /// How many words follow it.
    pub arity: u8,
    /// Whether `!` may precede it.
    pub negatable: bool,
}

const fn opt(name: &'static str, arity: u8, negatable: bool) -> OptSpec {
    OptSpec {
        name,
        canonical: name,
        arity,
        negatable,
    }
}

const fn alias(name: &'static str, canonical: &'static str, arity: u8, negatable: bool) -> OptSpec {
    OptSpec {
        name,
        canonical,
        arity,
        negatable,
    }
}

/// Finds `name` in `specs`.
pub(crate) fn lookup(specs: &'static [OptSpec], name: &str) -> Option<&'static OptSpec> {
    specs.iter().find(|s| s.name == name)
}

/// One option occurrence (or, for an unknown owner, a run of bare words) as indices into the word list.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// `!` before the option.
    pub negated: bool,
    /// The option word; `None` for bare words right after `-m NAME`/`-j NAME`.
    pub option: Option<usize>,
    /// Its values.
    pub values: Range<usize>,
    /// The option's table entry, for known owners.
    pub spec: Option<&'static OptSpec>,
}

/// A view of one [`Event`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opt<'w> {
    /// `!` before the option.
    pub negated: bool,
    /// The option as written; `None` for bare words.
    pub name: Option<&'w str>,
    /// The canonical name for known options, else the name as written (or `""`).
    pub canonical: &'w str,
    /// The values.
    pub values: &'w [Word<'w>],
}

impl<'w> Opt<'w> {
    /// The first value (known options have their values checked already).
    pub fn value(&self) -> &'w str {
        self.values.first().map(Word::as_str).unwrap_or_default()
    }

    /// The option as written, for messages.
    pub fn shown(&self) -> &'w str {
        self.name.unwrap_or(self.canonical)
    }

    /// A [`RuleError::BadValue`] for this option's first value.
    pub fn bad(&self, reason: String) -> RuleError {
        RuleError::BadValue {
            option: self.shown().to_string(),
            value: self.value().to_string(),
            reason,
        }
    }
}

/// The views of `events`, in order.
pub(crate) fn views<'w>(
    events: &'w [Event],
    words: &'w [Word<'w>],
) -> impl Iterator<Item = Opt<'w>> + Clone + 'w {
    events.iter().map(move |e| {
        let name = e.option.and_then(|i| words.get(i)).map(Word::as_str);
        Opt {
            negated: e.negated,
            name,
            canonical: e.spec.map(|s| s.canonical).or(name).unwrap_or_default(),
            values: words.get(e.values.clone()).unwrap_or_default(),
        }
    })
}

/// The words of `events` as `Other` arguments: `!`, the option, its values.
pub(crate) fn other_args<'w>(opts: impl Iterator<Item = Opt<'w>>) -> Vec<String> {
    let mut args = Vec::new();
    for o in opts {
        if o.negated {
            args.push("!".to_string());
        }
        if let Some(name) = o.name {
            args.push(name.to_string());
        }
        args.extend(o.values.iter().map(|w| w.text.to_string()));
    }
    args
}

/// Checks that no option of a known owner is given twice (aliases count as the same option).
pub(crate) fn check_duplicates<'w>(
    opts: impl Iterator<Item = Opt<'w>> + Clone,
    owner: impl Fn() -> String,
) -> Result<(), RuleError> {
    for (i, o) in opts.clone().enumerate() {
        if opts.clone().take(i).any(|p| p.canonical == o.canonical) {
            return Err(RuleError::DuplicateOption {
                option: o.shown().to_string(),
                owner: owner(),
            });
        }
    }
    Ok(())
}

/// `-m comment`.
pub(crate) static COMMENT: &[OptSpec] = &[opt("--comment", 1, false)];

/// `-m udp`.
pub(crate) static UDP: &[OptSpec] = &[
    opt("--sport", 1, true),
    alias("--source-port", "--sport", 1, true),
    opt("--dport", 1, true),
    alias("--destination-port", "--dport", 1, true),
];

/// `-m tcp`.
pub(crate) static TCP: &[OptSpec] = &[
    opt("--sport", 1, true),
    alias("--source-port", "--sport", 1, true),
    opt("--dport", 1, true),
    alias("--destination-port", "--dport", 1, true),
    opt("--tcp-flags", 2, true),
    opt("--syn", 0, true),
    opt("--tcp-option", 1, true),
];

/// `-m sctp`.
pub(crate) static SCTP: &[OptSpec] = &[
    opt("--sport", 1, true),
    alias("--source-port", "--sport", 1, true),
    opt("--dport", 1, true),
    alias("--destination-port", "--dport", 1, true),
    opt("--chunk-types", 2, true),
];

/// `-m statistic`.
pub(crate) static STATISTIC: &[OptSpec] = &[
    opt("--mode", 1, false),
    opt("--probability", 1, true),
    opt("--every", 1, true),
    opt("--packet", 1, false),
];

/// `-m recent`.
pub(crate) static RECENT: &[OptSpec] = &[
    opt("--set", 0, true),
    opt("--rcheck", 0, true),
    opt("--update", 0, true),
    opt("--remove", 0, true),
    opt("--seconds", 1, false),
    opt("--reap", 0, false),
    opt("--hitcount", 1, false),
    opt("--rttl", 0, false),
    opt("--name", 1, false),
    opt("--mask", 1, false),
    opt("--rsource", 0, false),
    opt("--rdest", 0, false),
];

/// `-m conntrack`.
pub(crate) static CONNTRACK: &[OptSpec] = &[
    opt("--ctstate", 1, true),
    opt("--ctproto", 1, true),
    opt("--ctorigsrc", 1, true),
    opt("--ctorigdst", 1, true),
    opt("--ctreplsrc", 1, true),
    opt("--ctrepldst", 1, true),
    opt("--ctorigsrcport", 1, true),
    opt("--ctorigdstport", 1, true),
    opt("--ctreplsrcport", 1, true),
    opt("--ctrepldstport", 1, true),
    opt("--ctstatus", 1, true),
    opt("--ctexpire", 1, true),
    opt("--ctdir", 1, false),
];

/// `-m addrtype`.
pub(crate) static ADDRTYPE: &[OptSpec] = &[
    opt("--src-type", 1, true),
    opt("--dst-type", 1, true),
    opt("--limit-iface-in", 0, false),
    opt("--limit-iface-out", 0, false),
];

/// `-m mark`.
pub(crate) static MARK_MATCH: &[OptSpec] = &[opt("--mark", 1, true)];

/// `-m nfacct`.
pub(crate) static NFACCT: &[OptSpec] = &[opt("--nfacct-name", 1, false)];

/// `-j ACCEPT`, `DROP`, `RETURN`: no options.
pub(crate) static NO_OPTIONS: &[OptSpec] = &[];

/// `-j REJECT`.
pub(crate) static REJECT: &[OptSpec] = &[opt("--reject-with", 1, false)];

/// `-j DNAT`.
pub(crate) static DNAT: &[OptSpec] = &[
    opt("--to-destination", 1, false),
    opt("--random", 0, false),
    opt("--persistent", 0, false),
];

/// `-j MASQUERADE`.
pub(crate) static MASQUERADE: &[OptSpec] = &[
    opt("--to-ports", 1, false),
    opt("--random", 0, false),
    opt("--random-fully", 0, false),
];

/// `-j MARK`.
pub(crate) static MARK_TARGET: &[OptSpec] = &[
    opt("--set-xmark", 1, false),
    opt("--set-mark", 1, false),
    opt("--and-mark", 1, false),
    opt("--or-mark", 1, false),
    opt("--xor-mark", 1, false),
];
