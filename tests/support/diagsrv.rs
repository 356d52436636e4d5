//! Fixtures for the live diagnostics: a node's proxy debug server (our real metrics server, with a
//! fake rules source) on its own thread, pods shaped like the DaemonSet's and kube-proxy's, and the
//! real kube-proxy dumps of the fixtures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use svcproxy::core::rules::IpFamily;
use svcproxy::proxy::health::{ManualClock, ProxyHealth};
use svcproxy::proxy::http::{AppliedPayload, DebugSource, HttpState, SyncFailure, serve_metrics};
use svcproxy::proxy::metrics::ProxyMetrics;
use tokio_util::sync::CancellationToken;

/// A real kube-proxy `iptables-save` (v1.36, the `basic` fixture).
pub const V4_DUMP: &str =
    include_str!("../fixtures/kube-proxy-v1.36/basic/nodes/testnode.iptables-save");
/// The same node's `ip6tables-save`.
pub const V6_DUMP: &str =
    include_str!("../fixtures/kube-proxy-v1.36/basic/nodes/testnode.ip6tables-save");

/// What the fake proxy's `fresh_save` returns per family.
struct Saves {
    v4: Result<String, String>,
    v6: Option<Result<String, String>>,
}

impl DebugSource for Saves {
    fn families(&self) -> Vec<IpFamily> {
        if self.v6.is_some() {
            vec![IpFamily::V4, IpFamily::V6]
        } else {
            vec![IpFamily::V4]
        }
    }

    fn last_applied(&self, _family: IpFamily) -> Option<AppliedPayload> {
        None
    }

    fn last_failure(&self, _family: IpFamily) -> Option<SyncFailure> {
        None
    }

    fn fresh_save(&self, family: IpFamily) -> Result<String, String> {
        match family {
            IpFamily::V4 => self.v4.clone(),
            IpFamily::V6 => self
                .v6
                .clone()
                .unwrap_or_else(|| Err("no IPv6".to_string())),
        }
    }

    fn state(&self) -> Result<Value, String> {
        Ok(json!({}))
    }
}

/// Our proxy's metrics server (serving `/debug/iptables`) on 127.0.0.1, on a thread of its own.
pub struct DebugServer {
    addr: SocketAddr,
    cancel: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl DebugServer {
    /// Serves `v4` (and `v6`, when given) as the node's fresh saves.
    pub fn start(v4: Result<String, String>, v6: Option<Result<String, String>>) -> DebugServer {
        let cancel = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let token = cancel.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the debug server");
            runtime.block_on(async move {
                let state = HttpState {
                    health: Arc::new(ProxyHealth::new(Duration::from_secs(10))),
                    metrics: Arc::new(ProxyMetrics::new()),
                    clock: Arc::new(ManualClock::new(SystemTime::now())),
                    debug: Arc::new(Saves { v4, v6 }),
                };
                let addr: SocketAddr = "127.0.0.1:0".parse().expect("an address");
                let server = serve_metrics(addr, state, token.clone())
                    .await
                    .expect("the metrics server starts");
                tx.send(server.local_addr()).expect("report the address");
                let _ = server.wait().await;
            });
        });
        let addr = rx.recv().expect("the debug server's address");
        DebugServer {
            addr,
            cancel,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for DebugServer {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A Node named `name` with an internal IPv4 address.
pub fn node(name: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]},
    })
}

/// A pod of our DaemonSet on `node`: labels as in deploy/daemonset.yaml, a `metrics` port.
pub fn proxy_pod(name: &str, node: &str, phase: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "kube-system", "labels": {"k8s-app": "svcproxy"}},
        "spec": {
            "nodeName": node, "hostNetwork": true,
            "containers": [{
                "name": "svcproxy", "image": "ghcr.io/kubectl-svcproxy/kubectl-svcproxy:v0.1.0",
                "args": ["--hostname-override=$(NODE_NAME)", "--metrics-bind-address=$(NODE_IP):10249"],
                "ports": [{"name": "healthz", "containerPort": 10256}, {"name": "metrics", "containerPort": 10249}],
            }],
        },
        "status": {"phase": phase},
    })
}

/// A kubeadm-style kube-proxy pod on `node`.
pub fn kube_proxy_pod(name: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "kube-system", "labels": {"k8s-app": "kube-proxy"}},
        "spec": {
            "nodeName": node, "hostNetwork": true,
            "containers": [{"name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:v1.36.0"}],
        },
        "status": {"phase": "Running"},
    })
}

/// A ClusterIP Service with one TCP port.
pub fn service(namespace: &str, name: &str, cluster_ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
            "selector": {"app": name},
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
        },
    })
}

/// The EndpointSlice of Service `namespace/service` with one ready endpoint.
pub fn slice(namespace: &str, service: &str, pod: &str, ip: &str, node: &str) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{service}-abcde"), "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
        },
        "addressType": "IPv4",
        "endpoints": [{
            "addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false},
            "nodeName": node, "targetRef": {"kind": "Pod", "namespace": namespace, "name": pod},
        }],
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
    })
}

/// A running application pod.
pub fn app_pod(namespace: &str, name: &str, app: &str, ip: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "nginx"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    })
}

/// kube-proxy's ConfigMap, as kubeadm writes it (trimmed).
pub fn kube_proxy_config() -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "data": {"config.conf": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nclusterCIDR: 10.244.0.0/16\nmode: iptables\n"},
    })
}
