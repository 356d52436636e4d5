//! Where `trace` and `chains` read from: a snapshot bundle, a dump file, this machine's rules, or the
//! live cluster; and which Service and nodes they look at.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::cli::GlobalArgs;
use crate::core::model::bundle::{LoadScope, load_cluster_json, load_cluster_json_scoped};
use crate::core::model::{ClusterState, NamespacedName};
use crate::core::parse::{parse_dump, parse_dump_scoped};
use crate::core::path::actual::comment_service_port;
use crate::core::rules::Dump;

/// The file of a snapshot bundle that holds the cluster state.
pub const CLUSTER_FILE: &str = "cluster.json";
/// The directory of a snapshot bundle that holds the node dumps.
pub const NODES_DIR: &str = "nodes";

/// One node's rules, as read.
#[derive(Debug, Clone)]
pub struct NodeRules {
    /// The node's name.
    pub node: String,
    /// Where the rules came from, for humans (`examples/seed/nodes/node8.iptables-save`, …).
    pub origin: String,
    /// One dump per family read (IPv4 first).
    pub dumps: Vec<Dump>,
    /// The dump of the other iptables backend (legacy when the main one is nft, or the reverse), when
    /// it was read.
    pub other_backend: Option<Dump>,
}

/// Reads and parses one dump file; errors name the file and the line, and say how to make a good one.
pub fn read_dump(path: &Path) -> anyhow::Result<Dump> {
    read_dump_for(path, None)
}

/// Reads one dump file, whole, or with `service` only as much as a diagnostic of that Service needs
/// (see [`parse_dump_for`]).
pub fn read_dump_for(path: &Path, service: Option<&NamespacedName>) -> anyhow::Result<Dump> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read the rules dump {}", path.display()))?;
    parse_dump_for(&text, &path.display().to_string(), service)
}

/// Parses `text` (named `source` in errors) whole, or with `service` scoped to it: every chain but the
/// per-service ones in full, and of those the ones the Service's entry rules (their comment names one
/// of its ports) lead to, plus the rules settings inference reads ([`parse_dump_scoped`]).
pub fn parse_dump_for(
    text: &str,
    source: &str,
    service: Option<&NamespacedName>,
) -> anyhow::Result<Dump> {
    let Some(service) = service else {
        return parse_dump_text(text, source);
    };
    let name = service.to_string();
    let port_prefix = format!("{name}:");
    check_not_empty(text, source)?;
    parse_dump_scoped(text, |rule| {
        rule.comment()
            .and_then(comment_service_port)
            .is_some_and(|spn| spn == name || spn.starts_with(&port_prefix))
    })
    .map_err(|e| dump_error(source, e))
}

fn check_not_empty(text: &str, source: &str) -> anyhow::Result<()> {
    if text.trim().is_empty() {
        bail!(
            "{source} is empty: expected the output of `iptables-save` (or `iptables-save -c`) taken on the node"
        );
    }
    Ok(())
}

fn dump_error(source: &str, e: crate::core::parse::ParseError) -> anyhow::Error {
    anyhow::anyhow!(
        "{source}:{}: cannot read this iptables-save dump: {e}\n  fix: take the dump again with `iptables-save -c > FILE` on the node (a complete, unedited output)",
        e.line
    )
}

/// Parses `text` (named `source` in errors).
pub fn parse_dump_text(text: &str, source: &str) -> anyhow::Result<Dump> {
    check_not_empty(text, source)?;
    parse_dump(text).map_err(|e| dump_error(source, e))
}

/// The dump files of one node in a bundle's `nodes/` directory.
#[derive(Debug, Clone, Default)]
pub struct BundleNode {
    /// `NODE.iptables-save`.
    pub ipv4: Option<PathBuf>,
    /// `NODE.ip6tables-save`.
    pub ipv6: Option<PathBuf>,
    /// `NODE.iptables-legacy-save` or `NODE.iptables-nft-save`: the other backend's IPv4 dump.
    pub other_backend: Option<PathBuf>,
}

