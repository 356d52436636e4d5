//! Names of the chains kube-proxy owns, and the prefixes that identify per-service chains.

/// nat and filter entry chain for service VIPs.
pub const KUBE_SERVICES: &str = "KUBE-SERVICES";
/// nat and filter chain for NodePorts and health-check node ports.
pub const KUBE_NODEPORTS: &str = "KUBE-NODEPORTS";
/// filter chain for external destinations without endpoints.
pub const KUBE_EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
/// filter chain with the forwarding rules.
pub const KUBE_FORWARD: &str = "KUBE-FORWARD";
/// filter chain dropping traffic refused by `loadBalancerSourceRanges`.
pub const KUBE_PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
/// filter chain blocking martian localnet traffic (shared with kubelet).
pub const KUBE_FIREWALL: &str = "KUBE-FIREWALL";
/// nat chain that turns the masquerade mark into SNAT.
pub const KUBE_POSTROUTING: &str = "KUBE-POSTROUTING";
/// nat chain that sets the masquerade mark.
pub const KUBE_MARK_MASQ: &str = "KUBE-MARK-MASQ";
/// Empty chain in mangle, nat and filter whose disappearance reveals a flush.
pub const KUBE_PROXY_CANARY: &str = "KUBE-PROXY-CANARY";

/// Per-service-port chain with the cluster-policy endpoints.
pub const SVC_PREFIX: &str = "KUBE-SVC-";
/// Per-service-port chain with the local-policy endpoints.
pub const SVL_PREFIX: &str = "KUBE-SVL-";
/// Per-service-port chain for external destinations.
pub const EXT_PREFIX: &str = "KUBE-EXT-";
/// Per-service-port chain applying `loadBalancerSourceRanges`.
pub const FW_PREFIX: &str = "KUBE-FW-";
/// Per-endpoint chain.
pub const SEP_PREFIX: &str = "KUBE-SEP-";

/// The prefixes of every per-service nat chain. A nat chain with one of them that is not in the active
/// set is stale and gets deleted.
pub const SERVICE_CHAIN_PREFIXES: [&str; 5] =
    [SVC_PREFIX, SVL_PREFIX, EXT_PREFIX, FW_PREFIX, SEP_PREFIX];

/// Whether `chain` is a per-service (or per-endpoint) nat chain by its prefix.
pub fn is_service_chain(chain: &str) -> bool {
    SERVICE_CHAIN_PREFIXES.iter().any(|p| chain.starts_with(p))
}

/// The fixed filter chains kube-proxy writes in full on every sync, in declaration order.
pub const FIXED_FILTER_CHAINS: [&str; 6] = [
    KUBE_SERVICES,
    KUBE_EXTERNAL_SERVICES,
    KUBE_FORWARD,
    KUBE_NODEPORTS,
    KUBE_PROXY_FIREWALL,
    KUBE_FIREWALL,
];

/// The fixed nat chains kube-proxy writes in full on every sync, in declaration order.
pub const FIXED_NAT_CHAINS: [&str; 4] = [
    KUBE_SERVICES,
    KUBE_NODEPORTS,
    KUBE_POSTROUTING,
    KUBE_MARK_MASQ,
];

/// Whether `chain` in `table` is one kube-proxy (and so this proxy) owns.
pub fn is_owned_chain(table: super::Table, chain: &str) -> bool {
    use super::Table;
    chain == KUBE_PROXY_CANARY
        || match table {
            Table::Filter => FIXED_FILTER_CHAINS.contains(&chain),
            Table::Nat => FIXED_NAT_CHAINS.contains(&chain) || is_service_chain(chain),
            _ => false,
        }
}
