//! The node service proxy daemon: watches the cluster, keeps the node's iptables rules equal to the
//! plan, and reports health, metrics and debug views over HTTP.

pub mod audit;
pub mod cleanup;
pub mod conntrack;
pub mod conntrack_sysctls;
pub mod deadline;
pub mod events;
pub mod health;
pub mod host;
pub mod http;
pub mod metrics;
pub mod runner;
pub mod service_health;
pub mod status;
pub mod syncer;
pub mod tracker;
