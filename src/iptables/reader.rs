//! Read-only access to a node's rules: `iptables-save` and nothing else.
//!
//! `--audit` holds only [`RulesReader`]s. A reader wraps the tools privately and exposes no way to
//! run `iptables`, `iptables-restore` or any other writer, so code that only has readers cannot
//! change the node's rules.

use super::{Backend, Iptables, IptablesError};
use crate::core::rules::IpFamily;

/// Reads one family's rules of one backend with `iptables-save` (or `ip6tables-save`).
#[derive(Debug, Clone)]
pub struct RulesReader {
    tools: Iptables,
}

impl RulesReader {
    /// A reader for `family` in `backend` on this machine.
    pub fn new(family: IpFamily, backend: Backend) -> RulesReader {
        RulesReader {
            tools: Iptables::new(family, backend),
        }
    }

    /// Runs `iptables-save` through `prefix` (e.g. `["ip", "netns", "exec", "ns1"]`).
    pub fn with_prefix(self, prefix: Vec<String>) -> RulesReader {
        RulesReader {
            tools: self.tools.with_prefix(prefix),
        }
    }

    /// The IP family read.
    pub fn family(&self) -> IpFamily {
        self.tools.family()
    }

    /// `iptables-save -c`: every table, with counters.
    pub fn save(&self) -> Result<String, IptablesError> {
        self.tools.save(true)
    }

    /// Whether the tools work here: `iptables-save` (of the tables that exist, so no kernel module
    /// is loaded for a table asked for) succeeds.
    pub fn works(&self) -> Result<(), IptablesError> {
        self.tools.save(false).map(drop)
    }
}
