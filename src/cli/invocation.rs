//! How the program names itself in help, usage lines and messages.
//!
//! kubectl runs a plugin by executing the file `kubectl-NAME` it found on `PATH`, with that file's path
//! as `argv[0]`; it sets no variable that would tell a plugin apart from a direct run. The krew
//! convention is therefore to decide from `argv[0]` alone: a file name starting with `kubectl-` means
//! plugin mode, and help says `kubectl NAME …`.
//!
//! Our binary is shipped as `kubectl-svcproxy`, so run under that name (by kubectl, through krew's
//! symlink, or directly) it always presents itself as `kubectl svcproxy`: every way of running it by
//! that name also works as `kubectl svcproxy` once the file is on `PATH`. Installed or copied under any
//! other name (say `svcproxy`), it presents itself by that name. The plugin name follows kubectl's own
//! mapping: dashes after the prefix separate nested commands (`kubectl-a-b` is `kubectl a b`) and an
//! underscore stands for a dash (`kubectl-svc_proxy` is `kubectl svc-proxy`).

use std::ffi::OsStr;
use std::path::Path;

/// The file name the binary is built and shipped with.
pub const DEFAULT_BIN_NAME: &str = "kubectl-svcproxy";

const PLUGIN_PREFIX: &str = "kubectl-";

/// The name to show for the program run as `argv0` (the first item of `std::env::args_os`):
/// `kubectl svcproxy` in plugin mode, else the file name itself.
pub fn display_name(argv0: Option<&OsStr>) -> String {
    let file_name = argv0
        .and_then(|arg| Path::new(arg).file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| DEFAULT_BIN_NAME.to_owned());
    let file_name = strip_exe_suffix(&file_name);
    match file_name.strip_prefix(PLUGIN_PREFIX) {
        Some(plugin) if !plugin.is_empty() => {
            let words: Vec<String> = plugin
                .split('-')
                .map(|word| word.replace('_', "-"))
                .collect();
            format!("kubectl {}", words.join(" "))
        }
        _ => file_name.to_owned(),
    }
}

fn strip_exe_suffix(name: &str) -> &str {
    let cut = name.len().saturating_sub(4);
    match (name.get(..cut), name.get(cut..)) {
        (Some(stem), Some(ext)) if !stem.is_empty() && ext.eq_ignore_ascii_case(".exe") => stem,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(argv0: &str) -> String {
        display_name(Some(OsStr::new(argv0)))
    }

    #[test]
    fn plugin_file_names_become_kubectl_commands() {
        assert_eq!(name("kubectl-svcproxy"), "kubectl svcproxy");
        assert_eq!(
            name("/home/me/.krew/bin/kubectl-svcproxy"),
            "kubectl svcproxy"
        );
        assert_eq!(name("./target/debug/kubectl-svcproxy"), "kubectl svcproxy");
        assert_eq!(name("kubectl-svc_proxy"), "kubectl svc-proxy");
        assert_eq!(name("kubectl-net-svcproxy"), "kubectl net svcproxy");
        assert_eq!(name(r"kubectl-svcproxy.exe"), "kubectl svcproxy");
    }

    #[test]
    fn other_file_names_are_shown_as_they_are() {
        assert_eq!(name("/usr/local/bin/svcproxy"), "svcproxy");
        assert_eq!(name("svcproxy-test"), "svcproxy-test");
        assert_eq!(name("kubectl"), "kubectl");
        assert_eq!(name("kubectl-"), "kubectl-");
        assert_eq!(name(".exe"), ".exe");
    }

    #[test]
    fn a_missing_argv0_means_the_shipped_name() {
        assert_eq!(display_name(None), "kubectl svcproxy");
        assert_eq!(display_name(Some(OsStr::new(""))), "kubectl svcproxy");
    }
}
