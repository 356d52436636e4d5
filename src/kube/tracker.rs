//! Turns one kind's watcher events into [`WatchEvent`]s of model objects.
//!
//! The watcher reports a (re)list as `Init`, `InitApply`…, `InitDone`; the tracker buffers it and
//! reports the whole set as one [`WatchEvent::Relisted`], so a relist after 410 Gone replaces
//! everything the proxy had. Objects that do not convert are skipped with a warning. To keep the proxy's
//! set equal to the convertible objects in the cluster, an update that makes a delivered object
//! unconvertible is reported as its deletion, and a deletion whose last state does not convert is
//! reported with the identity the object was delivered with.

use std::collections::HashMap;

use ::kube::ResourceExt;
use ::kube::runtime::watcher;

use super::kinds::{Identity, Watched};
use crate::proxy::events::WatchEvent;

/// The state of one kind's watch.
pub struct Tracker<K: Watched> {
    /// A list in progress: the converted objects and their identities.
    listing: Option<Listing<K>>,
    /// The identity of every object delivered and not deleted since, by `namespace/name`.
    delivered: HashMap<String, Identity>,
}

struct Listing<K: Watched> {
    models: Vec<K::Model>,
    identities: HashMap<String, Identity>,
}

impl<K: Watched> Listing<K> {
    fn new() -> Self {
        Listing {
            models: Vec::new(),
            identities: HashMap::new(),
        }
    }
}

impl<K: Watched> Default for Tracker<K> {
    fn default() -> Self {
        Tracker {
            listing: None,
            delivered: HashMap::new(),
        }
    }
}

/// `namespace/name`, or `name` for a cluster-scoped object.
fn key_of<K: Watched>(object: &K) -> String {
    match object.namespace() {
        Some(namespace) => format!("{namespace}/{}", object.name_any()),
        None => object.name_any(),
    }
}

/// Converts, logging the conversion's warnings at debug level and a failure at warn level.
fn convert_logged<K: Watched>(object: &K, key: &str) -> Option<K::Model> {
    match object.convert() {
        Ok(converted) => {
            for warning in &converted.warnings {
                tracing::debug!(kind = K::KIND, object = %key, "{warning}");
            }
            Some(converted.value)
        }
        Err(error) => {
            tracing::warn!(
                kind = K::KIND,
                object = %key,
                "skipping {} {key}, which cannot be used: {error}",
                K::KIND
            );
            None
        }
    }
}

impl<K: Watched> Tracker<K> {
    /// Takes one watcher event; returns what to tell the proxy, if anything.
    pub fn handle(&mut self, event: watcher::Event<K>) -> Option<WatchEvent<K::Model>> {
        match event {
            watcher::Event::Init => {
                self.listing = Some(Listing::new());
                None
            }
            watcher::Event::InitApply(object) => {
                let key = key_of(&object);
                let listing = self.listing.get_or_insert_with(Listing::new);
                if let Some(model) = convert_logged(&object, &key) {
                    listing.models.push(model);
                    listing.identities.insert(key, object.identity());
                }
                None
            }
            watcher::Event::InitDone => {
                let listing = self.listing.take().unwrap_or_else(Listing::new);
                self.delivered = listing.identities;
                Some(WatchEvent::Relisted(listing.models))
            }
            watcher::Event::Apply(object) => {
                let key = key_of(&object);
                match convert_logged(&object, &key) {
                    Some(model) => {
                        self.delivered.insert(key, object.identity());
                        Some(WatchEvent::Applied(model))
                    }
                    None => self.forget(&key),
                }
            }
            watcher::Event::Delete(object) => {
                let key = key_of(&object);
                if !self.delivered.contains_key(&key) {
                    tracing::debug!(kind = K::KIND, object = %key, "deleted, never delivered");
                    return None;
                }
                match object.convert() {
                    Ok(converted) => {
                        self.delivered.remove(&key);
                        Some(WatchEvent::Deleted(converted.value))
                    }
                    Err(_) => self.forget(&key),
                }
            }
        }
    }

