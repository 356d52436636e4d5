//! The node service proxy daemon: watches the cluster, keeps the node's iptables rules equal to the
//! plan, and reports health, metrics and debug views over HTTP.

pub mod events;
pub mod health;
pub mod http;
pub mod metrics;
pub mod service_health;
