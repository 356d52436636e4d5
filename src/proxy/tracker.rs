//! The proxy's view of the cluster, updated from watch events, with the Services each event touched.
//!
//! Pure: no I/O and no clock. The sync loop asks it which Services changed since the last successful
//! sync, and whether the node itself changed in a way that needs a full sync.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use super::events::{ClusterEvent, WatchEvent};
use crate::core::model::{ClusterState, EndpointSlice, NamespacedName, Node, Service};

/// Which kinds have delivered their initial list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    /// Services listed.
    pub services: bool,
    /// EndpointSlices listed.
    pub endpoint_slices: bool,
    /// The Node listed (it may not exist).
    pub node: bool,
}

impl Synced {
    /// Every kind has been listed: the first sync may run.
    pub fn all(&self) -> bool {
        self.services && self.endpoint_slices && self.node
    }
}

/// Cluster state plus the changes not yet synced.
#[derive(Debug, Default)]
pub struct ChangeTracker {
    state: ClusterState,
    synced: Synced,
    dirty: BTreeSet<NamespacedName>,
    node_changed: bool,
    service_changes: u64,
    endpoint_changes: u64,
    /// `(service_changes, endpoint_changes)` when the changes were last taken for a sync.
    taken_at: (u64, u64),
    /// Trigger times older than this are not reported (kube-proxy's rule: the initial lists would
    /// otherwise report how old every slice is, not how long programming took).
    started: Option<SystemTime>,
    /// The `endpoints.kubernetes.io/last-change-trigger-time` of each slice change not yet taken.
    trigger_times: Vec<SystemTime>,
}

/// Parses an RFC 3339 trigger-time annotation; an unparsable value is ignored, as kube-proxy does.
fn trigger_time(slice: &EndpointSlice) -> Option<SystemTime> {
    let text = slice.last_change_trigger_time.as_deref()?;
    text.parse::<jiff::Timestamp>().ok().map(SystemTime::from)
}

impl ChangeTracker {
    /// An empty tracker.
    pub fn new() -> ChangeTracker {
        ChangeTracker::default()
    }

    /// An empty tracker that keeps only trigger times from `started` on (the proxy's start).
    pub fn started_at(started: SystemTime) -> ChangeTracker {
        ChangeTracker {
            started: Some(started),
            ..ChangeTracker::default()
        }
    }

    /// The trigger times of the EndpointSlice changes since the last call (for
    /// `network_programming_duration_seconds`); resets them.
    pub fn take_trigger_times(&mut self) -> Vec<SystemTime> {
        std::mem::take(&mut self.trigger_times)
    }

    fn note_trigger(&mut self, slice: &EndpointSlice) {
        if let Some(at) = trigger_time(slice)
            && self.started.is_none_or(|started| at >= started)
        {
            self.trigger_times.push(at);
        }
    }

    /// The current cluster state.
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// Sets the `kube-system/kube-proxy` ConfigMap's data (the node's kube-proxy settings), which the
    /// watches do not deliver; `--audit` reads it once and plans with it.
    pub fn set_kube_proxy_config(&mut self, data: Option<BTreeMap<String, String>>) {
        self.state.kube_proxy_config = data;
    }

    /// Which kinds are listed.
    pub fn synced(&self) -> Synced {
        self.synced
    }

    /// This node's object, if it exists.
    pub fn node(&self) -> Option<&Node> {
        self.state.nodes.values().next()
    }

    /// Services changed since [`ChangeTracker::take_changes`] was last called.
    pub fn pending(&self) -> usize {
        self.dirty.len()
    }

    /// Whether the node changed in a way that changes every Service's rules (labels, pod CIDRs,
    /// addresses) since the last [`ChangeTracker::take_changes`].
    pub fn node_changed(&self) -> bool {
        self.node_changed
    }

    /// Service and EndpointSlice changes not yet taken by a sync (for metrics).
    pub fn pending_changes(&self) -> (u64, u64) {
        (
            self.service_changes - self.taken_at.0,
            self.endpoint_changes - self.taken_at.1,
        )
    }

