//! The HTTP side: one handler that routes, checks authentication, outages and RBAC, then serves.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

use super::resources::{ResourceDef, Route, route};
use super::selector::{FieldSelector, LabelSelector};
use super::status::{self, bad_request, failure, json_response, not_found, qualified};
use super::store::{Filter, WatchStart, WriteError};
use super::{RequestRecord, Shared};

/// The largest request body accepted.
const BODY_LIMIT: usize = 16 << 20;
/// The watch duration when the client sets no `timeoutSeconds` (the API server picks 30–60 minutes).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// Serves every request.
pub async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let params: HashMap<String, String> = Query::try_from_uri(request.uri())
        .map(|Query(map)| map)
        .unwrap_or_default();
    let index = shared.log_request(RequestRecord {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
        query: request.uri().query().map(str::to_string),
        params: params.clone(),
        status: None,
    });
    let response = serve(&shared, request, &params).await;
    shared.log_status(index, response.status().as_u16());
    response
}

async fn serve(
    shared: &Arc<Shared>,
    request: Request,
    params: &HashMap<String, String>,
) -> Response {
    let (failing, token, user) = {
        let inner = shared.lock();
        (inner.failing, inner.token.clone(), inner.user.clone())
    };
    if let Some(code) = failing {
        let (reason, message) = if code == 503 {
            (
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            )
        } else {
            (
                "InternalError",
                "Internal error occurred: etcdserver: request timed out",
            )
        };
        return failure(code, reason, message, None);
    }
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {token}"));
    if !authorized {
        return failure(401, "Unauthorized", "Unauthorized", None);
    }

    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_default();
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Route::PodExec { namespace, name } = route(&path) {
        return pod_exec(shared, request, &user, &namespace, &name);
    }
    let body = match axum::body::to_bytes(request.into_body(), BODY_LIMIT).await {
        Ok(body) => body,
        Err(e) => return bad_request(&format!("cannot read the request body: {e}")),
    };
    let watching = params.get("watch").is_some_and(|w| w == "true" || w == "1");

    match route(&path) {
        Route::Version => json_response(
            StatusCode::OK,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-svcproxy-test", "platform": "linux/amd64"}),
        ),
        Route::Unknown | Route::PodExec { .. } => status::no_route(),
        Route::Collection { def, namespace } => {
            let verb = match method {
                Method::GET if watching => "watch",
                Method::GET => "list",
                Method::POST => "create",
                Method::DELETE => "deletecollection",
                _ => return method_not_allowed(&method),
            };
            if let Some(denied) = forbidden(
                shared,
                &user,
                verb,
                def.group,
                def.plural,
                namespace.as_deref(),
                None,
            ) {
                return denied;
            }
            match verb {
                "watch" => watch(shared, def, namespace, params),
                "list" => list(shared, def, namespace, params),
                "create" => create(shared, def, namespace.as_deref(), &body),
                _ => method_not_allowed(&method),
            }
        }
        Route::Object {
            def,
            namespace,
            name,
        } => {
            let verb = match method {
                Method::GET => "get",
                Method::PUT => "update",
                Method::PATCH => "patch",
                Method::DELETE => "delete",
                _ => return method_not_allowed(&method),
            };
            if let Some(denied) = forbidden(
                shared,
                &user,
                verb,
                def.group,
                def.plural,
                namespace.as_deref(),
                Some(&name),
            ) {
                return denied;
            }
            object(
                shared,
                verb,
                def,
                namespace.as_deref(),
                &name,
                content_type.as_deref(),
                &body,
            )
        }
        Route::PodProxy {
            namespace,
            name,
            port,
            path,
        } => {
            let verb = match method {
                Method::GET | Method::HEAD => "get",
                Method::POST => "create",
                Method::PUT => "update",
                Method::PATCH => "patch",
                Method::DELETE => "delete",
                _ => return method_not_allowed(&method),
            };
            if let Some(denied) = forbidden(
                shared,
                &user,
                verb,
                "",
                "pods/proxy",
                Some(&namespace),
                Some(&name),
            ) {
                return denied;
            }
            let query = path_and_query.split_once('?').map(|(_, q)| q);
            pod_proxy(
                shared,
                &method,
                &namespace,
                &name,
                port,
                &path,
                query,
                content_type.as_deref(),
                body,
            )
            .await
        }
    }
}

