//! What `trace` and `chains` share: reading the inputs, the expected settings, building the report,
//! simulating packets and printing.

pub mod chains_doc;
pub mod inputs;
pub mod report;
pub mod settings;
pub mod simulate;
pub mod text;

use anyhow::bail;

use crate::cli::SourceArgs;
use crate::core::model::{ClusterState, NamespacedName};

use super::Context;
use inputs::{
    NodeRules, bundle_node_rules, endpoint_nodes, load_scope, local_node_name, local_rules,
    read_bundle_scoped, read_dump_for, service_id,
};

/// Everything a diagnostics command reads before it can build its report.
#[derive(Debug)]
pub struct Gathered {
    /// The cluster state.
    pub cluster: ClusterState,
    /// The Service asked about.
    pub service: NamespacedName,
    /// The rules of each node to check.
    pub nodes: Vec<NodeRules>,
    /// What a reader should know about the inputs.
    pub notes: Vec<String>,
}

/// How much of a snapshot bundle's cluster state a command needs.
#[derive(Debug, Clone)]
pub enum ClusterNeeds {
    /// Every object.
    Everything,
    /// What the Service, its EndpointSlices, the Nodes, the Pods of its namespace, these Pods and the
    /// kube-proxy ConfigMap say (see [`crate::core::model::bundle::load_cluster_json_scoped`]).
    Service {
        /// Pods needed from other namespaces.
        pods: Vec<NamespacedName>,
        /// Parse the node dumps whole (a simulated packet may go anywhere), not scoped to the
        /// Service ([`inputs::parse_dump_for`]).
        whole_dumps: bool,
    },
}

/// Reads the cluster state and the node rules the flags name, for the Service `service_arg`.
pub fn gather(ctx: &Context, service_arg: &str, source: &SourceArgs) -> anyhow::Result<Gathered> {
    gather_with(ctx, service_arg, source, ClusterNeeds::Everything)
}

/// [`gather`], reading from a snapshot bundle only the cluster state `needs` names.
pub fn gather_with(
    ctx: &Context,
    service_arg: &str,
    source: &SourceArgs,
    needs: ClusterNeeds,
) -> anyhow::Result<Gathered> {
    match &source.snapshot {
        Some(dir) => gather_snapshot(ctx, dir, service_arg, source, needs),
        None => live::gather(ctx, service_arg, source),
    }
}

fn gather_snapshot(
    ctx: &Context,
    dir: &std::path::Path,
    service_arg: &str,
    source: &SourceArgs,
    needs: ClusterNeeds,
) -> anyhow::Result<Gathered> {
    let (scope, scoped_dumps) = match needs {
        ClusterNeeds::Everything => (None, false),
        ClusterNeeds::Service { pods, whole_dumps } => (
            Some(load_scope(service_arg, &ctx.global, pods)),
            !whole_dumps,
        ),
    };
    let bundle = read_bundle_scoped(dir, scope.as_ref())?;
    let service = service_id(service_arg, &ctx.global, "default", &bundle.cluster)?;
    let dump_scope = scoped_dumps.then_some(&service);
    let mut notes = Vec::new();
    let nodes = if let Some(rules) = explicit_rules(source, &bundle.cluster, dump_scope)? {
        vec![rules]
    } else if let Some(node) = &source.node {
        match bundle_node_rules(&bundle, node, dump_scope)? {
            Some(rules) => vec![rules],
            None => bail!(
                "the snapshot bundle {} has no rules for node {node:?} (no {}/{node}.iptables-save); it has rules for: {}",
                dir.display(),
                inputs::NODES_DIR,
                list_or_none(bundle.nodes.keys().map(String::as_str))
            ),
        }
    } else {
        let hosting = endpoint_nodes(&bundle.cluster, &service);
        let mut chosen: Vec<&str> = hosting
            .iter()
            .map(String::as_str)
            .filter(|n| bundle.nodes.contains_key(*n))
            .collect();
        let without: Vec<&str> = hosting
            .iter()
            .map(String::as_str)
            .filter(|n| !bundle.nodes.contains_key(*n))
            .collect();
        if !without.is_empty() {
            notes.push(format!(
                "the bundle has no rules for {} (hosting endpoints): not checked",
                without.join(", ")
            ));
        }
        if chosen.is_empty() {
            chosen = bundle.nodes.keys().map(String::as_str).collect();
        }
        let mut nodes = Vec::new();
        for node in chosen {
            if let Some(rules) = bundle_node_rules(&bundle, node, dump_scope)? {
                nodes.push(rules);
            }
        }
        nodes
    };
    Ok(Gathered {
        cluster: bundle.cluster,
        service,
        nodes,
        notes,
    })
}

