//! Loading a snapshot bundle's `cluster.json` into a [`ClusterState`]. Pure: the caller reads the file.
//!
//! The file is what `kubectl get services,endpointslices,nodes,pods -A -o json` prints: a `v1` `List`
//! whose `items` carry their own `kind`. Also accepted: a typed list as the API returns it
//! (`ServiceList`, whose items may omit `kind`), and a single object. Services, EndpointSlices, Nodes and
//! Pods become the model; the `kube-system/kube-proxy` ConfigMap's `data` is kept as
//! [`ClusterState::kube_proxy_config`]; every other object is counted in [`BundleSummary::ignored`].

use std::collections::BTreeMap;
use std::ops::Range;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::convert::{self, Converted};
use super::json::{item_spans, json_error, line_column, message_without_position, position_in};
use super::{ClusterState, ModelError, NamespacedName, skim};

/// The advice attached to errors about `cluster.json`.
pub const REGENERATE_HINT: &str =
    "regenerate it with `kubectl get services,endpointslices,nodes,pods -A -o json > cluster.json`";

/// The namespace of the ConfigMap holding kube-proxy's configuration.
pub const KUBE_PROXY_CONFIG_NAMESPACE: &str = "kube-system";
/// The name of the ConfigMap holding kube-proxy's configuration.
pub const KUBE_PROXY_CONFIG_NAME: &str = "kube-proxy";

/// What a `cluster.json` held, besides the state itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleSummary {
    /// Services read.
    pub services: usize,
    /// EndpointSlices read.
    pub endpoint_slices: usize,
    /// Nodes read.
    pub nodes: usize,
    /// Pods read.
    pub pods: usize,
    /// The `kube-system/kube-proxy` ConfigMap was present.
    pub kube_proxy_config: bool,
    /// Objects that were not used, counted by kind (`Deployment`, `ConfigMap` other than kube-proxy's, …).
    pub ignored: BTreeMap<String, usize>,
    /// What was skipped or assumed while converting, and objects listed twice (the later one wins).
    pub warnings: Vec<String>,
}

impl BundleSummary {
    /// The number of ignored objects of every kind.
    pub fn ignored_total(&self) -> usize {
        self.ignored.values().sum()
    }
}

/// A loaded `cluster.json`: the state and the summary of what it held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadedCluster {
    /// The cluster state.
    pub state: ClusterState,
    /// Counts, ignored kinds and warnings.
    pub summary: BundleSummary,
}

/// Reads `cluster.json` text (named `source` in errors) into a [`ClusterState`], dropping the summary.
/// See [`load_cluster_json_with_summary`].
pub fn load_cluster_json(text: &str, source: &str) -> Result<ClusterState, ModelError> {
    load_cluster_json_with_summary(text, source).map(|loaded| loaded.state)
}

/// Reads `cluster.json` text (named `source` in errors) into a [`ClusterState`] plus a [`BundleSummary`].
///
/// Errors: invalid JSON ([`ModelError::Json`], with line, column and the `kubectl` command that
/// regenerates the file); a document that is neither a list nor an object ([`ModelError::Bundle`]); an
/// entry of `items` that does not match its schema or fails conversion ([`ModelError::Item`], with its
/// index, its position, and its kind and name).
pub fn load_cluster_json_with_summary(
    text: &str,
    source: &str,
) -> Result<LoadedCluster, ModelError> {
    let document: Value =
        serde_json::from_str(text).map_err(|e| json_error(source, &e, REGENERATE_HINT))?;
    let mut loader = Loader {
        text,
        source,
        spans: None,
        loaded: LoadedCluster::default(),
    };

    let Value::Object(top) = &document else {
        return Err(ModelError::Bundle {
            path: source.to_string(),
            reason: format!(
                "expected a Kubernetes List (an object with \"kind\": \"List\" and \"items\"), \
                 found {}; {REGENERATE_HINT}",
                json_type(&document)
            ),
        });
    };

    match top.get("items") {
        Some(Value::Array(items)) => {
            let list_kind = top.get("kind").and_then(Value::as_str).unwrap_or("List");
            let item_kind = list_kind.strip_suffix("List").filter(|k| !k.is_empty());
            for (index, item) in items.iter().enumerate() {
                loader.item(Some(index), item, item_kind)?;
            }
        }
        Some(other) => {
            return Err(ModelError::Bundle {
                path: source.to_string(),
                reason: format!(
                    "\"items\" must be a list of objects, found {}; {REGENERATE_HINT}",
                    json_type(other)
                ),
            });
        }
        None if top.contains_key("kind") => loader.item(None, &document, None)?,
        None => {
            return Err(ModelError::Bundle {
                path: source.to_string(),
                reason: format!(
                    "expected a Kubernetes List (an object with \"kind\": \"List\" and \"items\") \
                     or a single object with a \"kind\"; {REGENERATE_HINT}"
                ),
            });
        }
    }
    Ok(loader.loaded)
}

