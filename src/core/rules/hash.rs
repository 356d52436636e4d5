//! Chain-name hashing, exactly as kube-proxy does it (spec §2).
//!
//! The SHA-256 of the service-port name and protocol (and, for endpoint chains, the endpoint's `ip:port`),
//! base32-encoded with the RFC 4648 alphabet, cut to 16 characters.

use data_encoding::BASE32;
use sha2::{Digest, Sha256};

/// Appends the 16-character hash of the concatenation of `parts` to `out`.
///
/// The parts are fed to SHA-256 one by one instead of being joined into a temporary string, and only the
/// first 10 bytes of the digest are encoded: 16 base32 characters carry exactly 80 bits, so encoding the
/// whole digest and cutting it gives the same text. A full plan hashes one name per endpoint, so this
/// runs some 100,000 times for a large cluster.
fn push_hash16(out: &mut String, parts: &[&str]) {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    BASE32.encode_append(&digest[..10], out);
}

/// `prefix` followed by the 16-character hash of `parts`, allocated once.
fn hashed_name(prefix: &str, parts: &[&str]) -> String {
    let mut name = String::with_capacity(prefix.len() + 16);
    name.push_str(prefix);
    push_hash16(&mut name, parts);
    name
}

/// The hash shared by a service port's `KUBE-SVC-`, `KUBE-SVL-`, `KUBE-EXT-` and `KUBE-FW-` chains.
///
/// `service_port_name` is `namespace/name` or `namespace/name:port` (see
/// [`crate::core::model::ServicePortName`]); `protocol` is lowercase.
pub fn service_port_chain_hash(service_port_name: &str, protocol: &str) -> String {
    hashed_name("", &[service_port_name, protocol])
}

/// The hash of a `KUBE-SEP-` chain: the service port, the protocol and the endpoint's `ip:port`
/// (`[ip]:port` for IPv6), with no separators.
pub fn endpoint_chain_hash(service_port_name: &str, protocol: &str, endpoint: &str) -> String {
    hashed_name("", &[service_port_name, protocol, endpoint])
}

/// The full name of an endpoint's chain: `KUBE-SEP-` and [`endpoint_chain_hash`], built in one string.
pub fn endpoint_chain_name(service_port_name: &str, protocol: &str, endpoint: &str) -> String {
    hashed_name(
        super::names::SEP_PREFIX,
        &[service_port_name, protocol, endpoint],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every test vector of spec §2, split into its parts.
    #[test]
    fn service_port_vectors_from_the_spec() {
        let vectors = [
            ("ns1/svc1:p80", "tcp", "XPGD46QRK7WJZT7O"),
            ("ns2/svc2:p80", "tcp", "GNZBNJ2PO5MGZ6GT"),
            ("ns3/svc3:p80", "tcp", "X27LE4BHSL4DOUIK"),
            ("ns4/svc4:p80", "tcp", "4SW47YFZTEDKD3PK"),
            ("ns5/svc5:p80", "tcp", "NUKIZ6OKUXPJNT4C"),
            ("ns2/svc2:p8080", "tcp", "2VJB64SDSIJUP5T6"),
            ("ns4/svc4:p8082", "tcp", "EBDQOQU5SJFXRIL3"),
            ("default/nginx", "tcp", "2CMXP7HKUVJN7L6M"),
            ("default/kubernetes:https", "tcp", "NPX46M4PTMTKRN6Y"),
        ];
        for (spn, proto, want) in vectors {
            assert_eq!(
                service_port_chain_hash(spn, proto),
                want,
                "hash of {spn}{proto}"
            );
        }
    }

    #[test]
    fn endpoint_vectors_from_the_spec() {
        let vectors = [
            ("ns1/svc1:p80", "tcp", "10.180.0.1:80", "SXIVWICOYRO3J4NJ"),
            ("ns1/svc1:p80", "tcp", "10.0.0.0:80", "DKGQUZGBKLTPAR56"),
            ("ns1/svc1:p80", "tcp", "10.0.1.1:80", "SNQ3ZNILQDEJNDQO"),
            ("ns2/svc2:p8080", "tcp", "10.0.2.1:8080", "UHEGFW77JX3KXTOV"),
            ("ns5/svc5:p80", "tcp", "10.180.0.3:80", "I77PXRDZVX7PMWMN"),
            ("ns4/svc4:p8082", "tcp", "10.4.0.1:8082", "SU5STNODRYEWJAUF"),
            (
                "ns3/svc3:p8081",
                "tcp",
                "203.0.113.4:8081",
                "RUVVH7YV3PHQBDOS",
            ),
            (
                "ns1/svc1:p80",
                "tcp",
                "[fd00:10:180::1]:80",
                "OGYCNMB4EMRUSJ6N",
            ),
        ];
        for (spn, proto, ep, want) in vectors {
            assert_eq!(
                endpoint_chain_hash(spn, proto, ep),
                want,
                "hash of {spn}{proto}{ep}"
            );
        }
    }

    #[test]
    fn endpoint_chain_name_is_prefix_and_hash() {
        assert_eq!(
            endpoint_chain_name("ns1/svc1:p80", "tcp", "10.180.0.1:80"),
            "KUBE-SEP-SXIVWICOYRO3J4NJ"
        );
    }

    #[test]
    fn chain_names_fit_the_iptables_limit() {
        let h = service_port_chain_hash(
            "a-very-long-namespace-name/and-a-long-service:port-name",
            "sctp",
        );
        assert_eq!(h.len(), 16);
        assert!(format!("KUBE-SVC-{h}").len() <= 28);
    }
}
