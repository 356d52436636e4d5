//! Conversion from k8s-openapi types to the model. Pure: no I/O, no clock.
//!
//! Each object kind has a function returning the model value plus the warnings about what was skipped
//! ([`service`], [`endpoint_slice`], [`node`], [`pod`]), and a `TryFrom` that drops the warnings.
//!
//! Strict where the API server is strict and the value shapes the rules (names, ports, protocols, cluster
//! IPs, source ranges, affinity timeouts, pod CIDRs): such a value that cannot be used is a
//! [`ModelError`] naming the object and the field path. Lenient where kube-proxy is lenient: it skips
//! external IPs and load-balancer IPs that do not parse, treats unknown traffic-policy and affinity values
//! as the defaults, and parses every address with the sloppy parser of [`super::sloppy`].

mod endpoint_slice;
mod node;
mod pod;
mod service;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::ModelError;
use crate::core::rules::Protocol;

pub use endpoint_slice::endpoint_slice;
pub use node::node;
pub use pod::pod;
pub use service::{DEFAULT_AFFINITY_TIMEOUT_SECONDS, service};

/// A converted object and what the conversion skipped or assumed on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted<T> {
    /// The model value.
    pub value: T,
    /// One sentence per skipped or defaulted value, each naming the object and the field.
    pub warnings: Vec<String>,
}

/// `Kind namespace/name` (or `Kind name` for a cluster-scoped object) for messages, with `(unnamed)`
/// standing in for a missing name.
pub fn object_label(kind: &str, meta: &ObjectMeta) -> String {
    let name = meta
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or("(unnamed)");
    match meta.namespace.as_deref().filter(|n| !n.is_empty()) {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// The object being converted: its label for messages and the warnings gathered so far.
struct Obj {
    label: String,
    warnings: Vec<String>,
}

impl Obj {
    fn new(kind: &str, meta: &ObjectMeta) -> Obj {
        Obj {
            label: object_label(kind, meta),
            warnings: Vec::new(),
        }
    }

    fn missing(&self, field: impl Into<String>) -> ModelError {
        ModelError::MissingField {
            object: self.label.clone(),
            field: field.into(),
        }
    }

    fn invalid(
        &self,
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> ModelError {
        ModelError::InvalidField {
            object: self.label.clone(),
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    fn warn(&mut self, message: impl AsRef<str>) {
        self.warnings
            .push(format!("{}: {}", self.label, message.as_ref()));
    }

    fn done<T>(self, value: T) -> Converted<T> {
        Converted {
            value,
            warnings: self.warnings,
        }
    }

    /// `metadata.namespace` and `metadata.name`, both required and non-empty.
    fn namespaced_name(&self, meta: &ObjectMeta) -> Result<super::NamespacedName, ModelError> {
        let name = self.name(meta)?;
        let namespace = meta
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| self.missing("metadata.namespace"))?;
        Ok(super::NamespacedName::new(namespace, name))
    }

    /// `metadata.name`, required and non-empty.
    fn name(&self, meta: &ObjectMeta) -> Result<String, ModelError> {
        meta.name
            .as_deref()
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .ok_or_else(|| self.missing("metadata.name"))
    }

    /// A port number that must be in 1..=65535.
    fn port(&self, field: &str, value: i32) -> Result<u16, ModelError> {
        match u16::try_from(value) {
            Ok(port) if port != 0 => Ok(port),
            _ => Err(self.invalid(
                field,
                value.to_string(),
                "a port must be between 1 and 65535",
            )),
        }
    }

    /// An optional port where 0 means "not set", as the API uses it for node ports.
    fn optional_port(&self, field: &str, value: Option<i32>) -> Result<Option<u16>, ModelError> {
        match value {
            None | Some(0) => Ok(None),
            Some(port) => self.port(field, port).map(Some),
        }
    }

    /// `TCP`, `UDP` or `SCTP` (any case); absent means TCP, as the API server defaults it.
    fn protocol(&self, field: &str, value: Option<&str>) -> Result<Protocol, ModelError> {
        let Some(text) = value else {
            return Ok(Protocol::Tcp);
        };
        match text.parse::<Protocol>() {
            Ok(protocol @ (Protocol::Tcp | Protocol::Udp | Protocol::Sctp)) => Ok(protocol),
            _ => Err(self.invalid(field, text, "the protocol must be TCP, UDP or SCTP")),
        }
    }
}

macro_rules! try_from_impls {
    ($($k8s:ty => $model:ty, $func:ident;)*) => {$(
        impl TryFrom<&$k8s> for $model {
            type Error = ModelError;
            fn try_from(object: &$k8s) -> Result<Self, ModelError> {
                $func(object).map(|converted| converted.value)
            }
        }

        impl TryFrom<$k8s> for $model {
            type Error = ModelError;
            fn try_from(object: $k8s) -> Result<Self, ModelError> {
                $func(&object).map(|converted| converted.value)
            }
        }
    )*};
}

try_from_impls! {
    k8s_openapi::api::core::v1::Service => super::Service, service;
    k8s_openapi::api::discovery::v1::EndpointSlice => super::EndpointSlice, endpoint_slice;
    k8s_openapi::api::core::v1::Node => super::Node, node;
    k8s_openapi::api::core::v1::Pod => super::Pod, pod;
}
