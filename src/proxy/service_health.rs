//! Per-service health-check node ports for `externalTrafficPolicy: Local` LoadBalancer Services.
//!
//! Cloud load balancers probe `healthCheckNodePort` on every node to learn which nodes have local
//! endpoints. [`ServiceHealthServer`] keeps one listener per Service on that port (on each NodePort
//! address, or on all addresses) and answers any path with kube-proxy's JSON body:
//!
//! ```text
//! {
//! <TAB>"service": {
//! <TAB><TAB>"namespace": "default",
//! <TAB><TAB>"name": "web"
//! <TAB>},
//! <TAB>"localEndpoints": 2,
//! <TAB>"serviceProxyHealthy": true
//! }
//! ```
//!
//! (indented with tab characters, no trailing newline; [`body_text`] writes it)
//! with `X-Load-Balancing-Endpoint-Weight: <localEndpoints>`, and status 200 iff there is at least one
//! ready local endpoint and the proxy is healthy ([`ProxyHealth::is_healthy`], which ignores the
//! Node), else 503.
//!
//! [`ServiceHealthServer::sync_services`] opens and closes listeners; a Service whose port changed is
//! reopened; an unchanged one is left alone. [`ServiceHealthServer::sync_endpoints`] only updates the
//! counts the handlers read, never the listeners.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, oneshot};
use tokio_util::sync::CancellationToken;

use crate::core::model::NamespacedName;
use crate::proxy::health::{Clock, ProxyHealth};

/// The header carrying the local endpoint count.
pub const WEIGHT_HEADER: &str = "X-Load-Balancing-Endpoint-Weight";

/// A health-check port could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the health check port {port} of Service {service} on {addr}: {source}")]
pub struct ServiceHealthError {
    /// The Service.
    pub service: NamespacedName,
    /// Its `healthCheckNodePort`.
    pub port: u16,
    /// The address that failed.
    pub addr: SocketAddr,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// The JSON body of a health-check answer, for clients that parse it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHealthBody {
    /// The Service.
    pub service: NamespacedName,
    /// Ready endpoints on this node.
    pub local_endpoints: usize,
    /// Whether the proxy is healthy.
    pub service_proxy_healthy: bool,
}

/// kube-proxy's exact body text (tab-indented, no trailing newline).
pub fn body_text(service: &NamespacedName, local_endpoints: usize, healthy: bool) -> String {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""));
    format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": {},\n\t\t\"name\": {}\n\t}},\n\t\"localEndpoints\": {},\n\t\"serviceProxyHealthy\": {}\n}}",
        quote(&service.namespace),
        quote(&service.name),
        local_endpoints,
        healthy
    )
}

type Counts = Arc<RwLock<HashMap<NamespacedName, usize>>>;

#[derive(Clone)]
struct HandlerState {
    service: NamespacedName,
    counts: Counts,
    health: Arc<ProxyHealth>,
    clock: Arc<dyn Clock>,
}

async fn answer(State(s): State<HandlerState>) -> Response {
    let count = s
        .counts
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&s.service)
        .copied()
        .unwrap_or(0);
    let healthy = s.health.is_healthy(s.clock.now());
    let status = if count > 0 && healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = (status, body_text(&s.service, count, healthy)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(WEIGHT_HEADER, HeaderValue::from(count));
    response
}

/// A TCP listener that reports when it has been dropped (the port is closed).
struct NotifyingListener {
    inner: TcpListener,
    _closed: oneshot::Sender<()>,
}

impl axum::serve::Listener for NotifyingListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    fn accept(&mut self) -> impl Future<Output = (Self::Io, Self::Addr)> + Send {
        axum::serve::Listener::accept(&mut self.inner)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// One open socket of one Service.
struct OpenSocket {
    local_addr: SocketAddr,
    stop: CancellationToken,
    closed: oneshot::Receiver<()>,
}

impl OpenSocket {
    /// Stops accepting and waits until the socket is closed. Connections already accepted finish
    /// on their own.
    async fn close(self) {
        self.stop.cancel();
        // The sender is dropped together with the listener; an error is exactly that signal.
        let _ = self.closed.await;
    }
}

struct Instance {
    port: u16,
    sockets: Vec<OpenSocket>,
}

impl Instance {
    async fn close(self) {
        for socket in self.sockets {
            socket.close().await;
        }
    }
}

/// The set of health-check listeners, kept in line with the desired Services.
pub struct ServiceHealthServer {
    addresses: Vec<IpAddr>,
    health: Arc<ProxyHealth>,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
    counts: Counts,
    services: Mutex<BTreeMap<NamespacedName, Instance>>,
}

impl ServiceHealthServer {
    /// A manager that listens on `addresses` (the node's NodePort addresses; empty means all
    /// addresses), judges the proxy with `health` at `clock`'s time, and closes everything when
    /// `cancel` is cancelled.
    pub fn new(
        addresses: Vec<IpAddr>,
        health: Arc<ProxyHealth>,
        clock: Arc<dyn Clock>,
        cancel: CancellationToken,
    ) -> Self {
        ServiceHealthServer {
            addresses,
            health,
            clock,
            cancel,
            counts: Arc::new(RwLock::new(HashMap::new())),
            services: Mutex::new(BTreeMap::new()),
        }
    }

    /// Makes `desired` (Service → `healthCheckNodePort`) the open set: closes Services no longer
    /// wanted or whose port changed, opens new ones, leaves the rest alone. A Service whose port
    /// cannot be opened is reported and retried on the next call; the others are still synced.
    pub async fn sync_services(
        &self,
        desired: &BTreeMap<NamespacedName, u16>,
    ) -> Vec<ServiceHealthError> {
        let mut services = self.services.lock().await;
        let stale: Vec<NamespacedName> = services
            .iter()
            .filter(|(name, instance)| desired.get(*name) != Some(&instance.port))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(instance) = services.remove(&name) {
                tracing::debug!(service = %name, port = instance.port, "closing health check");
                instance.close().await;
            }
        }

