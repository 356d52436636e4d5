//! The audit's check only reads: every command it runs goes through a logging prefix, and the log
//! holds `iptables-save` calls and nothing else, while the drift it finds is reported.

use std::os::unix::fs::PermissionsExt;

use svcproxy::core::drift::FindingKind;
use svcproxy::core::model::ClusterState;
use svcproxy::core::rules::IpFamily;
use svcproxy::iptables::{Backend, RulesReader};
use svcproxy::proxy::audit::{Expectations, FamilyReaders, check_rules};

/// A node whose nat table lost its canary and whose jumps are gone.
const DUMP: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n";

#[test]
fn a_check_runs_iptables_save_and_nothing_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("calls.log");
    let script = dir.path().join("tool");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$*\" >> {log}\ncase \"$1\" in *-save) printf '%s' '{DUMP}';; esac\n",
            log = log.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let prefix = vec![script.display().to_string()];
    let readers: Vec<FamilyReaders> = [IpFamily::V4, IpFamily::V6]
        .into_iter()
        .map(|family| FamilyReaders {
            rules: RulesReader::new(family, Backend::Nft).with_prefix(prefix.clone()),
            other_backend: Some(
                RulesReader::new(family, Backend::Legacy).with_prefix(prefix.clone()),
            ),
        })
        .collect();
    let expect = Expectations {
        node_name: "node-1".into(),
        ..Default::default()
    };
    let found = check_rules(&readers, &ClusterState::default(), &expect).expect("check");
    assert_eq!(found.len(), 2);
    let kinds: Vec<FindingKind> = found[0].findings.iter().map(|f| f.kind).collect();
    assert!(kinds.contains(&FindingKind::RulesFlushed), "{kinds:?}");
    assert!(kinds.contains(&FindingKind::MissingJump), "{kinds:?}");

    let calls = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(
        lines,
        [
            "iptables-nft-save -c",
            "iptables-legacy-save -c",
            "ip6tables-nft-save -c",
            "ip6tables-legacy-save -c"
        ],
        "only iptables-save runs"
    );
}