/// Which objects of a `cluster.json` a diagnostic of one Service reads: see
/// [`load_cluster_json_scoped`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadScope {
    /// The Service's namespace; `None` for a Service of this name in any namespace (`-A`).
    pub namespace: Option<String>,
    /// The Service's name.
    pub name: String,
    /// Pods needed besides those of the Service's namespace (`trace --from pod/NAMESPACE/NAME`).
    pub pods: Vec<NamespacedName>,
}

/// Reads from `cluster.json` text (named `source` in errors) only what a diagnostic of the Service
/// `scope` names needs: the Services of that name (in its namespace, or in any with
/// `scope.namespace == None`), their EndpointSlices, every Node, the Pods of the Services' namespaces
/// and `scope.pods`, and the `kube-system/kube-proxy` ConfigMap. The result is what
/// [`load_cluster_json`] gives for those objects; the other maps hold nothing else.
///
/// The whole text is checked for JSON syntax first (a fast pass that builds no values), so invalid
/// JSON is the same [`ModelError::Json`], with line and column, as from [`load_cluster_json`]. The
/// entries converted are checked as there ([`ModelError::Item`] with the index and position); the
/// entries skipped are not converted, so a schema or conversion problem in, say, a Service of another
/// namespace is not an error here. An entry whose `kind`, name, namespace or service-name label is not
/// a plain string (escaped, or not a string) is converted, as is any entry that is not an object, so
/// its error, if any, is the one [`load_cluster_json`] reports. A document that is not a list with an
/// `items` array is read whole by [`load_cluster_json`].
pub fn load_cluster_json_scoped<'a>(
    text: &'a str,
    source: &str,
    scope: &LoadScope,
) -> Result<ClusterState, ModelError> {
    let Some(list) = skim::skim_list(text) else {
        return load_cluster_json(text, source);
    };
    let item_kind = list
        .kind
        .unwrap_or("List")
        .strip_suffix("List")
        .filter(|k| !k.is_empty());
    fn plain(text: Option<&str>) -> Option<&str> {
        text.filter(|t| !t.is_empty())
    }
    let kind_of = |head: &skim::Head<'a>| head.kind.or(item_kind);
    // The namespaces whose Pods are needed: the Service's, or with `-A` those of every Service of the
    // name (all of them when a Service entry cannot be read plainly).
    let mut all_pods = false;
    let mut pod_namespaces: Vec<&str> = Vec::new();
    match &scope.namespace {
        Some(namespace) => pod_namespaces.push(namespace),
        None => {
            for item in &list.items {
                match &item.head {
                    Some(head) if kind_of(head) == Some("Service") => {
                        match (plain(head.namespace), plain(head.name)) {
                            (Some(namespace), Some(name)) if name == scope.name => {
                                pod_namespaces.push(namespace)
                            }
                            (Some(_), Some(_)) => {}
                            _ => all_pods = true,
                        }
                    }
                    Some(head) if kind_of(head).is_some() => {}
                    _ => all_pods = true,
                }
            }
        }
    }
    let in_scope = |namespace: &str| scope.namespace.as_deref().is_none_or(|n| n == namespace);
    let needed = |head: &skim::Head<'a>| -> bool {
        let (namespace, name) = (plain(head.namespace), plain(head.name));
        match kind_of(head) {
            // Converted so that the loader reports the missing kind.
            None => true,
            Some("Service") => match (namespace, name) {
                (Some(namespace), Some(name)) => name == scope.name && in_scope(namespace),
                _ => true,
            },
            Some("EndpointSlice") => match (namespace, plain(head.service_name)) {
                (Some(namespace), Some(service)) => service == scope.name && in_scope(namespace),
                _ => true,
            },
            Some("Node") => true,
            Some("Pod") => match (namespace, name) {
                (Some(namespace), Some(name)) => {
                    all_pods
                        || pod_namespaces.contains(&namespace)
                        || scope
                            .pods
                            .iter()
                            .any(|p| p.namespace == namespace && p.name == name)
                }
                _ => true,
            },
            Some("ConfigMap") => match (namespace, name) {
                (Some(namespace), Some(name)) => {
                    namespace == KUBE_PROXY_CONFIG_NAMESPACE && name == KUBE_PROXY_CONFIG_NAME
                }
                _ => true,
            },
            // Ignored by the loader too.
            Some(_) => false,
        }
    };
    let mut loader = Loader {
        text,
        source,
        spans: None,
        loaded: LoadedCluster::default(),
    };
    for (index, item) in list.items.iter().enumerate() {
        if item.head.as_ref().is_some_and(|head| !needed(head)) {
            continue;
        }
        let Ok(value) = serde_json::from_str::<Value>(&text[item.span.clone()]) else {
            // Valid JSON that serde_json still refuses (a number out of range, …): its own error.
            return load_cluster_json(text, source);
        };
        loader.item(Some(index), &value, item_kind)?;
    }
    Ok(loader.loaded.state)
}

