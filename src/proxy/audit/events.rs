//! Drift findings as Kubernetes Events: what an Event says and about which object, and the
//! [`EventSink`] that writes it (the Kubernetes adapter implements it; tests record).

use std::time::SystemTime;

use futures::future::BoxFuture;

use super::dedup::{Due, EventRef};
use crate::core::drift::Finding;

/// The `reason` of every drift Event.
pub const REASON: &str = "RulesDrift";
/// The reporting component (`reportingComponent` and `source.component`).
pub const COMPONENT: &str = "svcproxy";
/// The namespace of Events about the Node (a cluster-scoped object), as kubelet does.
pub const NODE_EVENT_NAMESPACE: &str = "default";
/// The API server's limit on an Event's message, in bytes.
pub const MAX_MESSAGE: usize = 1024;

/// The object an Event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Involved {
    /// `Service` or `Node`.
    pub kind: &'static str,
    /// The Service's namespace; `None` for the Node.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
}

impl Involved {
    /// The Service a finding names (`namespace/name[:port]`), else the Node `node`.
    pub fn of(finding: &Finding, node: &str) -> Involved {
        let service = finding.service.as_deref().and_then(|spn| {
            let base = spn.split_once(':').map_or(spn, |(service, _)| service);
            base.split_once('/')
                .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
        });
        match service {
            Some((namespace, name)) => Involved {
                kind: "Service",
                namespace: Some(namespace.to_string()),
                name: name.to_string(),
            },
            None => Involved {
                kind: "Node",
                namespace: None,
                name: node.to_string(),
            },
        }
    }

    /// The namespace the Event is written to.
    pub fn event_namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(NODE_EVENT_NAMESPACE)
    }
}

/// One Event to write (or, with `previous`, to update).
#[derive(Debug, Clone, PartialEq)]
pub struct DriftEvent {
    /// The node audited (`source.host`).
    pub node: String,
    /// The object the Event is about.
    pub involved: Involved,
    /// `Warning` for warning and error findings, `Normal` for informational ones.
    pub event_type: &'static str,
    /// The message: kind, node, service, chain, endpoint and the finding's sentence.
    pub message: String,
    /// The announcement's number (the Event's `count`).
    pub count: u32,
    /// The Event of the previous announcement, to update rather than create.
    pub previous: Option<EventRef>,
    /// When the finding was first seen (`firstTimestamp`).
    pub first_seen: SystemTime,
    /// Now (`lastTimestamp`).
    pub now: SystemTime,
}

impl DriftEvent {
    /// The Event announcing `due` on `node` at `now`.
    pub fn new(node: &str, due: &Due, now: SystemTime) -> DriftEvent {
        let finding = &due.finding;
        DriftEvent {
            node: node.to_string(),
            involved: Involved::of(finding, node),
            event_type: match finding.severity {
                crate::core::drift::Severity::Info => "Normal",
                _ => "Warning",
            },
            message: message(finding, node),
            count: due.count,
            previous: due.previous.clone(),
            first_seen: due.first_seen,
            now,
        }
    }
}

/// `stale-endpoint on node node-1: service default/web:http, chain KUBE-SVC-…, endpoint
/// 10.244.1.10:8080: <the finding's sentence>`, cut to [`MAX_MESSAGE`] bytes.
pub fn message(finding: &Finding, node: &str) -> String {
    let mut parts = Vec::new();
    if let Some(service) = &finding.service {
        parts.push(format!("service {service}"));
    }
    if let Some(chain) = &finding.chain {
        parts.push(format!("chain {chain}"));
    }
    if let Some(endpoint) = &finding.endpoint {
        parts.push(format!("endpoint {endpoint}"));
    }
    let node = finding.node.as_deref().unwrap_or(node);
    let mut text = format!("{} on node {node}", finding.kind);
    if !parts.is_empty() {
        text.push_str(": ");
        text.push_str(&parts.join(", "));
    }
    text.push_str(": ");
    text.push_str(&finding.message);
    truncate(text, MAX_MESSAGE)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut cut = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push('…');
    text
}

/// Why an Event was not written.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The API server refused (HTTP 403): the service account may not write Events. Not retried
    /// before the next re-announcement.
    #[error("not allowed to write Events: {0}")]
    Forbidden(String),
    /// Anything else; retried at the next check.
    #[error("{0}")]
    Failed(String),
}

/// Where drift Events go.
pub trait EventSink: Send + Sync {
    /// Writes `event` (updating `event.previous` when it still exists) and returns where it is.
    fn publish<'a>(&'a self, event: &'a DriftEvent) -> BoxFuture<'a, Result<EventRef, SinkError>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::drift::FindingKind;

    #[test]
    fn service_findings_are_about_the_service_others_about_the_node() {
        let f = Finding::new(FindingKind::MissingEndpoint, "x").for_service("shop/web:http");
        assert_eq!(
            Involved::of(&f, "node-1"),
            Involved {
                kind: "Service",
                namespace: Some("shop".into()),
                name: "web".into()
            }
        );
        let f = Finding::new(FindingKind::StaleService, "x").for_service("shop/web");
        assert_eq!(Involved::of(&f, "node-1").name, "web");
        let f = Finding::new(FindingKind::MissingJump, "x").in_chain("PREROUTING");
        let node = Involved::of(&f, "node-1");
        assert_eq!((node.kind, node.name.as_str()), ("Node", "node-1"));
        assert_eq!(node.event_namespace(), NODE_EVENT_NAMESPACE);
    }

    #[test]
    fn messages_name_kind_service_chain_and_endpoint() {
        let f = Finding::new(FindingKind::StaleEndpoint, "the node still DNATs there")
            .for_service("default/web:http")
            .in_chain("KUBE-SEP-ABC")
            .at_endpoint("10.244.1.10:8080");
        assert_eq!(
            message(&f, "node-1"),
            "stale-endpoint on node node-1: service default/web:http, chain KUBE-SEP-ABC, \
             endpoint 10.244.1.10:8080: the node still DNATs there"
        );
        let long = Finding::new(FindingKind::RuleMismatch, "é".repeat(2000));
        let text = message(&long, "n");
        assert!(
            text.len() <= MAX_MESSAGE && text.ends_with('…'),
            "{}",
            text.len()
        );
    }
}
