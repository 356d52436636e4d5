//! The test API server, checked with the real kube client: list/watch sequencing, selectors, bookmarks,
//! 410 Expired and the watcher's relist, RBAC denials, outages, `pods/proxy` and Events.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerPort, Event, Node, ObjectReference, Pod, PodSpec, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use support::apiserver::{ApiServer, ApiServerOptions, DEFAULT_USER};

const WAIT: Duration = Duration::from_secs(10);

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

fn service(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Service {
    Service {
        metadata: meta(Some(namespace), name, labels),
        spec: Some(ServiceSpec {
            cluster_ip: Some("10.96.0.10".to_string()),
            ports: Some(vec![ServicePort {
                port: 80,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn node(name: &str) -> Node {
    Node {
        metadata: meta(None, name, &[]),
        ..Node::default()
    }
}

fn slice(namespace: &str, name: &str, labels: &[(&str, &str)]) -> EndpointSlice {
    EndpointSlice {
        metadata: meta(Some(namespace), name, labels),
        address_type: "IPv4".to_string(),
        endpoints: Vec::new(),
        ports: None,
    }
}

fn names<K: kube::ResourceExt>(items: &[K]) -> Vec<String> {
    let mut names: Vec<String> = items.iter().map(|o| o.name_any()).collect();
    names.sort();
    names
}

async fn next_event<K>(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<K>>> + Unpin),
) -> WatchEvent<K> {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("a watch event within the timeout")
        .expect("the watch stream is still open")
        .expect("a watch event, not an error")
}

fn api_error(result: kube::Result<impl std::fmt::Debug>) -> Box<kube::core::Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn list_then_watch_sees_changes_in_order() {
    let server = ApiServer::start();
    server.apply(&service("default", "a", &[]));
    server.apply(&service("default", "b", &[]));
    let api: Api<Service> = Api::all(server.client().await);

    let list = api
        .list(&ListParams::default())
        .await
        .expect("list services");
    assert_eq!(names(&list.items), ["a", "b"]);
    let list_rv = list
        .metadata
        .resource_version
        .expect("the list has a resourceVersion");
    assert_eq!(list_rv, server.resource_version().to_string());

    let mut stream = api
        .watch(&WatchParams::default(), &list_rv)
        .await
        .expect("start a watch")
        .boxed();
    server.apply(&service("default", "c", &[]));
    let mut changed = service("default", "a", &[]);
    changed.spec.as_mut().expect("spec").cluster_ip = Some("10.96.0.11".to_string());
    server.apply(&changed);
    server.delete::<Service>("default", "b");

    let mut seen = Vec::new();
    let mut last_rv = list_rv.parse::<u64>().expect("numeric resourceVersion");
    for _ in 0..3 {
        let (kind, svc) = match next_event(&mut stream).await {
            WatchEvent::Added(s) => ("ADDED", s),
            WatchEvent::Modified(s) => ("MODIFIED", s),
            WatchEvent::Deleted(s) => ("DELETED", s),
            other => panic!("unexpected event {other:?}"),
        };
        let rv: u64 = svc
            .metadata
            .resource_version
            .as_deref()
            .and_then(|rv| rv.parse().ok())
            .expect("events carry numeric resourceVersions");
        assert!(
            rv > last_rv,
            "resourceVersions increase: {rv} after {last_rv}"
        );
        last_rv = rv;
        seen.push((kind, svc.metadata.name.unwrap_or_default()));
    }
    assert_eq!(
        seen,
        [
            ("ADDED", "c".to_string()),
            ("MODIFIED", "a".to_string()),
            ("DELETED", "b".to_string())
        ]
    );
    assert_eq!(last_rv, server.resource_version());
}

#[tokio::test]
async fn lists_come_in_pages_and_a_stale_continue_token_expires() {
    let server = ApiServer::start();
    for name in ["a", "b", "c", "d", "e"] {
        server.apply(&service("default", name, &[]));
    }
    let api: Api<Service> = Api::all(server.client().await);

    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(2);
    let mut pages = 0;
    loop {
        let page = api.list(&params).await.expect("a page");
        pages += 1;
        assert!(page.items.len() <= 2, "at most the limit");
        seen.extend(names(&page.items));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);

    let first = api
        .list(&ListParams::default().limit(2))
        .await
        .expect("first page");
    let token = first.metadata.continue_.expect("more to come");
    // A change to another kind leaves the token valid.
    server.apply(&node("n1"));
    let second = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("the next page despite a Node change");
    assert_eq!(names(&second.items), ["c", "d"]);
    server.apply(&service("default", "f", &[]));
    let status = api_error(
        api.list(&ListParams::default().limit(2).continue_token(&token))
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
}

#[tokio::test]
async fn kube_watcher_lists_in_pages() {
    let server = ApiServer::start();
    for i in 0..7 {
        server.apply(&service("default", &format!("s{i}"), &[]));
    }
    let api: Api<Service> = Api::all(server.client().await);
    let mut stream = watcher(api, watcher::Config::default().page_size(3))
        .default_backoff()
        .boxed();
    let mut listed = Vec::new();
    loop {
        let event = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("an event")
            .expect("the watcher runs")
            .expect("no error");
        match event {
            watcher::Event::InitApply(s) => listed.push(s.metadata.name.unwrap_or_default()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(listed, ["s0", "s1", "s2", "s3", "s4", "s5", "s6"]);
    let limits: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| {
            r.path.ends_with("/services")
                && r.query.as_deref().is_some_and(|q| !q.contains("watch="))
        })
        .map(|r| r.query.unwrap_or_default())
        .collect();
    assert_eq!(limits.len(), 3, "three pages of three: {limits:?}");
    assert!(limits.iter().all(|q| q.contains("limit=3")), "{limits:?}");
}

#[tokio::test]
async fn watch_from_an_older_version_replays_what_happened_since() {
    let server = ApiServer::start();
    let api: Api<ConfigMap> = Api::namespaced(server.client().await, "default");
    let start = server.resource_version().to_string();
    server.apply(&ConfigMap {
        metadata: meta(Some("default"), "one", &[]),
        ..ConfigMap::default()
    });
    server.apply(&ConfigMap {
        metadata: meta(Some("default"), "two", &[]),
        ..ConfigMap::default()
    });
    let mut stream = api
        .watch(&WatchParams::default(), &start)
        .await
        .expect("start a watch")
        .boxed();
    for want in ["one", "two"] {
        match next_event(&mut stream).await {
            WatchEvent::Added(cm) => assert_eq!(cm.metadata.name.as_deref(), Some(want)),
            other => panic!("expected ADDED {want}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn namespaced_and_cluster_wide_paths() {
    let server = ApiServer::start();
    server.apply(&service("blue", "web", &[]));
    server.apply(&service("green", "web", &[]));
    server.apply(&service("green", "db", &[]));
    server.apply(&slice(
        "green",
        "web-abc",
        &[("kubernetes.io/service-name", "web")],
    ));
    server.apply(&node("node-1"));
    let client = server.client().await;

    let green: Api<Service> = Api::namespaced(client.clone(), "green");
    assert_eq!(
        names(
            &green
                .list(&ListParams::default())
                .await
                .expect("list")
                .items
        ),
        ["db", "web"]
    );
    let all: Api<Service> = Api::all(client.clone());
    assert_eq!(
        all.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        3
    );
    let slices: Api<EndpointSlice> = Api::all(client.clone());
    assert_eq!(
        names(
            &slices
                .list(&ListParams::default())
                .await
                .expect("list")
                .items
        ),
        ["web-abc"]
    );
    let nodes: Api<Node> = Api::all(client.clone());
    assert_eq!(
        names(
            &nodes
                .list(&ListParams::default())
                .await
                .expect("list")
                .items
        ),
        ["node-1"]
    );
    let got = green.get("web").await.expect("get green/web");
    assert_eq!(got.metadata.namespace.as_deref(), Some("green"));
    let missing = api_error(green.get("nope").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "services \"nope\" not found");

    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    for want in [
        "/api/v1/namespaces/green/services",
        "/api/v1/services",
        "/apis/discovery.k8s.io/v1/endpointslices",
        "/api/v1/nodes",
        "/api/v1/namespaces/green/services/web",
    ] {
        assert!(
            paths.iter().any(|p| p == want),
            "{want} was requested: {paths:?}"
        );
    }
}

#[tokio::test]
async fn label_selectors() {
    let server = ApiServer::start();
    server.apply(&service(
        "default",
        "plain",
        &[("app", "web"), ("tier", "a")],
    ));
    server.apply(&service(
        "default",
        "other-proxy",
        &[
            ("app", "db"),
            ("service.kubernetes.io/service-proxy-name", "x"),
        ],
    ));
    server.apply(&service(
        "default",
        "headless",
        &[("tier", "b"), ("service.kubernetes.io/headless", "")],
    ));
    let api: Api<Service> = Api::all(server.client().await);
    let select = |selector: &'static str| {
        let api = api.clone();
        async move {
            names(
                &api.list(&ListParams::default().labels(selector))
                    .await
                    .expect(selector)
                    .items,
            )
        }
    };
    assert_eq!(
        select("!service.kubernetes.io/service-proxy-name").await,
        ["headless", "plain"]
    );
    assert_eq!(
        select("!service.kubernetes.io/headless").await,
        ["other-proxy", "plain"]
    );
    assert_eq!(select("service.kubernetes.io/headless").await, ["headless"]);
    assert_eq!(select("app=web").await, ["plain"]);
    assert_eq!(select("app==db").await, ["other-proxy"]);
    assert_eq!(select("app!=web").await, ["headless", "other-proxy"]);
    assert_eq!(select("tier in (a, b)").await, ["headless", "plain"]);
    assert_eq!(select("tier notin (a)").await, ["headless", "other-proxy"]);
    assert_eq!(select("app,tier").await, ["plain"]);
    assert_eq!(
        select("app=web,!service.kubernetes.io/headless").await,
        ["plain"]
    );

    let bad = api_error(api.list(&ListParams::default().labels("app in a")).await);
    assert_eq!((bad.code, bad.reason.as_str()), (400, "BadRequest"));
}

#[tokio::test]
async fn field_selectors() {
    let server = ApiServer::start();
    server.apply(&node("node-1"));
    server.apply(&node("node-2"));
    server.apply(&service("one", "web", &[]));
    server.apply(&service("two", "web", &[]));
    let client = server.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let one = nodes
        .list(&ListParams::default().fields("metadata.name=node-2"))
        .await
        .expect("list by name");
    assert_eq!(names(&one.items), ["node-2"]);
    let others = nodes
        .list(&ListParams::default().fields("metadata.name!=node-2"))
        .await
        .expect("list by name");
    assert_eq!(names(&others.items), ["node-1"]);
    let services: Api<Service> = Api::all(client);
    let in_two = services
        .list(&ListParams::default().fields("metadata.namespace=two"))
        .await
        .expect("list by namespace");
    assert_eq!(in_two.items.len(), 1);
    assert_eq!(in_two.items[0].metadata.namespace.as_deref(), Some("two"));
    let bad = api_error(
        nodes
            .list(&ListParams::default().fields("spec.bogus=x"))
            .await,
    );
    assert_eq!((bad.code, bad.reason.as_str()), (400, "BadRequest"));
    assert!(
        bad.message
            .contains("field label not supported: spec.bogus"),
        "{}",
        bad.message
    );
}

#[tokio::test]
async fn watch_selection_entering_and_leaving() {
    let server = ApiServer::start();
    let api: Api<Service> = Api::all(server.client().await);
    let rv = server.resource_version().to_string();
    let params = WatchParams::default().labels("!service.kubernetes.io/service-proxy-name");
    let mut stream = api
        .watch(&params, &rv)
        .await
        .expect("start a watch")
        .boxed();

    server.apply(&service("default", "web", &[]));
    server.apply(&service(
        "default",
        "web",
        &[("service.kubernetes.io/service-proxy-name", "other")],
    ));
    server.apply(&service("default", "web", &[]));
    server.apply(&service(
        "default",
        "ignored",
        &[("service.kubernetes.io/service-proxy-name", "other")],
    ));
    server.delete::<Service>("default", "ignored");
    server.delete::<Service>("default", "web");

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(match next_event(&mut stream).await {
            WatchEvent::Added(s) => format!("ADDED {}", s.metadata.name.unwrap_or_default()),
            WatchEvent::Modified(s) => format!("MODIFIED {}", s.metadata.name.unwrap_or_default()),
            WatchEvent::Deleted(s) => format!("DELETED {}", s.metadata.name.unwrap_or_default()),
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(
        seen,
        ["ADDED web", "DELETED web", "ADDED web", "DELETED web"]
    );
}

#[tokio::test]
async fn bookmarks_on_demand_carry_the_current_version() {
    let server = ApiServer::start_with(ApiServerOptions {
        bookmark_interval: None,
        ..ApiServerOptions::default()
    });
    let api: Api<Service> = Api::all(server.client().await);
    let rv = server.resource_version().to_string();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("start a watch")
        .boxed();
    let since = server.requests().len();
    server
        .wait_for_request(since.saturating_sub(1), WAIT, |r| {
            r.is_watch() && r.status == Some(200)
        })
        .await
        .expect("the watch is open");
    // Changes elsewhere move the resourceVersion without an event on this watch.
    server.apply(&node("node-1"));
    server.apply(&node("node-2"));
    server.send_bookmarks();
    match next_event(&mut stream).await {
        WatchEvent::Bookmark(bookmark) => {
            assert_eq!(
                bookmark.metadata.resource_version,
                server.resource_version().to_string()
            );
            assert_eq!(bookmark.types.kind, "Service");
            assert_eq!(bookmark.types.api_version, "v1");
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }
}

#[tokio::test]
async fn bookmarks_are_sent_periodically_only_to_watches_that_asked() {
    let server = ApiServer::start_with(ApiServerOptions {
        bookmark_interval: Some(Duration::from_millis(100)),
        ..ApiServerOptions::default()
    });
    let api: Api<Service> = Api::all(server.client().await);
    let rv = server.resource_version().to_string();
    let mut with = api
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("start a watch")
        .boxed();
    let mut without = api
        .watch(&WatchParams::default().disable_bookmarks(), &rv)
        .await
        .expect("start a watch")
        .boxed();
    assert!(matches!(
        next_event(&mut with).await,
        WatchEvent::Bookmark(_)
    ));
    assert!(matches!(
        next_event(&mut with).await,
        WatchEvent::Bookmark(_)
    ));
    // The other watch got nothing in the meantime; its next event is the next change.
    server.apply(&service("default", "web", &[]));
    match next_event(&mut without).await {
        WatchEvent::Added(s) => assert_eq!(s.metadata.name.as_deref(), Some("web")),
        other => panic!("expected ADDED, got {other:?}"),
    }
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.param("allowWatchBookmarks") == Some("true"))
    );
}

#[tokio::test]
async fn watch_from_before_the_history_ends_with_410_expired() {
    let server = ApiServer::start();
    let api: Api<Service> = Api::all(server.client().await);
    let old = server.resource_version();
    server.apply(&service("default", "web", &[]));
    server.compact();
    let mut stream = api
        .watch(&WatchParams::default(), &old.to_string())
        .await
        .expect("the watch request itself succeeds, as on the API server")
        .boxed();
    match next_event(&mut stream).await {
        WatchEvent::Error(status) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
            assert_eq!(
                status.message,
                format!(
                    "too old resource version: {old} ({})",
                    server.resource_version()
                )
            );
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    let end = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("the stream ends");
    assert!(end.is_none(), "the stream ends after the error");

    // From the current version the watch works.
    let mut stream = api
        .watch(
            &WatchParams::default(),
            &server.resource_version().to_string(),
        )
        .await
        .expect("start a watch")
        .boxed();
    server.delete::<Service>("default", "web");
    assert!(matches!(
        next_event(&mut stream).await,
        WatchEvent::Deleted(_)
    ));
}

#[tokio::test]
async fn dropped_watches_end_their_streams() {
    let server = ApiServer::start();
    let api: Api<Service> = Api::all(server.client().await);
    let mut stream = api
        .watch(
            &WatchParams::default(),
            &server.resource_version().to_string(),
        )
        .await
        .expect("start a watch")
        .boxed();
    assert_eq!(server.open_watches(), ["services"]);
    server.drop_watches();
    let end = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("the stream ends");
    assert!(end.is_none(), "no more events after drop_watches: {end:?}");
    assert!(server.open_watches().is_empty());
}

#[tokio::test]
async fn watch_ends_after_timeout_seconds() {
    let server = ApiServer::start();
    let api: Api<Service> = Api::all(server.client().await);
    let mut stream = api
        .watch(
            &WatchParams::default().timeout(1).disable_bookmarks(),
            &server.resource_version().to_string(),
        )
        .await
        .expect("start a watch")
        .boxed();
    let end = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("the stream ends");
    assert!(
        end.is_none(),
        "the watch ends after timeoutSeconds: {end:?}"
    );
}

/// Runs a kube-runtime watcher over Services and returns its events as strings (`Init`, `InitApply a`,
/// `InitDone`, `Apply a`, `Delete a`).
fn watcher_events(api: Api<Service>) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            let text = match event {
                Ok(watcher::Event::Init) => "Init".to_string(),
                Ok(watcher::Event::InitApply(s)) => {
                    format!("InitApply {}", s.metadata.name.unwrap_or_default())
                }
                Ok(watcher::Event::InitDone) => "InitDone".to_string(),
                Ok(watcher::Event::Apply(s)) => {
                    format!("Apply {}", s.metadata.name.unwrap_or_default())
                }
                Ok(watcher::Event::Delete(s)) => {
                    format!("Delete {}", s.metadata.name.unwrap_or_default())
                }
                Err(e) => format!("Error {e}"),
            };
            if tx.send(text).is_err() {
                return;
            }
        }
    });
    rx
}

async fn next_text(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a watcher event within the timeout")
        .expect("the watcher is running")
}

#[tokio::test]
async fn kube_watcher_relists_after_410() {
    let server = ApiServer::start_with(ApiServerOptions {
        bookmark_interval: None,
        ..ApiServerOptions::default()
    });
    server.apply(&service("default", "a", &[]));
    server.apply(&service("default", "b", &[]));
    let mut events = watcher_events(Api::all(server.client().await));
    for want in ["Init", "InitApply a", "InitApply b", "InitDone"] {
        assert_eq!(next_text(&mut events).await, want);
    }
    let since = server.requests().len();
    server
        .wait_for_request(since.saturating_sub(2), WAIT, |r| {
            r.is_watch_of("/api/v1/services") && r.status == Some(200)
        })
        .await
        .expect("the watcher opened its watch");

    // Cut the watch, change things while the client cannot see them, and forget the history.
    server.fail_requests(true);
    server.drop_watches();
    server.delete::<Service>("default", "b");
    server.apply(&service("default", "c", &[]));
    server.compact();
    let mark = server.requests().len();
    server.fail_requests(false);

    let mut texts = Vec::new();
    let relisted = tokio::time::timeout(WAIT, async {
        loop {
            let text = next_text(&mut events).await;
            let done = text == "InitDone";
            texts.push(text);
            if done {
                break;
            }
        }
    })
    .await;
    assert!(relisted.is_ok(), "the watcher relisted in time: {texts:?}");
    let relist: Vec<&String> = texts.iter().filter(|t| !t.starts_with("Error")).collect();
    assert_eq!(
        relist,
        ["Init", "InitApply a", "InitApply c", "InitDone"],
        "all events: {texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("410") || t.contains("too old resource version")),
        "the watcher saw the 410: {texts:?}"
    );
    let relisted = server
        .wait_for_request(mark, WAIT, |r| r.is_list_of("/api/v1/services"))
        .await;
    assert!(relisted.is_some(), "the watcher listed again after the 410");
}

#[tokio::test]
async fn forbidden_answers_403_with_the_authorizer_message() {
    let server = ApiServer::start();
    server.forbid("list", "services");
    server.forbid("watch", "endpointslices.discovery.k8s.io");
    let client = server.client().await;

    let all: Api<Service> = Api::all(client.clone());
    let denied = api_error(all.list(&ListParams::default()).await);
    assert_eq!((denied.code, denied.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        denied.message,
        format!(
            "services is forbidden: User \"{DEFAULT_USER}\" cannot list resource \"services\" in API group \"\" at the cluster scope"
        )
    );
    let namespaced: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let denied = api_error(namespaced.list(&ListParams::default()).await);
    assert!(
        denied
            .message
            .ends_with("in API group \"\" in the namespace \"kube-system\""),
        "{}",
        denied.message
    );

    let slices: Api<EndpointSlice> = Api::all(client.clone());
    slices
        .list(&ListParams::default())
        .await
        .expect("list is still allowed");
    let denied = api_error(slices.watch(&WatchParams::default(), "1").await.map(|_| ()));
    assert_eq!(denied.code, 403);
    assert_eq!(
        denied.message,
        format!(
            "endpointslices.discovery.k8s.io is forbidden: User \"{DEFAULT_USER}\" cannot watch resource \"endpointslices\" in API group \"discovery.k8s.io\" at the cluster scope"
        )
    );

    server.allow("list", "services");
    all.list(&ListParams::default())
        .await
        .expect("allowed again");
}

#[tokio::test]
async fn outage_fails_requests_until_it_ends() {
    let server = ApiServer::start();
    let api: Api<Service> = Api::all(server.client().await);
    server.fail_requests(true);
    let failed = api_error(api.list(&ListParams::default()).await);
    assert_eq!(
        (failed.code, failed.reason.as_str()),
        (500, "InternalError")
    );
    server.fail_requests(false);
    api.list(&ListParams::default())
        .await
        .expect("the outage is over");
    let statuses: Vec<Option<u16>> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(500), Some(200)]);
}

#[tokio::test]
async fn requests_without_the_token_are_unauthorized() {
    let server = ApiServer::start();
    let config = kube::Config::new(server.url().parse().expect("server URL"));
    let api: Api<Service> = Api::all(kube::Client::try_from(config).expect("a client"));
    let denied = api_error(api.list(&ListParams::default()).await);
    assert_eq!((denied.code, denied.reason.as_str()), (401, "Unauthorized"));
}

/// A backend standing in for a proxy pod's debug server: echoes the path and query.
async fn start_backend() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a backend");
    let url = format!("http://{}", listener.local_addr().expect("backend address"));
    let app = axum::Router::new().fallback(|uri: axum::http::Uri| async move {
        if uri.path() == "/missing" {
            return (
                axum::http::StatusCode::NOT_FOUND,
                "no such page".to_string(),
            );
        }
        (axum::http::StatusCode::OK, format!("backend saw {uri}"))
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

fn proxy_pod(namespace: &str, name: &str, port: i32) -> Pod {
    Pod {
        metadata: meta(Some(namespace), name, &[]),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "proxy".to_string(),
                ports: Some(vec![ContainerPort {
                    container_port: port,
                    ..ContainerPort::default()
                }]),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

async fn get_text(client: &kube::Client, path: &str) -> kube::Result<String> {
    let request = axum::http::Request::get(path)
        .body(Vec::new())
        .expect("a request");
    client.request_text(request).await
}

#[tokio::test]
async fn pods_proxy_forwards_to_the_registered_target() {
    let server = ApiServer::start();
    let (backend, backend_task) = start_backend().await;
    server.apply(&proxy_pod("kube-system", "svcproxy-abcde", 10249));
    server.register_pod_proxy("kube-system", "svcproxy-abcde", 10249, &backend);
    // The kube client would retry the 503 below for minutes.
    let mut config = server.config().await;
    config.default_retry = false;
    let client = kube::Client::try_from(config).expect("a client");

    let text = get_text(
        &client,
        "/api/v1/namespaces/kube-system/pods/svcproxy-abcde:10249/proxy/debug/iptables?save=1",
    )
    .await
    .expect("proxied request");
    assert_eq!(text, "backend saw /debug/iptables?save=1");
    // Without a port: the first container port.
    let text = get_text(
        &client,
        "/api/v1/namespaces/kube-system/pods/svcproxy-abcde/proxy/debug/state",
    )
    .await
    .expect("proxied request without a port");
    assert_eq!(text, "backend saw /debug/state");
    // The target's own errors come through.
    let missing = api_error(
        get_text(
            &client,
            "/api/v1/namespaces/kube-system/pods/svcproxy-abcde:10249/proxy/missing",
        )
        .await,
    );
    assert_eq!(missing.code, 404);
    // No target on that port, and no such pod.
    let unreachable = api_error(
        get_text(
            &client,
            "/api/v1/namespaces/kube-system/pods/svcproxy-abcde:9999/proxy/x",
        )
        .await,
    );
    assert_eq!(unreachable.code, 503);
    let no_pod = api_error(
        get_text(
            &client,
            "/api/v1/namespaces/kube-system/pods/nope:10249/proxy/x",
        )
        .await,
    );
    assert_eq!(
        (no_pod.code, no_pod.message.as_str()),
        (404, "pods \"nope\" not found")
    );

    server.forbid("get", "pods/proxy");
    let denied = api_error(
        get_text(
            &client,
            "/api/v1/namespaces/kube-system/pods/svcproxy-abcde:10249/proxy/debug/iptables",
        )
        .await,
    );
    assert_eq!(denied.code, 403);
    assert_eq!(
        denied.message,
        format!(
            "pods \"svcproxy-abcde\" is forbidden: User \"{DEFAULT_USER}\" cannot get resource \"pods/proxy\" in API group \"\" in the namespace \"kube-system\""
        )
    );
    backend_task.abort();
}

#[tokio::test]
async fn events_are_created_and_listed() {
    let server = ApiServer::start();
    let client = server.client().await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some("web.".to_string()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            kind: Some("Service".to_string()),
            namespace: Some("default".to_string()),
            name: Some("web".to_string()),
            ..ObjectReference::default()
        },
        reason: Some("RuleDrift".to_string()),
        message: Some("node-1 has no rules for default/web".to_string()),
        type_: Some("Warning".to_string()),
        ..Event::default()
    };
    let created = events
        .create(&PostParams::default(), &event)
        .await
        .expect("create an Event");
    let name = created.metadata.name.clone().expect("a generated name");
    assert!(name.starts_with("web."), "{name}");
    assert!(created.metadata.resource_version.is_some());

    let stored = server.events();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["reason"], "RuleDrift");
    assert_eq!(stored[0]["involvedObject"]["name"], "web");

    let listed = events
        .list(&ListParams::default().fields("involvedObject.name=web,reason=RuleDrift"))
        .await
        .expect("list Events");
    assert_eq!(names(&listed.items), vec![name.clone()]);
    let again = api_error(
        events
            .create(
                &PostParams::default(),
                &Event {
                    metadata: meta(Some("default"), &name, &[]),
                    ..event.clone()
                },
            )
            .await,
    );
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));
}

#[tokio::test]
async fn kube_event_recorder_publishes_through_events_k8s_io() {
    use kube::runtime::events::{Event as RecorderEvent, EventType, Recorder, Reporter};
    let server = ApiServer::start();
    let client = server.client().await;
    let reporter = Reporter {
        controller: "svcproxy".to_string(),
        instance: Some("node-1".to_string()),
    };
    let recorder = Recorder::new(client, reporter);
    let reference = ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("Service".to_string()),
        namespace: Some("default".to_string()),
        name: Some("web".to_string()),
        ..ObjectReference::default()
    };
    recorder
        .publish(
            &RecorderEvent {
                type_: EventType::Warning,
                reason: "RuleDrift".to_string(),
                note: Some("missing rules".to_string()),
                action: "Audit".to_string(),
                secondary: None,
            },
            &reference,
        )
        .await
        .expect("publish an Event");
    let stored = server.events();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["apiVersion"], "events.k8s.io/v1");
    assert_eq!(stored[0]["reason"], "RuleDrift");
    assert_eq!(stored[0]["regarding"]["name"], "web");
}

#[test]
fn usable_from_sync_tests_and_stops_on_drop() {
    let server = ApiServer::start();
    let addr = server.addr();
    let stored = server.apply(&service("default", "web", &[]));
    assert_eq!(
        stored.metadata.resource_version,
        Some(server.resource_version().to_string())
    );
    assert!(stored.metadata.uid.is_some());
    assert!(server.get::<Service>("default", "web").is_some());
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = server.write_kubeconfig(dir.path());
    let text = std::fs::read_to_string(&path).expect("read the kubeconfig");
    assert!(text.contains(&server.url()), "{text}");
    assert!(
        std::net::TcpStream::connect(addr).is_ok(),
        "the server listens"
    );
    drop(server);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the port is closed after drop"
    );
}

#[tokio::test]
async fn watcher_sees_only_selected_objects_with_a_list_watch_cycle() {
    let server = ApiServer::start();
    server.apply(&node("node-1"));
    server.apply(&node("node-2"));
    let api: Api<Node> = Api::all(server.client().await);
    let config = watcher::Config::default().fields("metadata.name=node-1");
    let mut stream = watcher(api, config).boxed();
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("InitDone") {
        let event = tokio::time::timeout(WAIT, stream.try_next())
            .await
            .expect("an event in time")
            .expect("no watcher error")
            .expect("the stream is open");
        seen.push(match event {
            watcher::Event::Init => "Init".to_string(),
            watcher::Event::InitApply(n) => {
                format!("InitApply {}", n.metadata.name.unwrap_or_default())
            }
            watcher::Event::InitDone => "InitDone".to_string(),
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(seen, ["Init", "InitApply node-1", "InitDone"]);
    let mut labelled = node("node-1");
    labelled.metadata.labels = Some(BTreeMap::from([("zone".to_string(), "a".to_string())]));
    server.apply(&node("node-2"));
    server.apply(&labelled);
    let event = tokio::time::timeout(WAIT, stream.try_next())
        .await
        .expect("an event in time")
        .expect("no watcher error")
        .expect("the stream is open");
    match event {
        watcher::Event::Apply(n) => assert_eq!(n.metadata.name.as_deref(), Some("node-1")),
        other => panic!("expected Apply node-1, got {other:?}"),
    }
}
