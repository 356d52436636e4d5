//! A test Kubernetes API server: real HTTP on 127.0.0.1 for the real kube client, with state the test
//! drives directly.
//!
//! It serves core/v1 `services`, `nodes`, `pods`, `events`, `configmaps`, discovery.k8s.io/v1
//! `endpointslices` and events.k8s.io/v1 `events`: list (label and field selectors, pages with `limit`
//! and `continue`), watch (from a
//! resourceVersion, with bookmarks and 410 Expired), get, create, update, merge-patch and delete, plus
//! the `pods/proxy` subresource, forwarded to a target the test registers, and the `pods/exec`
//! subresource over WebSocket (the `v5.channel.k8s.io`/`v4.channel.k8s.io` protocols kube's client
//! speaks), answering with what the test set ([`ApiServer::set_exec_reply`]).
//!
//! How the failure modes look to the client, as on a real API server:
//! - [`ApiServer::compact`] forgets the change history; a watch that resumes from an older
//!   resourceVersion gets HTTP 200 and a single `ERROR` event with a `Status` of code 410, reason
//!   `Expired` (`too old resource version: N (M)`), then the stream ends. kube-runtime's watcher
//!   relists on exactly that.
//! - [`ApiServer::send_bookmarks`] (and a timer, see [`ApiServerOptions::bookmark_interval`]) sends
//!   `BOOKMARK` events with the current resourceVersion to watches that asked for them.
//! - [`ApiServer::drop_watches`] ends every open watch stream cleanly (clients re-watch from their last
//!   resourceVersion).
//! - [`ApiServer::fail_requests`] makes every request fail with 500 (`etcdserver: request timed out`);
//!   [`ApiServer::fail_requests_with`] picks the code (503 is retried inside the kube client itself).
//! - [`ApiServer::forbid`] makes a verb on a resource answer 403 with the authorizer's message.
//!
//! Requests need `Authorization: Bearer <token>` (the kubeconfig from
//! [`ApiServer::write_kubeconfig`] has it); others get 401.

mod exec;
mod http;
mod pod_proxy;
mod resources;
mod selector;
mod status;
mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use k8s_openapi::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use exec::ExecReply;
use resources::ResourceDef;
use store::Store;

/// The service account the server reports in RBAC denials unless told otherwise.
pub const DEFAULT_USER: &str = "system:serviceaccount:kube-system:svcproxy";
/// The bearer token the server accepts unless told otherwise.
pub const DEFAULT_TOKEN: &str = "svcproxy-test-token";

/// How to start an [`ApiServer`].
#[derive(Debug, Clone)]
pub struct ApiServerOptions {
    /// How often watches that asked for bookmarks get one; `None` sends them only on
    /// [`ApiServer::send_bookmarks`].
    pub bookmark_interval: Option<Duration>,
    /// How many changes the history keeps; older ones are forgotten as on a real API server (a watch
    /// from before them gets 410).
    pub history_limit: usize,
    /// The user named in RBAC denials.
    pub user: String,
    /// The bearer token requests must carry.
    pub token: String,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        ApiServerOptions {
            bookmark_interval: Some(Duration::from_secs(1)),
            history_limit: 10_000,
            user: DEFAULT_USER.to_string(),
            token: DEFAULT_TOKEN.to_string(),
        }
    }
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string.
    pub query: Option<String>,
    /// The decoded query parameters.
    pub params: HashMap<String, String>,
    /// The HTTP status of the answer (for a watch, the status it started with); `None` while the
    /// request is being served.
    pub status: Option<u16>,
}

impl RequestRecord {
    /// A decoded query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// Whether this is a watch request.
    pub fn is_watch(&self) -> bool {
        self.param("watch").is_some_and(|w| w == "true" || w == "1")
    }

    /// Whether this is a list (a GET of a collection, not a watch) of `path`.
    pub fn is_list_of(&self, path: &str) -> bool {
        self.method == "GET" && self.path == path && !self.is_watch()
    }

    /// Whether this is a watch of `path`.
    pub fn is_watch_of(&self, path: &str) -> bool {
        self.method == "GET" && self.path == path && self.is_watch()
    }
}

