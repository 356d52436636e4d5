//! The proxy's three watches: Services, EndpointSlices and its own Node.

use ::kube::runtime::{WatchStreamExt, watcher};
use ::kube::{Api, Client};
use futures::StreamExt;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

use super::KubeError;
use super::kinds::Watched;
use super::tracker::Tracker;
use crate::core::model::{HEADLESS_LABEL, SERVICE_PROXY_NAME_LABEL};
use crate::proxy::events::ClusterEvent;

/// Watches the cluster for the proxy on node `node_name` and sends what changes to `tx`, until `cancel`
/// fires (then returns `Ok`) or `tx`'s receiver is dropped ([`KubeError::EventsClosed`]).
///
/// As kube-proxy's informers do, it watches Services without the
/// `service.kubernetes.io/service-proxy-name` label, EndpointSlices without the
/// `service.kubernetes.io/headless` label (both filtered by the API server) and the Node named
/// `node_name` (a `metadata.name` field selector). Headless and ExternalName Services are passed on;
/// the planner ignores them.
///
/// Each kind starts with a [`Relisted`](crate::proxy::events::WatchEvent::Relisted) of every object,
/// then reports changes; when a watch expires (410 Gone) the kind is listed again and a fresh
/// `Relisted` replaces the set. Objects that do not convert to the model are skipped with a warning;
/// an update that makes a delivered object unusable is reported as its deletion. When the API server
/// cannot be reached, the watches retry with kube's default backoff (0.8 s doubling to 30 s, with
/// jitter), logging each failure at warn level; nothing is sent meanwhile, so the proxy keeps its
/// rules.
pub async fn watch_cluster(
    client: Client,
    node_name: &str,
    tx: Sender<ClusterEvent>,
    cancel: CancellationToken,
) -> Result<(), KubeError> {
    if node_name.is_empty() {
        return Err(KubeError::EmptyNodeName);
    }
    let services = run::<core::Service>(
        Api::all(client.clone()),
        watcher::Config::default().labels(&format!("!{SERVICE_PROXY_NAME_LABEL}")),
        tx.clone(),
    );
    let slices = run::<discovery::EndpointSlice>(
        Api::all(client.clone()),
        watcher::Config::default().labels(&format!("!{HEADLESS_LABEL}")),
        tx.clone(),
    );
    let node = run::<core::Node>(
        Api::all(client),
        watcher::Config::default().fields(&format!("metadata.name={node_name}")),
        tx,
    );
    tokio::select! {
        () = cancel.cancelled() => Ok(()),
        result = futures::future::try_join3(services, slices, node) => result.map(|_| ()),
    }
}

/// Runs one kind's watch until its events cannot be delivered.
async fn run<K: Watched>(
    api: Api<K>,
    config: watcher::Config,
    tx: Sender<ClusterEvent>,
) -> Result<(), KubeError> {
    let mut tracker = Tracker::<K>::default();
    let mut events = watcher(api, config).default_backoff().boxed();
    while let Some(item) = events.next().await {
        match item {
            Ok(event) => {
                if let Some(event) = tracker.handle(event) {
                    tx.send(K::cluster_event(event))
                        .await
                        .map_err(|_| KubeError::EventsClosed)?;
                }
            }
            Err(error) => log_watch_error::<K>(&error),
        }
    }
    // The watcher retries for ever; its stream does not end.
    Ok(())
}

fn log_watch_error<K: Watched>(error: &watcher::Error) {
    let expired = matches!(error, watcher::Error::WatchError(status) if status.code == 410);
    if expired {
        tracing::info!(
            kind = K::KIND,
            "the {} watch expired ({error}); listing them again",
            K::KIND
        );
    } else {
        tracing::warn!(
            kind = K::KIND,
            "watching {}s failed, retrying with backoff; the current rules stay in place: {error}",
            K::KIND
        );
    }
}
