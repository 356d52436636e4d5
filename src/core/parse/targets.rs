//! Turns `-j NAME` and the options after it into a [`Target`].
//!
//! `iptables-save` prints a jump to a user chain and a target extension the same way, so the name decides:
//! ACCEPT, DROP, RETURN, REJECT, DNAT, MASQUERADE and MARK are typed; the names of the other target
//! extensions (LOG, SNAT, CT, …) and any name followed by options become [`Target::Other`]; any other bare
//! name is a [`Target::Jump`] to a user chain.

use crate::core::rules::{MarkOp, Target};

use super::error::RuleError;
use super::options::{self, Event, Opt, OptSpec};
use super::token::Word;
use super::value;

/// Target extensions that have no typed variant; a jump to one of these names is never a chain.
/// Sorted, for binary search; none contains a `-`.
const EXTENSIONS: &[&str] = &[
    "AUDIT",
    "CHECKSUM",
    "CLASSIFY",
    "CLUSTERIP",
    "CONNMARK",
    "CONNSECMARK",
    "CT",
    "DNPT",
    "DSCP",
    "ECN",
    "HL",
    "HMARK",
    "IDLETIMER",
    "LED",
    "LOG",
    "MIRROR",
    "NETMAP",
    "NFLOG",
    "NFQUEUE",
    "NOTRACK",
    "QUEUE",
    "RATEEST",
    "REDIRECT",
    "SAME",
    "SECMARK",
    "SET",
    "SNAT",
    "SNPT",
    "SYNPROXY",
    "TCPMSS",
    "TCPOPTSTRIP",
    "TEE",
    "TOS",
    "TPROXY",
    "TRACE",
    "TTL",
    "ULOG",
];

/// The targets with a typed form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetKind {
    /// `ACCEPT`
    Accept,
    /// `DROP`
    Drop,
    /// `RETURN`
    Return,
    /// `REJECT`
    Reject,
    /// `DNAT`
    Dnat,
    /// `MASQUERADE`
    Masquerade,
    /// `MARK`
    Mark,
    /// A known extension without a typed form.
    Extension,
    /// Anything else: a user chain, or an extension when options follow.
    Chain,
}

impl TargetKind {
    /// The kind of target `name`.
    pub fn of(name: &str) -> TargetKind {
        match name {
            "ACCEPT" => TargetKind::Accept,
            "DROP" => TargetKind::Drop,
            "RETURN" => TargetKind::Return,
            "REJECT" => TargetKind::Reject,
            "DNAT" => TargetKind::Dnat,
            "MASQUERADE" => TargetKind::Masquerade,
            "MARK" => TargetKind::Mark,
            _ if !name.contains('-') && EXTENSIONS.binary_search(&name).is_ok() => {
                TargetKind::Extension
            }
            _ => TargetKind::Chain,
        }
    }

    /// The target's option table; `None` when any option is taken.
    pub fn specs(self) -> Option<&'static [OptSpec]> {
        Some(match self {
            TargetKind::Accept | TargetKind::Drop | TargetKind::Return => options::NO_OPTIONS,
            TargetKind::Reject => options::REJECT,
            TargetKind::Dnat => options::DNAT,
            TargetKind::Masquerade => options::MASQUERADE,
            TargetKind::Mark => options::MARK_TARGET,
            TargetKind::Extension | TargetKind::Chain => return None,
        })
    }
}

