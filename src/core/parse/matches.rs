//! Turns the options collected after `-m MODULE` into a [`Match`].
//!
//! Known modules become their typed variant when every option fits it; a known module with a real option
//! the variant cannot hold (say `-m tcp --tcp-flags …` or `-m recent ! --rcheck`) becomes
//! [`Match::Other`] with its words, and so does every module this parser does not know.

use std::net::IpAddr;

use crate::core::rules::{Match, Neg, Protocol, RecentAction, RecentMatch};

use super::error::RuleError;
use super::options::{self, Event, Opt, OptSpec};
use super::token::Word;
use super::value;

/// The match modules with a typed form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModuleKind {
    /// `comment`
    Comment,
    /// `tcp`, `udp`, `sctp`
    Proto(Protocol),
    /// `statistic`
    Statistic,
    /// `recent`
    Recent,
    /// `conntrack`
    Conntrack,
    /// `addrtype`
    AddrType,
    /// `mark`
    Mark,
    /// `nfacct`
    Nfacct,
    /// Anything else.
    Unknown,
}

impl ModuleKind {
    /// The kind of module `name` (module names are case-sensitive).
    pub fn of(name: &str) -> ModuleKind {
        match name {
            "comment" => ModuleKind::Comment,
            "tcp" => ModuleKind::Proto(Protocol::Tcp),
            "udp" => ModuleKind::Proto(Protocol::Udp),
            "sctp" => ModuleKind::Proto(Protocol::Sctp),
            "statistic" => ModuleKind::Statistic,
            "recent" => ModuleKind::Recent,
            "conntrack" => ModuleKind::Conntrack,
            "addrtype" => ModuleKind::AddrType,
            "mark" => ModuleKind::Mark,
            "nfacct" => ModuleKind::Nfacct,
            _ => ModuleKind::Unknown,
        }
    }

    /// The module's option table; `None` when the module is unknown (it takes any option).
    pub fn specs(&self) -> Option<&'static [OptSpec]> {
        Some(match self {
            ModuleKind::Comment => options::COMMENT,
            ModuleKind::Proto(Protocol::Tcp) => options::TCP,
            ModuleKind::Proto(Protocol::Udp) => options::UDP,
            ModuleKind::Proto(Protocol::Sctp) => options::SCTP,
            ModuleKind::Proto(Protocol::Other(_)) | ModuleKind::Unknown => return None,
            ModuleKind::Statistic => options::STATISTIC,
            ModuleKind::Recent => options::RECENT,
            ModuleKind::Conntrack => options::CONNTRACK,
            ModuleKind::AddrType => options::ADDRTYPE,
            ModuleKind::Mark => options::MARK_MATCH,
            ModuleKind::Nfacct => options::NFACCT,
        })
    }
}

/// Builds the match for module `name` of `kind` from its collected options.
pub(crate) fn build(
    kind: &ModuleKind,
    name: &str,
    events: &[Event],
    words: &[Word<'_>],
) -> Result<Match, RuleError> {
    let opts = options::views(events, words);
    let owner = || format!("-m {name}");
    if kind.specs().is_some() && events.len() > 1 {
        // (A single option is neither a duplicate nor, for a known owner, a bare word: those are
        // rejected when they are read.)
        options::check_duplicates(opts.clone(), owner)?;
    }
    let typed = match kind {
        ModuleKind::Comment => comment(opts.clone()),
        ModuleKind::Proto(protocol) => proto(protocol, opts.clone())?,
        ModuleKind::Statistic => statistic(opts.clone(), &owner)?,
        ModuleKind::Recent => recent(opts.clone(), &owner)?,
        ModuleKind::Conntrack => conntrack(opts.clone())?,
        ModuleKind::AddrType => addrtype(opts.clone())?,
        ModuleKind::Mark => Some(mark(opts.clone(), &owner)?),
        ModuleKind::Nfacct => Some(nfacct(opts.clone(), &owner)?),
        ModuleKind::Unknown => None,
    };
    Ok(typed.unwrap_or_else(|| Match::Other {
        name: name.to_string(),
        args: options::other_args(opts),
    }))
}

fn comment<'w>(opts: impl Iterator<Item = Opt<'w>>) -> Option<Match> {
    // `--comment` is the only option and cannot be negated; without it the module is kept as words.
    let mut text = None;
    for o in opts {
        text = Some(o.value().to_string());
    }
    text.map(|text| Match::Comment { text })
}

fn proto<'w>(
    protocol: &Protocol,
    opts: impl Iterator<Item = Opt<'w>>,
) -> Result<Option<Match>, RuleError> {
    let mut sport = None;
    let mut dport = None;
    let mut unmodeled = false;
    for o in opts {
        let port = || -> Result<Neg<_>, RuleError> {
            let spec = value::port_spec(o.value()).map_err(|r| o.bad(r))?;
            Ok(Neg {
                negated: o.negated,
                value: spec,
            })
        };
        match o.canonical {
            "--sport" => sport = Some(port()?),
            "--dport" => dport = Some(port()?),
            _ => unmodeled = true,
        }
    }
    Ok((!unmodeled).then(|| Match::Proto {
        protocol: protocol.clone(),
        sport,
        dport,
    }))
}

