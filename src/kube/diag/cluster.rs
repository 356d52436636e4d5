//! [`fetch_cluster`]: the cluster state, live.

use ::kube::api::{Api, ApiResource, DynamicObject, ListParams};
use ::kube::core::TypeMeta;
use ::kube::{Client, Resource};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{READ_ROLE, RULES_ROLE, Request};
use crate::core::model::bundle::{KUBE_PROXY_CONFIG_NAME, KUBE_PROXY_CONFIG_NAMESPACE};
use crate::core::model::convert::{self, Converted};
use crate::core::model::{ClusterState, ModelError, SERVICE_NAME_LABEL};
use crate::kube::DiagError;

/// How many objects one list request asks for; larger lists are read in pages.
const PAGE_SIZE: u32 = 500;

/// Which part of the cluster [`fetch_cluster`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterScope {
    /// One Service: the Service itself (if it exists), its EndpointSlices, the Pods of its namespace
    /// and every Node.
    Service {
        /// The Service's namespace.
        namespace: String,
        /// The Service's name.
        name: String,
    },
    /// Every Service, EndpointSlice, Node and Pod in every namespace (what `bundle` stores).
    All,
}

/// What [`fetch_cluster`] read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchedCluster {
    /// The cluster state. In [`ClusterScope::Service`] mode a Service that does not exist is simply
    /// absent (its rules may still be on a node).
    pub state: ClusterState,
    /// The objects as the API server sent them, each with its `apiVersion` and `kind`: Services,
    /// EndpointSlices, Nodes, Pods, then the kube-proxy ConfigMap when it was readable.
    pub objects: Vec<Value>,
    /// What the caller should tell the user: the kube-proxy ConfigMap could not be read, objects were
    /// left out of the state because they do not convert.
    pub warnings: Vec<String>,
}

impl FetchedCluster {
    /// The objects as a `v1` `List`, the shape of a snapshot bundle's `cluster.json` (what
    /// `kubectl get services,endpointslices,nodes,pods -A -o json` prints), which
    /// [`load_cluster_json`](crate::core::model::bundle::load_cluster_json) reads back.
    pub fn list_json(&self) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "List",
            "metadata": {"resourceVersion": ""},
            "items": self.objects,
        })
    }
}

/// Reads the cluster state for `scope`.
///
/// A 403 on Services, EndpointSlices, Nodes or Pods is an error naming the verb, resource and API
/// group to grant ([`DiagError::Forbidden`]). The `kube-system/kube-proxy` ConfigMap is optional: when
/// it cannot be read (403, 404 or anything else) the reason is in [`FetchedCluster::warnings`] and
/// [`ClusterState::kube_proxy_config`] stays `None`.
pub async fn fetch_cluster(
    client: &Client,
    scope: &ClusterScope,
) -> Result<FetchedCluster, DiagError> {
    let mut fetched = FetchedCluster::default();
    match scope {
        ClusterScope::Service { namespace, name } => {
            let service = get_raw::<core::Service>(
                client,
                Some(namespace),
                name,
                Request {
                    verb: "get",
                    resource: "services",
                    group: "",
                    namespace: Some(namespace.clone()),
                    role_hint: READ_ROLE,
                    what: format!("get Service {namespace}/{name}"),
                },
            )
            .await?;
            if service.is_none() {
                tracing::debug!(%namespace, %name, "the Service does not exist");
            }
            fetched.add_all::<core::Service>(service);
            let slices = list_raw::<discovery::EndpointSlice>(
                client,
                Some(namespace),
                ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={name}")),
                Request {
                    verb: "list",
                    resource: "endpointslices",
                    group: "discovery.k8s.io",
                    namespace: Some(namespace.clone()),
                    role_hint: READ_ROLE,
                    what: format!("list the EndpointSlices of Service {namespace}/{name}"),
                },
            )
            .await?;
            fetched.add_all::<discovery::EndpointSlice>(slices);
            let nodes = list_nodes(client).await?;
            fetched.add_all::<core::Node>(nodes);
            let pods = list_raw::<core::Pod>(
                client,
                Some(namespace),
                ListParams::default(),
                Request {
                    verb: "list",
                    resource: "pods",
                    group: "",
                    namespace: Some(namespace.clone()),
                    role_hint: READ_ROLE,
                    what: format!("list the Pods of namespace {namespace}"),
                },
            )
            .await?;
            fetched.add_all::<core::Pod>(pods);
        }
        ClusterScope::All => {
            let all = |verb, resource, group, what: &str| Request {
                verb,
                resource,
                group,
                namespace: None,
                role_hint: READ_ROLE,
                what: what.to_string(),
            };
            let services = list_raw::<core::Service>(
                client,
                None,
                ListParams::default(),
                all("list", "services", "", "list Services"),
            )
            .await?;
            fetched.add_all::<core::Service>(services);
            let slices = list_raw::<discovery::EndpointSlice>(
                client,
                None,
                ListParams::default(),
                all(
                    "list",
                    "endpointslices",
                    "discovery.k8s.io",
                    "list EndpointSlices",
                ),
            )
            .await?;
            fetched.add_all::<discovery::EndpointSlice>(slices);
            let nodes = list_nodes(client).await?;
            fetched.add_all::<core::Node>(nodes);
            let pods = list_raw::<core::Pod>(
                client,
                None,
                ListParams::default(),
                all("list", "pods", "", "list Pods"),
            )
            .await?;
            fetched.add_all::<core::Pod>(pods);
        }
    }
    fetched.kube_proxy_config(client).await;
    Ok(fetched)
}

