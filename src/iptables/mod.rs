//! Adapter: running `iptables`, `iptables-save` and `iptables-restore` (or their IPv6 twins).
//!
//! Bulk changes go through one `iptables-restore --noflush` call fed with rendered text; single-rule
//! operations (ensuring the jumps from the built-in chains and the canary chains) run `iptables` itself.
//! Every call can be prefixed (for example with `ip netns exec NAME`), which is how tests aim it at a
//! throwaway network namespace.

pub mod backend;
pub mod nfacct;
pub mod reader;

use std::io::Write;
use std::process::{Command, Stdio};

use thiserror::Error;

use crate::core::plan::JumpRule;
use crate::core::rules::format::rule_argv;
use crate::core::rules::names::KUBE_PROXY_CANARY;
use crate::core::rules::{IpFamily, Table};

pub use reader::RulesReader;

/// How long to wait for the xtables lock, in seconds (`-w`), and how often to poll it, in
/// microseconds (`-W`): kube-proxy's values.
const LOCK_WAIT: [&str; 4] = ["-w", "5", "-W", "100000"];

/// Which iptables backend to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Whatever `iptables` on the PATH is.
    #[default]
    Default,
    /// `iptables-nft`.
    Nft,
    /// `iptables-legacy`.
    Legacy,
}

/// A failed iptables operation.
#[derive(Debug, Error)]
pub enum IptablesError {
    /// The program could not be started.
    #[error("could not run {program}: {source}; is the iptables package installed?")]
    Spawn {
        /// The program.
        program: String,
        /// Why it could not start.
        #[source]
        source: std::io::Error,
    },
    /// The program ran and failed.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// When `iptables-restore` names a line of its input ("line 35: RULE_APPEND failed"), appends that
/// line of `payload` to the error, so the log shows which rule the kernel refused.
fn with_payload_context(error: IptablesError, payload: &str) -> IptablesError {
    let IptablesError::Failed {
        command,
        status,
        stderr,
    } = error
    else {
        return error;
    };
    let line = stderr
        .split("line ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<usize>().ok());
    let stderr = match line.and_then(|n| payload.lines().nth(n.checked_sub(1)?)) {
        Some(text) => format!("{stderr}; input line {}: {text}", line.unwrap_or_default()),
        None => stderr,
    };
    IptablesError::Failed {
        command,
        status,
        stderr,
    }
}

/// Runs the iptables tools of one family and backend.
#[derive(Debug, Clone)]
pub struct Iptables {
    family: IpFamily,
    backend: Backend,
    prefix: Vec<String>,
}

impl Iptables {
    /// Tools for `family` on this machine.
    pub fn new(family: IpFamily, backend: Backend) -> Iptables {
        Iptables {
            family,
            backend,
            prefix: Vec::new(),
        }
    }

    /// Runs every command through `prefix` (e.g. `["ip", "netns", "exec", "ns1"]`).
    pub fn with_prefix(mut self, prefix: Vec<String>) -> Iptables {
        self.prefix = prefix;
        self
    }

    /// The IP family these tools manage.
    pub fn family(&self) -> IpFamily {
        self.family
    }

    fn program(&self, suffix: &str) -> String {
        let base = match self.family {
            IpFamily::V4 => "iptables",
            IpFamily::V6 => "ip6tables",
        };
        let backend = match self.backend {
            Backend::Default => "",
            Backend::Nft => "-nft",
            Backend::Legacy => "-legacy",
        };
        format!("{base}{backend}{suffix}")
    }

    fn command(&self, program: &str, args: &[String]) -> (Command, String) {
        let mut argv: Vec<String> = self.prefix.clone();
        argv.push(program.to_string());
        argv.extend(args.iter().cloned());
        let display = argv.join(" ");
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        (cmd, display)
    }

    fn run(
        &self,
        program: &str,
        args: &[String],
        stdin: Option<&str>,
    ) -> Result<String, IptablesError> {
        let (mut cmd, display) = self.command(program, args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| IptablesError::Spawn {
            program: program.to_string(),
            source,
        })?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .map_err(|source| IptablesError::Spawn {
                    program: program.to_string(),
                    source,
                })?;
        }
        let output = child
            .wait_with_output()
            .map_err(|source| IptablesError::Spawn {
                program: program.to_string(),
                source,
            })?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(IptablesError::Failed {
                command: display,
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            })
        }
    }