/// One command run through `pods/exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRecord {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod.
    pub pod: String,
    /// The container (the pod's only one when the request named none).
    pub container: String,
    /// The command and its arguments.
    pub command: Vec<String>,
}

/// State shared by the HTTP side and the test side.
struct Inner {
    store: Store,
    forbidden: BTreeSet<(String, String)>,
    failing: Option<u16>,
    user: String,
    token: String,
    pod_proxies: BTreeMap<(String, String, u16), String>,
    exec_replies: BTreeMap<(String, String, String), ExecReply>,
    exec_protocols: Vec<&'static str>,
    execs: Vec<ExecRecord>,
    requests: Vec<RequestRecord>,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Bumped on every change to the request log, so tests can await a request.
    requests_changed: tokio::sync::watch::Sender<usize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock (in a test) must not hide the state from later assertions.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn log_request(&self, record: RequestRecord) -> usize {
        let index = {
            let mut inner = self.lock();
            inner.requests.push(record);
            inner.requests.len() - 1
        };
        self.requests_changed.send_modify(|n| *n += 1);
        index
    }

    fn log_status(&self, index: usize, status: u16) {
        if let Some(record) = self.lock().requests.get_mut(index) {
            record.status = Some(status);
        }
        self.requests_changed.send_modify(|n| *n += 1);
    }
}