    /// Reports a delivered object as deleted, with the identity it was delivered with.
    fn forget(&mut self, key: &str) -> Option<WatchEvent<K::Model>> {
        let identity = self.delivered.remove(key)?;
        match K::from_identity(&identity).convert() {
            Ok(converted) => Some(WatchEvent::Deleted(converted.value)),
            Err(error) => {
                tracing::warn!(
                    kind = K::KIND,
                    object = %key,
                    "cannot report the removal of {} {key}: {error}",
                    K::KIND
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn service(name: &str, port: i32) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some("default".to_string()),
                labels: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
                annotations: Some(BTreeMap::from([("note".to_string(), "x".to_string())])),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.96.0.1".to_string()),
                ports: Some(vec![ServicePort {
                    port,
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn names(event: &WatchEvent<crate::core::model::Service>) -> (String, Vec<String>) {
        match event {
            WatchEvent::Applied(s) => ("Applied".into(), vec![s.id.name.clone()]),
            WatchEvent::Deleted(s) => ("Deleted".into(), vec![s.id.name.clone()]),
            WatchEvent::Relisted(all) => (
                "Relisted".into(),
                all.iter().map(|s| s.id.name.clone()).collect(),
            ),
        }
    }

    fn feed(
        tracker: &mut Tracker<Service>,
        events: Vec<watcher::Event<Service>>,
    ) -> Vec<(String, Vec<String>)> {
        events
            .into_iter()
            .filter_map(|e| tracker.handle(e))
            .map(|e| names(&e))
            .collect()
    }

    fn listed(items: Vec<Service>) -> Vec<watcher::Event<Service>> {
        let mut events = vec![watcher::Event::Init];
        events.extend(items.into_iter().map(watcher::Event::InitApply));
        events.push(watcher::Event::InitDone);
        events
    }

    #[test]
    fn a_list_is_one_relisted_event_and_bad_objects_are_left_out() {
        let mut tracker = Tracker::default();
        let out = feed(
            &mut tracker,
            listed(vec![service("a", 80), service("bad", 0), service("b", 80)]),
        );
        assert_eq!(
            out,
            [(
                "Relisted".to_string(),
                vec!["a".to_string(), "b".to_string()]
            )]
        );
    }

    #[test]
    fn an_empty_list_is_still_reported() {
        let mut tracker = Tracker::default();
        assert_eq!(
            feed(&mut tracker, listed(vec![])),
            [("Relisted".to_string(), vec![])]
        );
    }

    #[test]
    fn changes_after_the_list() {
        let mut tracker = Tracker::default();
        feed(&mut tracker, listed(vec![service("a", 80)]));
        let out = feed(
            &mut tracker,
            vec![
                watcher::Event::Apply(service("b", 80)),
                watcher::Event::Delete(service("a", 80)),
            ],
        );
        assert_eq!(
            out,
            [
                ("Applied".to_string(), vec!["b".to_string()]),
                ("Deleted".to_string(), vec!["a".to_string()])
            ]
        );
    }

    #[test]
    fn an_update_that_breaks_a_delivered_object_removes_it() {
        let mut tracker = Tracker::default();
        feed(&mut tracker, listed(vec![service("a", 80)]));
        let out = feed(&mut tracker, vec![watcher::Event::Apply(service("a", 0))]);
        assert_eq!(out, [("Deleted".to_string(), vec!["a".to_string()])]);
        // Its later deletion is not reported twice; a bad object never delivered is not reported.
        let out = feed(
            &mut tracker,
            vec![
                watcher::Event::Delete(service("a", 0)),
                watcher::Event::Apply(service("c", 0)),
            ],
        );
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_deletion_whose_last_state_is_bad_uses_the_delivered_identity() {
        let mut tracker = Tracker::default();
        feed(&mut tracker, listed(vec![service("a", 80)]));
        let deleted: Vec<_> = vec![watcher::Event::Delete(service("a", 0))]
            .into_iter()
            .filter_map(|e| tracker.handle(e))
            .collect();
        match deleted.as_slice() {
            [WatchEvent::Deleted(s)] => {
                assert_eq!(s.id.name, "a");
                assert_eq!(s.labels.get("app").map(String::as_str), Some("a"));
                assert!(s.annotations.is_empty(), "identity without annotations");
            }
            other => panic!("expected one deletion, got {other:?}"),
        }
    }

    #[test]
    fn a_relist_replaces_what_was_delivered() {
        let mut tracker = Tracker::default();
        feed(
            &mut tracker,
            listed(vec![service("a", 80), service("b", 80)]),
        );
        let out = feed(&mut tracker, listed(vec![service("a", 80)]));
        assert_eq!(out, [("Relisted".to_string(), vec!["a".to_string()])]);
        // b is no longer known: its deletion is not reported.
        assert!(feed(&mut tracker, vec![watcher::Event::Delete(service("b", 80))]).is_empty());
    }

    #[test]
    fn a_list_interrupted_by_a_new_init_starts_over() {
        let mut tracker = Tracker::default();
        let mut events = vec![
            watcher::Event::Init,
            watcher::Event::InitApply(service("a", 80)),
        ];
        events.extend(listed(vec![service("b", 80)]));
        assert_eq!(
            feed(&mut tracker, events),
            [("Relisted".to_string(), vec!["b".to_string()])]
        );
    }
}
