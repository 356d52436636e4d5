//! [`fetch_node_rules`]: a node's iptables rules, read through the API server.

use std::time::Duration;

use ::kube::Client;
use ::kube::api::{Api, AttachParams, ListParams};
use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::io::AsyncReadExt;

use super::{EXEC_ROLE, READ_ROLE, RULES_ROLE, Request};
use crate::core::rules::IpFamily;
use crate::kube::DiagError;
use crate::proxy::http::debug::ProxyDebug;

/// The label selector of our proxy's pods (the DaemonSet in `deploy/daemonset.yaml`).
pub const PROXY_POD_LABEL: &str = "k8s-app=svcproxy";
/// The label selector of upstream kube-proxy's pods (kubeadm and most distributions).
pub const KUBE_PROXY_LABEL: &str = "k8s-app=kube-proxy";
/// Where kube-proxy's pods run.
pub const KUBE_PROXY_NAMESPACE: &str = "kube-system";
/// The metrics port of our proxy when its pod names no other (`--metrics-bind-address`'s default).
pub const DEFAULT_METRICS_PORT: u16 = 10249;
/// How long reading one node's rules may take.
pub const NODE_RULES_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an unexpected answer errors quote.
const EXCERPT: usize = 300;

/// A node's rules, as `iptables-save` printed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRules {
    /// The node.
    pub node: String,
    /// Where they were read, in words: `pod kube-system/svcproxy-abcde /debug/iptables` or
    /// `iptables-save in pod kube-system/kube-proxy-xyz (container kube-proxy)`.
    pub origin: String,
    /// The IPv4 rules (`iptables-save`).
    pub ipv4: String,
    /// The IPv6 rules (`ip6tables-save`), when the node has them.
    pub ipv6: Option<String>,
}

/// Reads the rules of `node`.
///
/// 1. If one of our proxy's pods (label [`PROXY_POD_LABEL`], any namespace) runs on the node, GETs its
///    `/debug/iptables?format=json` through the `pods/proxy` subresource, on the pod's port named
///    `metrics`, else the port of its `--metrics-bind-address` flag, else [`DEFAULT_METRICS_PORT`], and
///    takes each family's fresh `save.output`.
/// 2. Else, if a kube-proxy pod (label [`KUBE_PROXY_LABEL`] in [`KUBE_PROXY_NAMESPACE`]) runs there,
///    execs `iptables-save` in it, then `ip6tables-save` (optional: a failure leaves
///    [`NodeRules::ipv6`] empty).
/// 3. Else fails with [`DiagError::NoRulesSource`].
///
/// Errors name the permission to grant on a 403 (`pods` list, `pods/proxy` get, `pods/exec`
/// create), and carry the HTTP status and the start of the body when the node's pod answers with an
/// error or cannot be reached. Each read gives up after [`NODE_RULES_TIMEOUT`].
pub async fn fetch_node_rules(client: &Client, node: &str) -> Result<NodeRules, DiagError> {
    let proxies = pods_on(client, None, PROXY_POD_LABEL, node).await?;
    if let Some(pod) = running(&proxies) {
        return from_debug_endpoint(client, node, pod).await;
    }
    let kube_proxies = pods_on(client, Some(KUBE_PROXY_NAMESPACE), KUBE_PROXY_LABEL, node).await?;
    if let Some(pod) = running(&kube_proxies) {
        return from_exec(client, node, pod).await;
    }
    let mut found = format!(
        "no running pod labelled {PROXY_POD_LABEL} (any namespace) or {KUBE_PROXY_LABEL} (in {KUBE_PROXY_NAMESPACE}) is on the node"
    );
    let waiting: Vec<String> = proxies
        .iter()
        .chain(&kube_proxies)
        .map(|pod| format!("{} is {}", pod_name(pod), phase(pod)))
        .collect();
    if !waiting.is_empty() {
        found.push_str(&format!(" ({})", waiting.join(", ")));
    }
    Err(DiagError::NoRulesSource {
        node: node.to_string(),
        found,
    })
}

/// The pods with `labels` on `node`, in `namespace` or every namespace, sorted by name.
async fn pods_on(
    client: &Client,
    namespace: Option<&str>,
    labels: &str,
    node: &str,
) -> Result<Vec<Pod>, DiagError> {
    let api: Api<Pod> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let params = ListParams::default()
        .labels(labels)
        .fields(&format!("spec.nodeName={node}"));
    let request = Request {
        verb: "list",
        resource: "pods",
        group: "",
        namespace: namespace.map(str::to_string),
        role_hint: READ_ROLE,
        what: format!("list the pods labelled {labels} on node {node:?}"),
    };
    let mut pods = api.list(&params).await.map_err(|e| request.error(e))?.items;
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(pods)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Unknown")
}

