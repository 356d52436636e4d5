//! The Kubernetes side of `proxy --audit`: drift Events (core/v1) and the kube-proxy ConfigMap.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::kube::api::{Patch, PatchParams, PostParams};
use ::kube::{Api, Client};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Event};
use serde_json::json;

use super::error::describe_kube_error;
use crate::proxy::audit::dedup::EventRef;
use crate::proxy::audit::events::{COMPONENT, DriftEvent, EventSink, REASON, SinkError};
use crate::proxy::health::format_time;

/// The namespace and name of kube-proxy's ConfigMap.
pub const KUBE_PROXY_CONFIG: (&str, &str) = ("kube-system", "kube-proxy");

/// Reads the `kube-system/kube-proxy` ConfigMap's data; `Ok(None)` when it does not exist.
pub async fn kube_proxy_config(
    client: &Client,
) -> Result<Option<BTreeMap<String, String>>, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), KUBE_PROXY_CONFIG.0);
    match api.get_opt(KUBE_PROXY_CONFIG.1).await {
        Ok(found) => Ok(found.map(|cm| cm.data.unwrap_or_default())),
        Err(e) => Err(describe_kube_error(&e)),
    }
}

/// Writes drift Events through the API server as core/v1 Events.
#[derive(Clone)]
pub struct KubeEventSink {
    client: Client,
    instance: String,
}

impl KubeEventSink {
    /// Events written with `client`, reported by `svcproxy` on `node` (`reportingInstance`).
    pub fn new(client: Client, node: &str) -> KubeEventSink {
        KubeEventSink {
            client,
            instance: format!("{COMPONENT}-{node}"),
        }
    }

    fn api(&self, namespace: &str) -> Api<Event> {
        Api::namespaced(self.client.clone(), namespace)
    }

    async fn update(&self, previous: &EventRef, event: &DriftEvent) -> Result<bool, SinkError> {
        let patch = json!({
            "count": event.count,
            "lastTimestamp": seconds(event.now),
            "message": event.message,
        });
        match self
            .api(&previous.namespace)
            .patch(
                &previous.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(::kube::Error::Api(status)) if status.code == 404 => Ok(false),
            Err(e) => Err(classify(&e)),
        }
    }

    async fn create(&self, event: &DriftEvent) -> Result<EventRef, SinkError> {
        let body = event_object(event, &self.instance);
        let object: Event =
            serde_json::from_value(body).map_err(|e| SinkError::Failed(e.to_string()))?;
        let namespace = event.involved.event_namespace().to_string();
        let created = self
            .api(&namespace)
            .create(&PostParams::default(), &object)
            .await
            .map_err(|e| classify(&e))?;
        Ok(EventRef {
            namespace,
            name: created.metadata.name.unwrap_or_default(),
        })
    }
}

impl EventSink for KubeEventSink {
    fn publish<'a>(&'a self, event: &'a DriftEvent) -> BoxFuture<'a, Result<EventRef, SinkError>> {
        Box::pin(async move {
            if let Some(previous) = &event.previous
                && self.update(previous, event).await?
            {
                return Ok(previous.clone());
            }
            self.create(event).await
        })
    }
}

fn classify(error: &::kube::Error) -> SinkError {
    match error {
        ::kube::Error::Api(status) if status.code == 403 => {
            SinkError::Forbidden(describe_kube_error(error))
        }
        other => SinkError::Failed(describe_kube_error(other)),
    }
}

/// Whole seconds, as Event timestamps are.
fn seconds(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format_time(UNIX_EPOCH + Duration::from_secs(secs))
}

/// The core/v1 Event for `event`, named like client-go's recorder names them
/// (`<object>.<hex nanoseconds>`).
pub fn event_object(event: &DriftEvent, instance: &str) -> serde_json::Value {
    let nanos = event
        .now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let involved = &event.involved;
    let mut object_ref = json!({
        "apiVersion": "v1",
        "kind": involved.kind,
        "name": involved.name,
    });
    match &involved.namespace {
        Some(ns) => object_ref["namespace"] = json!(ns),
        // kubelet's Node Events carry the node's name as uid, which `kubectl describe node` selects on.
        None => object_ref["uid"] = json!(involved.name),
    }
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": format!("{}.{nanos:x}", involved.name),
            "namespace": involved.event_namespace(),
        },
        "involvedObject": object_ref,
        "reason": REASON,
        "message": event.message,
        "type": event.event_type,
        "action": "Audit",
        "count": event.count,
        "firstTimestamp": seconds(event.first_seen),
        "lastTimestamp": seconds(event.now),
        "source": {"component": COMPONENT, "host": event.node},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::drift::{Finding, FindingKind};
    use crate::proxy::audit::dedup::{Due, EventKey};

    #[test]
    fn the_event_object_is_a_valid_core_v1_event() {
        let finding = Finding::new(FindingKind::StaleEndpoint, "still DNATs there")
            .for_service("shop/web:http")
            .in_chain("KUBE-SEP-X")
            .at_endpoint("10.0.0.1:80");
        let due = Due {
            key: EventKey::of(&finding),
            finding,
            count: 1,
            previous: None,
            first_seen: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        };
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_060_500);
        let event = DriftEvent::new("node-1", &due, at);
        let body = event_object(&event, "svcproxy-node-1");
        let parsed: Event = serde_json::from_value(body.clone()).expect("a core/v1 Event");
        assert_eq!(parsed.reason.as_deref(), Some(REASON));
        assert_eq!(parsed.type_.as_deref(), Some("Warning"));
        assert_eq!(parsed.reporting_component.as_deref(), Some("svcproxy"));
        assert_eq!(parsed.involved_object.kind.as_deref(), Some("Service"));
        assert_eq!(parsed.involved_object.namespace.as_deref(), Some("shop"));
        assert_eq!(parsed.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(body["lastTimestamp"], "2023-11-14T22:14:20Z");
        assert!(
            body["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("web.")),
            "{body}"
        );
    }
}
