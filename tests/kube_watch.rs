//! The Kubernetes adapter's watches against the test API server, through the real kube client built by
//! `svcproxy::kube::client` from a kubeconfig.

mod support;

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use support::apiserver::{ApiServer, ApiServerOptions, RequestRecord};
use svcproxy::core::model::{EndpointSlice, Node, Service};
use svcproxy::kube::{KubeError, KubeOptions, client, watch_cluster};
use svcproxy::proxy::events::{ClusterEvent, WatchEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);
const NODE: &str = "node-1";

// ---- objects ------------------------------------------------------------------------------------

fn meta(namespace: Option<&str>, name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: (!labels.is_empty()).then(|| {
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        }),
        ..ObjectMeta::default()
    }
}

fn service_with(name: &str, labels: &[(&str, &str)], cluster_ip: &str, port: i32) -> k8s::Service {
    k8s::Service {
        metadata: meta(Some("default"), name, labels),
        spec: Some(k8s::ServiceSpec {
            cluster_ip: Some(cluster_ip.to_string()),
            ports: Some(vec![k8s::ServicePort {
                name: Some("http".to_string()),
                port,
                ..k8s::ServicePort::default()
            }]),
            ..k8s::ServiceSpec::default()
        }),
        ..k8s::Service::default()
    }
}

fn service(name: &str) -> k8s::Service {
    service_with(name, &[], "10.96.0.10", 80)
}

fn slice(name: &str, service: &str, labels: &[(&str, &str)], ip: &str) -> discovery::EndpointSlice {
    let mut all_labels = vec![("kubernetes.io/service-name", service)];
    all_labels.extend_from_slice(labels);
    discovery::EndpointSlice {
        metadata: meta(Some("default"), name, &all_labels),
        address_type: "IPv4".to_string(),
        endpoints: vec![discovery::Endpoint {
            addresses: vec![ip.to_string()],
            ..discovery::Endpoint::default()
        }],
        ports: Some(vec![discovery::EndpointPort {
            name: Some("http".to_string()),
            port: Some(8080),
            ..discovery::EndpointPort::default()
        }]),
    }
}

fn node(name: &str, pod_cidr: &str) -> k8s::Node {
    k8s::Node {
        metadata: meta(None, name, &[]),
        spec: Some(k8s::NodeSpec {
            pod_cidr: Some(pod_cidr.to_string()),
            ..k8s::NodeSpec::default()
        }),
        ..k8s::Node::default()
    }
}

// ---- harness ------------------------------------------------------------------------------------

/// A buffer that collects what the tracing subscriber writes.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The watches of one proxy against one test API server, with the events sorted by kind.
struct Harness {
    server: ApiServer,
    rx: mpsc::Receiver<ClusterEvent>,
    cancel: CancellationToken,
    task: Option<JoinHandle<Result<(), KubeError>>>,
    services: VecDeque<WatchEvent<Service>>,
    slices: VecDeque<WatchEvent<EndpointSlice>>,
    nodes: VecDeque<WatchEvent<Node>>,
    logs: Logs,
    _log_guard: tracing::subscriber::DefaultGuard,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Starts `watch_cluster` for [`NODE`], with a client built from the server's kubeconfig by
    /// `svcproxy::kube::client`. Tests run on tokio's current-thread runtime, so the watch task logs to
    /// this thread's subscriber.
    async fn start(server: ApiServer) -> Harness {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        let log_guard = tracing::subscriber::set_default(subscriber);
        let dir = tempfile::tempdir().expect("a temp dir");
        let options = KubeOptions {
            kubeconfig: Some(server.write_kubeconfig(dir.path())),
            ..KubeOptions::default()
        };
        let client = client(&options)
            .await
            .expect("a client from the test kubeconfig");
        let (tx, rx) = mpsc::channel(16);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(watch_cluster(client, NODE, tx, cancel.clone()));
        Harness {
            server,
            rx,
            cancel,
            task: Some(task),
            services: VecDeque::new(),
            slices: VecDeque::new(),
            nodes: VecDeque::new(),
            logs,
            _log_guard: log_guard,
            _dir: dir,
        }
    }