fn method_not_allowed(method: &Method) -> Response {
    failure(
        405,
        "MethodNotAllowed",
        &format!("the server does not allow this method on the requested resource ({method})"),
        None,
    )
}

/// 403 when the test forbade `verb` on `resource`, with the message the API server's authorizer gives.
fn forbidden(
    shared: &Shared,
    user: &str,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Option<Response> {
    let denied = shared
        .lock()
        .forbidden
        .contains(&(verb.to_string(), qualified(group, resource)));
    if !denied {
        return None;
    }
    let base = resource.split('/').next().unwrap_or(resource);
    let subject = match name {
        Some(name) => format!("{} \"{name}\"", qualified(group, base)),
        None => qualified(group, base),
    };
    let scope = match namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let message = format!(
        "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}"
    );
    let mut details = json!({"group": group, "kind": base});
    if let Some(name) = name {
        details["name"] = json!(name);
    }
    Some(failure(403, "Forbidden", &message, Some(details)))
}

fn selectors(
    def: &'static ResourceDef,
    namespace: Option<String>,
    params: &HashMap<String, String>,
) -> Result<Filter, String> {
    let labels = LabelSelector::parse(params.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(params.get("fieldSelector").map_or("", String::as_str), def)?;
    Ok(Filter {
        def,
        namespace,
        labels,
        fields,
    })
}

fn list(
    shared: &Shared,
    def: &'static ResourceDef,
    namespace: Option<String>,
    params: &HashMap<String, String>,
) -> Response {
    let filter = match selectors(def, namespace, params) {
        Ok(filter) => filter,
        Err(why) => return bad_request(&why),
    };
    let (items, rv, page) = {
        let state = shared.lock();
        let (items, rv) = state.store.list(&filter);
        let page = Page::of(params, |at| state.store.changed_since(def, at));
        (items, rv, page)
    };
    let page = match page {
        Ok(page) => page,
        Err(response) => return *response,
    };
    let total = items.len();
    // Items of a list carry no apiVersion/kind, as the API server sends them.
    let items: Vec<Value> = items
        .into_iter()
        .skip(page.offset)
        .take(page.limit.unwrap_or(usize::MAX))
        .map(|mut item| {
            if let Value::Object(map) = &mut item {
                map.remove("apiVersion");
                map.remove("kind");
            }
            item
        })
        .collect();
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    let next = page.offset + items.len();
    if page.limit.is_some() && next < total {
        metadata["continue"] = json!(format!("{rv}/{next}"));
        metadata["remainingItemCount"] = json!(total - next);
    }
    json_response(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", def.kind),
            "apiVersion": def.api_version(),
            "metadata": metadata,
            "items": items,
        }),
    )
}

/// One page of a list: `limit` items from `offset`, as asked with `limit` and `continue`.
struct Page {
    limit: Option<usize>,
    offset: usize,
}

impl Page {
    /// Reads `limit` and `continue`. A continue token names the resourceVersion of the first page
    /// and the offset. When an object of the listed kind changed since (`changed_since`), the token
    /// is too old (410 Expired), as on a real API server whose snapshot was compacted, and the
    /// client lists again from the start; changes to other kinds do not matter.
    fn of(
        params: &HashMap<String, String>,
        changed_since: impl Fn(u64) -> bool,
    ) -> Result<Page, Box<Response>> {
        let limit = match params.get("limit").map(String::as_str) {
            None | Some("") | Some("0") => None,
            Some(text) => match text.parse::<usize>() {
                Ok(limit) => Some(limit),
                Err(_) => return Err(Box::new(bad_request(&format!("invalid limit {text:?}")))),
            },
        };
        let Some(token) = params.get("continue").filter(|t| !t.is_empty()) else {
            return Ok(Page { limit, offset: 0 });
        };
        let parsed = token
            .split_once('/')
            .and_then(|(at, offset)| Some((at.parse::<u64>().ok()?, offset.parse().ok()?)));
        match parsed {
            None => Err(Box::new(bad_request(&format!(
                "invalid continue token {token:?}"
            )))),
            Some((at, _)) if changed_since(at) => Err(Box::new(failure(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. \
                 You can start a new list without the continue parameter.",
                None,
            ))),
            Some((_, offset)) => Ok(Page { limit, offset }),
        }
    }
}

