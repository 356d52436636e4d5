//! Backend detection against both real backends in a throwaway namespace.

mod support;

use support::netns::{NetNs, skip_unless_available};
use svcproxy::iptables::Backend;
use svcproxy::iptables::backend::detect;

#[test]
fn follows_kubelets_hint_else_the_backend_with_more_rules() {
    if !skip_unless_available("follows_kubelets_hint_else_the_backend_with_more_rules") {
        return;
    }
    if which("iptables-legacy").is_none() {
        panic!("iptables-legacy is part of Debian's iptables package; it must be installed");
    }
    let ns = NetNs::create("svcp-backend").expect("namespace");
    let prefix = vec![
        "ip".to_string(),
        "netns".into(),
        "exec".into(),
        ns.name().into(),
    ];
    assert_eq!(
        detect(&prefix),
        Backend::Nft,
        "an empty node defaults to nft"
    );

    ns.exec("iptables-legacy", &["-t", "nat", "-N", "SOMEONE"], None)
        .expect("legacy chain");
    ns.exec(
        "iptables-legacy",
        &["-t", "nat", "-A", "SOMEONE", "-j", "RETURN"],
        None,
    )
    .expect("legacy rule");
    assert_eq!(detect(&prefix), Backend::Legacy, "more rules in legacy");

    ns.exec(
        "iptables-nft",
        &["-t", "mangle", "-N", "KUBE-IPTABLES-HINT"],
        None,
    )
    .expect("hint chain");
    assert_eq!(detect(&prefix), Backend::Nft, "kubelet's hint wins");
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| std::path::Path::new(dir).join(program))
        .find(|p| p.exists())
}
