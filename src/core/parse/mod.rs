//! Reading iptables text back into typed rules: `iptables-save` dumps, `iptables-restore` payloads, and
//! single rules.
//!
//! * [`parse_dump`] reads what the kernel prints (`iptables-save`, `ip6tables-save`, with or without `-c`
//!   counters, nf_tables or legacy) and the restore text we write, into a [`Dump`](crate::core::rules::Dump).
//! * [`parse_payload`] reads `iptables-restore` input statement by statement, `-I`/`-D`/`-X` included.
//! * [`parse_rule`] reads the options of one rule into a [`Rule`](crate::core::rules::Rule).
//!
//! Every rule the kernel prints reads back into a rule that
//! [`format::write_append`](crate::core::rules::format::write_append) prints byte for byte the same in
//! [`Form::Save`](crate::core::rules::format::Form::Save); and the restore form of a rule reads back into a
//! rule equal to it under [`Rule::normalized`](crate::core::rules::Rule::normalized).
//!
//! Known match modules and targets become typed variants. A module or target this parser does not know,
//! or a known one using an option its typed variant cannot hold (`-m tcp --tcp-flags …`,
//! `-j DNAT … --random`), is kept as `Other` with its words, so foreign rules (Docker, Calico, firewalld)
//! never stop a dump from being read. Options a module does not have at all are errors.
//!
//! Nothing here panics, whatever the input: every error is a value carrying the line number and text.
//!
//! # How text maps onto the types
//!
//! * `-X CHAIN` in a dump removes the chain from the [`Dump`](crate::core::rules::Dump) (see
//!   [`parse_dump`]); [`parse_payload`] keeps it as [`Op::DeleteChain`].
//! * `-g CHAIN` is [`Target::Goto`](crate::core::rules::Target::Goto); `[!] -f` is
//!   [`Match::Generic`](crate::core::rules::Match::Generic), in its place among the matches.
//! * `-j MARK --set-mark V/M` and `--and-mark B` become the `--set-xmark` pair the kernel stores
//!   (`V/(M|V)`, `0/!B`); `--or-mark` and `--xor-mark` keep their variants.
//! * Addresses lose their host bits (`10.0.0.1/8` is `10.0.0.0/8`), as in the kernel.
//! * `-m recent` without `--name` gets the kernel's default name `DEFAULT`.
//! * `Other` matches and targets keep their words unquoted; printing quotes only the words that need it,
//!   so a foreign value `iptables-save` quoted without need (say `--log-prefix "abc:"`) prints back
//!   without its quotes.
//!
//! Internals, one job each: `token` splits words, `value` parses option values, `options` holds the
//! option tables, `matches`/`targets` build typed matches and targets, `rule` walks a rule's words,
//! `line` classifies lines, `reader` is the table/COMMIT state machine, and `dump`/`payload` build the
//! two results.

mod chains;
mod dump;
mod error;
mod line;
mod matches;
mod names;
mod options;
mod payload;
mod reader;
mod rule;
mod targets;
mod token;
mod value;

#[cfg(test)]
mod fixture_tests;

pub use chains::declared_chains;
pub use dump::{parse_dump, parse_dump_scoped};
pub use error::{InputKind, ParseError, ParseErrorKind, RuleError};
pub use payload::{ChainDecl, Op, Payload, PayloadTable, Statement, parse_payload};
pub use rule::parse_rule;
