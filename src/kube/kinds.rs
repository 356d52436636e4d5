//! The three kinds the proxy watches, and what the adapter needs to know about each.

use std::fmt::Debug;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;

use crate::core::model::convert::{self, Converted};
use crate::core::model::{EndpointSlice, ModelError, Node, Service};
use crate::proxy::events::{ClusterEvent, WatchEvent};

/// A watched Kubernetes kind: how it converts to the model and which [`ClusterEvent`] carries it.
pub trait Watched:
    ::kube::Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
    /// The model type.
    type Model: Send + 'static;

    /// The kind's name, for messages.
    const KIND: &'static str;

    /// Converts the object to the model.
    fn convert(&self) -> Result<Converted<Self::Model>, ModelError>;

    /// What identifies the object: what a deletion is reported with when the full object does not
    /// convert.
    fn identity(&self) -> Identity {
        Identity::of(self.meta())
    }

    /// The object rebuilt from its identity alone, for converting a deletion.
    fn from_identity(identity: &Identity) -> Self;

    /// Wraps a model event in the [`ClusterEvent`] for this kind.
    fn cluster_event(event: WatchEvent<Self::Model>) -> ClusterEvent;
}

/// What identifies a delivered object: its name, namespace and labels (for an EndpointSlice also its
/// address type). One is held per watched object, so it is kept far smaller than the object's
/// metadata: about 100 bytes plus the strings, against more than a kilobyte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    namespace: Option<String>,
    name: Option<String>,
    labels: Box<[(String, String)]>,
    address_type: Option<String>,
}

impl Identity {
    fn of(meta: &ObjectMeta) -> Identity {
        Identity {
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            labels: meta
                .labels
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            address_type: None,
        }
    }

    fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            labels: (!self.labels.is_empty()).then(|| self.labels.iter().cloned().collect()),
            ..ObjectMeta::default()
        }
    }
}

impl Watched for core::Service {
    type Model = Service;
    const KIND: &'static str = "Service";

    fn convert(&self) -> Result<Converted<Service>, ModelError> {
        convert::service(self)
    }

    fn from_identity(identity: &Identity) -> Self {
        core::Service {
            metadata: identity.meta(),
            ..core::Service::default()
        }
    }

    fn cluster_event(event: WatchEvent<Service>) -> ClusterEvent {
        ClusterEvent::Services(event)
    }
}

impl Watched for discovery::EndpointSlice {
    type Model = EndpointSlice;
    const KIND: &'static str = "EndpointSlice";

    fn convert(&self) -> Result<Converted<EndpointSlice>, ModelError> {
        convert::endpoint_slice(self)
    }

    fn identity(&self) -> Identity {
        Identity {
            address_type: Some(self.address_type.clone()),
            ..Identity::of(&self.metadata)
        }
    }

    fn from_identity(identity: &Identity) -> Self {
        discovery::EndpointSlice {
            metadata: identity.meta(),
            address_type: identity.address_type.clone().unwrap_or_default(),
            endpoints: Vec::new(),
            ports: None,
        }
    }

    fn cluster_event(event: WatchEvent<EndpointSlice>) -> ClusterEvent {
        ClusterEvent::EndpointSlices(event)
    }
}

impl Watched for core::Node {
    type Model = Node;
    const KIND: &'static str = "Node";

    fn convert(&self) -> Result<Converted<Node>, ModelError> {
        convert::node(self)
    }

    fn from_identity(identity: &Identity) -> Self {
        core::Node {
            metadata: identity.meta(),
            ..core::Node::default()
        }
    }

    fn cluster_event(event: WatchEvent<Node>) -> ClusterEvent {
        ClusterEvent::Node(event)
    }
}