    /// Receives one event and files it under its kind.
    async fn pull(&mut self) {
        let event = tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("a cluster event within the timeout")
            .expect("the watches are running");
        match event {
            ClusterEvent::Services(e) => self.services.push_back(e),
            ClusterEvent::EndpointSlices(e) => self.slices.push_back(e),
            ClusterEvent::Node(e) => self.nodes.push_back(e),
        }
    }

    async fn service_event(&mut self) -> WatchEvent<Service> {
        let next = async {
            loop {
                if let Some(event) = self.services.pop_front() {
                    return event;
                }
                self.pull().await;
            }
        };
        tokio::time::timeout(WAIT, next)
            .await
            .expect("an event of this kind within the timeout")
    }

    async fn slice_event(&mut self) -> WatchEvent<EndpointSlice> {
        let next = async {
            loop {
                if let Some(event) = self.slices.pop_front() {
                    return event;
                }
                self.pull().await;
            }
        };
        tokio::time::timeout(WAIT, next)
            .await
            .expect("an event of this kind within the timeout")
    }

    async fn node_event(&mut self) -> WatchEvent<Node> {
        let next = async {
            loop {
                if let Some(event) = self.nodes.pop_front() {
                    return event;
                }
                self.pull().await;
            }
        };
        tokio::time::timeout(WAIT, next)
            .await
            .expect("an event of this kind within the timeout")
    }

    /// Waits for the initial `Relisted` of all three kinds; returns the Service names.
    async fn synced(&mut self) -> Vec<String> {
        let services = relisted_names(self.service_event().await, |s| s.id.name.clone());
        relisted_names(self.slice_event().await, |s| s.id.name.clone());
        relisted_names(self.node_event().await, |n| n.name.clone());
        services
    }

