//! `bundle DIR`: a snapshot bundle written from the live cluster — `DIR/cluster.json` (Services,
//! EndpointSlices, Nodes, Pods and the kube-proxy ConfigMap, as one `v1` `List`) and
//! `DIR/nodes/NODE.iptables-save` (plus `NODE.ip6tables-save` when the node has IPv6 rules).

use std::fs;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use futures::StreamExt;

use super::diag::inputs::CLUSTER_FILE;
use super::{Context, Outcome};
use crate::cli::{BundleArgs, OutputFormat};
use crate::kube::KubeOptions;
use crate::kube::diag::{
    ClusterScope, NodeRules, diagnostics_client, fetch_cluster, fetch_node_rules,
};
use crate::output;

/// The folder of a bundle that holds the node dumps.
pub const NODES_DIR: &str = "nodes";
/// How many nodes are read at once.
const PARALLEL_NODES: usize = 4;

/// `NODE.iptables-save`.
pub fn ipv4_file(node: &str) -> String {
    format!("{node}.iptables-save")
}

/// `NODE.ip6tables-save`.
pub fn ipv6_file(node: &str) -> String {
    format!("{node}.ip6tables-save")
}

/// Runs `bundle`: reads the cluster state, writes `cluster.json`, then reads and writes each node's
/// rules, going on past nodes that fail. Fails (exit code 2) when any node failed, listing them; the
/// bundle then holds the other nodes.
pub fn run(ctx: &Context, args: &BundleArgs) -> anyhow::Result<Outcome> {
    if !matches!(ctx.global.output, OutputFormat::Text | OutputFormat::Wide) {
        return Err(output::unsupported_format(
            &ctx.command_line("bundle"),
            ctx.global.output,
        ));
    }
    check_target(&args.dir, args.force)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(write_bundle(ctx, args))
}

/// Refuses a non-empty directory unless `force`, and a path that is not a directory.
fn check_target(dir: &Path, force: bool) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        bail!(
            "{} exists and is not a directory; give bundle a new or empty directory",
            dir.display()
        );
    }
    let mut entries =
        fs::read_dir(dir).with_context(|| format!("cannot read directory {}", dir.display()))?;
    if entries.next().is_some() && !force {
        bail!(
            "{} is not empty; pass --force to write the bundle into it anyway (its {CLUSTER_FILE} and \
             {NODES_DIR}/ are replaced), or give a new directory",
            dir.display()
        );
    }
    Ok(())
}

/// Whether `name` can be a file name as it is (a Node name is a DNS subdomain, so this only rejects
/// a `--node` typed wrong).
fn safe_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

async fn write_bundle(ctx: &Context, args: &BundleArgs) -> anyhow::Result<Outcome> {
    let options = KubeOptions::from(&ctx.global);
    let client = diagnostics_client(&options)
        .await
        .context("cannot connect to the cluster")?;
    let fetched = fetch_cluster(&client, &ClusterScope::All)
        .await
        .context("cannot read the cluster state")?;
    let stderr = Progress::new();
    for warning in &fetched.warnings {
        stderr.warn(warning);
    }

    let dir = &args.dir;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let nodes_dir = dir.join(NODES_DIR);
    if args.force && nodes_dir.exists() {
        fs::remove_dir_all(&nodes_dir)
            .with_context(|| format!("cannot remove the old {}", nodes_dir.display()))?;
    }
    let cluster_path = dir.join(CLUSTER_FILE);
    let mut json = serde_json::to_string_pretty(&fetched.list_json())
        .context("cannot serialize the cluster state")?;
    json.push('\n');
    write_file(&cluster_path, &json)?;
    let state = &fetched.state;
    stderr.progress(&format!(
        "wrote {}: {} Services, {} EndpointSlices, {} Nodes, {} Pods{}",
        cluster_path.display(),
        state.services.len(),
        state.endpoint_slices.len(),
        state.nodes.len(),
        state.pods.len(),
        if state.kube_proxy_config.is_some() {
            ", kube-proxy's ConfigMap"
        } else {
            ""
        }
    ));

    let nodes: Vec<String> = if args.nodes.is_empty() {
        state.nodes.keys().cloned().collect()
    } else {
        for node in &args.nodes {
            if !state.nodes.contains_key(node) {
                stderr.warn(&format!(
                    "there is no Node {node:?} in the cluster; trying to read its rules anyway"
                ));
            }
        }
        let mut nodes = args.nodes.clone();
        nodes.dedup();
        nodes
    };
    fs::create_dir_all(&nodes_dir)
        .with_context(|| format!("cannot create {}", nodes_dir.display()))?;

    let total = nodes.len();
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut written = 0;
    let mut results = futures::stream::iter(nodes.iter().map(|node| {
        let client = client.clone();
        async move {
            let result = if safe_file_name(node) {
                fetch_node_rules(&client, node)
                    .await
                    .map_err(anyhow::Error::from)
            } else {
                Err(anyhow::anyhow!("{node:?} is not a node name"))
            };
            (node, result)
        }
    }))
    .buffered(PARALLEL_NODES);
    let mut done = 0;
    while let Some((node, result)) = results.next().await {
        done += 1;
        match result.and_then(|rules| write_rules(&nodes_dir, &rules).map(|files| (rules, files))) {
            Ok((rules, files)) => {
                written += 1;
                stderr.progress(&format!(
                    "[{done}/{total}] node {node}: {} (from {})",
                    files.join(", "),
                    rules.origin
                ));
            }
            Err(error) => {
                let reason = format!("{error:#}");
                stderr.progress(&format!("[{done}/{total}] node {node}: failed: {reason}"));
                failed.push((node.clone(), reason));
            }
        }
    }

    let summary = format!(
        "wrote the snapshot bundle {}: the cluster state and the rules of {written} of {total} nodes\n",
        dir.display()
    );
    output::print_stdout(&summary).context("cannot write to stdout")?;
    if failed.is_empty() {
        return Ok(Outcome::Clean);
    }
    let names: Vec<&str> = failed.iter().map(|(node, _)| node.as_str()).collect();
    let reasons: Vec<String> = failed
        .iter()
        .map(|(node, reason)| format!("  {node}: {reason}"))
        .collect();
    bail!(
        "could not read the rules of {} of {total} nodes ({}); the bundle holds the others:\n{}",
        failed.len(),
        names.join(", "),
        reasons.join("\n")
    )
}

/// Writes the node's dumps into `nodes_dir`; returns the file names written.
fn write_rules(nodes_dir: &Path, rules: &NodeRules) -> anyhow::Result<Vec<String>> {
    let mut files = vec![ipv4_file(&rules.node)];
    write_file(&nodes_dir.join(&files[0]), &rules.ipv4)?;
    if let Some(ipv6) = &rules.ipv6 {
        let name = ipv6_file(&rules.node);
        write_file(&nodes_dir.join(&name), ipv6)?;
        files.push(name);
    }
    Ok(files)
}

fn write_file(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// What `bundle` tells the user on stderr: warnings always; what was written and each node's outcome
/// only on a terminal (when piped, the summary on stdout and the final error say it).
struct Progress {
    terminal: bool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn line(&self, text: &str) {
        // A closed stderr is not worth failing the bundle for.
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }

    fn warn(&self, text: &str) {
        self.line(&format!("warning: {text}"));
    }

    fn progress(&self, text: &str) {
        if self.terminal {
            self.line(text);
        }
    }
}
