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

    /// The object reduced to what identifies it (metadata without annotations; for an EndpointSlice
    /// also its address type): what a deletion is reported with when the full object does not convert.
    fn identity(&self) -> Self;

    /// Wraps a model event in the [`ClusterEvent`] for this kind.
    fn cluster_event(event: WatchEvent<Self::Model>) -> ClusterEvent;
}

/// The metadata that identifies an object: name, namespace, uid, resourceVersion and labels.
fn identity_meta(meta: &ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        labels: meta.labels.clone(),
        ..ObjectMeta::default()
    }
}

impl Watched for core::Service {
    type Model = Service;
    const KIND: &'static str = "Service";

    fn convert(&self) -> Result<Converted<Service>, ModelError> {
        convert::service(self)
    }

    fn identity(&self) -> Self {
        core::Service {
            metadata: identity_meta(&self.metadata),
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

    fn identity(&self) -> Self {
        discovery::EndpointSlice {
            metadata: identity_meta(&self.metadata),
            address_type: self.address_type.clone(),
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

    fn identity(&self) -> Self {
        core::Node {
            metadata: identity_meta(&self.metadata),
            ..core::Node::default()
        }
    }

    fn cluster_event(event: WatchEvent<Node>) -> ClusterEvent {
        ClusterEvent::Node(event)
    }
}
