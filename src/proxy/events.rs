//! What the Kubernetes adapter tells the proxy: objects already converted to the model.

use crate::core::model::{EndpointSlice, Node, Service};

/// A change to one kind of object, as a watch reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent<T> {
    /// The object was created or modified.
    Applied(T),
    /// The object was deleted (its last known state).
    Deleted(T),
    /// The complete current set of objects, after the initial list or after a relist (for example
    /// when the watch expired with 410 Gone). Objects not in the set are gone. The first `Relisted` of
    /// a kind means that kind is synced.
    Relisted(Vec<T>),
}

/// A change the proxy must react to.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterEvent {
    /// Services that the proxy handles (those labelled `service.kubernetes.io/service-proxy-name` are
    /// already filtered out by the watch).
    Services(WatchEvent<Service>),
    /// EndpointSlices (those labelled `service.kubernetes.io/headless` are already filtered out).
    EndpointSlices(WatchEvent<EndpointSlice>),
    /// This proxy's own Node (a watch with a `metadata.name` field selector).
    Node(WatchEvent<Node>),
}
