//! The node service proxy daemon: watches the cluster, keeps the node's iptables rules equal to the
//! plan, and reports health, metrics and debug views over HTTP.

pub mod events;
pub mod syncer;
pub mod tracker;