async fn list_nodes(client: &Client) -> Result<Vec<Value>, DiagError> {
    list_raw::<core::Node>(
        client,
        None,
        ListParams::default(),
        Request {
            verb: "list",
            resource: "nodes",
            group: "",
            namespace: None,
            role_hint: READ_ROLE,
            what: "list Nodes".to_string(),
        },
    )
    .await
}

/// One kind the state holds: how it converts and where it goes.
trait Kind: Resource<DynamicType = ()> + DeserializeOwned {
    /// Converts and stores the object.
    fn add(self, state: &mut ClusterState) -> Result<Vec<String>, ModelError>;
}

fn store<T>(
    converted: Result<Converted<T>, ModelError>,
    insert: impl FnOnce(T),
) -> Result<Vec<String>, ModelError> {
    let Converted { value, warnings } = converted?;
    insert(value);
    Ok(warnings)
}

impl Kind for core::Service {
    fn add(self, state: &mut ClusterState) -> Result<Vec<String>, ModelError> {
        store(convert::service(&self), |s| state.insert_service(s))
    }
}

impl Kind for discovery::EndpointSlice {
    fn add(self, state: &mut ClusterState) -> Result<Vec<String>, ModelError> {
        store(convert::endpoint_slice(&self), |s| state.insert_slice(s))
    }
}

impl Kind for core::Node {
    fn add(self, state: &mut ClusterState) -> Result<Vec<String>, ModelError> {
        store(convert::node(&self), |n| state.insert_node(n))
    }
}

impl Kind for core::Pod {
    fn add(self, state: &mut ClusterState) -> Result<Vec<String>, ModelError> {
        store(convert::pod(&self), |p| state.insert_pod(p))
    }
}

impl FetchedCluster {
    /// Converts `objects` into the state (an object that does not convert is left out, with a
    /// warning) and keeps their JSON.
    fn add_all<K: Kind>(&mut self, objects: impl IntoIterator<Item = Value>) {
        for object in objects {
            let label = object_label(&object, &K::kind(&()));
            let added = serde_json::from_value::<K>(object.clone())
                .map_err(|e| e.to_string())
                .and_then(|typed| typed.add(&mut self.state).map_err(|e| e.to_string()));
            match added {
                Ok(notes) => {
                    for note in notes {
                        tracing::debug!("{note}");
                    }
                }
                Err(why) => self
                    .warnings
                    .push(format!("{label} is left out of the cluster state: {why}")),
            }
            self.objects.push(object);
        }
    }

