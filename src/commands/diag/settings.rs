//! The proxy settings a node's expected rules are planned with.

use crate::core::model::{ClusterState, NodeContext};
use crate::core::rules::Dump;

/// How to find each node's settings: flag overrides, the kube-proxy ConfigMap, the node's own rules.
#[derive(Debug, Clone, Default)]
pub struct ExpectedSettings {}

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
    /// The settings of `node`, whose IPv4 rules are `dump`.
    pub fn resolve(
        &self,
        cluster: &ClusterState,
        node: &str,
        _dump: Option<&Dump>,
    ) -> anyhow::Result<Resolved> {
        let mut warnings = Vec::new();
        let context = match cluster.nodes.get(node) {
            Some(n) => {
                let mut ctx = NodeContext::new(node, n.primary_ips());
                ctx.apply_node(n);
                ctx
            }
            None => {
                warnings.push(format!(
                    "the cluster has no Node {node:?}: its addresses and labels are unknown"
                ));
                NodeContext::new(node, Vec::new())
            }
        };
        Ok(Resolved {
            context,
            provenance: Vec::new(),
            warnings,
        })
    }
}
