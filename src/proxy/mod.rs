//! The node service proxy daemon: watches the cluster, keeps the node's iptables rules equal to the
//! plan, and reports health, metrics and debug views over HTTP.

pub mod cleanup;
pub mod conntrack;
pub mod events;
pub mod host;
pub mod runner;
pub mod syncer;
pub mod tracker;
