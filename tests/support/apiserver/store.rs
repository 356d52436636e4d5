//! The objects, their resourceVersions, the change history and the open watches.

use std::collections::{BTreeMap, HashMap, VecDeque};

use axum::body::Bytes;
use futures::channel::mpsc::UnboundedSender;
use serde_json::{Value, json};

use super::resources::ResourceDef;
use super::selector::{FieldSelector, LabelSelector, labels_of};
use super::status;

/// `(group, plural, namespace, name)`; the namespace is empty for cluster-scoped objects.
type Key = (&'static str, &'static str, String, String);

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One entry of the change history.
#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    def: &'static ResourceDef,
    kind: ChangeType,
    /// The new state (the last state, for a deletion), stamped with `rv`.
    object: Value,
    /// The state before a modification.
    previous: Option<Value>,
}

/// Which objects a list or watch selects.
#[derive(Debug, Clone)]
pub struct Filter {
    pub def: &'static ResourceDef,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    fn matches(&self, object: &Value) -> bool {
        let namespace_ok = match &self.namespace {
            Some(ns) => {
                object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    == Some(ns)
            }
            None => true,
        };
        namespace_ok && self.labels.matches(&labels_of(object)) && self.fields.matches(object)
    }
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy)]
pub enum WatchStart {
    /// From this resourceVersion: every change after it, then live changes.
    After(u64),
    /// From now, after synthetic `ADDED` events for the current objects (`resourceVersion` unset or
    /// `0`); with `initial_events_end`, followed by the bookmark that ends a streaming list.
    Current { initial_events_end: bool },
}

struct Watcher {
    id: u64,
    filter: Filter,
    bookmarks: bool,
    tx: UnboundedSender<Bytes>,
}

/// Everything the server knows.
pub struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Change>,
    /// The oldest resourceVersion a watch can resume from: every change after it is in `history`.
    floor: u64,
    history_limit: usize,
    watchers: Vec<Watcher>,
    next_watcher: u64,
    next_uid: u64,
    next_generated: u64,
    /// The resourceVersion of the last change to each kind (group, plural).
    last_change: HashMap<(&'static str, &'static str), u64>,
}

/// Why a write was refused.
#[derive(Debug)]
pub enum WriteError {
    AlreadyExists,
    NotFound,
    Conflict,
    Invalid(String),
}

