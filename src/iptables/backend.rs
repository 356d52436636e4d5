//! Choosing between iptables-legacy and iptables-nft the way the kube-proxy image's wrapper does: the
//! backend that kubelet's hint chains live in, else the one holding more rules, else nft.

use std::process::Command;

use super::Backend;

/// Chains kubelet creates in the backend it uses.
const HINT_CHAINS: [&str; 2] = ["KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"];

fn save(prefix: &[String], program: &str, args: &[&str]) -> Option<String> {
    let mut argv: Vec<String> = prefix.to_vec();
    argv.push(program.to_string());
    argv.extend(args.iter().map(|a| (*a).to_string()));
    let output = Command::new(argv.first()?).args(&argv[1..]).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn has_hint(text: &str) -> bool {
    text.lines()
        .any(|l| HINT_CHAINS.iter().any(|c| l.starts_with(&format!(":{c} "))))
}

fn rule_count(text: &str) -> usize {
    text.lines().filter(|l| l.starts_with("-A ")).count()
}

/// Picks the backend for this host (commands run through `prefix`). Without both backend-specific
/// tools installed, the default `iptables` is used.
pub fn detect(prefix: &[String]) -> Backend {
    let nft_mangle = save(prefix, "iptables-nft-save", &["-t", "mangle"]);
    let legacy_mangle = save(prefix, "iptables-legacy-save", &["-t", "mangle"]);
    let (Some(nft_mangle), Some(legacy_mangle)) = (nft_mangle, legacy_mangle) else {
        return Backend::Default;
    };
    if has_hint(&nft_mangle) {
        return Backend::Nft;
    }
    if has_hint(&legacy_mangle) {
        return Backend::Legacy;
    }
    let count = |program: &str| -> usize {
        ["filter", "nat"]
            .iter()
            .filter_map(|t| save(prefix, program, &["-t", t]))
            .map(|text| rule_count(&text))
            .sum()
    };
    if count("iptables-legacy-save") > count("iptables-nft-save") {
        Backend::Legacy
    } else {
        Backend::Nft
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_and_counts() {
        assert!(has_hint("*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n"));
        assert!(!has_hint("*mangle\n:KUBE-PROXY-CANARY - [0:0]\nCOMMIT\n"));
        assert_eq!(
            rule_count("*nat\n:X - [0:0]\n-A X -j RETURN\n-A X -j ACCEPT\nCOMMIT\n"),
            2
        );
    }
}
