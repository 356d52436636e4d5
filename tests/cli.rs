//! The built binary, run the way users run it.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-svcproxy");
const SUBCOMMANDS: [&str; 5] = ["proxy", "trace", "chains", "tui", "render"];

/// The binary with a clean colour environment (colour decisions are tested explicitly).
fn bin() -> Command {
    cmd_at(Path::new(BIN))
}

fn cmd_at(path: &Path) -> Command {
    let mut cmd = Command::new(path);
    cmd.env_remove("NO_COLOR")
        .env_remove("FORCE_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("RUST_LOG");
    cmd
}

/// The binary reachable as `dir/name`, through a symlink or as a copy.
fn install_as(dir: &Path, name: &str, copy: bool) -> PathBuf {
    let path = dir.join(name);
    if copy {
        fs::copy(BIN, &path).expect("copy the binary");
        wait_until_executable(&path);
    } else {
        symlink(BIN, &path).expect("symlink the binary");
    }
    path
}

/// While `fs::copy` holds the new file open for writing, a process forked meanwhile by another test
/// thread inherits that descriptor until it executes, and running the copy fails with "text file
/// busy" (ETXTBSY). That window is short: retry until the copy runs.
fn wait_until_executable(path: &Path) {
    const ETXTBSY: i32 = 26;
    for _ in 0..200 {
        match std::process::Command::new(path).arg("--version").output() {
            Err(err) if err.raw_os_error() == Some(ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(err) => panic!("cannot run {}: {err}", path.display()),
            Ok(_) => return,
        }
    }
    panic!("{} stayed busy", path.display());
}

#[test]
fn help_lists_every_subcommand() {
    let out = bin()
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let help = String::from_utf8(out).expect("utf-8 help");
    for sub in SUBCOMMANDS {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{sub} "))),
            "no {sub} in:\n{help}"
        );
    }
}

#[test]
fn every_subcommand_has_help() {
    for sub in SUBCOMMANDS {
        bin()
            .args([sub, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains(format!(
                "Usage: kubectl svcproxy {sub}"
            )));
    }
}

#[test]
fn run_under_its_plugin_name_it_presents_itself_as_a_kubectl_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = install_as(dir.path(), "kubectl-svcproxy", false);
    cmd_at(&plugin)
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Usage: kubectl svcproxy [OPTIONS] <COMMAND>",
        ));
    cmd_at(&plugin)
        .args(["render", "--snapshot", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("Usage: kubectl svcproxy render"));
}

#[test]
fn krew_underscore_names_map_to_dashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = install_as(dir.path(), "kubectl-svc_proxy", false);
    cmd_at(&plugin)
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Usage: kubectl svc-proxy "));
}

#[test]
fn under_another_name_it_presents_itself_by_that_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, copy) in [("svcproxy", true), ("svcproxy-link", false)] {
        let other = install_as(dir.path(), name, copy);
        cmd_at(&other)
            .arg("--help")
            .assert()
            .success()
            .stdout(predicate::str::contains(format!(
                "Usage: {name} [OPTIONS] <COMMAND>"
            )))
            .stdout(predicate::str::contains("kubectl svcproxy").not());
    }
}

#[test]
fn commands_not_in_this_version_say_so_and_exit_2() {
    bin()
        .arg("tui")
        .assert()
        .code(2)
        .stdout("")
        .stderr("error: `kubectl svcproxy tui` is not available in this version yet\n");
}

#[test]
fn proxy_without_a_cluster_says_how_to_point_it_at_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    bin()
        .args(["proxy", "--hostname-override=n1"])
        .env("KUBECONFIG", dir.path().join("missing"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("--kubeconfig"));
    bin()
        .args(["proxy", "--audit", "--hostname-override=n1"])
        .env("KUBECONFIG", dir.path().join("missing"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("--kubeconfig"));
}

#[test]
fn bad_command_lines_exit_2_with_a_pointer_to_help() {
    bin()
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(
            "Usage: kubectl svcproxy [OPTIONS] <COMMAND>",
        ));
    let cases: [&[&str]; 7] = [
        &["--bogus"],
        &["trace"],
        &["render", "--node", "n1"],
        &["render", "--snapshot", "d"],
        &["-o", "xml", "tui"],
        &["--color", "sometimes", "tui"],
        &[
            "render",
            "--snapshot",
            "d",
            "--node",
            "n",
            "--detect-local-mode",
            "Everything",
        ],
    ];
    for args in cases {
        bin()
            .args(args)
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::starts_with("error: ").and(predicate::str::contains("--help")));
    }
}

#[test]
fn version_exits_0() {
    bin()
        .arg("--version")
        .assert()
        .success()
        .stdout(format!("kubectl-svcproxy {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn render_names_a_missing_bundle_and_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-bundle");
    bin()
        .args(["render", "--node", "node1", "--snapshot"])
        .arg(&missing)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "error: {}: no such directory",
            missing.display()
        )))
        .stderr(predicate::str::contains(
            "--snapshot takes a snapshot bundle directory",
        ));
    bin()
        .args(["render", "--node", "node1", "--snapshot"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cluster.json"))
        .stderr(predicate::str::contains(
            "kubectl get services,endpointslices,nodes,pods -A -o json",
        ));
}

#[test]
fn render_prints_text_only() {
    bin()
        .args(["render", "--snapshot", ".", "--node", "n", "-o", "json"])
        .assert()
        .code(2)
        .stderr("error: `kubectl svcproxy render` does not support -o json yet; leave out -o to get its default output\n");
}

#[test]
fn render_rejects_a_malformed_cidr() {
    bin()
        .args([
            "render",
            "--snapshot",
            ".",
            "--node",
            "n",
            "--cluster-cidr",
            "10.0.0.0/33",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--cluster-cidr"));
}

/// The colour of the `error:` label shows the decision for stderr end to end: the flag beats
/// NO_COLOR, and NO_COLOR beats terminal detection (FORCE_COLOR makes the detection say yes).
#[test]
fn colour_follows_flag_then_no_color_then_the_terminal() {
    let red_label = "\u{1b}[";
    let run = |color: &str, env: &[(&str, &str)]| -> String {
        let mut cmd = bin();
        cmd.args(["--color", color, "tui"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.assert().code(2).get_output().stderr.clone();
        String::from_utf8(out).expect("utf-8 stderr")
    };
    assert!(run("always", &[("NO_COLOR", "1")]).contains(red_label));
    assert!(!run("never", &[("FORCE_COLOR", "1")]).contains(red_label));
    assert!(run("auto", &[("FORCE_COLOR", "1")]).contains(red_label));
    assert!(!run("auto", &[("FORCE_COLOR", "1"), ("NO_COLOR", "1")]).contains(red_label));
    assert!(
        !run("auto", &[]).contains(red_label),
        "stderr is a pipe here, not a terminal"
    );
}

#[test]
fn verbose_logging_goes_to_stderr() {
    bin()
        .args(["-vv", "--color", "never", "tui"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("running").and(predicate::str::contains("tui")));
}