/// A running test API server. Dropping it stops it: open watches end, the port closes, its thread is
/// joined.
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// Starts a server with the default options on an ephemeral port of 127.0.0.1.
    pub fn start() -> ApiServer {
        ApiServer::start_with(ApiServerOptions::default())
    }

    /// Starts a server with `options` on an ephemeral port of 127.0.0.1, served by a tokio runtime on a
    /// thread of its own (so sync and async tests can both use it).
    pub fn start_with(options: ApiServerOptions) -> ApiServer {
        let (requests_changed, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                store: Store::new(options.history_limit),
                forbidden: BTreeSet::new(),
                failing: None,
                user: options.user.clone(),
                token: options.token.clone(),
                pod_proxies: BTreeMap::new(),
                exec_replies: BTreeMap::new(),
                exec_protocols: exec::PROTOCOLS.to_vec(),
                execs: Vec::new(),
                requests: Vec::new(),
            }),
            requests_changed,
        });
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind the test API server to 127.0.0.1");
        std_listener
            .set_nonblocking(true)
            .expect("make the test API server socket non-blocking");
        let addr = std_listener
            .local_addr()
            .expect("the test API server's address");
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread_shared = Arc::clone(&shared);
        let bookmark_interval = options.bookmark_interval;
        let thread = std::thread::Builder::new()
            .name(format!("test-apiserver-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for the test API server");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(std_listener)
                        .expect("a tokio listener for the test API server");
                    let app = axum::Router::new()
                        .fallback(http::handle)
                        .with_state(Arc::clone(&thread_shared));
                    if let Some(interval) = bookmark_interval {
                        let shared = Arc::clone(&thread_shared);
                        tokio::spawn(async move {
                            let mut ticks = tokio::time::interval(interval);
                            ticks.tick().await;
                            loop {
                                ticks.tick().await;
                                shared.lock().store.bookmark();
                            }
                        });
                    }
                    let serve = std::future::IntoFuture::into_future(axum::serve(listener, app));
                    tokio::select! {
                        result = serve => {
                            if let Err(e) = result {
                                eprintln!("test API server stopped: {e}");
                            }
                        }
                        _ = shutdown_rx => {}
                    }
                });
                // Drops the connection tasks (open watch streams included).
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
            .expect("spawn the test API server thread");
        ApiServer {
            shared,
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bearer token requests must carry.
    pub fn token(&self) -> String {
        self.shared.lock().token.clone()
    }

    /// Writes `DIR/kubeconfig`: cluster `test` at [`ApiServer::url`], user `test` with the token,
    /// context `test` (namespace `default`) as the current context.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, self.kubeconfig_yaml()).expect("write the test kubeconfig");
        path
    }

    /// The kubeconfig [`ApiServer::write_kubeconfig`] writes.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: test\n  cluster:\n    server: {url}\n\
             users:\n\
             - name: test\n  user:\n    token: {token}\n\
             contexts:\n\
             - name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\n\
             current-context: test\n",
            url = self.url(),
            token = self.token(),
        )
    }

    /// A kube client config for this server, built from its kubeconfig as a user's would be.
    pub async fn config(&self) -> kube::Config {
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml())
            .expect("parse the test kubeconfig");
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("a client config from the test kubeconfig")
    }

    /// A kube client for this server (see [`ApiServer::config`]). Note that the kube client retries
    /// 429, 503 and 504 answers itself, with backoff, for minutes; use [`ApiServer::config`] with
    /// `default_retry = false` to see a 503 at once.
    pub async fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config().await).expect("a kube client for the test API server")
    }

    fn def_of<K: Resource>() -> &'static ResourceDef {
        resources::find(K::GROUP, K::VERSION, K::URL_PATH_SEGMENT)
            .unwrap_or_else(|| panic!("the test API server does not serve {}", K::KIND))
    }

    /// Creates or replaces an object, as a controller's write would; watches see `ADDED` or `MODIFIED`.
    /// Returns the stored object (with its resourceVersion and uid).
    pub fn apply<K>(&self, object: &K) -> K
    where
        K: Resource + Serialize + DeserializeOwned,
    {
        let value = serde_json::to_value(object).expect("serialize the object");
        let stored = self
            .shared
            .lock()
            .store
            .put(Self::def_of::<K>(), None, value)
            .unwrap_or_else(|e| panic!("apply {}: {e:?}", K::KIND));
        serde_json::from_value(stored).expect("the stored object deserializes")
    }

    /// Creates or replaces an object given as JSON (its `apiVersion` and `kind` pick the resource), for
    /// objects a typed struct cannot express.
    pub fn apply_json(&self, object: Value) -> Value {
        let api_version = object["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let def = resources::find_kind(&api_version, &kind)
            .unwrap_or_else(|| panic!("the test API server does not serve {api_version} {kind}"));
        self.shared
            .lock()
            .store
            .put(def, None, object)
            .unwrap_or_else(|e| panic!("apply {kind}: {e:?}"))
    }

    /// Deletes an object (`namespace` is ignored for cluster-scoped kinds); watches see `DELETED`.
    /// Returns whether it existed.
    pub fn delete<K: Resource>(&self, namespace: &str, name: &str) -> bool {
        let def = Self::def_of::<K>();
        let namespace = if def.namespaced { namespace } else { "" };
        self.shared
            .lock()
            .store
            .delete(def, namespace, name)
            .is_some()
    }

    /// The stored object, if any.
    pub fn get<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: Resource + DeserializeOwned,
    {
        let def = Self::def_of::<K>();
        let namespace = if def.namespaced { namespace } else { "" };
        let value = self
            .shared
            .lock()
            .store
            .get(def, namespace, name)
            .cloned()?;
        Some(serde_json::from_value(value).expect("the stored object deserializes"))
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().store.resource_version()
    }

    /// Forgets the change history, as etcd compaction and the watch cache's window do: a watch resuming
    /// from a resourceVersion older than the current one gets 410 Expired.
    pub fn compact(&self) {
        self.shared.lock().store.compact();
    }

    /// Sends a `BOOKMARK` with the current resourceVersion to every watch that asked for bookmarks.
    pub fn send_bookmarks(&self) {
        self.shared.lock().store.bookmark();
    }

    /// Ends every open watch stream (as an API server restart or a load balancer would).
    pub fn drop_watches(&self) {
        self.shared.lock().store.end_all_watches();
    }

    /// The open watches, as `plural` or `plural.group` (`services`, `endpointslices.discovery.k8s.io`).
    pub fn open_watches(&self) -> Vec<String> {
        self.shared
            .lock()
            .store
            .open_watches()
            .into_iter()
            .map(|(plural, group)| status::qualified(group, plural))
            .collect()
    }

    /// While `on`, every request fails with 500 Internal Error.
    pub fn fail_requests(&self, on: bool) {
        self.fail_requests_with(on.then_some(500));
    }

    /// While `Some(code)`, every request fails with that code (500 or 503); `None` ends the outage.
    pub fn fail_requests_with(&self, code: Option<u16>) {
        self.shared.lock().failing = code;
    }

    /// Forbids `verb` (`list`, `watch`, `get`, `create`, `update`, `patch`, `delete`) on `resource`
    /// (`services`, `endpointslices.discovery.k8s.io`, `pods/proxy`, `events.events.k8s.io`): such
    /// requests get 403 Forbidden.
    pub fn forbid(&self, verb: &str, resource: &str) {
        self.shared
            .lock()
            .forbidden
            .insert((verb.to_string(), resource.to_string()));
    }

    /// Undoes [`ApiServer::forbid`].
    pub fn allow(&self, verb: &str, resource: &str) {
        self.shared
            .lock()
            .forbidden
            .remove(&(verb.to_string(), resource.to_string()));
    }

    /// Forwards `pods/proxy` requests for pod `namespace/name` on `port` to `target`
    /// (`http://127.0.0.1:PORT`). The pod must exist (apply it) or the proxy answers 404.
    pub fn register_pod_proxy(&self, namespace: &str, name: &str, port: u16, target: &str) {
        self.shared.lock().pod_proxies.insert(
            (namespace.to_string(), name.to_string(), port),
            target.trim_end_matches('/').to_string(),
        );
    }

    /// What `command` (its words joined by spaces) prints when run in pod `namespace/name` through
    /// `pods/exec`. A command without a reply fails as a missing executable does (exit 126).
    pub fn set_exec_reply(&self, namespace: &str, name: &str, command: &str, reply: ExecReply) {
        self.shared.lock().exec_replies.insert(
            (namespace.to_string(), name.to_string(), command.to_string()),
            reply,
        );
    }

    /// The exec subprotocols the server accepts, preferred first (default: v5, then v4).
    pub fn set_exec_protocols(&self, protocols: &[&'static str]) {
        self.shared.lock().exec_protocols = protocols.to_vec();
    }

    /// The commands run through `pods/exec` so far, oldest first.
    pub fn execs(&self) -> Vec<ExecRecord> {
        self.shared.lock().execs.clone()
    }

    /// The Events stored (core/v1 and events.k8s.io/v1, as JSON), oldest first.
    pub fn events(&self) -> Vec<Value> {
        let inner = self.shared.lock();
        let mut events: Vec<Value> = resources::RESOURCES
            .iter()
            .filter(|def| def.kind == "Event")
            .flat_map(|def| inner.store.all_of(def))
            .collect();
        events.sort_by_key(store::rv_of);
        events
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Waits up to `timeout` for a request at index `since` or later of [`ApiServer::requests`] that
    /// `matches` (checked again when the request's status is known), and returns it.
    pub async fn wait_for_request(
        &self,
        since: usize,
        timeout: Duration,
        matches: impl Fn(&RequestRecord) -> bool,
    ) -> Option<RequestRecord> {
        self.wait_for_requests(since, 1, timeout, matches)
            .await
            .into_iter()
            .next()
    }

    /// Waits up to `timeout` for `count` requests at index `since` or later that `matches`; returns
    /// those found (fewer than `count` on timeout).
    pub async fn wait_for_requests(
        &self,
        since: usize,
        count: usize,
        timeout: Duration,
        matches: impl Fn(&RequestRecord) -> bool,
    ) -> Vec<RequestRecord> {
        let mut changes = self.shared.requests_changed.subscribe();
        let found = || -> Vec<RequestRecord> {
            self.shared
                .lock()
                .requests
                .iter()
                .skip(since)
                .filter(|r| matches(r))
                .take(count)
                .cloned()
                .collect()
        };
        let search = async {
            loop {
                if found().len() >= count {
                    return;
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, search).await;
        found()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shared.lock().store.end_all_watches();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