    /// Counts of Service and EndpointSlice changes seen so far (for metrics).
    pub fn change_totals(&self) -> (u64, u64) {
        (self.service_changes, self.endpoint_changes)
    }

    /// The Services changed since the last call, and whether the node changed; resets both.
    pub fn take_changes(&mut self) -> (BTreeSet<NamespacedName>, bool) {
        self.taken_at = (self.service_changes, self.endpoint_changes);
        (
            std::mem::take(&mut self.dirty),
            std::mem::take(&mut self.node_changed),
        )
    }

    /// Puts changes back after a failed sync, so the next attempt covers them.
    pub fn restore_changes(&mut self, services: BTreeSet<NamespacedName>, node_changed: bool) {
        self.dirty.extend(services);
        self.node_changed |= node_changed;
    }

    /// Applies one watch event.
    pub fn apply(&mut self, event: ClusterEvent) {
        match event {
            ClusterEvent::Services(event) => self.apply_services(event),
            ClusterEvent::EndpointSlices(event) => self.apply_slices(event),
            ClusterEvent::Node(event) => self.apply_node(event),
        }
    }

    fn apply_services(&mut self, event: WatchEvent<Service>) {
        match event {
            WatchEvent::Applied(svc) => {
                if self.state.services.get(&svc.id) != Some(&svc) {
                    self.service_changes += 1;
                    self.dirty.insert(svc.id.clone());
                    self.state.insert_service(svc);
                }
            }
            WatchEvent::Deleted(svc) => {
                if self.state.services.remove(&svc.id).is_some() {
                    self.service_changes += 1;
                    self.dirty.insert(svc.id);
                }
            }
            WatchEvent::Relisted(all) => {
                let fresh: BTreeMap<NamespacedName, Service> =
                    all.into_iter().map(|s| (s.id.clone(), s)).collect();
                for (id, old) in &self.state.services {
                    if fresh.get(id) != Some(old) {
                        self.dirty.insert(id.clone());
                    }
                }
                for id in fresh.keys() {
                    if !self.state.services.contains_key(id) {
                        self.dirty.insert(id.clone());
                    }
                }
                self.service_changes += 1;
                self.state.services = fresh;
                self.synced.services = true;
            }
        }
    }

    fn apply_slices(&mut self, event: WatchEvent<EndpointSlice>) {
        match event {
            WatchEvent::Applied(slice) => {
                let old = self.state.endpoint_slices.get(&slice.id);
                if old != Some(&slice) {
                    if let Some(old) = old {
                        // A slice moved to another Service (label edited): both are affected.
                        self.dirty.insert(old.service());
                    }
                    self.endpoint_changes += 1;
                    self.dirty.insert(slice.service());
                    self.note_trigger(&slice);
                    self.state.insert_slice(slice);
                }
            }
            WatchEvent::Deleted(slice) => {
                if let Some(old) = self.state.endpoint_slices.remove(&slice.id) {
                    self.endpoint_changes += 1;
                    self.dirty.insert(old.service());
                }
            }
            WatchEvent::Relisted(all) => {
                let fresh: BTreeMap<NamespacedName, EndpointSlice> =
                    all.into_iter().map(|s| (s.id.clone(), s)).collect();
                for (id, old) in &self.state.endpoint_slices {
                    if fresh.get(id) != Some(old) {
                        self.dirty.insert(old.service());
                    }
                }
                for (id, slice) in &fresh {
                    if self.state.endpoint_slices.get(id) != Some(slice) {
                        self.dirty.insert(slice.service());
                        self.note_trigger(slice);
                    }
                }
                self.endpoint_changes += 1;
                self.state.endpoint_slices = fresh;
                self.synced.endpoint_slices = true;
            }
        }
    }

