//! What can go wrong in the Kubernetes adapter, said so that a user knows what to do.

use std::path::PathBuf;

use ::kube::config::{InClusterError, KubeconfigError};
use thiserror::Error;

/// Why a client could not be built, or why the watches stopped.
#[derive(Debug, Error)]
pub enum KubeError {
    /// No kubeconfig file exists where one was looked for, and this is not a pod.
    #[error(
        "no Kubernetes configuration found: {looked_at}, and not running in a pod (KUBERNETES_SERVICE_HOST is unset); \
         pass --kubeconfig PATH or set KUBECONFIG"
    )]
    NoConfig {
        /// Where kubeconfig files were looked for, in words.
        looked_at: String,
    },
    /// `--context`, `--cluster` or `--user` was given but no kubeconfig file exists.
    #[error(
        "--{flag} needs a kubeconfig, but none was found: {looked_at}; pass --kubeconfig PATH or set KUBECONFIG"
    )]
    FlagWithoutKubeconfig {
        /// The flag, without dashes.
        flag: &'static str,
        /// Where kubeconfig files were looked for, in words.
        looked_at: String,
    },
    /// The file named by `--kubeconfig` does not exist.
    #[error("kubeconfig {} does not exist; check the --kubeconfig path", .path.display())]
    KubeconfigNotFound {
        /// The path given.
        path: PathBuf,
    },
    /// A kubeconfig file could not be read or parsed, or not merged with the ones before it.
    #[error("cannot use kubeconfig {}: {source}", .path.display())]
    ReadKubeconfig {
        /// The file.
        path: PathBuf,
        /// What kube reported.
        #[source]
        source: KubeconfigError,
    },
    /// No context was chosen and the kubeconfig has no `current-context`.
    #[error("{origin} sets no current-context; pass --context NAME ({})", available("contexts", .contexts))]
    NoCurrentContext {
        /// The kubeconfig file(s), in words.
        origin: String,
        /// The contexts it has.
        contexts: Vec<String>,
    },
    /// The chosen context is not in the kubeconfig.
    #[error("context {name:?} is not in {origin}; {}", available("contexts", .contexts))]
    UnknownContext {
        /// The context asked for.
        name: String,
        /// The kubeconfig file(s), in words.
        origin: String,
        /// The contexts it has.
        contexts: Vec<String>,
    },
    /// The chosen (or the context's) cluster is not in the kubeconfig.
    #[error("cluster {name:?} is not in {origin}; {}", available("clusters", .clusters))]
    UnknownCluster {
        /// The cluster asked for.
        name: String,
        /// The kubeconfig file(s), in words.
        origin: String,
        /// The clusters it has.
        clusters: Vec<String>,
    },
    /// The user given with `--user` is not in the kubeconfig.
    #[error("user {name:?} is not in {origin}; {}", available("users", .users))]
    UnknownUser {
        /// The user asked for.
        name: String,
        /// The kubeconfig file(s), in words.
        origin: String,
        /// The users it has.
        users: Vec<String>,
    },
    /// The selected context cannot be turned into a client configuration (no server URL, unreadable
    /// certificate, …).
    #[error("{origin}: {source}")]
    InvalidKubeconfig {
        /// The kubeconfig file(s) and context, in words.
        origin: String,
        /// What kube reported.
        #[source]
        source: KubeconfigError,
    },
    /// Running in a pod, but its service account configuration is unusable.
    #[error(
        "the in-cluster configuration (the pod's service account) cannot be used: {source}; \
         check that the service account token is mounted, or pass --kubeconfig PATH"
    )]
    InCluster {
        /// What kube reported.
        #[source]
        source: InClusterError,
    },
    /// The client could not be built from a valid configuration (TLS setup, for example).
    #[error("cannot create the Kubernetes client: {source}")]
    Client {
        /// What kube reported.
        #[source]
        source: ::kube::Error,
    },
    /// The node name to watch is empty.
    #[error("the node name is empty; pass --hostname-override NAME or set the NODE_NAME variable")]
    EmptyNodeName,
    /// The receiver of the cluster events was dropped: nobody listens, so the watches stop.
    #[error("the receiver of cluster events is gone; the watches stopped")]
    EventsClosed,
}

/// The file that holds the roles the diagnostics need.
pub const DIAGNOSTICS_RBAC_FILE: &str = "deploy/diagnostics-rbac.yaml";

