//! What the diagnostics read live through the API server: the cluster state around a Service (or the
//! whole cluster, for `bundle`), and a node's iptables rules.
//!
//! - [`fetch_cluster`] lists Services, EndpointSlices, Nodes and Pods (and gets the
//!   `kube-system/kube-proxy` ConfigMap) and returns both the [`ClusterState`](crate::core::model::ClusterState)
//!   and the objects as JSON, so a snapshot bundle can store exactly what was read.
//! - [`fetch_node_rules`] reads a node's `iptables-save` output: from our proxy pod's
//!   `/debug/iptables` (the `pods/proxy` subresource), else by running `iptables-save` in the node's
//!   kube-proxy pod (`pods/exec`).
//!
//! Errors are [`DiagError`](super::DiagError)s that name the permission to grant (and the role of
//! `deploy/diagnostics-rbac.yaml` that grants it) or what else to do. Build the client without kube's
//! default retries ([`diagnostics_client`]): a proxy that cannot be reached answers 503, which kube
//! would otherwise retry for minutes.

mod cluster;
mod rules;

pub use cluster::{ClusterScope, FetchedCluster, fetch_cluster};
pub use rules::{
    DEFAULT_METRICS_PORT, KUBE_PROXY_LABEL, KUBE_PROXY_NAMESPACE, NODE_RULES_TIMEOUT, NodeRules,
    PROXY_POD_LABEL, fetch_node_rules,
};

use ::kube::Client;

use super::{DiagError, KubeError, KubeOptions};

/// The roles of `deploy/diagnostics-rbac.yaml`, as advice in [`DiagError::Forbidden`].
pub(crate) const READ_ROLE: &str =
    "the ClusterRole svcproxy-diagnostics grants it; bind it with a ClusterRoleBinding";
/// See [`READ_ROLE`].
pub(crate) const RULES_ROLE: &str = "the ClusterRole svcproxy-diagnostics-rules grants it; bind it with a RoleBinding in kube-system";
/// See [`READ_ROLE`].
pub(crate) const EXEC_ROLE: &str = "the ClusterRole svcproxy-diagnostics-exec grants it (older API servers check `get`); \
     bind it with a RoleBinding in kube-system";

/// A client for the diagnostics: the cluster `options` choose, without kube's automatic retries of
/// 429/503/504 answers (a node that cannot be reached through `pods/proxy` answers 503, and a
/// diagnostic should say so at once).
pub async fn diagnostics_client(options: &KubeOptions) -> Result<Client, KubeError> {
    let mut config = super::config(options).await?;
    config.default_retry = false;
    Client::try_from(config).map_err(|source| KubeError::Client { source })
}

/// What a request was for, to turn its failure into a [`DiagError`].
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// The verb the authorizer checks.
    pub verb: &'static str,
    /// The resource (with subresource).
    pub resource: &'static str,
    /// The API group.
    pub group: &'static str,
    /// The namespace, if the request has one.
    pub namespace: Option<String>,
    /// The role that grants it.
    pub role_hint: &'static str,
    /// What was being done, in words.
    pub what: String,
}

impl Request {
    /// The [`DiagError`] for `error`: 403 names the permission, 401 the credentials, anything else
    /// says what failed.
    pub(crate) fn error(&self, error: ::kube::Error) -> DiagError {
        match &error {
            ::kube::Error::Api(status) if status.code == 403 => DiagError::Forbidden {
                verb: self.verb,
                resource: self.resource,
                group: self.group,
                namespace: self.namespace.clone(),
                role_hint: self.role_hint,
                message: status.message.clone(),
            },
            ::kube::Error::Api(status) if status.code == 401 => DiagError::Unauthorized {
                what: self.what.clone(),
                message: status.message.clone(),
            },
            _ => DiagError::Api {
                what: self.what.clone(),
                source: error,
            },
        }
    }
}
