//! Network namespaces with real iptables, for tests that need the kernel.
//!
//! Every test that uses a namespace starts with
//!
//! ```ignore
//! if !netns::skip_unless_available("my_test") { return; }
//! ```
//!
//! When this machine cannot run such tests (not root, a tool missing, namespaces not permitted) the
//! test prints a loud `NETNS-SKIPPED: <test>: <reason>` line on stderr and returns. The same line is
//! appended to the file named by `SVCPROXY_NETNS_SKIP_LOG` when that variable is set; `.ci/run` sets it
//! and fails when the file is not empty, so CI never passes on skipped kernel tests.
//!
//! A [`NetNs`] is deleted when it is dropped, also while a test panics. Processes the tests start in a
//! namespace are ended by their PID, never by name.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use svcproxy::core::rules::IpFamily;

/// The environment variable naming the file that skipped tests append their reason to.
pub const SKIP_LOG_ENV: &str = "SVCPROXY_NETNS_SKIP_LOG";

/// The tools the harness needs, looked up on `PATH` and in the sbin directories.
const TOOLS: [&str; 6] = [
    "ip",
    "iptables-restore",
    "iptables-save",
    "ip6tables-restore",
    "ip6tables-save",
    "nfacct",
];

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace that exists for as long as this value does.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Whether this machine can run namespace tests: root, the tools present, and a namespace can
    /// really be created. Checked once per test process.
    pub fn available() -> Result<(), String> {
        static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
        RESULT.get_or_init(check_available).clone()
    }

    /// Creates a namespace named `PREFIX-PID-N` (unique within this process, and across processes by
    /// the PID), with its loopback interface up.
    pub fn create(prefix: &str) -> Result<NetNs, String> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        run(
            Command::new(tool("ip")?).args(["netns", "add", &name]),
            None,
        )?;
        let ns = NetNs { name };
        ns.exec("ip", &["link", "set", "lo", "up"], None)?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `cmd args…` inside the namespace (`ip netns exec`), feeding it `stdin`. Returns its
    /// stdout; fails with the command, its exit status and its stderr when it does not succeed.
    pub fn exec(&self, cmd: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        run(&mut self.command(cmd, args)?, stdin)
    }

    /// Runs `cmd args…` inside the namespace and returns what it did (exit status, stdout, stderr),
    /// whether it succeeded or not.
    pub fn output(&self, cmd: &str, args: &[&str]) -> Result<Output, String> {
        let mut command = self.command(cmd, args)?;
        command
            .stdin(Stdio::null())
            .output()
            .map_err(|err| format!("cannot run {}: {err}", describe(&command)))
    }

    /// Starts `cmd args…` inside the namespace in the background. The returned guard ends the process
    /// by its PID when dropped.
    pub fn spawn(&self, cmd: &str, args: &[&str]) -> Result<NsChild, String> {
        let mut command = self.command(cmd, args)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|err| format!("cannot start {}: {err}", describe(&command)))?;
        Ok(NsChild { child })
    }

    /// Loads `text` with `iptables-restore` (`ip6tables-restore` for IPv6). With `noflush`, tables and
    /// chains the text does not mention are left alone.
    pub fn iptables_restore(
        &self,
        family: IpFamily,
        text: &str,
        noflush: bool,
    ) -> Result<(), String> {
        let mut args = vec!["-w", "5"];
        if noflush {
            args.push("--noflush");
        }
        self.exec(restore_tool(family), &args, Some(text)).map(drop)
    }

    /// The namespace's rules as `iptables-save` (`ip6tables-save`) prints them.
    pub fn iptables_save(&self, family: IpFamily) -> Result<String, String> {
        let save = match family {
            IpFamily::V4 => "iptables-save",
            IpFamily::V6 => "ip6tables-save",
        };
        self.exec(save, &[], None)
    }

    /// Creates nfacct accounting objects; kube-proxy's rules reference `ct_state_invalid_dropped_pkts`
    /// and `localhost_nps_accepted_pkts`, and `iptables-restore` rejects rules naming missing objects.
    pub fn create_nfacct(&self, names: &[&str]) -> Result<(), String> {
        for name in names {
            self.exec("nfacct", &["add", name], None)?;
        }
        Ok(())
    }

    /// The PIDs of the processes running in the namespace.
    pub fn pids(&self) -> Result<Vec<u32>, String> {
        let out = run(
            Command::new(tool("ip")?).args(["netns", "pids", &self.name]),
            None,
        )?;
        out.split_whitespace()
            .map(|pid| {
                pid.parse()
                    .map_err(|_| format!("`ip netns pids` printed {pid:?}"))
            })
            .collect()
    }

    /// Whether a namespace called `name` exists (`ip netns list` shows it).
    pub fn exists(name: &str) -> Result<bool, String> {
        let list = run(Command::new(tool("ip")?).args(["netns", "list"]), None)?;
        Ok(list
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .any(|listed| listed == name))
    }

    fn command(&self, cmd: &str, args: &[&str]) -> Result<Command, String> {
        let mut command = Command::new(tool("ip")?);
        command
            .args(["netns", "exec", &self.name])
            .arg(tool(cmd)?)
            .args(args);
        Ok(command)
    }

    fn delete(&self) -> Result<(), String> {
        // `ip netns delete` only removes the name; end what still runs inside, by PID, so nothing
        // outlives the test.
        for pid in self.pids()? {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        run(
            Command::new(tool("ip")?).args(["netns", "delete", &self.name]),
            None,
        )
        .map(drop)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(err) = self.delete() {
            eprintln!(
                "warning: could not delete network namespace {}: {err}",
                self.name
            );
        }
    }
}

