//! Errors of the parser: [`RuleError`] for one rule's options, [`ParseError`] for a whole dump or payload.
//!
//! Every message names what is wrong and, where it helps, what to do about it. A [`ParseError`] always
//! carries the 1-based line number and the text of the line, so a caller can show the lines around it.

use std::fmt;

use thiserror::Error;

use crate::core::rules::{IpFamily, Table};

/// What is wrong with the options of one rule (the words after `-A CHAIN`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    /// A `"` opens a quoted word that never closes.
    #[error("a double quote opens a word that is never closed (is the line cut short?)")]
    UnterminatedQuote,
    /// An option is missing some or all of its values.
    #[error("`{option}` needs {expected} value(s) but the rule ends before them")]
    MissingValue {
        /// The option.
        option: String,
        /// How many values it takes.
        expected: usize,
    },
    /// A `!` that is not followed by an option.
    #[error("`!` must be followed by the option it negates, as in `! -s 10.0.0.0/8`")]
    DanglingNegation,
    /// `! !`.
    #[error("`!` given twice in a row: an option can be negated only once")]
    DoubleNegation,
    /// `!` in front of something that cannot be negated.
    #[error("`{option}` cannot be negated with `!`")]
    NotNegatable {
        /// The option or command (`-m`, `-j`, `--comment`, …).
        option: String,
    },
    /// `--option ! value`, the old spelling that iptables no longer accepts.
    #[error("`!` after `{option}`: negation goes before the option, as in `! {option} VALUE`")]
    IntrapositionedNegation {
        /// The option.
        option: String,
    },
    /// A word that is neither an option nor an option's value.
    #[error(
        "unexpected word `{word}`: it is not an option nor the value of one (quote values that contain spaces)"
    )]
    UnexpectedWord {
        /// The word.
        word: String,
    },
    /// An option the module or target it belongs to does not have, or an unknown generic option.
    #[error("unknown option `{option}` for {owner}")]
    UnknownOption {
        /// The option.
        option: String,
        /// Who was asked: `-m comment`, `-j DNAT`, `the rule`.
        owner: String,
    },
    /// A module option before any `-m` or `-j` that could own it.
    #[error(
        "option `{option}` comes before any `-m MODULE` or `-j TARGET` that could take it: is a `-m` missing?"
    )]
    OptionWithoutModule {
        /// The option.
        option: String,
    },
    /// The same option twice.
    #[error("`{option}` given twice in {owner}")]
    DuplicateOption {
        /// The option.
        option: String,
        /// `-m tcp`, `-j MARK`, `the rule`.
        owner: String,
    },
    /// A value that does not parse.
    #[error("bad value `{value}` for `{option}`: {reason}")]
    BadValue {
        /// The option.
        option: String,
        /// The value as written.
        value: String,
        /// Why it is wrong.
        reason: String,
    },
    /// A module or target without an option it needs.
    #[error("{owner} needs {needs}")]
    MissingOption {
        /// `-j DNAT`, `-m mark`, …
        owner: String,
        /// What it needs, e.g. "`--to-destination`".
        needs: String,
    },
    /// Options that cannot go together.
    #[error("{owner}: {message}")]
    Conflict {
        /// `-m recent`, `-j MARK`, …
        owner: String,
        /// What conflicts.
        message: String,
    },
    /// A second `-j` or `-g`.
    #[error("the rule has two targets, `{first}` and `{second}`: a rule takes one `-j` or `-g`")]
    TwoTargets {
        /// The first target.
        first: String,
        /// The second one.
        second: String,
    },
}

/// An error in a dump or payload, at one line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {kind}{}", LineText(&self.text))]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// The offending line, as it is in the input (without its line ending).
    pub text: String,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

/// Shows the line text after the message, shortened when very long.
struct LineText<'a>(&'a str);

