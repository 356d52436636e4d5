//! A by-name index over a dump's chains, built once so a jump costs one hash lookup.

use std::collections::HashMap;

use crate::core::rules::names::KUBE_MARK_MASQ;
use crate::core::rules::{Dump, DumpChain, MarkOp, Table, Target};

/// kube-proxy's default masquerade mark (bit 14), used when the dump does not reveal another one.
pub const DEFAULT_MASQUERADE_MARK: u32 = 0x4000;

/// Every chain of a dump, by table and name, plus the masquerade bits the dump uses.
#[derive(Debug, Clone)]
pub struct ChainIndex<'d> {
    chains: HashMap<(Table, &'d str), &'d DumpChain>,
    masquerade_mark: u32,
}

impl<'d> ChainIndex<'d> {
    /// Index `dump`. If a chain is declared twice in a table, the first declaration wins.
    pub fn new(dump: &'d Dump) -> ChainIndex<'d> {
        let mut chains = HashMap::with_capacity(dump.tables.iter().map(|t| t.chains.len()).sum());
        for table in &dump.tables {
            for chain in &table.chains {
                chains
                    .entry((table.table, chain.name.as_str()))
                    .or_insert(chain);
            }
        }
        let mut index = ChainIndex {
            chains,
            masquerade_mark: DEFAULT_MASQUERADE_MARK,
        };
        index.masquerade_mark = index
            .detect_masquerade_mark()
            .unwrap_or(DEFAULT_MASQUERADE_MARK);
        index
    }

    /// The chain `name` of `table`, if the dump declares it.
    pub fn chain(&self, table: Table, name: &str) -> Option<&'d DumpChain> {
        self.chains.get(&(table, name)).copied()
    }

    /// The bits that mean "masquerade me": the bits nat `KUBE-MARK-MASQ` sets, or `0x4000`.
    pub fn masquerade_mark(&self) -> u32 {
        self.masquerade_mark
    }

    /// Whether a `MARK` target leaves the masquerade bits set, given whether they were set before.
    pub fn mark_sets_masquerade(&self, op: MarkOp, masquerade_before: bool) -> bool {
        let bits = self.masquerade_mark;
        let (value, mask) = op.as_set_xmark();
        let before = if masquerade_before { bits } else { 0 };
        let after = (before & !mask) ^ value;
        after & bits == bits
    }

    /// The bits set by the first `MARK` rule of nat `KUBE-MARK-MASQ` (kube-proxy's `--or-mark`, printed by
    /// the kernel as `--set-xmark M/M`).
    fn detect_masquerade_mark(&self) -> Option<u32> {
        let chain = self.chain(Table::Nat, KUBE_MARK_MASQ)?;
        chain.rules.iter().find_map(|r| match r.rule.target {
            Some(Target::Mark(op)) => {
                let (value, mask) = op.as_set_xmark();
                let bits = value & mask;
                (bits != 0).then_some(bits)
            }
            _ => None,
        })
    }
}