        let mut errors = Vec::new();
        for (name, &port) in desired {
            if services.contains_key(name) {
                continue;
            }
            tracing::debug!(service = %name, port, "opening health check");
            match self.open(name, port).await {
                Ok(sockets) => {
                    services.insert(name.clone(), Instance { port, sockets });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "failed to start a service health check");
                    errors.push(e);
                }
            }
        }
        errors
    }

    /// Sets the ready local endpoint count of every Service; Services not listed have 0. Listeners
    /// are not touched.
    pub fn sync_endpoints(&self, ready: &BTreeMap<NamespacedName, usize>) {
        let mut counts = self.counts.write().unwrap_or_else(|e| e.into_inner());
        counts.clear();
        counts.extend(ready.iter().map(|(k, v)| (k.clone(), *v)));
    }

    /// The open Services and their ports.
    pub async fn services(&self) -> BTreeMap<NamespacedName, u16> {
        self.services
            .lock()
            .await
            .iter()
            .map(|(name, instance)| (name.clone(), instance.port))
            .collect()
    }

    /// The addresses actually bound for `service` (empty when it is not open).
    pub async fn local_addrs(&self, service: &NamespacedName) -> Vec<SocketAddr> {
        self.services
            .lock()
            .await
            .get(service)
            .map(|i| i.sockets.iter().map(|s| s.local_addr).collect())
            .unwrap_or_default()
    }

    /// Closes every listener and waits until their ports are closed.
    pub async fn shutdown(&self) {
        let mut services = self.services.lock().await;
        for (_, instance) in std::mem::take(&mut *services) {
            instance.close().await;
        }
    }

    async fn open(
        &self,
        service: &NamespacedName,
        port: u16,
    ) -> Result<Vec<OpenSocket>, ServiceHealthError> {
        let listeners = if self.addresses.is_empty() {
            bind_all(port).await
        } else {
            bind_each(&self.addresses, port).await
        }
        .map_err(|(addr, source)| ServiceHealthError {
            service: service.clone(),
            port,
            addr,
            source,
        })?;
        Ok(listeners
            .into_iter()
            .map(|(listener, local_addr)| self.spawn(service, listener, local_addr))
            .collect())
    }

    fn spawn(
        &self,
        service: &NamespacedName,
        listener: TcpListener,
        local_addr: SocketAddr,
    ) -> OpenSocket {
        let stop = self.cancel.child_token();
        let (closed_tx, closed) = oneshot::channel();
        let router = Router::new().fallback(answer).with_state(HandlerState {
            service: service.clone(),
            counts: self.counts.clone(),
            health: self.health.clone(),
            clock: self.clock.clone(),
        });
        let listener = NotifyingListener {
            inner: listener,
            _closed: closed_tx,
        };
        let signal = stop.clone().cancelled_owned();
        let name = service.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::warn!(service = %name, address = %local_addr, error = %e, "health check server failed");
            }
        });
        OpenSocket {
            local_addr,
            stop,
            closed,
        }
    }
}

type Bound = Vec<(TcpListener, SocketAddr)>;

/// Binds `port` on each address; on failure, what was bound is dropped (closed).
async fn bind_each(addresses: &[IpAddr], port: u16) -> Result<Bound, (SocketAddr, io::Error)> {
    let mut bound = Vec::with_capacity(addresses.len());
    for ip in addresses {
        let addr = SocketAddr::new(*ip, port);
        let listener = TcpListener::bind(addr).await.map_err(|e| (addr, e))?;
        let local = listener.local_addr().map_err(|e| (addr, e))?;
        bound.push((listener, local));
    }
    Ok(bound)
}

/// Binds `port` on every address of both families: `[::]` first (dual-stack where the kernel allows
/// it), then `0.0.0.0`, which fails with "address in use" exactly when `[::]` already covers IPv4.
async fn bind_all(port: u16) -> Result<Bound, (SocketAddr, io::Error)> {
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
    let mut bound = Vec::new();
    let mut v4_port = port;
    match TcpListener::bind(v6).await {
        Ok(listener) => {
            let local = listener.local_addr().map_err(|e| (v6, e))?;
            v4_port = local.port();
            bound.push((listener, local));
        }
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err((v6, e)),
        // No IPv6 on this host: IPv4 alone.
        Err(_) => {}
    }
    let v4 = SocketAddr::new(v4.ip(), v4_port);
    match TcpListener::bind(v4).await {
        Ok(listener) => {
            let local = listener.local_addr().map_err(|e| (v4, e))?;
            bound.push((listener, local));
        }
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && !bound.is_empty() => {}
        Err(e) => return Err((v4, e)),
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_kube_proxys_text_and_parses() {
        let name = NamespacedName::new("default", "web");
        let text = body_text(&name, 2, true);
        assert_eq!(
            text,
            "{\n\t\"service\": {\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"web\"\n\t},\n\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}"
        );
        let parsed: ServiceHealthBody = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(
            parsed,
            ServiceHealthBody {
                service: name,
                local_endpoints: 2,
                service_proxy_healthy: true
            }
        );
    }

    #[test]
    fn names_are_json_escaped() {
        let text = body_text(&NamespacedName::new("a\"b", "c"), 0, false);
        let parsed: ServiceHealthBody = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed.service.namespace, "a\"b");
    }
}