fn watch(
    shared: &Arc<Shared>,
    def: &'static ResourceDef,
    namespace: Option<String>,
    params: &HashMap<String, String>,
) -> Response {
    let filter = match selectors(def, namespace, params) {
        Ok(filter) => filter,
        Err(why) => return bad_request(&why),
    };
    let flag = |name: &str| params.get(name).is_some_and(|v| v == "true" || v == "1");
    let start = match params.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => WatchStart::Current {
            initial_events_end: flag("sendInitialEvents"),
        },
        Some(rv) => match rv.parse() {
            Ok(rv) => WatchStart::After(rv),
            Err(_) => return bad_request(&format!("invalid resource version {rv:?}")),
        },
    };
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);

    let (tx, rx) = futures::channel::mpsc::unbounded::<Bytes>();
    let opened = shared
        .lock()
        .store
        .watch(filter, flag("allowWatchBookmarks"), start, tx.clone());
    match opened {
        Ok(id) => {
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                shared.lock().store.end_watch(id);
            });
        }
        // As the API server does: HTTP 200, one ERROR event with the Status, then the end of the stream.
        Err(expired) => {
            let _ = tx.unbounded_send(super::store::event_line("ERROR", &expired));
        }
    }
    drop(tx);
    let mut response = Body::from_stream(rx.map(Ok::<Bytes, Infallible>)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn parse_body(body: &Bytes) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("the request body is not JSON: {e}"))
}

fn write_error(def: &ResourceDef, name: &str, error: WriteError) -> Response {
    let resource = qualified(def.group, def.plural);
    match error {
        WriteError::AlreadyExists => failure(
            409,
            "AlreadyExists",
            &format!("{resource} \"{name}\" already exists"),
            Some(json!({"name": name, "group": def.group, "kind": def.plural})),
        ),
        WriteError::NotFound => not_found(def.group, def.plural, name),
        WriteError::Conflict => failure(
            409,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            Some(json!({"name": name, "group": def.group, "kind": def.plural})),
        ),
        WriteError::Invalid(why) => failure(
            422,
            "Invalid",
            &format!("{} \"{name}\" is invalid: {why}", def.kind),
            None,
        ),
    }
}

fn create(
    shared: &Shared,
    def: &'static ResourceDef,
    namespace: Option<&str>,
    body: &Bytes,
) -> Response {
    let object = match parse_body(body) {
        Ok(object) => object,
        Err(why) => return bad_request(&why),
    };
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if def.namespaced && namespace.is_none() {
        return bad_request("create needs a namespaced path: /…/namespaces/NAMESPACE/…");
    }
    match shared.lock().store.create(def, namespace, object) {
        Ok(stored) => json_response(StatusCode::CREATED, &stored),
        Err(error) => write_error(def, &name, error),
    }
}

fn object(
    shared: &Shared,
    verb: &str,
    def: &'static ResourceDef,
    namespace: Option<&str>,
    name: &str,
    content_type: Option<&str>,
    body: &Bytes,
) -> Response {
    let ns = namespace.unwrap_or_default();
    match verb {
        "get" => match shared.lock().store.get(def, ns, name) {
            Some(object) => json_response(StatusCode::OK, object),
            None => not_found(def.group, def.plural, name),
        },
        "delete" => match shared.lock().store.delete(def, ns, name) {
            Some(object) => json_response(StatusCode::OK, &object),
            None => not_found(def.group, def.plural, name),
        },
        "update" => {
            let object = match parse_body(body) {
                Ok(object) => object,
                Err(why) => return bad_request(&why),
            };
            match shared.lock().store.update(def, namespace, name, object) {
                Ok(stored) => json_response(StatusCode::OK, &stored),
                Err(error) => write_error(def, name, error),
            }
        }
        "patch" => {
            let merge = matches!(
                content_type.map(|c| c.split(';').next().unwrap_or(c).trim()),
                Some("application/merge-patch+json" | "application/strategic-merge-patch+json")
            );
            if !merge {
                return failure(
                    415,
                    "UnsupportedMediaType",
                    &format!(
                        "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got {content_type:?})"
                    ),
                    None,
                );
            }
            let patch = match parse_body(body) {
                Ok(patch) => patch,
                Err(why) => return bad_request(&why),
            };
            match shared
                .lock()
                .store
                .merge_patch(def, namespace, name, &patch)
            {
                Ok(stored) => json_response(StatusCode::OK, &stored),
                Err(error) => write_error(def, name, error),
            }
        }
        _ => failure(405, "MethodNotAllowed", "method not allowed", None),
    }
}