/// A snapshot bundle directory, read.
#[derive(Debug)]
pub struct Bundle {
    /// The directory.
    pub dir: PathBuf,
    /// The cluster state from `cluster.json`.
    pub cluster: ClusterState,
    /// The node dumps found, by node name.
    pub nodes: BTreeMap<String, BundleNode>,
}

/// Reads a snapshot bundle: `cluster.json` and the names of the dumps in `nodes/`.
pub fn read_bundle(dir: &Path) -> anyhow::Result<Bundle> {
    read_bundle_scoped(dir, None)
}

/// Reads a snapshot bundle, with only the objects of `cluster.json` that `scope` needs when given
/// (see [`load_cluster_json_scoped`]).
pub fn read_bundle_scoped(dir: &Path, scope: Option<&LoadScope>) -> anyhow::Result<Bundle> {
    if !dir.is_dir() {
        let problem = if dir.exists() {
            "not a directory"
        } else {
            "no such directory"
        };
        bail!(
            "{}: {problem}; --snapshot takes a snapshot bundle directory (one holding {CLUSTER_FILE} and {NODES_DIR}/NODE.iptables-save files; `kubectl svcproxy bundle DIR` writes one)",
            dir.display()
        );
    }
    let path = dir.join(CLUSTER_FILE);
    let text = fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: a snapshot bundle holds {CLUSTER_FILE}, the output of \
             `kubectl get services,endpointslices,nodes,pods -A -o json`",
            path.display()
        )
    })?;
    let source = path.display().to_string();
    let cluster = match scope {
        Some(scope) => load_cluster_json_scoped(&text, &source, scope),
        None => load_cluster_json(&text, &source),
    }
    .with_context(|| format!("cannot load the snapshot bundle {}", dir.display()))?;
    let mut nodes: BTreeMap<String, BundleNode> = BTreeMap::new();
    let nodes_dir = dir.join(NODES_DIR);
    if nodes_dir.is_dir() {
        let entries = fs::read_dir(&nodes_dir)
            .with_context(|| format!("cannot list {}", nodes_dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", nodes_dir.display()))?;
            let path = entry.path();
            let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            if let Some(node) = file.strip_suffix(".ip6tables-save") {
                nodes.entry(node.to_string()).or_default().ipv6 = Some(path.clone());
            } else if let Some(node) = file
                .strip_suffix(".iptables-legacy-save")
                .or_else(|| file.strip_suffix(".iptables-nft-save"))
            {
                nodes.entry(node.to_string()).or_default().other_backend = Some(path.clone());
            } else if let Some(node) = file.strip_suffix(".iptables-save") {
                nodes.entry(node.to_string()).or_default().ipv4 = Some(path.clone());
            }
        }
    }
    Ok(Bundle {
        dir: dir.to_path_buf(),
        cluster,
        nodes,
    })
}

/// Reads the dumps of `node` in `bundle`, or `None` when the bundle has none for it; with `service`,
/// scoped to that Service ([`read_dump_for`]).
pub fn bundle_node_rules(
    bundle: &Bundle,
    node: &str,
    service: Option<&NamespacedName>,
) -> anyhow::Result<Option<NodeRules>> {
    let Some(files) = bundle.nodes.get(node) else {
        return Ok(None);
    };
    let mut dumps = Vec::new();
    let mut origin = Vec::new();
    for path in [&files.ipv4, &files.ipv6].into_iter().flatten() {
        dumps.push(read_dump_for(path, service)?);
        origin.push(path.display().to_string());
    }
    if dumps.is_empty() {
        return Ok(None);
    }
    let other_backend = files
        .other_backend
        .as_deref()
        .map(|path| read_dump_for(path, service))
        .transpose()?;
    Ok(Some(NodeRules {
        node: node.to_string(),
        origin: origin.join(", "),
        dumps,
        other_backend,
    }))
}

/// Runs `iptables-save -c` (and `ip6tables-save -c` when it works) on this machine.
pub fn local_rules(node: &str) -> anyhow::Result<NodeRules> {
    let mut dumps = vec![run_save("iptables-save")?];
    if let Ok(v6) = run_save("ip6tables-save") {
        dumps.push(v6);
    }
    Ok(NodeRules {
        node: node.to_string(),
        origin: "iptables-save on this machine".into(),
        dumps,
        other_backend: None,
    })
}

