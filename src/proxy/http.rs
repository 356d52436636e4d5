//! The proxy's two HTTP servers, with kube-proxy's paths and answers.
//!
//! - The health server (`--healthz-bind-address`, default [`DEFAULT_HEALTHZ_BIND_ADDRESS`]) serves
//!   `/healthz` and `/livez`: JSON bodies ([`crate::proxy::health::HealthBody`]) with
//!   `Content-Type: application/json` and `X-Content-Type-Options: nosniff`, counted in
//!   `kubeproxy_proxy_healthz_total` / `kubeproxy_proxy_livez_total`.
//! - The metrics server (`--metrics-bind-address`, default [`DEFAULT_METRICS_BIND_ADDRESS`]) serves
//!   `/metrics` (Prometheus text format 0.0.4), `/healthz` (a plain `ok`, like kube-proxy's
//!   component ping check, also `/healthz/ping` and `/healthz?verbose`), `/proxyMode` (`iptables`),
//!   and the debug views `/debug/iptables`, `/debug/state` ([`debug`]) and, with `--audit`,
//!   `/debug/drift` (the current drift findings).
//!
//! Any method is accepted on every path, as Go's `ServeMux` does. Both servers stop when their
//! [`CancellationToken`] is cancelled.

pub mod debug;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::core::rules::IpFamily;
use crate::proxy::health::{Clock, HealthResponse, ProxyHealth};
use crate::proxy::metrics::{CONTENT_TYPE as METRICS_CONTENT_TYPE, ProxyMetrics};

pub use debug::{AppliedPayload, DebugSource, SyncFailure};

/// kube-proxy's default health server address.
pub const DEFAULT_HEALTHZ_BIND_ADDRESS: &str = "0.0.0.0:10256";
/// kube-proxy's default metrics server address.
pub const DEFAULT_METRICS_BIND_ADDRESS: &str = "127.0.0.1:10249";
/// The flag that sets the health server's address.
pub const HEALTHZ_FLAG: &str = "--healthz-bind-address";
/// The flag that sets the metrics server's address.
pub const METRICS_FLAG: &str = "--metrics-bind-address";
/// What `/proxyMode` answers.
pub const PROXY_MODE: &str = "iptables";

const NOSNIFF: &str = "nosniff";
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const APPLICATION_JSON: &str = "application/json";

/// A server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error(
        "cannot listen on {addr} for the {server} server: {source} (set another address with {flag})"
    )]
    Bind {
        /// Which server.
        server: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The flag that chooses the address.
        flag: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The server failed while running.
    #[error("the {server} server on {addr} failed: {source}")]
    Serve {
        /// Which server.
        server: &'static str,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The server's task ended abnormally (it panicked or was aborted).
    #[error("the {server} server on {addr} stopped abnormally: {message}")]
    Task {
        /// Which server.
        server: &'static str,
        /// Its address.
        addr: SocketAddr,
        /// What the runtime reported.
        message: String,
    },
}

/// What the handlers need; cheap to clone.
#[derive(Clone)]
pub struct HttpState {
    /// The proxy's health.
    pub health: Arc<ProxyHealth>,
    /// The metrics (also where health probes are counted).
    pub metrics: Arc<ProxyMetrics>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// The source of the debug views.
    pub debug: Arc<dyn DebugSource>,
}

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    server: &'static str,
    local_addr: SocketAddr,
    task: JoinHandle<Result<(), ServeError>>,
}

impl RunningServer {
    /// The address actually bound (useful when asking for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the server has stopped (after its token is cancelled and open requests finish).
    pub async fn wait(self) -> Result<(), ServeError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(ServeError::Task {
                server: self.server,
                addr: self.local_addr,
                message: e.to_string(),
            }),
        }
    }
}

/// The health server's routes: `/healthz` and `/livez`.
pub fn health_router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", any(proxy_healthz))
        .route("/livez", any(proxy_livez))
        .with_state(state)
}

/// The metrics server's routes: `/metrics`, `/healthz`, `/healthz/ping`, `/proxyMode`,
/// `/debug/iptables`, `/debug/state`, `/debug/drift`.
pub fn metrics_router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", any(metrics))
        .route("/healthz", any(ping_healthz))
        .route("/healthz/ping", any(ping))
        .route("/proxyMode", any(proxy_mode))
        .route("/debug/iptables", any(debug_iptables))
        .route("/debug/state", any(debug_state))
        .route("/debug/drift", any(debug_drift))
        .with_state(state)
}

/// Starts the health server on `addr`; it runs until `cancel` is cancelled.
pub async fn serve_health(
    addr: SocketAddr,
    state: HttpState,
    cancel: CancellationToken,
) -> Result<RunningServer, ServeError> {
    serve("health", HEALTHZ_FLAG, addr, health_router(state), cancel).await
}

/// Starts the metrics server on `addr`; it runs until `cancel` is cancelled.
pub async fn serve_metrics(
    addr: SocketAddr,
    state: HttpState,
    cancel: CancellationToken,
) -> Result<RunningServer, ServeError> {
    serve("metrics", METRICS_FLAG, addr, metrics_router(state), cancel).await
}

async fn serve(
    server: &'static str,
    flag: &'static str,
    addr: SocketAddr,
    router: Router,
    cancel: CancellationToken,
) -> Result<RunningServer, ServeError> {
    let bind_error = |source| ServeError::Bind {
        server,
        addr,
        flag,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    tracing::info!(server, address = %local_addr, "serving HTTP");
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await
            .map_err(|source| ServeError::Serve {
                server,
                addr: local_addr,
                source,
            })
    });
    Ok(RunningServer {
        server,
        local_addr,
        task,
    })
}

