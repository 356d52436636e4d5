//! `render`: the iptables-restore input the proxy would apply on one node, computed offline from a
//! snapshot bundle.

use anyhow::{Context as _, bail};

use super::diag::inputs::{CLUSTER_FILE, read_bundle};
use super::node_context::node_context;
use super::{Context, Outcome};
use crate::cli::{OutputFormat, RenderArgs};
use crate::core::model::{ClusterState, Node};
use crate::core::plan::plan;
use crate::core::render::render_full;
use crate::core::rules::IpFamily;
use crate::output;

/// Runs `render`: reads the bundle, builds the node's context from its Node object and the flags, and
/// prints the rules for one IP family on stdout.
pub fn run(ctx: &Context, args: &RenderArgs) -> anyhow::Result<Outcome> {
    if ctx.global.output != OutputFormat::Text {
        return Err(output::unsupported_format(
            &ctx.command_line("render"),
            ctx.global.output,
        ));
    }
    let state = read_bundle(&args.snapshot)?.cluster;
    let source = args.snapshot.join(CLUSTER_FILE).display().to_string();
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
}