impl Store {
    pub fn new(history_limit: usize) -> Store {
        Store {
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            floor: 1,
            history_limit,
            watchers: Vec::new(),
            next_watcher: 1,
            next_uid: 1,
            last_change: HashMap::new(),
            next_generated: 1,
        }
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    fn key(def: &'static ResourceDef, namespace: &str, name: &str) -> Key {
        (
            def.group,
            def.plural,
            namespace.to_string(),
            name.to_string(),
        )
    }

    /// Checks and completes an object's identity: `apiVersion`/`kind`, the namespace (from the path when
    /// the object has none), the name (from `generateName` when it has none). Returns the key.
    fn identify(
        &mut self,
        def: &'static ResourceDef,
        namespace: Option<&str>,
        object: &mut Value,
    ) -> Result<Key, WriteError> {
        if !object.is_object() {
            return Err(WriteError::Invalid("the body is not a JSON object".into()));
        }
        for (field, want) in [
            ("apiVersion", def.api_version()),
            ("kind", def.kind.to_string()),
        ] {
            match object.get(field).and_then(Value::as_str) {
                None => object[field] = json!(want),
                Some(have) if have == want => {}
                Some(have) => {
                    return Err(WriteError::Invalid(format!(
                        "{field} {have:?} does not match the path ({want})"
                    )));
                }
            }
        }
        if !object.get("metadata").is_some_and(Value::is_object) {
            object["metadata"] = json!({});
        }
        let meta = &mut object["metadata"];
        let ns = if def.namespaced {
            let from_object = meta
                .get("namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            let ns = match (from_object, namespace) {
                (Some(have), Some(path)) if have != path => {
                    return Err(WriteError::Invalid(format!(
                        "the namespace of the provided object ({have}) does not match the namespace sent on the request ({path})"
                    )));
                }
                (Some(have), _) => have,
                (None, Some(path)) => path.to_string(),
                (None, None) => {
                    return Err(WriteError::Invalid("metadata.namespace is required".into()));
                }
            };
            meta["namespace"] = json!(ns);
            ns
        } else {
            String::new()
        };
        let name = match meta.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    let name = format!("{prefix}{:05x}", self.next_generated);
                    self.next_generated += 1;
                    meta["name"] = json!(name);
                    name
                }
                _ => return Err(WriteError::Invalid("metadata.name is required".into())),
            },
        };
        Ok(Self::key(def, &ns, &name))
    }

    /// Creates or replaces an object (the test's `apply`). Returns the stored object.
    pub fn put(
        &mut self,
        def: &'static ResourceDef,
        namespace: Option<&str>,
        mut object: Value,
    ) -> Result<Value, WriteError> {
        let key = self.identify(def, namespace, &mut object)?;
        let previous = self.objects.get(&key).cloned();
        Ok(self.store(def, key, object, previous))
    }

    /// Creates an object that must not exist yet.
    pub fn create(
        &mut self,
        def: &'static ResourceDef,
        namespace: Option<&str>,
        mut object: Value,
    ) -> Result<Value, WriteError> {
        let key = self.identify(def, namespace, &mut object)?;
        if self.objects.contains_key(&key) {
            return Err(WriteError::AlreadyExists);
        }
        Ok(self.store(def, key, object, None))
    }

    /// Replaces an existing object; a `resourceVersion` in the body must be the current one.
    pub fn update(
        &mut self,
        def: &'static ResourceDef,
        namespace: Option<&str>,
        name: &str,
        mut object: Value,
    ) -> Result<Value, WriteError> {
        let key = self.identify(def, namespace, &mut object)?;
        if key.3 != name {
            return Err(WriteError::Invalid(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                key.3
            )));
        }
        let previous = self
            .objects
            .get(&key)
            .cloned()
            .ok_or(WriteError::NotFound)?;
        let sent = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        let current = previous
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        if sent.is_some_and(|sent| Some(sent) != current) {
            return Err(WriteError::Conflict);
        }
        Ok(self.store(def, key, object, Some(previous)))
    }

    /// Applies a JSON merge patch (RFC 7386) to an existing object.
    pub fn merge_patch(
        &mut self,
        def: &'static ResourceDef,
        namespace: Option<&str>,
        name: &str,
        patch: &Value,
    ) -> Result<Value, WriteError> {
        let key = Self::key(def, namespace.unwrap_or_default(), name);
        let previous = self
            .objects
            .get(&key)
            .cloned()
            .ok_or(WriteError::NotFound)?;
        let mut object = previous.clone();
        merge(&mut object, patch);
        // Identity fields are not patchable.
        object["metadata"]["name"] = previous["metadata"]["name"].clone();
        if def.namespaced {
            object["metadata"]["namespace"] = previous["metadata"]["namespace"].clone();
        }
        object["metadata"]["uid"] = previous["metadata"]["uid"].clone();
        Ok(self.store(def, key, object, Some(previous)))
    }

    fn store(
        &mut self,
        def: &'static ResourceDef,
        key: Key,
        mut object: Value,
        previous: Option<Value>,
    ) -> Value {
        self.rv += 1;
        let meta = &mut object["metadata"];
        meta["resourceVersion"] = json!(self.rv.to_string());
        let uid = previous
            .as_ref()
            .and_then(|p| p.pointer("/metadata/uid").cloned())
            .filter(|uid| uid.as_str().is_some_and(|s| !s.is_empty()));
        match uid {
            Some(uid) => meta["uid"] = uid,
            None if meta
                .get("uid")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty()) => {}
            None => {
                meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012x}", self.next_uid));
                self.next_uid += 1;
            }
        }
        self.objects.insert(key, object.clone());
        let kind = if previous.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        self.record(Change {
            rv: self.rv,
            def,
            kind,
            object: object.clone(),
            previous,
        });
        object
    }

    /// Deletes an object; returns its last state, stamped with the deletion's resourceVersion.
    pub fn delete(
        &mut self,
        def: &'static ResourceDef,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let mut object = self.objects.remove(&Self::key(def, namespace, name))?;
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(Change {
            rv: self.rv,
            def,
            kind: ChangeType::Deleted,
            object: object.clone(),
            previous: None,
        });
        Some(object)
    }

    /// One object.
    pub fn get(&self, def: &'static ResourceDef, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&Self::key(def, namespace, name))
    }

    /// The objects `filter` selects, in key order, and the current resourceVersion.
    pub fn list(&self, filter: &Filter) -> (Vec<Value>, u64) {
        let items = self
            .objects
            .iter()
            .filter(|((group, plural, _, _), _)| {
                *group == filter.def.group && *plural == filter.def.plural
            })
            .map(|(_, object)| object)
            .filter(|object| filter.matches(object))
            .cloned()
            .collect();
        (items, self.rv)
    }

    /// Every stored object of `def`, in resourceVersion order.
    pub fn all_of(&self, def: &'static ResourceDef) -> Vec<Value> {
        let mut items: Vec<Value> = self
            .objects
            .iter()
            .filter(|((group, plural, _, _), _)| *group == def.group && *plural == def.plural)
            .map(|(_, object)| object.clone())
            .collect();
        items.sort_by_key(rv_of);
        items
    }

    /// Whether an object of kind `def` changed after resourceVersion `rv`.
    pub fn changed_since(&self, def: &ResourceDef, rv: u64) -> bool {
        self.last_change
            .get(&(def.group, def.plural))
            .is_some_and(|&at| at > rv)
    }

    fn record(&mut self, change: Change) {
        self.last_change
            .insert((change.def.group, change.def.plural), change.rv);
        self.watchers
            .retain(|watcher| match event_for(&watcher.filter, &change) {
                Some(line) => watcher.tx.unbounded_send(line).is_ok(),
                None => !watcher.tx.is_closed(),
            });
        self.history.push_back(change);
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.floor = dropped.rv;
            }
        }
    }

    /// Opens a watch. On a resourceVersion older than the history, returns the `Expired` status the
    /// watch must end with.
    pub fn watch(
        &mut self,
        filter: Filter,
        bookmarks: bool,
        start: WatchStart,
        tx: UnboundedSender<Bytes>,
    ) -> Result<u64, Value> {
        match start {
            WatchStart::After(rv) => {
                if rv < self.floor {
                    return Err(status::expired(&format!(
                        "too old resource version: {rv} ({})",
                        self.floor
                    )));
                }
                for change in self.history.iter().filter(|c| c.rv > rv) {
                    if let Some(line) = event_for(&filter, change) {
                        let _ = tx.unbounded_send(line);
                    }
                }
            }
            WatchStart::Current { initial_events_end } => {
                let (items, rv) = self.list(&filter);
                for object in items {
                    let _ = tx.unbounded_send(event_line("ADDED", &object));
                }
                if initial_events_end {
                    let _ = tx.unbounded_send(bookmark_line(filter.def, rv, true));
                }
            }
        }
        let id = self.next_watcher;
        self.next_watcher += 1;
        self.watchers.push(Watcher {
            id,
            filter,
            bookmarks,
            tx,
        });
        Ok(id)
    }

    /// Ends one watch (its stream closes).
    pub fn end_watch(&mut self, id: u64) {
        self.watchers.retain(|w| w.id != id);
    }

    /// Ends every watch.
    pub fn end_all_watches(&mut self) {
        self.watchers.clear();
    }

    /// The open watches: `(plural, group)` of each.
    pub fn open_watches(&self) -> Vec<(&'static str, &'static str)> {
        self.watchers
            .iter()
            .filter(|w| !w.tx.is_closed())
            .map(|w| (w.filter.def.plural, w.filter.def.group))
            .collect()
    }

    /// Sends a `BOOKMARK` with the current resourceVersion to every watch that asked for bookmarks.
    pub fn bookmark(&mut self) {
        let rv = self.rv;
        self.watchers.retain(|watcher| {
            if watcher.bookmarks {
                watcher
                    .tx
                    .unbounded_send(bookmark_line(watcher.filter.def, rv, false))
                    .is_ok()
            } else {
                !watcher.tx.is_closed()
            }
        });
    }

    /// Forgets the change history: a watch can only resume from the current resourceVersion on.
    pub fn compact(&mut self) {
        self.history.clear();
        self.floor = self.rv;
    }
}