fn run_save(program: &str) -> anyhow::Result<Dump> {
    let output = Command::new(program)
        .arg("-c")
        .output()
        .with_context(|| format!("cannot run {program}: is the iptables package installed?"))?;
    if !output.status.success() {
        bail!(
            "{program} failed ({}): {}\n  fix: --local needs root (or CAP_NET_ADMIN) on the node; otherwise use --rules FILE",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    parse_dump_text(&text, &format!("the output of {program}"))
}

/// This machine's host name, the default node name for `--local`.
pub fn local_node_name() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The node name for `--rules FILE` without `--node`: the file's name up to its first dot, when the
/// cluster has a Node of that name.
pub fn node_from_file_name(path: &Path, cluster: &ClusterState) -> Option<String> {
    let stem = path.file_name()?.to_str()?.split('.').next()?.to_string();
    cluster.nodes.contains_key(&stem).then_some(stem)
}

/// Resolves the `SERVICE` argument (`name` or `namespace/name`) with `-n`/`-A`: with `-A`, the one
/// Service of that name in any namespace of `cluster` (or named by the node rules in `known`).
pub fn service_id(
    arg: &str,
    global: &GlobalArgs,
    default_namespace: &str,
    cluster: &ClusterState,
) -> anyhow::Result<NamespacedName> {
    if let Some((namespace, name)) = arg.split_once('/') {
        if namespace.is_empty() || name.is_empty() || name.contains('/') {
            bail!("{arg:?} is not a Service name: use NAME or NAMESPACE/NAME");
        }
        return Ok(NamespacedName::new(namespace, name));
    }
    if global.all_namespaces {
        let found: Vec<&NamespacedName> = cluster
            .services
            .keys()
            .filter(|id| id.name == arg)
            .collect();
        return match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => bail!("no Service named {arg:?} in any namespace"),
            many => bail!(
                "{} Services are named {arg:?} ({}); name one as NAMESPACE/NAME or with -n",
                many.len(),
                many.iter()
                    .map(|id| id.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
    }
    let namespace = global.namespace.as_deref().unwrap_or(default_namespace);
    Ok(NamespacedName::new(namespace, arg))
}

/// What of the cluster a diagnostic of the Service `arg` (as [`service_id`] reads it) needs, plus the
/// pods `pods`.
pub fn load_scope(arg: &str, global: &GlobalArgs, pods: Vec<NamespacedName>) -> LoadScope {
    let (namespace, name) = match arg.split_once('/') {
        Some((namespace, name)) => (Some(namespace.to_string()), name),
        None if global.all_namespaces => (None, arg),
        None => (
            Some(global.namespace.as_deref().unwrap_or("default").to_string()),
            arg,
        ),
    };
    LoadScope {
        namespace,
        name: name.to_string(),
        pods,
    }
}

/// The nodes to check when none is named: those hosting an endpoint of `service`, in name order.
pub fn endpoint_nodes(cluster: &ClusterState, service: &NamespacedName) -> Vec<String> {
    let mut nodes: Vec<String> = cluster
        .slices_for(service)
        .flat_map(|s| s.endpoints.iter().filter_map(|e| e.node_name.clone()))
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_bundle_is_named_with_the_fix() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = format!(
            "{:#}",
            read_bundle(&dir.path().join("nope")).expect_err("no dir")
        );
        assert!(err.contains("no such directory"), "{err}");
        assert!(err.contains("kubectl svcproxy bundle DIR"), "{err}");
        let err = format!(
            "{:#}",
            read_bundle(dir.path()).expect_err("no cluster.json")
        );
        assert!(err.contains(CLUSTER_FILE), "{err}");
        assert!(err.contains("kubectl get"), "{err}");

        fs::write(
            dir.path().join(CLUSTER_FILE),
            r#"{"apiVersion": "v1", "kind": "List", "items": []}"#,
        )
        .expect("write");
        let bundle = read_bundle(dir.path()).expect("an empty bundle reads");
        assert!(bundle.cluster.services.is_empty());
        assert!(bundle.nodes.is_empty());
    }
}
