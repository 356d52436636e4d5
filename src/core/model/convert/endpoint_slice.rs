//! `discovery.k8s.io/v1.EndpointSlice` → [`EndpointSlice`].

use k8s_openapi::api::discovery::v1 as k8s;

use super::{Converted, Obj};
use crate::core::model::{
    AddressType, Endpoint, EndpointPort, EndpointSlice, ModelError, ObjectRef, SERVICE_NAME_LABEL,
    sloppy,
};

/// The annotation the EndpointSlice controller sets to the time of the change that triggered the update.
const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// Converts an EndpointSlice.
///
/// Errors: missing `metadata.name` / `metadata.namespace`; no (or an empty) `kubernetes.io/service-name`
/// label; a missing or unknown `addressType`; a port number outside 1–65535 (0 means absent); a
/// protocol other than TCP/UDP/SCTP.
///
/// Kept as kube-proxy reads it, for the planner to apply: a port without a name stays `name: None` and an
/// empty name `Some("")` (an unnamed port); a port number that is absent or 0 is `None` (kube-proxy
/// skips such a port); the conditions stay as given (absent = ready, serving, not terminating). The
/// addresses of IP slices are normalized with kube-proxy's sloppy parse (`010.001.002.003` is
/// `10.1.2.3`); an address that does not parse is kept verbatim, with a warning, and
/// [`Endpoint::ip`](crate::core::model::Endpoint::ip) gives `None` for it. Zone and node hints are kept
/// only when non-empty, as kube-proxy does.
pub fn endpoint_slice(object: &k8s::EndpointSlice) -> Result<Converted<EndpointSlice>, ModelError> {
    let mut obj = Obj::new("EndpointSlice", &object.metadata);
    let id = obj.namespaced_name(&object.metadata)?;
    let labels = object.metadata.labels.clone().unwrap_or_default();
    let service_name = labels
        .get(SERVICE_NAME_LABEL)
        .filter(|name| !name.is_empty())
        .cloned()
        .ok_or_else(|| {
            obj.missing(format!(
                "metadata.labels[\"{SERVICE_NAME_LABEL}\"] (the Service it belongs to)"
            ))
        })?;

    let address_type = match object.address_type.as_str() {
        "IPv4" => AddressType::IPv4,
        "IPv6" => AddressType::IPv6,
        "FQDN" => AddressType::Fqdn,
        "" => return Err(obj.missing("addressType")),
        other => {
            return Err(obj.invalid(
                "addressType",
                other,
                "the address type must be IPv4, IPv6 or FQDN",
            ));
        }
    };

    let mut ports = Vec::new();
    for (i, port) in object.ports.iter().flatten().enumerate() {
        let number = match port.port {
            None | Some(0) => None,
            Some(number) => Some(obj.port(&format!("ports[{i}].port"), number)?),
        };
        ports.push(EndpointPort {
            name: port.name.clone(),
            port: number,
            protocol: obj.protocol(&format!("ports[{i}].protocol"), port.protocol.as_deref())?,
        });
    }

    let mut endpoints = Vec::new();
    for (i, endpoint) in object.endpoints.iter().enumerate() {
        let mut addresses = Vec::with_capacity(endpoint.addresses.len());
        for (j, address) in endpoint.addresses.iter().enumerate() {
            if address_type == AddressType::Fqdn {
                addresses.push(address.clone());
                continue;
            }
            match sloppy::parse_ip(address) {
                Some(ip) => {
                    if address_type.family() != Some(crate::core::rules::IpFamily::of(&ip)) {
                        obj.warn(format!(
                            "endpoints[{i}].addresses[{j}] {address:?} \
                             does not match addressType {address_type:?}"
                        ));
                    }
                    addresses.push(ip.to_string());
                }
                None => {
                    obj.warn(format!(
                        "endpoints[{i}].addresses[{j}] {address:?} is not an IP address"
                    ));
                    addresses.push(address.clone());
                }
            }
        }
        let conditions = endpoint.conditions.as_ref();
        let hints = endpoint.hints.as_ref();
        endpoints.push(Endpoint {
            addresses,
            ready: conditions.and_then(|c| c.ready),
            serving: conditions.and_then(|c| c.serving),
            terminating: conditions.and_then(|c| c.terminating),
            node_name: endpoint.node_name.clone().filter(|n| !n.is_empty()),
            zone: endpoint.zone.clone().filter(|z| !z.is_empty()),
            zone_hints: hints
                .and_then(|h| h.for_zones.as_ref())
                .filter(|zones| !zones.is_empty())
                .map(|zones| zones.iter().map(|z| z.name.clone()).collect()),
            node_hints: hints
                .and_then(|h| h.for_nodes.as_ref())
                .filter(|nodes| !nodes.is_empty())
                .map(|nodes| nodes.iter().map(|n| n.name.clone()).collect()),
            target_ref: endpoint.target_ref.as_ref().map(|r| ObjectRef {
                kind: r.kind.clone(),
                namespace: r.namespace.clone(),
                name: r.name.clone(),
            }),
        });
    }

    let last_change_trigger_time = object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LAST_CHANGE_TRIGGER_TIME))
        .cloned();

    let slice = EndpointSlice {
        id,
        service_name,
        labels,
        address_type,
        ports,
        endpoints,
        last_change_trigger_time,
    };
    Ok(obj.done(slice))
}