/// The watch event line `filter`'s watch gets for `change`, if any. A modification that moves an object
/// into the selection is `ADDED`; out of it, `DELETED` (the previous state at the new resourceVersion).
fn event_for(filter: &Filter, change: &Change) -> Option<Bytes> {
    if !std::ptr::eq(filter.def, change.def) {
        return None;
    }
    let now = filter.matches(&change.object);
    match change.kind {
        ChangeType::Added => now.then(|| event_line("ADDED", &change.object)),
        ChangeType::Deleted => now.then(|| event_line("DELETED", &change.object)),
        ChangeType::Modified => {
            let before = change.previous.as_ref().is_some_and(|p| filter.matches(p));
            match (before, now) {
                (true, true) => Some(event_line("MODIFIED", &change.object)),
                (false, true) => Some(event_line("ADDED", &change.object)),
                (true, false) => {
                    let mut gone = change.previous.clone().unwrap_or_default();
                    gone["metadata"]["resourceVersion"] = json!(change.rv.to_string());
                    Some(event_line("DELETED", &gone))
                }
                (false, false) => None,
            }
        }
    }
}

/// One newline-terminated watch event.
pub fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// A `BOOKMARK` event: only apiVersion, kind and the resourceVersion, as the API server sends it.
fn bookmark_line(def: &ResourceDef, rv: u64, initial_events_end: bool) -> Bytes {
    let mut object = json!({
        "kind": def.kind,
        "apiVersion": def.api_version(),
        "metadata": {"resourceVersion": rv.to_string(), "creationTimestamp": null},
    });
    if initial_events_end {
        object["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line("BOOKMARK", &object)
}

/// `metadata.resourceVersion` as a number (0 when absent).
pub fn rv_of(object: &Value) -> u64 {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(map) = target {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(key);
            } else {
                merge(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}
