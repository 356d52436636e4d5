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

/// `its contexts are: a, b` or `it has no contexts`.
fn available(what: &str, names: &[String]) -> String {
    if names.is_empty() {
        format!("it has no {what}")
    } else {
        format!("its {what} are: {}", names.join(", "))
    }
}