/// The first pod that runs and is not being deleted.
fn running(pods: &[Pod]) -> Option<&Pod> {
    pods.iter()
        .find(|pod| phase(pod) == "Running" && pod.metadata.deletion_timestamp.is_none())
}

fn pod_name(pod: &Pod) -> String {
    format!(
        "pod {}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .map_or(&[], |spec| spec.containers.as_slice())
}

/// The value of `--metrics-bind-address` in the container's command or args.
fn metrics_bind_address(container: &Container) -> Option<String> {
    let words: Vec<&String> = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .collect();
    words.iter().enumerate().find_map(|(i, word)| {
        if let Some(value) = word.strip_prefix("--metrics-bind-address=") {
            Some(value.to_string())
        } else if word.as_str() == "--metrics-bind-address" {
            words.get(i + 1).map(|v| (*v).clone())
        } else {
            None
        }
    })
}

/// The proxy pod's metrics port, and its bind address when a flag gives it.
fn metrics_port(pod: &Pod) -> (u16, Option<String>) {
    let named = containers(pod)
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("metrics"))
        .and_then(|p| u16::try_from(p.container_port).ok());
    let bind = containers(pod).iter().find_map(metrics_bind_address);
    let from_flag = bind
        .as_deref()
        .and_then(|b| b.rsplit_once(':'))
        .and_then(|(_, port)| port.parse::<u16>().ok());
    (named.or(from_flag).unwrap_or(DEFAULT_METRICS_PORT), bind)
}

/// Whether a bind address is on loopback, where the API server cannot reach it.
fn is_loopback(bind: &str) -> bool {
    let host = bind
        .rsplit_once(':')
        .map_or(bind, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
        || host == "localhost"
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= EXCERPT {
        return text.to_string();
    }
    let cut: String = text.chars().take(EXCERPT).collect();
    format!("{cut}…")
}

async fn from_debug_endpoint(
    client: &Client,
    node: &str,
    pod: &Pod,
) -> Result<NodeRules, DiagError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let (port, bind) = metrics_port(pod);
    let origin = format!("{} /debug/iptables", pod_name(pod));
    let path = format!(
        "/api/v1/namespaces/{namespace}/pods/{name}:{port}/proxy/debug/iptables?format=json"
    );
    let request = Request {
        verb: "get",
        resource: "pods/proxy",
        group: "",
        namespace: Some(namespace.clone()),
        role_hint: RULES_ROLE,
        what: format!("read {origin} through the API server"),
    };
    let http_request = http::Request::get(path.as_str())
        .body(Vec::new())
        .map_err(|e| request.error(::kube::Error::HttpError(e)))?;
    tracing::debug!(%node, %path, "reading the node's rules from the proxy pod");
    let answer = tokio::time::timeout(NODE_RULES_TIMEOUT, client.request_text(http_request)).await;
    let text = match answer {
        Err(_) => {
            return Err(DiagError::Timeout {
                node: node.to_string(),
                origin,
                after: NODE_RULES_TIMEOUT,
            });
        }
        Ok(Ok(text)) => text,
        Ok(Err(::kube::Error::Api(status)))
            if status.code == 403 && status.reason == "Forbidden" =>
        {
            return Err(request.error(::kube::Error::Api(status)));
        }
        Ok(Err(::kube::Error::Api(status))) if status.code != 401 => {
            let mut body = excerpt(&status.message);
            if let Some(bind) = bind.filter(|b| is_loopback(b)) {
                body.push_str(&format!(
                    "; the pod binds its metrics server to {bind}, which the API server cannot reach: \
                     bind it to the node's address (see \"Metrics\" in deploy/README.md)"
                ));
            }
            return Err(DiagError::NodeUnreachable {
                node: node.to_string(),
                origin,
                status: status.code,
                body,
            });
        }
        Ok(Err(error)) => return Err(request.error(error)),
    };
    let bad = |reason: String| DiagError::BadRules {
        node: node.to_string(),
        origin: origin.clone(),
        reason,
    };
    let document: ProxyDebug = serde_json::from_str(&text).map_err(|e| {
        bad(format!(
            "the answer is not a /debug/iptables document ({e}); it starts with: {}",
            excerpt(&text)
        ))
    })?;
    let save_of = |family: IpFamily| -> Option<Result<String, String>> {
        let entry = document.families.iter().find(|f| f.family == family)?;
        Some(match (&entry.save.output, &entry.save.error) {
            (Some(output), _) => Ok(output.clone()),
            (None, Some(error)) => Err(error.clone()),
            (None, None) => Err("neither an output nor an error".to_string()),
        })
    };
    let ipv4 = match save_of(IpFamily::V4) {
        Some(Ok(output)) => output,
        Some(Err(error)) => return Err(bad(format!("the proxy's iptables-save failed: {error}"))),
        None => return Err(bad("the document has no IPv4 family".to_string())),
    };
    let ipv6 = match save_of(IpFamily::V6) {
        Some(Ok(output)) => Some(output),
        Some(Err(error)) => {
            tracing::warn!(%node, "the proxy's ip6tables-save failed, so the IPv6 rules are left out: {error}");
            None
        }
        None => None,
    };
    Ok(NodeRules {
        node: node.to_string(),
        origin,
        ipv4,
        ipv6,
    })
}