#[allow(clippy::too_many_arguments)]
async fn pod_proxy(
    shared: &Shared,
    method: &Method,
    namespace: &str,
    name: &str,
    port: Option<String>,
    path: &str,
    query: Option<&str>,
    content_type: Option<&str>,
    body: Bytes,
) -> Response {
    let Some(pods) = super::resources::find("", "v1", "pods") else {
        return status::no_route();
    };
    let target = {
        let inner = shared.lock();
        let Some(pod) = inner.store.get(pods, namespace, name) else {
            return not_found("", "pods", name);
        };
        // Without a port, the API server uses the first container's first port.
        let port = match port {
            Some(port) => port.parse::<u16>().ok(),
            None => pod
                .pointer("/spec/containers/0/ports/0/containerPort")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .or(Some(80)),
        };
        port.and_then(|port| {
            inner
                .pod_proxies
                .get(&(namespace.to_string(), name.to_string(), port))
                .cloned()
                .map(|target| (port, target))
        })
    };
    let Some((port, target)) = target else {
        return failure(
            503,
            "ServiceUnavailable",
            &format!(
                "error trying to reach service: no proxy target registered for pod {namespace}/{name} on that port"
            ),
            None,
        );
    };
    let path_and_query = match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    match super::pod_proxy::forward(
        &target,
        method.as_str(),
        &path_and_query,
        content_type,
        body,
    )
    .await
    {
        Ok(response) => response,
        Err(why) => failure(
            503,
            "ServiceUnavailable",
            &format!("error trying to reach service: pod {namespace}/{name} port {port}: {why}"),
            None,
        ),
    }
}

/// `pods/exec`: checks RBAC (`create`, and `get` as older API servers check for WebSocket exec), the
/// pod and the container, records the command, and answers with the reply the test set.
fn pod_exec(
    shared: &Shared,
    request: Request,
    user: &str,
    namespace: &str,
    name: &str,
) -> Response {
    for verb in ["create", "get"] {
        if let Some(denied) = forbidden(
            shared,
            user,
            verb,
            "",
            "pods/exec",
            Some(namespace),
            Some(name),
        ) {
            return denied;
        }
    }
    let pairs: Vec<(String, String)> = Query::try_from_uri(request.uri())
        .map(|Query(pairs)| pairs)
        .unwrap_or_default();
    let command: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    let container = pairs
        .iter()
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v.clone());
    if command.is_empty() {
        return bad_request("you must specify at least 1 command");
    }
    let Some(pods) = super::resources::find("", "v1", "pods") else {
        return status::no_route();
    };
    let (reply, protocols) = {
        let mut inner = shared.lock();
        let Some(pod) = inner.store.get(pods, namespace, name).cloned() else {
            return not_found("", "pods", name);
        };
        let containers: Vec<String> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let container = match container {
            Some(c) if containers.contains(&c) => c,
            Some(c) => {
                return bad_request(&format!("container {c} is not valid for pod {name}"));
            }
            None if containers.len() == 1 => containers[0].clone(),
            None => {
                return bad_request(&format!(
                    "a container name must be specified for pod {name}, choose one of: {containers:?}"
                ));
            }
        };
        inner.execs.push(super::ExecRecord {
            namespace: namespace.to_string(),
            pod: name.to_string(),
            container,
            command: command.clone(),
        });
        let reply = inner
            .exec_replies
            .get(&(namespace.to_string(), name.to_string(), command.join(" ")))
            .cloned()
            .unwrap_or_else(|| super::exec::ExecReply::not_found(&command[0]));
        (reply, inner.exec_protocols.clone())
    };
    super::exec::serve(request, &protocols, command, reply)
}