    /// `iptables-save` of all tables (with `-c` when `counters`).
    pub fn save(&self, counters: bool) -> Result<String, IptablesError> {
        let args: Vec<String> = if counters {
            vec!["-c".into()]
        } else {
            Vec::new()
        };
        self.run(&self.program("-save"), &args, None)
    }

    /// `iptables-save -t TABLE`.
    pub fn save_table(&self, table: Table) -> Result<String, IptablesError> {
        self.run(
            &self.program("-save"),
            &["-t".into(), table.as_str().into()],
            None,
        )
    }

    /// `iptables-restore --noflush --counters` with the lock-wait flags, fed with `payload`.
    pub fn restore(&self, payload: &str) -> Result<(), IptablesError> {
        let mut args: Vec<String> = vec!["--noflush".into(), "--counters".into()];
        args.extend(LOCK_WAIT.iter().map(|s| (*s).to_string()));
        self.run(&self.program("-restore"), &args, Some(payload))
            .map(|_| ())
            .map_err(|e| with_payload_context(e, payload))
    }

    fn iptables(&self, table: Table, args: Vec<String>) -> Result<String, IptablesError> {
        let mut full: Vec<String> = LOCK_WAIT.iter().map(|s| (*s).to_string()).collect();
        full.push("-t".into());
        full.push(table.as_str().into());
        full.extend(args);
        self.run(&self.program(""), &full, None)
    }

    /// Creates `chain` in `table` unless it exists. Returns whether it was created.
    pub fn ensure_chain(&self, table: Table, chain: &str) -> Result<bool, IptablesError> {
        match self.iptables(table, vec!["-N".into(), chain.into()]) {
            Ok(_) => Ok(true),
            Err(IptablesError::Failed { stderr, .. }) if stderr.contains("exists") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Makes sure `rule` is in `chain`, inserting it at position 1 when missing. Returns whether it was
    /// inserted.
    pub fn ensure_rule_first(
        &self,
        table: Table,
        chain: &str,
        rule: &[String],
    ) -> Result<bool, IptablesError> {
        let mut check = vec!["-C".to_string(), chain.to_string()];
        check.extend(rule.iter().cloned());
        if self.iptables(table, check).is_ok() {
            return Ok(false);
        }
        let mut insert = vec!["-I".to_string(), chain.to_string(), "1".to_string()];
        insert.extend(rule.iter().cloned());
        self.iptables(table, insert).map(|_| true)
    }

    /// Ensures every jump from a built-in chain (creating its destination chain first), in order.
    pub fn ensure_jumps(&self, jumps: &[JumpRule]) -> Result<usize, IptablesError> {
        let mut inserted = 0;
        for jump in jumps {
            self.ensure_chain(jump.table, jump.to)?;
            if self.ensure_rule_first(jump.table, jump.from, &rule_argv(&jump.rule, self.family))? {
                inserted += 1;
            }
        }
        Ok(inserted)
    }

    /// Creates the `KUBE-PROXY-CANARY` chains in mangle, nat and filter.
    pub fn ensure_canaries(&self) -> Result<(), IptablesError> {
        for table in [Table::Mangle, Table::Nat, Table::Filter] {
            self.ensure_chain(table, KUBE_PROXY_CANARY)?;
        }
        Ok(())
    }

    /// Whether the canary chain exists in `table`.
    pub fn canary_exists(&self, table: Table) -> Result<bool, IptablesError> {
        match self.iptables(table, vec!["-S".into(), KUBE_PROXY_CANARY.into()]) {
            Ok(_) => Ok(true),
            Err(IptablesError::Failed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_errors_quote_the_refused_line() {
        let error = IptablesError::Failed {
            command: "iptables-restore".into(),
            status: "exit status: 1".into(),
            stderr: "iptables-restore v1.8.9 (nf_tables): \nline 2: RULE_APPEND failed (No such file or directory): rule in chain KUBE-FORWARD".into(),
        };
        let payload = "*filter\n-A KUBE-FORWARD -m nfacct --nfacct-name x -j DROP\nCOMMIT\n";
        let text = with_payload_context(error, payload).to_string();
        assert!(
            text.ends_with("input line 2: -A KUBE-FORWARD -m nfacct --nfacct-name x -j DROP"),
            "{text}"
        );
    }
}