/// A process started with [`NetNs::spawn`]; killed by its PID and reaped when dropped.
#[derive(Debug)]
pub struct NsChild {
    child: Child,
}

impl NsChild {
    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NsChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when namespace tests can run. Otherwise reports the skip loudly on stderr and in the skip log
/// (see the module documentation) and returns false: the caller returns at once.
pub fn skip_unless_available(test: &str) -> bool {
    match NetNs::available() {
        Ok(()) => true,
        Err(reason) => {
            record_skip(test, &reason);
            false
        }
    }
}

/// Like [`skip_unless_available`], for a test that also runs `tools` (looked up like the harness's
/// own); a missing tool is a recorded skip too.
pub fn skip_unless_available_with(test: &str, tools: &[&str]) -> bool {
    if !skip_unless_available(test) {
        return false;
    }
    let missing: Vec<&str> = tools.iter().copied().filter(|t| tool(t).is_err()).collect();
    if missing.is_empty() {
        return true;
    }
    record_skip(
        test,
        &format!(
            "missing {} (on Debian, scripts/test installs it)",
            missing.join(", ")
        ),
    );
    false
}

fn record_skip(test: &str, reason: &str) {
    let line = format!("NETNS-SKIPPED: {test}: {reason}");
    let bar = "!".repeat(line.len().min(100));
    // Straight to the stderr handle: the test harness captures `eprintln!` of passing tests, and a
    // skip must be seen.
    let _ = writeln!(std::io::stderr(), "\n{bar}\n{line}\n{bar}\n");
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV).filter(|p| !p.is_empty()) {
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()));
        if let Err(err) = written {
            panic!(
                "cannot record the skip in {} ({SKIP_LOG_ENV}): {err}",
                Path::new(&path).display()
            );
        }
    }
}

fn check_available() -> Result<(), String> {
    if effective_uid()? != 0 {
        return Err("not running as root (network namespaces and iptables need root)".to_owned());
    }
    let missing: Vec<&str> = TOOLS.iter().copied().filter(|t| tool(t).is_err()).collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing {} (on Debian: apt-get install iproute2 iptables nfacct)",
            missing.join(", ")
        ));
    }
    let probe = NetNs::create("svcproxy-probe")
        .map_err(|err| format!("cannot create a network namespace: {err}"))?;
    probe
        .iptables_save(IpFamily::V4)
        .map_err(|err| format!("cannot run iptables in a network namespace: {err}"))?;
    Ok(())
}

fn effective_uid() -> Result<u32, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|err| format!("cannot read /proc: {err}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| "cannot find the effective UID in /proc/self/status".to_owned())
}

fn restore_tool(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "iptables-restore",
        IpFamily::V6 => "ip6tables-restore",
    }
}

/// The full path of `name`: from `PATH`, else from the sbin directories that a non-login root shell
/// may lack on `PATH`.
fn tool(name: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| format!("{name} not found"))
}

/// Runs `command` with `stdin`, returning stdout on success and a full description otherwise.
fn run(command: &mut Command, stdin: Option<&str>) -> Result<String, String> {
    command.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|err| format!("cannot start {}: {err}", describe(command)))?;
    let writer = match (stdin, child.stdin.take()) {
        (Some(text), Some(mut pipe)) => {
            let text = text.to_owned();
            // A separate thread, so a child that writes a lot before reading cannot deadlock us; a
            // child that exits early closes the pipe, and its exit status tells the real story.
            Some(std::thread::spawn(move || {
                let _ = pipe.write_all(text.as_bytes());
            }))
        }
        _ => None,
    };
    let output: Output = child
        .wait_with_output()
        .map_err(|err| format!("{}: {err}", describe(command)))?;
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{} failed ({}): {}",
            describe(command),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(
        command
            .get_args()
            .map(OsStr::to_string_lossy)
            .map(|a| a.into_owned()),
    );
    format!("`{}`", words.join(" "))
}