    fn apply_node(&mut self, event: WatchEvent<Node>) {
        let before = self.node().cloned();
        match event {
            WatchEvent::Applied(node) => {
                self.state.nodes.clear();
                self.state.insert_node(node);
            }
            WatchEvent::Deleted(_) => self.state.nodes.clear(),
            WatchEvent::Relisted(nodes) => {
                self.state.nodes.clear();
                for node in nodes {
                    self.state.insert_node(node);
                }
                self.synced.node = true;
            }
        }
        let after = self.node();
        let rules_relevant = |n: Option<&Node>| {
            n.map(|n| (n.labels.clone(), n.pod_cidrs.clone(), n.addresses.clone()))
        };
        if rules_relevant(before.as_ref()) != rules_relevant(after) {
            self.node_changed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::core::model::{AddressType, ServiceType, TrafficPolicy};

    fn svc(name: &str, ip: &str) -> Service {
        Service {
            id: NamespacedName::new("ns", name),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            service_type: ServiceType::ClusterIP,
            cluster_ips: vec![ip.parse().unwrap()],
            headless: false,
            ports: Vec::new(),
            external_ips: Vec::new(),
            load_balancer_ingress: Vec::new(),
            load_balancer_source_ranges: Vec::new(),
            external_traffic_policy: TrafficPolicy::Cluster,
            internal_traffic_policy: TrafficPolicy::Cluster,
            session_affinity_timeout: None,
            health_check_node_port: None,
            selector: BTreeMap::new(),
            external_name: None,
        }
    }

    fn slice(name: &str, service: &str) -> EndpointSlice {
        EndpointSlice {
            id: NamespacedName::new("ns", name),
            service_name: service.into(),
            labels: BTreeMap::new(),
            address_type: AddressType::IPv4,
            ports: Vec::new(),
            endpoints: Vec::new(),
            last_change_trigger_time: None,
        }
    }

    fn node(zone: &str) -> Node {
        Node {
            name: "n1".into(),
            labels: [("topology.kubernetes.io/zone".to_string(), zone.to_string())].into(),
            pod_cidrs: Vec::new(),
            addresses: Vec::new(),
            taints: Vec::new(),
            being_deleted: false,
        }
    }

    fn names(set: &BTreeSet<NamespacedName>) -> Vec<String> {
        set.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn synced_only_after_every_kind_is_listed() {
        let mut t = ChangeTracker::new();
        t.apply(ClusterEvent::Services(WatchEvent::Relisted(vec![svc(
            "a",
            "10.96.0.1",
        )])));
        t.apply(ClusterEvent::EndpointSlices(WatchEvent::Relisted(vec![])));
        assert!(!t.synced().all());
        t.apply(ClusterEvent::Node(WatchEvent::Relisted(vec![])));
        assert!(t.synced().all());
    }

    #[test]
    fn changes_mark_their_services_and_unchanged_applies_do_not() {
        let mut t = ChangeTracker::new();
        t.apply(ClusterEvent::Services(WatchEvent::Relisted(vec![
            svc("a", "10.96.0.1"),
            svc("b", "10.96.0.2"),
        ])));
        assert_eq!(names(&t.take_changes().0), ["ns/a", "ns/b"]);
        t.apply(ClusterEvent::Services(WatchEvent::Applied(svc(
            "a",
            "10.96.0.1",
        ))));
        assert_eq!(
            t.pending(),
            0,
            "re-applying an identical object changes nothing"
        );
        t.apply(ClusterEvent::EndpointSlices(WatchEvent::Applied(slice(
            "b-1", "b",
        ))));
        t.apply(ClusterEvent::Services(WatchEvent::Deleted(svc(
            "a",
            "10.96.0.1",
        ))));
        assert_eq!(names(&t.take_changes().0), ["ns/a", "ns/b"]);
        assert!(
            !t.state()
                .services
                .contains_key(&NamespacedName::new("ns", "a"))
        );
    }

    #[test]
    fn a_relist_marks_what_appeared_disappeared_or_changed() {
        let mut t = ChangeTracker::new();
        t.apply(ClusterEvent::EndpointSlices(WatchEvent::Relisted(vec![
            slice("a-1", "a"),
            slice("b-1", "b"),
        ])));
        t.take_changes();
        let mut changed = slice("b-1", "b");
        changed.last_change_trigger_time = Some("now".into());
        t.apply(ClusterEvent::EndpointSlices(WatchEvent::Relisted(vec![
            changed,
            slice("c-1", "c"),
        ])));
        assert_eq!(names(&t.take_changes().0), ["ns/a", "ns/b", "ns/c"]);
    }

    #[test]
    fn a_slice_moving_between_services_marks_both() {
        let mut t = ChangeTracker::new();
        t.apply(ClusterEvent::EndpointSlices(WatchEvent::Applied(slice(
            "x", "a",
        ))));
        t.take_changes();
        t.apply(ClusterEvent::EndpointSlices(WatchEvent::Applied(slice(
            "x", "b",
        ))));
        assert_eq!(names(&t.take_changes().0), ["ns/a", "ns/b"]);
    }

    #[test]
    fn node_label_changes_are_reported_once() {
        let mut t = ChangeTracker::new();
        t.apply(ClusterEvent::Node(WatchEvent::Relisted(vec![node("z1")])));
        assert!(t.take_changes().1);
        t.apply(ClusterEvent::Node(WatchEvent::Applied(node("z1"))));
        assert!(!t.node_changed());
        t.apply(ClusterEvent::Node(WatchEvent::Applied(node("z2"))));
        assert!(t.take_changes().1);
        assert!(!t.node_changed());
    }

    #[test]
    fn pending_changes_count_per_kind_until_taken() {
        let mut t = ChangeTracker::new();
        t.apply(ClusterEvent::Services(WatchEvent::Applied(svc(
            "a",
            "10.96.0.1",
        ))));
        t.apply(ClusterEvent::EndpointSlices(WatchEvent::Applied(slice(
            "a-1", "a",
        ))));
        t.apply(ClusterEvent::EndpointSlices(WatchEvent::Applied(slice(
            "a-2", "a",
        ))));
        assert_eq!(t.pending_changes(), (1, 2));
        t.take_changes();
        assert_eq!(t.pending_changes(), (0, 0));
        assert_eq!(t.change_totals(), (1, 2));
    }

    #[test]
    fn failed_sync_puts_changes_back() {
        let mut t = ChangeTracker::new();
        t.apply(ClusterEvent::Services(WatchEvent::Applied(svc(
            "a",
            "10.96.0.1",
        ))));
        let (services, node) = t.take_changes();
        t.restore_changes(services, node);
        assert_eq!(t.pending(), 1);
    }

    #[test]
    fn trigger_times_after_the_start_are_kept_for_the_latency_metric() {
        let start = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let mut t = ChangeTracker::started_at(start);
        let with_trigger = |name: &str, at: &str| {
            let mut s = slice(name, "b");
            s.last_change_trigger_time = Some(at.into());
            s
        };
        // Before the start (2023-11-14T22:13:19Z), after it, and unparsable.
        t.apply(ClusterEvent::EndpointSlices(WatchEvent::Relisted(vec![
            with_trigger("b-1", "2023-11-14T22:13:19Z"),
            with_trigger("b-2", "2023-11-14T22:13:25Z"),
            with_trigger("b-3", "yesterday"),
        ])));
        assert_eq!(
            t.take_trigger_times(),
            vec![start + std::time::Duration::from_secs(5)]
        );
        assert!(t.take_trigger_times().is_empty(), "taking resets them");
        // An unchanged slice applied again is no change and no new trigger.
        t.apply(ClusterEvent::EndpointSlices(WatchEvent::Applied(
            with_trigger("b-2", "2023-11-14T22:13:25Z"),
        )));
        assert!(t.take_trigger_times().is_empty());
        t.apply(ClusterEvent::EndpointSlices(WatchEvent::Applied(
            with_trigger("b-2", "2023-11-14T22:13:30.5Z"),
        )));
        assert_eq!(
            t.take_trigger_times(),
            vec![start + std::time::Duration::from_millis(10_500)]
        );
    }
}