    /// Gets the kube-proxy ConfigMap; any failure is a warning.
    async fn kube_proxy_config(&mut self, client: &Client) {
        let request = Request {
            verb: "get",
            resource: "configmaps",
            group: "",
            namespace: Some(KUBE_PROXY_CONFIG_NAMESPACE.to_string()),
            role_hint: RULES_ROLE,
            what: format!(
                "get ConfigMap {KUBE_PROXY_CONFIG_NAMESPACE}/{KUBE_PROXY_CONFIG_NAME} (kube-proxy's settings)"
            ),
        };
        let consequence = "the proxy settings (cluster CIDR, masquerade-all, NodePort addresses) \
                           are inferred from the node's rules; pass them as flags if that guesses wrong";
        match get_raw::<core::ConfigMap>(
            client,
            Some(KUBE_PROXY_CONFIG_NAMESPACE),
            KUBE_PROXY_CONFIG_NAME,
            request,
        )
        .await
        {
            Ok(Some(object)) => {
                match serde_json::from_value::<core::ConfigMap>(object.clone()) {
                    Ok(config_map) => {
                        self.state.kube_proxy_config = Some(config_map.data.unwrap_or_default());
                    }
                    Err(e) => self.warnings.push(format!(
                        "ConfigMap {KUBE_PROXY_CONFIG_NAMESPACE}/{KUBE_PROXY_CONFIG_NAME} cannot be read ({e}); {consequence}"
                    )),
                }
                self.objects.push(object);
            }
            Ok(None) => self.warnings.push(format!(
                "there is no ConfigMap {KUBE_PROXY_CONFIG_NAMESPACE}/{KUBE_PROXY_CONFIG_NAME}; {consequence}"
            )),
            Err(error) => self.warnings.push(format!("{error}; {consequence}")),
        }
    }
}

/// `Kind namespace/name` for messages.
fn object_label(object: &Value, kind: &str) -> String {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    match object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}

fn api_for<K: Resource<DynamicType = ()>>(
    client: &Client,
    namespace: Option<&str>,
) -> (Api<DynamicObject>, ApiResource) {
    let resource = ApiResource::erase::<K>(&());
    let api = match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    (api, resource)
}

/// The object as JSON with its `apiVersion` and `kind` (list items come without them).
fn to_json(mut object: DynamicObject, resource: &ApiResource) -> Result<Value, ::kube::Error> {
    object.types = Some(TypeMeta {
        api_version: resource.api_version.clone(),
        kind: resource.kind.clone(),
    });
    serde_json::to_value(&object).map_err(::kube::Error::SerdeError)
}

/// Every object of kind `K` that `params` select, read in pages, as JSON.
async fn list_raw<K: Resource<DynamicType = ()>>(
    client: &Client,
    namespace: Option<&str>,
    params: ListParams,
    request: Request,
) -> Result<Vec<Value>, DiagError> {
    let (api, resource) = api_for::<K>(client, namespace);
    let mut params = params.limit(PAGE_SIZE);
    let mut objects = Vec::new();
    loop {
        let page = api.list(&params).await.map_err(|e| request.error(e))?;
        for object in page.items {
            objects.push(to_json(object, &resource).map_err(|e| request.error(e))?);
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    Ok(objects)
}

/// The object of kind `K` named `name`, as JSON; `None` if it does not exist.
async fn get_raw<K: Resource<DynamicType = ()>>(
    client: &Client,
    namespace: Option<&str>,
    name: &str,
    request: Request,
) -> Result<Option<Value>, DiagError> {
    let (api, resource) = api_for::<K>(client, namespace);
    match api.get_opt(name).await.map_err(|e| request.error(e))? {
        Some(object) => Ok(Some(
            to_json(object, &resource).map_err(|e| request.error(e))?,
        )),
        None => Ok(None),
    }
}