    /// Waits until a watch of `path` is open (answered 200) at or after request `since`.
    async fn watch_open(&self, since: usize, path: &str) -> RequestRecord {
        self.server
            .wait_for_request(since, WAIT, |r| {
                r.is_watch_of(path) && r.status == Some(200)
            })
            .await
            .unwrap_or_else(|| panic!("a watch of {path} opened: {:#?}", self.server.requests()))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn relisted_names<T>(event: WatchEvent<T>, name: impl Fn(&T) -> String) -> Vec<String> {
    match event {
        WatchEvent::Relisted(all) => {
            let mut names: Vec<String> = all.iter().map(name).collect();
            names.sort();
            names
        }
        WatchEvent::Applied(o) => panic!("expected Relisted, got Applied {}", name(&o)),
        WatchEvent::Deleted(o) => panic!("expected Relisted, got Deleted {}", name(&o)),
    }
}

fn describe<T>(event: &WatchEvent<T>, name: impl Fn(&T) -> String) -> String {
    match event {
        WatchEvent::Applied(o) => format!("Applied {}", name(o)),
        WatchEvent::Deleted(o) => format!("Deleted {}", name(o)),
        WatchEvent::Relisted(all) => {
            let mut names: Vec<String> = all.iter().map(name).collect();
            names.sort();
            format!("Relisted {}", names.join(","))
        }
    }
}

fn service_text(event: &WatchEvent<Service>) -> String {
    describe(event, |s| s.id.name.clone())
}

// ---- tests --------------------------------------------------------------------------------------

#[tokio::test]
async fn initial_lists_arrive_as_relisted() {
    let server = ApiServer::start();
    server.apply(&service("web"));
    server.apply(&service_with("db", &[], "10.96.0.20", 5432));
    server.apply(&slice("web-a", "web", &[], "10.244.1.5"));
    server.apply(&node(NODE, "10.244.1.0/24"));
    server.apply(&node("node-2", "10.244.2.0/24"));
    let mut h = Harness::start(server).await;

    match h.service_event().await {
        WatchEvent::Relisted(all) => {
            let mut all = all;
            all.sort_by(|a, b| a.id.name.cmp(&b.id.name));
            assert_eq!(all.len(), 2);
            assert_eq!(all[0].id.name, "db");
            assert_eq!(all[0].ports[0].port, 5432);
            assert_eq!(
                all[0].cluster_ips,
                ["10.96.0.20".parse::<std::net::IpAddr>().expect("ip")]
            );
            assert_eq!(all[1].id.name, "web");
        }
        other => panic!("expected Relisted, got {}", service_text(&other)),
    }
    match h.slice_event().await {
        WatchEvent::Relisted(all) => {
            assert_eq!(all.len(), 1);
            assert_eq!(all[0].service_name, "web");
            assert_eq!(all[0].endpoints[0].addresses, ["10.244.1.5"]);
        }
        other => panic!(
            "expected Relisted, got {}",
            describe(&other, |s| s.id.name.clone())
        ),
    }
    match h.node_event().await {
        WatchEvent::Relisted(all) => {
            assert_eq!(all.len(), 1, "only this node");
            assert_eq!(all[0].name, NODE);
            assert_eq!(all[0].pod_cidrs.len(), 1);
        }
        other => panic!(
            "expected Relisted, got {}",
            describe(&other, |n| n.name.clone())
        ),
    }
}

#[tokio::test]
async fn changes_arrive_as_applied_and_deleted() {
    let server = ApiServer::start();
    server.apply(&service("web"));
    server.apply(&service("old"));
    server.apply(&slice("web-a", "web", &[], "10.244.1.5"));
    server.apply(&node(NODE, "10.244.1.0/24"));
    let mut h = Harness::start(server).await;
    assert_eq!(h.synced().await, ["old", "web"]);

    h.server.apply(&service("new"));
    h.server
        .apply(&service_with("web", &[], "10.96.0.10", 8443));
    h.server.delete::<k8s::Service>("default", "old");
    assert_eq!(service_text(&h.service_event().await), "Applied new");
    match h.service_event().await {
        WatchEvent::Applied(s) => {
            assert_eq!(s.id.name, "web");
            assert_eq!(s.ports[0].port, 8443, "the modified object");
        }
        other => panic!("expected Applied web, got {}", service_text(&other)),
    }
    assert_eq!(service_text(&h.service_event().await), "Deleted old");

    h.server.apply(&slice("web-a", "web", &[], "10.244.1.6"));
    h.server
        .delete::<discovery::EndpointSlice>("default", "web-a");
    match h.slice_event().await {
        WatchEvent::Applied(s) => assert_eq!(s.endpoints[0].addresses, ["10.244.1.6"]),
        other => panic!(
            "expected Applied, got {}",
            describe(&other, |s| s.id.name.clone())
        ),
    }
    assert_eq!(
        describe(&h.slice_event().await, |s| s.id.name.clone()),
        "Deleted web-a"
    );

    h.server.apply(&node(NODE, "10.244.9.0/24"));
    match h.node_event().await {
        WatchEvent::Applied(n) => assert_eq!(n.pod_cidrs[0].to_string(), "10.244.9.0/24"),
        other => panic!(
            "expected Applied, got {}",
            describe(&other, |n| n.name.clone())
        ),
    }
}

#[tokio::test]
async fn node_watch_sees_only_this_node() {
    let server = ApiServer::start();
    server.apply(&node(NODE, "10.244.1.0/24"));
    server.apply(&node("node-2", "10.244.2.0/24"));
    let mut h = Harness::start(server).await;
    h.synced().await;

    h.server.apply(&node("node-2", "10.244.22.0/24"));
    h.server.apply(&node("node-3", "10.244.3.0/24"));
    h.server.delete::<k8s::Node>("", "node-2");
    h.server.apply(&node(NODE, "10.244.11.0/24"));
    // Events are ordered: had any other node's change come through, it would come first.
    match h.node_event().await {
        WatchEvent::Applied(n) => {
            assert_eq!(n.name, NODE);
            assert_eq!(n.pod_cidrs[0].to_string(), "10.244.11.0/24");
        }
        other => panic!(
            "expected Applied {NODE}, got {}",
            describe(&other, |n| n.name.clone())
        ),
    }
    h.server.delete::<k8s::Node>("", NODE);
    assert_eq!(
        describe(&h.node_event().await, |n| n.name.clone()),
        format!("Deleted {NODE}")
    );
}

#[tokio::test]
async fn excluded_objects_are_filtered_by_the_api_server() {
    let server = ApiServer::start();
    server.apply(&service("web"));
    server.apply(&service_with(
        "other-proxy",
        &[("service.kubernetes.io/service-proxy-name", "cilium")],
        "10.96.0.30",
        80,
    ));
    server.apply(&service_with("headless", &[], "None", 80));
    let mut external = service("external");
    if let Some(spec) = external.spec.as_mut() {
        spec.type_ = Some("ExternalName".to_string());
        spec.external_name = Some("db.example.com".to_string());
        spec.cluster_ip = None;
    }
    server.apply(&external);
    server.apply(&slice("web-a", "web", &[], "10.244.1.5"));
    server.apply(&slice(
        "headless-a",
        "headless",
        &[("service.kubernetes.io/headless", "")],
        "10.244.1.7",
    ));
    let mut h = Harness::start(server).await;

    // Headless and ExternalName Services are passed on (the planner skips them).
    let services = relisted_names(h.service_event().await, |s| s.id.name.clone());
    assert_eq!(services, ["external", "headless", "web"]);
    let slices = relisted_names(h.slice_event().await, |s| s.id.name.clone());
    assert_eq!(slices, ["web-a"]);
    relisted_names(h.node_event().await, |n| n.name.clone());

    // Labelled later: the API server turns it into a deletion for this watch.
    h.server.apply(&service_with(
        "web",
        &[("service.kubernetes.io/service-proxy-name", "cilium")],
        "10.96.0.10",
        80,
    ));
    assert_eq!(service_text(&h.service_event().await), "Deleted web");

    // The selectors were sent to the API server, for the lists and for the watches.
    for (path, param, value) in [
        (
            "/api/v1/services",
            "labelSelector",
            "!service.kubernetes.io/service-proxy-name",
        ),
        (
            "/apis/discovery.k8s.io/v1/endpointslices",
            "labelSelector",
            "!service.kubernetes.io/headless",
        ),
        ("/api/v1/nodes", "fieldSelector", "metadata.name=node-1"),
    ] {
        let list = h
            .server
            .wait_for_request(0, WAIT, |r| r.is_list_of(path))
            .await
            .unwrap_or_else(|| panic!("a list of {path}"));
        assert_eq!(list.param(param), Some(value), "list of {path}");
        let watch = h.watch_open(0, path).await;
        assert_eq!(watch.param(param), Some(value), "watch of {path}");
        assert_eq!(watch.param("allowWatchBookmarks"), Some("true"));
        assert!(
            watch
                .param("resourceVersion")
                .is_some_and(|rv| !rv.is_empty() && rv != "0"),
            "the watch resumes from the list's resourceVersion: {watch:?}"
        );
    }
}

#[tokio::test]
async fn expired_watch_relists_and_drops_objects_deleted_meanwhile() {
    let server = ApiServer::start_with(ApiServerOptions {
        bookmark_interval: None,
        ..ApiServerOptions::default()
    });
    server.apply(&service("a"));
    server.apply(&service("b"));
    server.apply(&node(NODE, "10.244.1.0/24"));
    let mut h = Harness::start(server).await;
    assert_eq!(h.synced().await, ["a", "b"]);
    h.watch_open(0, "/api/v1/services").await;

    // The watch breaks; while the proxy cannot see, b goes, c comes, and the history is compacted.
    h.server.fail_requests(true);
    h.server.drop_watches();
    h.server.delete::<k8s::Service>("default", "b");
    h.server.apply(&service("c"));
    h.server.compact();
    let mark = h.server.requests().len();
    h.server.fail_requests(false);

    assert_eq!(service_text(&h.service_event().await), "Relisted a,c");
    let expired = h
        .server
        .wait_for_request(mark, WAIT, |r| r.is_list_of("/api/v1/services"))
        .await;
    assert!(expired.is_some(), "the Services were listed again");
    // Later changes still arrive.
    h.server.apply(&service("d"));
    assert_eq!(service_text(&h.service_event().await), "Applied d");
    assert!(
        h.logs.text().contains("listing them again"),
        "{}",
        h.logs.text()
    );
}

#[tokio::test]
async fn an_outage_is_survived_and_events_resume() {
    let server = ApiServer::start_with(ApiServerOptions {
        bookmark_interval: None,
        ..ApiServerOptions::default()
    });
    server.apply(&service("a"));
    server.apply(&node(NODE, "10.244.1.0/24"));
    let mut h = Harness::start(server).await;
    assert_eq!(h.synced().await, ["a"]);
    h.watch_open(0, "/api/v1/services").await;

    let mark = h.server.requests().len();
    h.server.fail_requests(true);
    h.server.drop_watches();
    // Two failed attempts to re-watch the Services: the watcher keeps retrying with backoff.
    let failed = h
        .server
        .wait_for_requests(mark, 2, WAIT, |r| {
            r.is_watch_of("/api/v1/services") && r.status == Some(500)
        })
        .await;
    assert_eq!(
        failed.len(),
        2,
        "two failed re-watch attempts during the outage"
    );
    // Changes during the outage.
    h.server.apply(&service("b"));
    h.server.delete::<k8s::Service>("default", "a");
    h.server.fail_requests(false);

    // Nothing was sent during the outage, and no relist was needed: the next events are the changes.
    assert_eq!(service_text(&h.service_event().await), "Applied b");
    assert_eq!(service_text(&h.service_event().await), "Deleted a");
    let logs = h.logs.text();
    assert!(logs.contains("WARN"), "{logs}");
    assert!(
        logs.contains("watching Services failed, retrying with backoff")
            && logs.contains("etcdserver: request timed out"),
        "the failure is logged at warn with the error: {logs}"
    );
}

#[tokio::test]
async fn a_forbidden_list_is_retried_until_allowed() {
    let server = ApiServer::start();
    server.apply(&service("a"));
    server.apply(&node(NODE, "10.244.1.0/24"));
    server.forbid("list", "services");
    let mut h = Harness::start(server).await;
    // The other kinds sync; the Services are denied and retried.
    relisted_names(h.slice_event().await, |s| s.id.name.clone());
    relisted_names(h.node_event().await, |n| n.name.clone());
    let denied = h
        .server
        .wait_for_request(0, WAIT, |r| {
            r.is_list_of("/api/v1/services") && r.status == Some(403)
        })
        .await;
    assert!(denied.is_some());
    h.server.allow("list", "services");
    assert_eq!(service_text(&h.service_event().await), "Relisted a");
    assert!(
        h.logs
            .text()
            .contains("cannot list resource \\\"services\\\"")
            || h.logs.text().contains("cannot list resource \"services\""),
        "the 403 is logged: {}",
        h.logs.text()
    );
}

#[tokio::test]
async fn a_service_that_does_not_convert_is_skipped() {
    let server = ApiServer::start();
    server.apply(&service("good"));
    server.apply(&service_with("bad-port", &[], "10.96.0.40", 0));
    server.apply(&service("also-good"));
    server.apply(&node(NODE, "10.244.1.0/24"));
    let mut h = Harness::start(server).await;
    assert_eq!(h.synced().await, ["also-good", "good"]);
    let logs = h.logs.text();
    assert!(
        logs.contains("WARN")
            && logs.contains("skipping Service default/bad-port")
            && logs.contains("spec.ports[0].port"),
        "the skipped object and the error are logged: {logs}"
    );

    // A bad update of a delivered Service removes it; good changes keep flowing.
    h.server.apply(&service_with("good", &[], "not-an-ip", 80));
    h.server.apply(&service("third"));
    assert_eq!(service_text(&h.service_event().await), "Deleted good");
    assert_eq!(service_text(&h.service_event().await), "Applied third");
    // A bad object that was never delivered produces nothing.
    h.server
        .apply(&service_with("bad-port", &[], "10.96.0.40", 70000));
    h.server.delete::<k8s::Service>("default", "bad-port");
    h.server.apply(&service("fourth"));
    assert_eq!(service_text(&h.service_event().await), "Applied fourth");
}

#[tokio::test]
async fn cancellation_stops_the_watches() {
    let server = ApiServer::start();
    server.apply(&node(NODE, "10.244.1.0/24"));
    let mut h = Harness::start(server).await;
    h.synced().await;
    h.cancel.cancel();
    let task = h.task.take().expect("the task");
    let result = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the watches stop promptly")
        .expect("the task did not panic");
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn a_dropped_receiver_stops_the_watches_with_an_error() {
    let server = ApiServer::start();
    server.apply(&node(NODE, "10.244.1.0/24"));
    let mut h = Harness::start(server).await;
    h.synced().await;
    let (_, closed) = mpsc::channel(1);
    drop(std::mem::replace(&mut h.rx, closed));
    h.server.apply(&service("x"));
    let task = h.task.take().expect("the task");
    let result = tokio::time::timeout(WAIT, task)
        .await
        .expect("the watches stop")
        .expect("the task did not panic");
    assert!(matches!(result, Err(KubeError::EventsClosed)), "{result:?}");
}

#[tokio::test]
async fn an_empty_node_name_is_refused() {
    let server = ApiServer::start();
    let dir = tempfile::tempdir().expect("a temp dir");
    let options = KubeOptions {
        kubeconfig: Some(server.write_kubeconfig(dir.path())),
        ..KubeOptions::default()
    };
    let client = client(&options).await.expect("a client");
    let (tx, _rx) = mpsc::channel(1);
    let result = watch_cluster(client, "", tx, CancellationToken::new()).await;
    assert!(
        matches!(result, Err(KubeError::EmptyNodeName)),
        "{result:?}"
    );
}

#[tokio::test]
async fn the_kubeconfig_context_decides_the_server() {
    // Two servers; the kubeconfig's contexts point at each; --context picks.
    let first = ApiServer::start();
    let second = ApiServer::start();
    first.apply(&service("on-first"));
    second.apply(&service("on-second"));
    let dir = tempfile::tempdir().expect("a temp dir");
    let text = format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: first\n  cluster:\n    server: {}\n- name: second\n  cluster:\n    server: {}\n\
         users:\n- name: u\n  user:\n    token: {}\n\
         contexts:\n- name: first\n  context:\n    cluster: first\n    user: u\n- name: second\n  context:\n    cluster: second\n    user: u\n\
         current-context: first\n",
        first.url(),
        second.url(),
        first.token(),
    );
    let path = dir.path().join("config");
    std::fs::write(&path, text).expect("write the kubeconfig");
    for (context, want) in [(None, "on-first"), (Some("second"), "on-second")] {
        let options = KubeOptions {
            kubeconfig: Some(path.clone()),
            context: context.map(str::to_string),
            ..KubeOptions::default()
        };
        let api: kube::Api<k8s::Service> =
            kube::Api::all(client(&options).await.expect("a client"));
        let list = api.list(&Default::default()).await.expect("list");
        assert_eq!(list.items[0].metadata.name.as_deref(), Some(want));
    }
}