/// Why the diagnostics could not read the cluster state or a node's rules, said with what to grant or
/// do about it.
#[derive(Debug, Error)]
pub enum DiagError {
    /// The API server's authorizer refused a request.
    #[error(
        "forbidden: cannot {verb} {resource} ({group}){scope}; grant `{verb}` on `{resource}` in API group \"{group_name}\" \
         ({role_hint}, see {DIAGNOSTICS_RBAC_FILE}); the API server said: {message}",
        group = group_label(.group),
        group_name = .group,
        scope = scope_label(.namespace.as_deref()),
    )]
    Forbidden {
        /// The verb refused (`list`, `get`, `create`).
        verb: &'static str,
        /// The resource, with its subresource (`pods/proxy`).
        resource: &'static str,
        /// The API group, empty for the core group.
        group: &'static str,
        /// The namespace of the request; `None` for every namespace or a cluster-scoped resource.
        namespace: Option<String>,
        /// Which role of the RBAC file grants it, and how to bind it.
        role_hint: &'static str,
        /// The API server's message.
        message: String,
    },
    /// The API server rejected the credentials.
    #[error(
        "the API server rejected the credentials while trying to {what} (401 Unauthorized): {message}; \
         check the kubeconfig's user (token, certificate or exec plugin) and log in again"
    )]
    Unauthorized {
        /// What was being done, in words.
        what: String,
        /// The API server's message.
        message: String,
    },
    /// Any other failure of an API request.
    #[error("cannot {what}: {}", describe_kube_error(.source))]
    Api {
        /// What was being done, in words (`list EndpointSlices of Service shop/web`).
        what: String,
        /// What kube reported.
        #[source]
        source: ::kube::Error,
    },
    /// Neither our proxy nor kube-proxy runs on the node, so its rules cannot be read through the API
    /// server.
    #[error(
        "cannot read the rules of node {node:?}: {found}; \
         pass --rules FILE with that node's `iptables-save` output, or run with --local on the node itself"
    )]
    NoRulesSource {
        /// The node.
        node: String,
        /// What was looked for and found, in words.
        found: String,
    },
    /// The node's proxy pod answered with an error, or could not be reached through the API server.
    #[error("cannot read the rules of node {node:?} from {origin}: HTTP {status}: {body}")]
    NodeUnreachable {
        /// The node.
        node: String,
        /// Where the rules were asked for (`pod kube-system/svcproxy-abcde /debug/iptables`).
        origin: String,
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body (or the API server's message).
        body: String,
    },
    /// The node's proxy answered, but not with a usable `/debug/iptables` document.
    #[error("cannot read the rules of node {node:?} from {origin}: {reason}")]
    BadRules {
        /// The node.
        node: String,
        /// Where the rules were asked for.
        origin: String,
        /// What is wrong with the answer.
        reason: String,
    },
    /// `iptables-save` run in the node's kube-proxy pod failed.
    #[error("cannot read the rules of node {node:?}: `{command}` in {origin} failed: {reason}")]
    ExecFailed {
        /// The node.
        node: String,
        /// The pod and container, in words.
        origin: String,
        /// The command run.
        command: String,
        /// Its status message and the start of its stderr.
        reason: String,
    },
    /// Reading the rules took too long.
    #[error("cannot read the rules of node {node:?} from {origin}: no answer within {} s", .after.as_secs())]
    Timeout {
        /// The node.
        node: String,
        /// Where the rules were asked for.
        origin: String,
        /// How long it waited.
        after: std::time::Duration,
    },
}

fn group_label(group: &str) -> String {
    if group.is_empty() {
        "core API group".to_string()
    } else {
        format!("API group {group}")
    }
}

fn scope_label(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!(" in namespace {ns}"),
        None => String::new(),
    }
}

/// A kube error in words: the API server's message and code for API errors, the error itself otherwise.
pub(crate) fn describe_kube_error(error: &::kube::Error) -> String {
    match error {
        ::kube::Error::Api(status) => {
            let message = if status.message.is_empty() {
                "(no message)"
            } else {
                status.message.as_str()
            };
            match status.reason.as_str() {
                "" => format!("HTTP {}: {message}", status.code),
                reason => format!("HTTP {} {reason}: {message}", status.code),
            }
        }
        other => other.to_string(),
    }
}

/// `its contexts are: a, b` or `it has no contexts`.
fn available(what: &str, names: &[String]) -> String {
    if names.is_empty() {
        format!("it has no {what}")
    } else {
        format!("its {what} are: {}", names.join(", "))
    }
}