impl fmt::Display for LineText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX_CHARS: usize = 160;
        if self.0.is_empty() {
            return Ok(());
        }
        match self.0.char_indices().nth(MAX_CHARS) {
            Some((cut, _)) => write!(f, "\n    {}…", self.0.get(..cut).unwrap_or(self.0)),
            None => write!(f, "\n    {}", self.0),
        }
    }
}

/// What kind of input is being read, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// `iptables-save` output (or restore text read as a dump).
    Dump,
    /// An `iptables-restore` payload.
    Payload,
}

impl fmt::Display for InputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputKind::Dump => "dump",
            InputKind::Payload => "payload",
        })
    }
}

/// The ways a dump or payload can be wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseErrorKind {
    /// The rule's options are wrong.
    #[error("bad rule for chain {chain}: {source}")]
    Rule {
        /// The chain of the `-A`/`-I`/`-D` line.
        chain: String,
        /// What is wrong with the options (boxed to keep errors small).
        #[source]
        source: Box<RuleError>,
    },
    /// A line that is none of the known kinds.
    #[error(
        "unrecognized line: expected `*TABLE`, `:CHAIN POLICY [packets:bytes]`, `-A CHAIN …`, `COMMIT` or a `#` comment"
    )]
    UnrecognizedLine,
    /// A rule, chain or command line before any `*table` line (or after a `COMMIT`).
    #[error(
        "`{what}` outside a table: it must come after a `*TABLE` line (e.g. `*nat`) and before that table's `COMMIT`"
    )]
    OutsideTable {
        /// What the line is (`-A`, `:CHAIN`, `COMMIT`, …).
        what: String,
    },
    /// `*foo`.
    #[error("unknown table `*{name}`: expected one of filter, nat, mangle, raw, security")]
    UnknownTable {
        /// The name after `*`.
        name: String,
    },
    /// The same table twice in one dump.
    #[error(
        "table {table} appears a second time (first at line {first_line}): were two dumps concatenated? capture one `iptables-save` (or `ip6tables-save`) at a time"
    )]
    DuplicateTable {
        /// The table.
        table: Table,
        /// Where it first started.
        first_line: usize,
    },
    /// A new `*table` line while the previous table has no `COMMIT` yet.
    #[error(
        "table {open} (opened at line {opened_line}) has no COMMIT before this next table starts: the {input} is truncated or damaged"
    )]
    MissingCommit {
        /// The table still open.
        open: Table,
        /// Its `*table` line.
        opened_line: usize,
        /// Dump or payload.
        input: InputKind,
    },
    /// End of input inside a table.
    #[error(
        "{input} ends inside table {table} (opened at line {opened_line}) with no COMMIT: {hint}"
    )]
    Truncated {
        /// Dump or payload.
        input: InputKind,
        /// The open table.
        table: Table,
        /// Its `*table` line.
        opened_line: usize,
        /// What to do.
        hint: &'static str,
    },
    /// A chain line that does not read `:NAME POLICY [packets:bytes]`.
    #[error(
        "bad chain line: expected `:NAME POLICY [packets:bytes]`, e.g. `:KUBE-SERVICES - [0:0]`"
    )]
    BadChainLine,
    /// A policy on a user chain.
    #[error(
        "user chain {chain} has policy `{policy}`: only built-in chains have a policy; user chains are declared with `-`"
    )]
    PolicyOnUserChain {
        /// The chain.
        chain: String,
        /// The policy given.
        policy: String,
    },
    /// A policy that is not ACCEPT or DROP.
    #[error("built-in chain {chain} has policy `{policy}`: expected ACCEPT, DROP or `-`")]
    BadPolicy {
        /// The chain.
        chain: String,
        /// The policy given.
        policy: String,
    },
    /// A chain declared twice in one table of a dump.
    #[error(
        "chain {chain} is declared a second time in table {table} (first at line {first_line})"
    )]
    DuplicateChain {
        /// The chain.
        chain: String,
        /// The table.
        table: Table,
        /// The first declaration.
        first_line: usize,
    },
    /// `[packets:bytes]` that does not parse.
    #[error("bad counters `{text}`: expected `[packets:bytes]` with two decimal numbers")]
    BadCounters {
        /// The counters as written.
        text: String,
    },
    /// Counters in front of a command that has none.
    #[error("counters `[packets:bytes]` only go in front of `-A` or `-I`, not `{command}`")]
    CountersNotAllowed {
        /// The command.
        command: String,
    },
    /// A command without its chain name.
    #[error("`{command}` needs a chain name")]
    MissingChain {
        /// The command.
        command: String,
    },
    /// A rule for a chain the table does not declare.
    #[error(
        "rule for chain {chain}, which table {table} does not declare: add `:{chain} - [0:0]` before the rules, or check that the {input} is complete"
    )]
    UndeclaredChain {
        /// The chain.
        chain: String,
        /// The table.
        table: Table,
        /// Dump or payload.
        input: InputKind,
    },
    /// A rule for a chain that was deleted earlier with `-X`.
    #[error("rule for chain {chain}, which was deleted with `-X` at line {deleted_line}")]
    DeletedChain {
        /// The chain.
        chain: String,
        /// The `-X` line.
        deleted_line: usize,
    },
    /// `-X` of a built-in chain.
    #[error("`-X {chain}`: built-in chains of table {table} cannot be deleted")]
    DeleteBuiltinChain {
        /// The chain.
        chain: String,
        /// The table.
        table: Table,
    },
    /// `-X` of a chain that got rules earlier in the same text.
    #[error(
        "`-X {chain}` after rules were added to it (first at line {rule_line}): iptables-restore refuses to delete a chain that still has rules"
    )]
    DeleteNonEmptyChain {
        /// The chain.
        chain: String,
        /// The first rule added to it.
        rule_line: usize,
    },
    /// `-I`/`-D` in a dump.
    #[error(
        "`{command}` does not occur in `iptables-save` output: this looks like an iptables-restore payload (read it as a payload)"
    )]
    EditInDump {
        /// The command.
        command: String,
    },
    /// A command other than `-A`, `-I`, `-D`, `-X`.
    #[error(
        "unsupported command `{command}`: only `-A`, `-I`, `-D` and `-X` lines (plus `*TABLE`, chain lines and `COMMIT`) are understood"
    )]
    UnsupportedCommand {
        /// The command.
        command: String,
    },
    /// `-D CHAIN` with neither a rule nor a rule number.
    #[error("`{command}` needs a rule specification or a rule number after the chain name")]
    MissingRule {
        /// The command.
        command: String,
    },
    /// A bad rule number for `-I`/`-D`.
    #[error("bad rule number `{value}` for `{command}`: rule numbers start at 1")]
    BadRuleNumber {
        /// The command.
        command: String,
        /// The number as written.
        value: String,
    },
    /// Text after a line that takes nothing more.
    #[error("unexpected text after `{what}`")]
    TrailingText {
        /// `COMMIT`, `*nat`, `-X CHAIN`.
        what: String,
    },
    /// Headers of two IP families in one input.
    #[error(
        "this line is {second} output but line {first_line} was {first}: a dump holds one family; parse `iptables-save` and `ip6tables-save` output separately"
    )]
    MixedFamilies {
        /// The family of the first header.
        first: IpFamily,
        /// Where that header is.
        first_line: usize,
        /// The family of this one.
        second: IpFamily,
    },
    /// Headers of two backends in one input.
    #[error(
        "this line is from the {second} backend but line {first_line} was from {first}: rules are split over two backends; capture each with `iptables-nft-save` and `iptables-legacy-save` and check which one is in use"
    )]
    MixedBackends {
        /// The backend of the first header.
        first: String,
        /// Where that header is.
        first_line: usize,
        /// The backend of this one.
        second: String,
    },
}
