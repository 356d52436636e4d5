//! `render`: the iptables-restore input the proxy would apply on one node, computed offline from a
//! snapshot bundle.

use std::fs;
use std::path::Path;

use anyhow::{Context as _, bail};

use super::node_context::node_context;
use super::{Context, Outcome};
use crate::cli::{OutputFormat, RenderArgs};
use crate::core::model::bundle::load_cluster_json;
use crate::core::model::{ClusterState, Node};
use crate::core::plan::plan;
use crate::core::render::render_full;
use crate::core::rules::IpFamily;
use crate::output;

/// The file of a snapshot bundle that holds the cluster state.
pub const CLUSTER_FILE: &str = "cluster.json";

/// Runs `render`: reads the bundle, builds the node's context from its Node object and the flags, and
/// prints the rules for one IP family on stdout.
pub fn run(ctx: &Context, args: &RenderArgs) -> anyhow::Result<Outcome> {
    if ctx.global.output != OutputFormat::Text {
        return Err(output::unsupported_format(
            &ctx.command_line("render"),
            ctx.global.output,
        ));
    }
    let (path, text) = read_cluster_file(&args.snapshot)?;
    let source = path.display().to_string();
    let state = load_cluster_json(&text, &source).context("cannot load the snapshot bundle")?;
    let node = find_node(&state, &args.node, &source)?;
    let node_ctx = node_context(node, &args.settings, !args.no_localhost_nodeports)
        .with_context(|| format!("cannot render the rules of node {:?}", node.name))?;
    let family = if args.ipv6 {
        IpFamily::V6
    } else {
        IpFamily::V4
    };
    if node_ctx.node_ip(family).is_none() {
        tracing::warn!(node = %node.name, %family, "the node has no {family} address; rules that need it are left out");
    }
    tracing::info!(node = %node.name, %family, services = state.services.len(), "rendering");
    let payload = render_full(&plan(&state, &node_ctx, family));
    output::print_stdout(&payload).context("cannot write the rules to stdout")?;
    Ok(Outcome::Clean)
}

/// Reads `DIR/cluster.json`, with errors that say what a bundle must contain.
fn read_cluster_file(dir: &Path) -> anyhow::Result<(std::path::PathBuf, String)> {
    if !dir.is_dir() {
        let problem = if dir.exists() {
            "not a directory"
        } else {
            "no such directory"
        };
        bail!(
            "{}: {problem}; --snapshot takes a snapshot bundle directory (one holding {CLUSTER_FILE})",
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
    Ok((path, text))
}

/// The Node named `name`, or an error listing the nodes the bundle has.
fn find_node<'a>(state: &'a ClusterState, name: &str, source: &str) -> anyhow::Result<&'a Node> {
    if let Some(node) = state.nodes.get(name) {
        return Ok(node);
    }
    if state.nodes.is_empty() {
        bail!(
            "{source} has no Node objects, so node {name:?} cannot be rendered: re-create it with \
             `kubectl get services,endpointslices,nodes,pods -A -o json`"
        );
    }
    let known: Vec<&str> = state.nodes.keys().map(String::as_str).collect();
    bail!(
        "{source} has no node {name:?}; pass one of its nodes with --node: {}",
        known.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(nodes: &[&str]) -> ClusterState {
        let mut state = ClusterState::default();
        for name in nodes {
            state.insert_node(Node {
                name: (*name).to_owned(),
                labels: Default::default(),
                pod_cidrs: Vec::new(),
                addresses: Vec::new(),
                taints: Vec::new(),
                being_deleted: false,
            });
        }
        state
    }

    #[test]
    fn an_unknown_node_lists_the_bundles_nodes() {
        let state = state_with(&["node2", "node1"]);
        assert_eq!(
            find_node(&state, "node1", "b/cluster.json").unwrap().name,
            "node1"
        );
        let err = find_node(&state, "node9", "b/cluster.json")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "b/cluster.json has no node \"node9\"; pass one of its nodes with --node: node1, node2"
        );
    }

    #[test]
    fn a_bundle_without_nodes_says_how_to_make_one() {
        let err = find_node(&state_with(&[]), "node1", "b/cluster.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no Node objects"), "{err}");
        assert!(
            err.contains("kubectl get services,endpointslices,nodes,pods -A -o json"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_bundle_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_cluster_file(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such directory"), "{err}");
        let err = format!("{:#}", read_cluster_file(dir.path()).unwrap_err());
        assert!(err.contains("cluster.json"), "{err}");
        assert!(err.contains("kubectl get"), "{err}");

        fs::write(dir.path().join(CLUSTER_FILE), "{}").unwrap();
        let (path, text) = read_cluster_file(dir.path()).unwrap();
        assert_eq!(path, dir.path().join(CLUSTER_FILE));
        assert_eq!(text, "{}");
    }
}