struct Loader<'a> {
    text: &'a str,
    source: &'a str,
    /// The byte ranges of the `items` entries, computed on the first error that needs a position.
    spans: Option<Option<Vec<Range<usize>>>>,
    loaded: LoadedCluster,
}

impl Loader<'_> {
    /// Reads one entry: `index` is its place in `items`, `None` for a single-object document.
    fn item(
        &mut self,
        index: Option<usize>,
        item: &Value,
        default_kind: Option<&str>,
    ) -> Result<(), ModelError> {
        let Value::Object(fields) = item else {
            let error = ModelError::Schema {
                object: "(not an object)".to_string(),
                reason: format!(
                    "expected a Kubernetes object such as a Service, found {}",
                    json_type(item)
                ),
            };
            return Err(self.at_item(index, error));
        };
        let Some(kind) = fields.get("kind").and_then(Value::as_str).or(default_kind) else {
            let error = ModelError::Schema {
                object: value_label("(no kind)", item),
                reason: "the object has no \"kind\"".to_string(),
            };
            return Err(self.at_item(index, error));
        };
        let kind = kind.to_string();
        match kind.as_str() {
            "Service" => {
                let object: core::Service = self.deserialize(index, item, &kind)?;
                let converted = self.converted(index, convert::service(&object))?;
                self.loaded.summary.services += 1;
                if let Some(old) = self
                    .loaded
                    .state
                    .services
                    .insert(converted.id.clone(), converted)
                {
                    self.duplicate(index, &format!("Service {}", old.id));
                }
            }
            "EndpointSlice" => {
                let object: discovery::EndpointSlice = self.deserialize(index, item, &kind)?;
                let converted = self.converted(index, convert::endpoint_slice(&object))?;
                self.loaded.summary.endpoint_slices += 1;
                if let Some(old) = self
                    .loaded
                    .state
                    .endpoint_slices
                    .insert(converted.id.clone(), converted)
                {
                    self.duplicate(index, &format!("EndpointSlice {}", old.id));
                }
            }
            "Node" => {
                let object: core::Node = self.deserialize(index, item, &kind)?;
                let converted = self.converted(index, convert::node(&object))?;
                self.loaded.summary.nodes += 1;
                if let Some(old) = self
                    .loaded
                    .state
                    .nodes
                    .insert(converted.name.clone(), converted)
                {
                    self.duplicate(index, &format!("Node {}", old.name));
                }
            }
            "Pod" => {
                let object: core::Pod = self.deserialize(index, item, &kind)?;
                let converted = self.converted(index, convert::pod(&object))?;
                self.loaded.summary.pods += 1;
                if let Some(old) = self
                    .loaded
                    .state
                    .pods
                    .insert(converted.id.clone(), converted)
                {
                    self.duplicate(index, &format!("Pod {}", old.id));
                }
            }
            "ConfigMap" => {
                let object: core::ConfigMap = self.deserialize(index, item, &kind)?;
                let meta = &object.metadata;
                if meta.namespace.as_deref() == Some(KUBE_PROXY_CONFIG_NAMESPACE)
                    && meta.name.as_deref() == Some(KUBE_PROXY_CONFIG_NAME)
                {
                    if self.loaded.summary.kube_proxy_config {
                        self.duplicate(index, "ConfigMap kube-system/kube-proxy");
                    }
                    self.loaded.summary.kube_proxy_config = true;
                    self.loaded.state.kube_proxy_config = Some(object.data.unwrap_or_default());
                } else {
                    *self.loaded.summary.ignored.entry(kind).or_default() += 1;
                }
            }
            _ => *self.loaded.summary.ignored.entry(kind).or_default() += 1,
        }
        Ok(())
    }

    /// Deserializes an entry into its k8s-openapi type; a mismatch is reported at its exact position.
    fn deserialize<T: DeserializeOwned>(
        &mut self,
        index: Option<usize>,
        item: &Value,
        kind: &str,
    ) -> Result<T, ModelError> {
        let error = match T::deserialize(item) {
            Ok(object) => return Ok(object),
            Err(error) => error,
        };
        let object = value_label(kind, item);
        let span = self.span(index);
        let (line, column, reason) =
            match span.map(|span| (serde_json::from_str::<T>(&self.text[span.clone()]), span)) {
                Some((Err(located), span)) => {
                    let (line, column) = position_in(self.text, &span, &located);
                    (line, column, message_without_position(&located))
                }
                _ => (0, 0, message_without_position(&error)),
            };
        let schema = ModelError::Schema { object, reason };
        Err(match index {
            _ if line == 0 => self.at_item(index, schema),
            Some(index) => ModelError::Item {
                path: self.source.to_string(),
                index,
                line,
                column,
                error: Box::new(schema),
            },
            None => ModelError::Json {
                path: self.source.to_string(),
                line,
                column,
                message: schema.to_string(),
                fix: REGENERATE_HINT.to_string(),
            },
        })
    }

    /// The converted value, its warnings moved to the summary; a conversion error is placed at the entry.
    fn converted<T>(
        &mut self,
        index: Option<usize>,
        result: Result<Converted<T>, ModelError>,
    ) -> Result<T, ModelError> {
        match result {
            Ok(Converted { value, warnings }) => {
                let prefix = index.map(|i| format!("items[{i}]: ")).unwrap_or_default();
                self.loaded
                    .summary
                    .warnings
                    .extend(warnings.into_iter().map(|w| format!("{prefix}{w}")));
                Ok(value)
            }
            Err(error) => Err(self.at_item(index, error)),
        }
    }

    fn duplicate(&mut self, index: Option<usize>, object: &str) {
        let at = index.map(|i| format!("items[{i}]: ")).unwrap_or_default();
        self.loaded.summary.warnings.push(format!(
            "{at}{object} is listed more than once; the later entry wins"
        ));
    }

    /// An error about entry `index`, placed at the entry's opening brace.
    fn at_item(&mut self, index: Option<usize>, error: ModelError) -> ModelError {
        let Some(index) = index else {
            return ModelError::Bundle {
                path: self.source.to_string(),
                reason: error.to_string(),
            };
        };
        let (line, column) = match self.span(Some(index)) {
            Some(span) => line_column(self.text, span.start),
            None => (1, 1),
        };
        ModelError::Item {
            path: self.source.to_string(),
            index,
            line,
            column,
            error: Box::new(error),
        }
    }

    /// The byte range of entry `index` (the whole text for a single-object document).
    fn span(&mut self, index: Option<usize>) -> Option<Range<usize>> {
        let Some(index) = index else {
            return Some(0..self.text.len());
        };
        let text = self.text;
        self.spans
            .get_or_insert_with(|| item_spans(text))
            .as_ref()
            .and_then(|spans| spans.get(index))
            .cloned()
    }
}

/// `Kind namespace/name` from an entry's raw JSON, for entries that did not deserialize.
fn value_label(kind: &str, item: &Value) -> String {
    let field = |name: &str| {
        item.pointer(&format!("/metadata/{name}"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let name = field("name").unwrap_or("(unnamed)");
    match field("namespace") {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a JSON array",
        Value::Object(_) => "an object",
    }
}
