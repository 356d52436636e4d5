//! The Kubernetes adapter: a client from kubeconfig (or the pod's service account), and the watches
//! that feed the proxy converted objects.
//!
//! [`client()`] builds a [`::kube::Client`] from [`KubeOptions`] (the CLI's `--kubeconfig`, `--context`,
//! `--cluster`, `--user`); [`watch_cluster`] watches Services, EndpointSlices and this node's Node and
//! sends [`ClusterEvent`](crate::proxy::events::ClusterEvent)s.

pub mod audit;
mod client;
pub mod diag;
mod error;
mod kinds;
mod tracker;
mod watch;

pub use client::{ConfigEnv, KubeOptions, client, config, config_from};
pub use error::{DIAGNOSTICS_RBAC_FILE, DiagError, KubeError};
pub use watch::watch_cluster;