fn with_headers(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static(NOSNIFF),
    );
    response
}

fn health_response(r: HealthResponse) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    with_headers(status, APPLICATION_JSON, r.body)
}

async fn proxy_healthz(State(s): State<HttpState>) -> Response {
    let r = s.health.healthz(s.clock.now());
    s.metrics.count_healthz(r.status);
    health_response(r)
}

async fn proxy_livez(State(s): State<HttpState>) -> Response {
    let r = s.health.livez(s.clock.now());
    s.metrics.count_livez(r.status);
    health_response(r)
}

async fn metrics(State(s): State<HttpState>) -> Response {
    let mut response = s.metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    response
}

async fn ping_healthz(Query(query): Query<BTreeMap<String, String>>) -> Response {
    let body = if query.contains_key("verbose") {
        "[+]ping ok\nhealthz check passed\n"
    } else {
        "ok"
    };
    with_headers(StatusCode::OK, TEXT_PLAIN, body.to_string())
}

async fn ping() -> Response {
    with_headers(StatusCode::OK, TEXT_PLAIN, "ok".to_string())
}

async fn proxy_mode() -> Response {
    with_headers(StatusCode::OK, TEXT_PLAIN, PROXY_MODE.to_string())
}

fn bad_request(message: String) -> Response {
    with_headers(StatusCode::BAD_REQUEST, TEXT_PLAIN, message)
}

async fn debug_iptables(
    State(s): State<HttpState>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let text = match query.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("text") => true,
        Some(other) => {
            return bad_request(format!(
                "unknown format {other:?}: use format=json or format=text\n"
            ));
        }
    };
    let mut families = s.debug.families();
    if let Some(wanted) = query.get("family") {
        let wanted = match wanted.as_str() {
            "IPv4" | "ipv4" | "4" => IpFamily::V4,
            "IPv6" | "ipv6" | "6" => IpFamily::V6,
            other => {
                return bad_request(format!(
                    "unknown family {other:?}: use family=IPv4 or family=IPv6\n"
                ));
            }
        };
        families.retain(|f| *f == wanted);
    }

    let generated_at = s.clock.now();
    let mut entries = Vec::with_capacity(families.len());
    for family in families {
        let source = s.debug.clone();
        let clock = s.clock.clone();
        // `fresh_save` runs a process: keep it off the async workers.
        let entry = tokio::task::spawn_blocking(move || {
            debug::family_debug(&source, family, || clock.now())
        })
        .await;
        match entry {
            Ok(entry) => entries.push(entry),
            Err(e) => {
                return with_headers(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    TEXT_PLAIN,
                    format!("collecting the {family} debug view failed: {e}\n"),
                );
            }
        }
    }
    let doc = debug::ProxyDebug::new(generated_at, entries);
    if text {
        with_headers(StatusCode::OK, TEXT_PLAIN, doc.to_text())
    } else {
        json(&doc)
    }
}

/// How long `/debug/state` waits for the sync loop, which answers between syncs.
const STATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn debug_state(State(s): State<HttpState>) -> Response {
    let source = s.debug.clone();
    let answer = tokio::time::timeout(
        STATE_TIMEOUT,
        tokio::task::spawn_blocking(move || source.state()),
    )
    .await;
    let Ok(answer) = answer else {
        return with_headers(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT_PLAIN,
            format!(
                "the proxy state is not available: the sync loop did not answer within {} s (a long sync is running); try again\n",
                STATE_TIMEOUT.as_secs()
            ),
        );
    };
    match answer {
        Ok(Ok(state)) => json(&debug::ProxyState::new(s.clock.now(), state)),
        Ok(Err(e)) => with_headers(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT_PLAIN,
            format!("the proxy state is not available: {e}\n"),
        ),
        Err(e) => with_headers(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT_PLAIN,
            format!("collecting the proxy state failed: {e}\n"),
        ),
    }
}

async fn debug_drift(State(s): State<HttpState>) -> Response {
    match s.debug.drift() {
        Some(doc) => json(&doc),
        None => with_headers(
            StatusCode::NOT_FOUND,
            TEXT_PLAIN,
            "no drift report: the proxy does not run with --audit\n".to_string(),
        ),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_string_pretty(value) {
        Ok(mut body) => {
            body.push('\n');
            with_headers(StatusCode::OK, APPLICATION_JSON, body)
        }
        Err(e) => with_headers(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT_PLAIN,
            format!("encoding the document failed: {e}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_errors_name_the_address_and_the_flag() {
        let e = ServeError::Bind {
            server: "health",
            addr: "0.0.0.0:10256".parse().expect("address"),
            flag: HEALTHZ_FLAG,
            source: io::Error::from(io::ErrorKind::AddrInUse),
        };
        let text = e.to_string();
        assert!(text.contains("0.0.0.0:10256"), "{text}");
        assert!(text.contains("--healthz-bind-address"), "{text}");
    }

    #[test]
    fn defaults_are_kube_proxys() {
        let h: SocketAddr = DEFAULT_HEALTHZ_BIND_ADDRESS.parse().expect("address");
        let m: SocketAddr = DEFAULT_METRICS_BIND_ADDRESS.parse().expect("address");
        assert_eq!(h.port(), 10256);
        assert!(h.ip().is_unspecified());
        assert_eq!(m.port(), 10249);
        assert!(m.ip().is_loopback());
    }
}