async fn from_exec(client: &Client, node: &str, pod: &Pod) -> Result<NodeRules, DiagError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let container = containers(pod)
        .iter()
        .find(|c| c.name == "kube-proxy")
        .or_else(|| containers(pod).first())
        .map(|c| c.name.clone());
    let origin = match &container {
        Some(container) => format!("{} (container {container})", pod_name(pod)),
        None => pod_name(pod),
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let mut params = AttachParams::default().stdout(true).stderr(true);
    if let Some(container) = &container {
        params = params.container(container.clone());
    }
    let ipv4 = exec(
        &api,
        &name,
        "iptables-save",
        &params,
        node,
        &origin,
        &namespace,
    )
    .await?;
    let ipv6 = match exec(
        &api,
        &name,
        "ip6tables-save",
        &params,
        node,
        &origin,
        &namespace,
    )
    .await
    {
        Ok(output) => Some(output),
        Err(error) => {
            tracing::info!(%node, "no IPv6 rules: {error}");
            None
        }
    };
    Ok(NodeRules {
        node: node.to_string(),
        origin: format!("iptables-save in {origin}"),
        ipv4,
        ipv6,
    })
}

/// Runs `command` in the pod and returns its stdout; fails on a non-zero exit.
async fn exec(
    api: &Api<Pod>,
    pod: &str,
    command: &str,
    params: &AttachParams,
    node: &str,
    origin: &str,
    namespace: &str,
) -> Result<String, DiagError> {
    let request = Request {
        verb: "create",
        resource: "pods/exec",
        group: "",
        namespace: Some(namespace.to_string()),
        role_hint: EXEC_ROLE,
        what: format!("run `{command}` in {origin}"),
    };
    let failed = |reason: String| DiagError::ExecFailed {
        node: node.to_string(),
        origin: origin.to_string(),
        command: command.to_string(),
        reason,
    };
    let run = async {
        let mut attached = api
            .exec(pod, [command], params)
            .await
            .map_err(|e| request.error(e))?;
        let status = attached.take_status();
        let mut stdout = attached.stdout();
        let mut stderr = attached.stderr();
        let read_out = async {
            let mut buf = Vec::new();
            if let Some(reader) = stdout.as_mut() {
                reader.read_to_end(&mut buf).await?;
            }
            Ok::<_, std::io::Error>(buf)
        };
        let read_err = async {
            let mut buf = Vec::new();
            if let Some(reader) = stderr.as_mut() {
                reader.read_to_end(&mut buf).await?;
            }
            Ok::<_, std::io::Error>(buf)
        };
        let (out, err) = tokio::join!(read_out, read_err);
        let out = out.map_err(|e| failed(format!("reading its output: {e}")))?;
        let err = err.map_err(|e| failed(format!("reading its errors: {e}")))?;
        let status = match status {
            Some(status) => status.await,
            None => None,
        };
        drop(stdout);
        drop(stderr);
        if let Err(e) = attached.join().await {
            return Err(failed(format!("the exec stream failed: {e}")));
        }
        let stderr_text = String::from_utf8_lossy(&err).into_owned();
        match status {
            Some(status) if status.status.as_deref() != Some("Success") => {
                let mut reason = match (status.message.as_deref(), status.reason.as_deref()) {
                    (Some(message), _) if !message.is_empty() => message.to_string(),
                    (_, Some(reason)) => format!("it failed ({reason})"),
                    _ => "it failed".to_string(),
                };
                if !stderr_text.trim().is_empty() {
                    reason.push_str(&format!("; stderr: {}", excerpt(&stderr_text)));
                }
                Err(failed(reason))
            }
            None if out.is_empty() => Err(failed(format!(
                "the API server closed the stream without an exit status or output{}",
                if stderr_text.trim().is_empty() {
                    String::new()
                } else {
                    format!("; stderr: {}", excerpt(&stderr_text))
                }
            ))),
            _ => {
                String::from_utf8(out).map_err(|e| failed(format!("its output is not UTF-8: {e}")))
            }
        }
    };
    match tokio::time::timeout(NODE_RULES_TIMEOUT, run).await {
        Ok(result) => result,
        Err(_) => Err(DiagError::Timeout {
            node: node.to_string(),
            origin: format!("`{command}` in {origin}"),
            after: NODE_RULES_TIMEOUT,
        }),
    }
}
