//! The proxy settings a node's expected rules are planned with: `--cluster-cidr` and the other
//! expected-settings flags, then the `kube-system/kube-proxy` ConfigMap, then what the node's own rules
//! show, then kube-proxy's defaults (see [`crate::core::model::resolve`]).

use anyhow::Context as _;

use crate::core::model::resolve::{SettingsOverrides, resolve_node_context};
use crate::core::model::{ClusterState, NodeContext};
use crate::core::rules::Dump;

/// How to find each node's settings: the flag overrides; the rest comes from the cluster and the node.
#[derive(Debug, Clone, Default)]
pub struct ExpectedSettings {
    /// The expected-settings flags given.
    pub overrides: SettingsOverrides,
}

/// A node's settings, with where they came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The context to plan with.
    pub context: NodeContext,
    /// One line per setting: its value and its source.
    pub provenance: Vec<String>,
    /// Things that could not be decided well.
    pub warnings: Vec<String>,
}

impl ExpectedSettings {
    /// The settings of `node` for the family of `dump`, the node's rules of that family.
    pub fn resolve(
        &self,
        cluster: &ClusterState,
        node: &str,
        dump: Option<&Dump>,
    ) -> anyhow::Result<Resolved> {
        let resolved = resolve_node_context(cluster, node, dump, &self.overrides)
            .with_context(|| format!("cannot work out the proxy settings of node {node}"))?;
        Ok(Resolved {
            context: resolved.context,
            provenance: resolved
                .provenance
                .iter()
                .map(ToString::to_string)
                .collect(),
            warnings: resolved.warnings,
        })
    }
}