/// Builds the target `-j name` of `kind` from its collected options.
pub(crate) fn build(
    kind: TargetKind,
    name: &str,
    events: &[Event],
    words: &[Word<'_>],
) -> Result<Target, RuleError> {
    let opts = options::views(events, words);
    let owner = || format!("-j {name}");
    if kind.specs().is_some() && events.len() > 1 {
        // (A single option is neither a duplicate nor, for a known owner, a bare word: those are
        // rejected when they are read.)
        options::check_duplicates(opts.clone(), owner)?;
    }
    let other = || Target::Other {
        name: name.to_string(),
        args: options::other_args(opts.clone()),
    };
    Ok(match kind {
        TargetKind::Accept => Target::Accept,
        TargetKind::Drop => Target::Drop,
        TargetKind::Return => Target::Return,
        TargetKind::Reject => Target::Reject {
            with: opts.clone().next().map(|o| o.value().to_string()),
        },
        TargetKind::Dnat => {
            let to = opts
                .clone()
                .find(|o| o.canonical == "--to-destination")
                .map(|o| o.value())
                .filter(|to| !to.is_empty())
                .ok_or_else(|| RuleError::MissingOption {
                    owner: owner(),
                    needs: "`--to-destination ADDRESS[:PORT]`".into(),
                })?;
            if opts.clone().count() == 1 {
                Target::Dnat { to: to.to_string() }
            } else {
                other()
            }
        }
        TargetKind::Masquerade => {
            if opts.clone().all(|o| o.canonical == "--random-fully") {
                Target::Masquerade {
                    random_fully: opts.clone().next().is_some(),
                }
            } else {
                other()
            }
        }
        TargetKind::Mark => Target::Mark(mark_op(opts, &owner)?),
        TargetKind::Extension => other(),
        TargetKind::Chain if events.is_empty() => Target::Jump {
            chain: name.to_string(),
        },
        TargetKind::Chain => other(),
    })
}

/// The one operation of a `MARK` target, as the kernel will hold it.
///
/// `--or-mark`/`--xor-mark` keep their own variants (that is how kube-proxy writes them); the others become
/// the `--set-xmark VALUE/MASK` pair the kernel stores: `--set-mark V/M` is `V/(M|V)`, `--and-mark B` is
/// `0/!B`, and a missing mask is `0xffffffff`.
fn mark_op<'w>(
    mut opts: impl Iterator<Item = Opt<'w>>,
    owner: &dyn Fn() -> String,
) -> Result<MarkOp, RuleError> {
    let Some(o) = opts.next() else {
        return Err(RuleError::MissingOption {
            owner: owner(),
            needs: "one of --set-xmark, --set-mark, --or-mark, --xor-mark or --and-mark".into(),
        });
    };
    if let Some(second) = opts.next() {
        return Err(RuleError::Conflict {
            owner: owner(),
            message: format!(
                "`{}` and `{}`: give one mark operation per rule",
                o.shown(),
                second.shown()
            ),
        });
    }
    let bits = || value::mark_number(o.value()).map_err(|r| o.bad(r));
    Ok(match o.canonical {
        "--or-mark" => MarkOp::Or(bits()?),
        "--xor-mark" => MarkOp::Xor(bits()?),
        "--and-mark" => MarkOp::SetXmark {
            value: 0,
            mask: !bits()?,
        },
        "--set-mark" => {
            let (value, mask) = value::mark_and_mask(o.value()).map_err(|r| o.bad(r))?;
            MarkOp::SetXmark {
                value,
                mask: mask.unwrap_or(u32::MAX) | value,
            }
        }
        _ => {
            let (value, mask) = value::mark_and_mask(o.value()).map_err(|r| o.bad(r))?;
            MarkOp::SetXmark {
                value,
                mask: mask.unwrap_or(u32::MAX),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_list_is_sorted_and_has_no_dashes() {
        assert!(EXTENSIONS.windows(2).all(|w| w[0] < w[1]));
        assert!(EXTENSIONS.iter().all(|e| !e.contains('-')));
        assert_eq!(TargetKind::of("LOG"), TargetKind::Extension);
        assert_eq!(TargetKind::of("ULOG"), TargetKind::Extension);
        assert_eq!(TargetKind::of("KUBE-SERVICES"), TargetKind::Chain);
        assert_eq!(TargetKind::of("LOGS"), TargetKind::Chain);
    }
}