/// The rules named by `--rules FILE` or `--local`, for the node `--node` names (or, for a file, the
/// node its name starts with; for `--local`, this machine's host name).
fn explicit_rules(
    source: &SourceArgs,
    cluster: &ClusterState,
    service: Option<&NamespacedName>,
) -> anyhow::Result<Option<NodeRules>> {
    if let Some(path) = &source.rules {
        let node = match &source.node {
            Some(node) => node.clone(),
            None => inputs::node_from_file_name(path, cluster).ok_or_else(|| {
                anyhow::anyhow!(
                    "which node is {} from? Name it with --node NAME (the cluster has nodes: {})",
                    path.display(),
                    list_or_none(cluster.nodes.keys().map(String::as_str))
                )
            })?,
        };
        let dump = read_dump_for(path, service)?;
        return Ok(Some(NodeRules {
            node,
            origin: path.display().to_string(),
            dumps: vec![dump],
            other_backend: None,
        }));
    }
    if source.local {
        let node = match &source.node {
            Some(node) => node.clone(),
            None => local_node_name().ok_or_else(|| {
                anyhow::anyhow!("cannot tell this machine's node name; give it with --node NAME")
            })?,
        };
        return Ok(Some(local_rules(&node)?));
    }
    Ok(None)
}

fn list_or_none<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<&str> = items.collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

mod live {
    //! Live sources, through the API server: the cluster state around the Service, and each node's
    //! rules from our proxy's `/debug/iptables` or `iptables-save` in its kube-proxy pod.
    use std::io::IsTerminal as _;

    use anyhow::Context as _;

    use super::*;
    use crate::kube::KubeOptions;
    use crate::kube::diag::{ClusterScope, diagnostics_client, fetch_cluster, fetch_node_rules};

    pub(super) fn gather(
        ctx: &Context,
        service_arg: &str,
        source: &SourceArgs,
    ) -> anyhow::Result<Gathered> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(gather_async(ctx, service_arg, source))
    }

    async fn gather_async(
        ctx: &Context,
        service_arg: &str,
        source: &SourceArgs,
    ) -> anyhow::Result<Gathered> {
        let options = KubeOptions::from(&ctx.global);
        let client = diagnostics_client(&options)
            .await
            .context("cannot connect to the cluster (or read it offline with --snapshot DIR)")?;
        let default_namespace = client.default_namespace().to_string();
        let scope = match service_arg.split_once('/') {
            Some((namespace, name)) => ClusterScope::Service {
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
            None if ctx.global.all_namespaces => ClusterScope::All,
            None => ClusterScope::Service {
                namespace: ctx
                    .global
                    .namespace
                    .clone()
                    .unwrap_or_else(|| default_namespace.clone()),
                name: service_arg.to_string(),
            },
        };
        let fetched = fetch_cluster(&client, &scope)
            .await
            .context("cannot read the cluster state")?;
        let cluster = fetched.state;
        let mut notes = fetched.warnings;
        let service = service_id(service_arg, &ctx.global, &default_namespace, &cluster)?;
        if let Some(rules) = explicit_rules(source, &cluster, None)? {
            return Ok(Gathered {
                cluster,
                service,
                nodes: vec![rules],
                notes,
            });
        }
        let chosen: Vec<String> = match &source.node {
            Some(node) => vec![node.clone()],
            None => endpoint_nodes(&cluster, &service),
        };
        if chosen.is_empty() {
            notes.push(format!(
                "no node hosts an endpoint of {service}: no node's rules were read; name one with --node NAME"
            ));
        }
        let progress = std::io::stderr().is_terminal();
        let mut nodes = Vec::new();
        let mut failures = Vec::new();
        for (i, node) in chosen.iter().enumerate() {
            if progress {
                eprintln!(
                    "reading the rules of node {node} ({}/{})…",
                    i + 1,
                    chosen.len()
                );
            }
            match fetch_node_rules(&client, node).await {
                Ok(fetched) => nodes.push(to_node_rules(fetched)?),
                Err(err) if source.node.is_none() => {
                    failures.push(format!("{node}: {err}"));
                }
                Err(err) => {
                    return Err(anyhow::Error::new(err)
                        .context(format!("cannot read the rules of node {node}")));
                }
            }
        }
        if !failures.is_empty() && nodes.is_empty() {
            bail!(
                "cannot read the rules of any node hosting {service}:\n  {}",
                failures.join("\n  ")
            );
        }
        notes.extend(failures.into_iter().map(|f| format!("not checked: {f}")));
        Ok(Gathered {
            cluster,
            service,
            nodes,
            notes,
        })
    }

    fn to_node_rules(fetched: crate::kube::diag::NodeRules) -> anyhow::Result<NodeRules> {
        let name = |family: &str| {
            format!(
                "the {family} rules of node {} ({})",
                fetched.node, fetched.origin
            )
        };
        let mut dumps = vec![inputs::parse_dump_text(&fetched.ipv4, &name("IPv4"))?];
        if let Some(v6) = fetched.ipv6.as_deref().filter(|t| !t.trim().is_empty()) {
            dumps.push(inputs::parse_dump_text(v6, &name("IPv6"))?);
        }
        Ok(NodeRules {
            node: fetched.node,
            origin: fetched.origin,
            dumps,
            other_backend: None,
        })
    }
}