fn statistic<'w>(
    opts: impl Iterator<Item = Opt<'w>>,
    owner: &dyn Fn() -> String,
) -> Result<Option<Match>, RuleError> {
    let mut mode = None;
    let mut probability = None;
    let mut unmodeled = false;
    for o in opts {
        match o.canonical {
            "--mode" => match o.value() {
                "random" | "nth" => mode = Some(o.value()),
                _ => return Err(o.bad("the mode is `random` or `nth`".into())),
            },
            "--probability" => {
                probability = Some(value::probability(o.value()).map_err(|r| o.bad(r))?);
                unmodeled |= o.negated;
            }
            _ => unmodeled = true,
        }
    }
    match (mode, probability) {
        (None, _) => Err(RuleError::MissingOption {
            owner: owner(),
            needs: "`--mode random` or `--mode nth`".into(),
        }),
        (Some("random"), Some(probability)) if !unmodeled => {
            Ok(Some(Match::Statistic { probability }))
        }
        _ => Ok(None),
    }
}

fn recent<'w>(
    opts: impl Iterator<Item = Opt<'w>>,
    owner: &dyn Fn() -> String,
) -> Result<Option<Match>, RuleError> {
    let conflict = |message: &str| RuleError::Conflict {
        owner: owner(),
        message: message.to_string(),
    };
    let mut action = None;
    let mut recent = RecentMatch {
        action: RecentAction::Set,
        name: "DEFAULT".to_string(),
        seconds: None,
        reap: false,
        mask: None,
        rsource: None,
    };
    let mut unmodeled = false;
    for o in opts {
        let this_action = match o.canonical {
            "--set" => Some(RecentAction::Set),
            "--rcheck" => Some(RecentAction::Rcheck),
            "--update" => Some(RecentAction::Update),
            "--remove" => Some(RecentAction::Remove),
            _ => None,
        };
        if let Some(a) = this_action {
            if action.replace(a).is_some() {
                return Err(conflict(
                    "give only one of --set, --rcheck, --update or --remove",
                ));
            }
            unmodeled |= o.negated;
            continue;
        }
        match o.canonical {
            "--seconds" => {
                recent.seconds = Some(value::decimal_u32(o.value()).map_err(|r| o.bad(r))?);
            }
            "--hitcount" => {
                value::decimal_u32(o.value()).map_err(|r| o.bad(r))?;
                unmodeled = true;
            }
            "--reap" => recent.reap = true,
            "--name" => recent.name = o.value().to_string(),
            "--mask" => {
                o.value()
                    .parse::<IpAddr>()
                    .map_err(|_| o.bad("the mask is written as an address".into()))?;
                recent.mask = Some(o.value().to_string());
            }
            "--rsource" | "--rdest" => {
                let source = o.canonical == "--rsource";
                if recent.rsource.replace(source) == Some(!source) {
                    return Err(conflict("give only one of --rsource or --rdest"));
                }
            }
            _ => unmodeled = true,
        }
    }
    let Some(action) = action else {
        return Err(RuleError::MissingOption {
            owner: owner(),
            needs: "one of --set, --rcheck, --update or --remove".into(),
        });
    };
    recent.action = action;
    Ok((!unmodeled).then_some(Match::Recent(recent)))
}

fn conntrack<'w>(opts: impl Iterator<Item = Opt<'w>>) -> Result<Option<Match>, RuleError> {
    let mut state = None;
    let mut unmodeled = false;
    for o in opts {
        if o.canonical != "--ctstate" {
            unmodeled = true;
            continue;
        }
        let states: Vec<String> = o.value().split(',').map(str::to_ascii_uppercase).collect();
        if states.iter().any(String::is_empty) {
            return Err(
                o.bad("states are a comma-separated list such as `RELATED,ESTABLISHED`".into())
            );
        }
        state = Some((o.negated, states));
    }
    Ok(match state {
        Some((negated, states)) if !unmodeled => Some(Match::Conntrack { negated, states }),
        _ => None,
    })
}

fn addrtype<'w>(opts: impl Iterator<Item = Opt<'w>>) -> Result<Option<Match>, RuleError> {
    let mut src_type = None;
    let mut dst_type = None;
    let mut unmodeled = false;
    for o in opts {
        let typ = || -> Result<Neg<String>, RuleError> {
            if o.value().is_empty() {
                return Err(o.bad("an address type such as `LOCAL` is needed".into()));
            }
            Ok(Neg {
                negated: o.negated,
                value: o.value().to_string(),
            })
        };
        match o.canonical {
            "--src-type" => src_type = Some(typ()?),
            "--dst-type" => dst_type = Some(typ()?),
            _ => unmodeled = true,
        }
    }
    Ok((!unmodeled && (src_type.is_some() || dst_type.is_some()))
        .then_some(Match::AddrType { src_type, dst_type }))
}

fn mark<'w>(
    mut opts: impl Iterator<Item = Opt<'w>>,
    owner: &dyn Fn() -> String,
) -> Result<Match, RuleError> {
    let Some(o) = opts.next() else {
        return Err(RuleError::MissingOption {
            owner: owner(),
            needs: "`--mark VALUE[/MASK]`".into(),
        });
    };
    let (value, mask) = value::mark_and_mask(o.value()).map_err(|r| o.bad(r))?;
    Ok(Match::Mark {
        negated: o.negated,
        value,
        mask,
    })
}

fn nfacct<'w>(
    mut opts: impl Iterator<Item = Opt<'w>>,
    owner: &dyn Fn() -> String,
) -> Result<Match, RuleError> {
    match opts.next() {
        Some(o) if !o.value().is_empty() => Ok(Match::Nfacct {
            name: o.value().to_string(),
        }),
        _ => Err(RuleError::MissingOption {
            owner: owner(),
            needs: "`--nfacct-name NAME`".into(),
        }),
    }
}
