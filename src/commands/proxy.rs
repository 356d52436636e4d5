//! `proxy`: the node service proxy, a drop-in replacement for kube-proxy's iptables mode.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::node_context::node_context;
use super::{Context, Outcome};
use crate::cli::{IptablesBackend, ProxyArgs};
use crate::core::conntrack_tuning::ConntrackTuning;
use crate::core::model::{Node, NodeContext};
use crate::core::parse::parse_dump;
use crate::core::rules::IpFamily;
use crate::iptables::{Backend, Iptables, RulesReader, backend, nfacct};
use crate::kube::audit::{KubeEventSink, kube_proxy_config};
use crate::kube::{KubeOptions, client, watch_cluster};
use crate::proxy::audit::status::AuditStatus;
use crate::proxy::audit::{self, AuditTiming, EventPolicy, Expectations, FamilyReaders};
use crate::proxy::cleanup::cleanup_payload;
use crate::proxy::conntrack::Conntrack;
use crate::proxy::conntrack_sysctls::{self, KernelFiles};
use crate::proxy::health::{ProxyHealth, SystemClock};
use crate::proxy::host::{self, ROUTE_LOCALNET, TCP_BE_LIBERAL};
use crate::proxy::http::{HttpState, serve_health, serve_metrics};
use crate::proxy::metrics::ProxyMetrics;
use crate::proxy::runner::{self, ContextBuilder, SyncTiming};
use crate::proxy::service_health::ServiceHealthServer;
use crate::proxy::status::ProxyStatus;
use crate::proxy::syncer::FamilySyncer;

/// Runs `proxy` (or one of its one-shot modes).
pub fn run(ctx: &Context, args: &ProxyArgs) -> anyhow::Result<Outcome> {
    let node_name = node_name(args)?;
    let backend = match args.iptables_backend {
        IptablesBackend::Nft => Backend::Nft,
        IptablesBackend::Legacy => Backend::Legacy,
        IptablesBackend::Auto => backend::detect(&[]),
    };
    tracing::info!(node = %node_name, ?backend, "starting");
    if args.cleanup {
        return cleanup(backend).map(|()| Outcome::Clean);
    }
    if args.init_only {
        return init_only(args).map(|()| Outcome::Clean);
    }
    if args.audit {
        // A path of its own: it never builds the syncers, conntrack, nfacct or sysctl writers.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(audit(ctx, args, node_name, backend))?;
        return Ok(Outcome::Clean);
    }
    tracing::info!(
        "sysctls (route_localnet, the --conntrack-* settings) are set by `proxy --init-only`, which the \
         DaemonSet runs as its init container; this process does not change them"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(ctx, args, node_name, backend))?;
    Ok(Outcome::Clean)
}

/// The node's name: `--hostname-override`, else the host name, lowercased as kube-proxy does.
fn node_name(args: &ProxyArgs) -> anyhow::Result<String> {
    let name = match &args.hostname_override {
        Some(name) => name.trim().to_string(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("cannot read the host name; pass --hostname-override NAME")?
            .trim()
            .to_string(),
    };
    if name.is_empty() {
        bail!("the node name is empty; pass --hostname-override NAME (the Node object's name)");
    }
    Ok(name.to_lowercase())
}

/// The families this host can program: IPv4 always, IPv6 when ip6tables works.
fn families(backend: Backend) -> Vec<Iptables> {
    let mut tools = vec![Iptables::new(IpFamily::V4, backend)];
    let v6 = Iptables::new(IpFamily::V6, backend);
    match v6.save_table(crate::core::rules::Table::Nat) {
        Ok(_) => tools.push(v6),
        Err(e) => {
            tracing::warn!(error = %e, "IPv6 rules are not programmed: ip6tables does not work here")
        }
    }
    tools
}

/// `--cleanup`: removes every chain and jump the proxy owns, in every family, and nothing else.
fn cleanup(backend: Backend) -> anyhow::Result<()> {
    for tools in families(backend) {
        let family = tools.family();
        let text = tools
            .save(false)
            .with_context(|| format!("cannot read the {family} rules"))?;
        let dump = parse_dump(&text).with_context(|| format!("cannot parse the {family} rules"))?;
        let payload = cleanup_payload(&dump);
        if payload.is_empty() {
            tracing::info!(%family, "nothing to clean up");
            continue;
        }
        tools
            .restore(&payload)
            .with_context(|| format!("cannot remove the {family} rules"))?;
        tracing::info!(%family, "removed every chain the proxy owns");
    }
    for name in nfacct::OBJECTS {
        if let Err(e) = nfacct::delete(name) {
            tracing::debug!(object = name, error = %e, "nfacct object not deleted");
        }
    }
    Ok(())
}

/// `--init-only`: the one-time node set-up that needs more privileges than the proxy keeps.
fn init_only(args: &ProxyArgs) -> anyhow::Result<()> {
    if args.iptables_localhost_nodeports {
        host::write_sysctl(ROUTE_LOCALNET, 1).with_context(|| {
            format!("cannot set {ROUTE_LOCALNET} (needed for localhost NodePorts); run privileged")
        })?;
    }
    if !std::path::Path::new(host::CONNTRACK_SYSCTLS).exists() {
        // Usually loaded already (by the CNI plugin or the container runtime); its settings and
        // the proxy's rules need it.
        match host::load_module("nf_conntrack") {
            Ok(()) => tracing::info!("loaded the nf_conntrack kernel module"),
            Err(e) => tracing::warn!("{e}"),
        }
    }
    tune_conntrack(&args.conntrack.tuning())?;
    for name in nfacct::OBJECTS {
        nfacct::ensure(name).with_context(|| format!("cannot create the nfacct object {name}"))?;
    }
    tracing::info!("node set up");
    Ok(())
}

/// Applies the `--conntrack-*` flags to this machine, as kube-proxy does at start. A node-wide limit
/// the kernel refuses to raise is a warning; anything else that fails is an error naming the fix.
fn tune_conntrack(tuning: &ConntrackTuning) -> anyhow::Result<()> {
    let files = KernelFiles::host();
    let cpus = files.online_cpus();
    let applied = conntrack_sysctls::apply(&files, tuning, cpus)
        .map_err(|err| anyhow::anyhow!("{err}; {}", err.fix()))
        .context("cannot apply the --conntrack-* settings")?;
    for write in &applied.written {
        tracing::info!(setting = %write.setting, from = write.from, to = write.to, "conntrack setting changed");
    }
    for refused in &applied.refused {
        tracing::warn!("{refused}");
    }
    Ok(())
}

/// The settings that do not come from the Node object, fixed at start.
struct HostFacts {
    nfacct: bool,
    tcp_be_liberal: bool,
    local_addresses: Vec<std::net::IpAddr>,
}

fn host_facts() -> HostFacts {
    let nfacct = nfacct::OBJECTS.iter().all(|name| match nfacct::ensure(name) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(object = name, error = %e, "rules are written without packet accounting");
            false
        }
    });
    HostFacts {
        nfacct,
        tcp_be_liberal: host::read_sysctl(TCP_BE_LIBERAL).is_ok_and(|v| v != 0),
        local_addresses: host::local_addresses(),
    }
}

fn context_builder(args: &ProxyArgs, node_name: String, facts: HostFacts) -> ContextBuilder {
    let settings = args.settings.clone();
    let localhost = args.iptables_localhost_nodeports;
    let bit = args.iptables_masquerade_bit;
    Box::new(move |node: Option<&Node>| -> anyhow::Result<NodeContext> {
        let bare;
        let node = match node {
            Some(node) => node,
            None => {
                bare = Node {
                    name: node_name.clone(),
                    labels: Default::default(),
                    pod_cidrs: Vec::new(),
                    addresses: Vec::new(),
                    taints: Vec::new(),
                    being_deleted: false,
                };
                &bare
            }
        };
        let mut ctx = node_context(node, &settings, localhost)?;
        ctx.masquerade_bit = bit;
        ctx.nfacct = facts.nfacct;
        ctx.tcp_be_liberal = facts.tcp_be_liberal;
        let mut local = facts.local_addresses.clone();
        local.extend(ctx.node_ips.iter().copied());
        local.sort();
        local.dedup();
        ctx.local_addresses = local;
        Ok(ctx)
    })
}

async fn serve(
    ctx: &Context,
    args: &ProxyArgs,
    node_name: String,
    backend: Backend,
) -> anyhow::Result<()> {
    // Configuration errors first, before any port is bound or any rule touched.
    let client = client(&KubeOptions::from(&ctx.global))
        .await
        .context("cannot build the Kubernetes client")?;
    let cancel = CancellationToken::new();
    let tools = families(backend);
    let health = Arc::new(ProxyHealth::for_sync_period(args.iptables_sync_period));
    let metrics = Arc::new(ProxyMetrics::new());
    // A few /debug/state requests may wait for the sync loop; more are turned away at once.
    let (queries, query_rx) = mpsc::channel(2);
    let (status, health_checks) = ProxyStatus::new(
        node_name.clone(),
        health.clone(),
        metrics.clone(),
        tools.clone(),
        queries,
    );
    let status = Arc::new(status);
    let clock = Arc::new(SystemClock);
    let state = HttpState {
        health: health.clone(),
        metrics,
        clock: clock.clone(),
        debug: status.clone(),
    };

    // Bind the ports before touching any rule: a second proxy on this node fails here.
    let health_server =
        serve_health(args.healthz_bind_address, state.clone(), cancel.clone()).await?;
    let metrics_server = serve_metrics(args.metrics_bind_address, state, cancel.clone()).await?;
    tracing::info!(healthz = %health_server.local_addr(), metrics = %metrics_server.local_addr(), "serving");

    let (tx, rx) = mpsc::channel(1024);
    let watch_cancel = cancel.clone();
    let watch_node = node_name.clone();
    let watcher =
        tokio::spawn(async move { watch_cluster(client, &watch_node, tx, watch_cancel).await });

    let service_health = Arc::new(ServiceHealthServer::new(
        Vec::new(),
        health,
        clock,
        cancel.clone(),
    ));
    let health_task = tokio::spawn(serve_health_check_ports(
        service_health.clone(),
        health_checks,
    ));

    let syncers = tools
        .into_iter()
        .map(|t| FamilySyncer::new(t).with_conntrack(Conntrack::new()))
        .collect();
    let timing = SyncTiming {
        min_sync_period: args.iptables_min_sync_period,
        sync_period: args.iptables_sync_period,
        full_sync_period: Duration::from_secs(3600).max(args.iptables_sync_period),
    };
    let builder = context_builder(args, node_name, host_facts());
    let signals = tokio::spawn(stop_on_signal(cancel.clone()));
    runner::run(
        timing,
        rx,
        query_rx,
        syncers,
        builder,
        status,
        cancel.clone(),
    )
    .await;

    cancel.cancel();
    signals.abort();
    service_health.shutdown().await;
    health_task.abort();
    if let Ok(Err(e)) = watcher.await {
        return Err(anyhow::Error::new(e).context("watching the cluster failed"));
    }
    health_server.wait().await.ok();
    metrics_server.wait().await.ok();
    Ok(())
}

/// The rules `--audit` reads: IPv4 always, IPv6 when `ip6tables-save` works; each with the other
/// backend's `iptables-save` when that works too (to spot kube-proxy chains in both backends).
fn audit_readers(backend: Backend) -> Vec<FamilyReaders> {
    let other = match backend {
        Backend::Nft => Some(Backend::Legacy),
        Backend::Legacy => Some(Backend::Nft),
        Backend::Default => None,
    };
    [IpFamily::V4, IpFamily::V6]
        .into_iter()
        .filter_map(|family| {
            let rules = RulesReader::new(family, backend);
            if family == IpFamily::V6
                && let Err(e) = rules.works()
            {
                tracing::warn!(error = %e, "IPv6 rules are not audited: ip6tables-save does not work here");
                return None;
            }
            let other_backend = other
                .map(|b| RulesReader::new(family, b))
                .filter(|r| r.works().is_ok());
            Some(FamilyReaders {
                rules,
                other_backend,
            })
        })
        .collect()
}

/// `--audit`: watches the cluster and compares the node's rules with the expected ones, reporting
/// drift as metrics, `/debug/drift` and Events. Only `iptables-save` runs; nothing is written.
async fn audit(
    ctx: &Context,
    args: &ProxyArgs,
    node_name: String,
    backend: Backend,
) -> anyhow::Result<()> {
    let client = client(&KubeOptions::from(&ctx.global))
        .await
        .context("cannot build the Kubernetes client")?;
    let cancel = CancellationToken::new();
    let readers = audit_readers(backend);
    let health = Arc::new(ProxyHealth::for_sync_period(args.iptables_sync_period));
    let metrics = Arc::new(ProxyMetrics::new().with_audit_metrics());
    let status = Arc::new(AuditStatus::new(
        node_name.clone(),
        health.clone(),
        metrics.clone(),
        readers.iter().map(|r| r.rules.clone()).collect(),
    ));
    let state = HttpState {
        health,
        metrics,
        clock: Arc::new(SystemClock),
        debug: status.clone(),
    };
    let health_server =
        serve_health(args.healthz_bind_address, state.clone(), cancel.clone()).await?;
    let metrics_server = serve_metrics(args.metrics_bind_address, state, cancel.clone()).await?;
    tracing::info!(healthz = %health_server.local_addr(), metrics = %metrics_server.local_addr(), "auditing; no rule is written");

    let config = match kube_proxy_config(&client).await {
        Ok(Some(data)) => {
            tracing::info!("expected settings: using the kube-system/kube-proxy ConfigMap");
            Some(data)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::info!(error = %e, "the kube-system/kube-proxy ConfigMap is not read; the expected settings come from flags and the node's rules");
            None
        }
    };

    let (tx, rx) = mpsc::channel(1024);
    let watch_cancel = cancel.clone();
    let watch_node = node_name.clone();
    let watch_client = client.clone();
    let watcher =
        tokio::spawn(
            async move { watch_cluster(watch_client, &watch_node, tx, watch_cancel).await },
        );
    let sink = Arc::new(KubeEventSink::new(client, &node_name));
    let timing = AuditTiming {
        min_period: args.iptables_min_sync_period,
        period: args.iptables_sync_period,
    };
    let expect = Expectations {
        node_name,
        overrides: args.audit_overrides(),
        host_addresses: host::local_addresses(),
    };
    let signals = tokio::spawn(stop_on_signal(cancel.clone()));
    audit::run(
        timing,
        EventPolicy::default(),
        expect,
        rx,
        readers,
        config,
        status,
        sink,
        cancel.clone(),
    )
    .await;

    cancel.cancel();
    signals.abort();
    if let Ok(Err(e)) = watcher.await {
        return Err(anyhow::Error::new(e).context("watching the cluster failed"));
    }
    health_server.wait().await.ok();
    metrics_server.wait().await.ok();
    Ok(())
}

async fn serve_health_check_ports(
    server: Arc<ServiceHealthServer>,
    mut wanted: tokio::sync::watch::Receiver<crate::proxy::status::HealthCheckPorts>,
) {
    while wanted.changed().await.is_ok() {
        let current = wanted.borrow_and_update().clone();
        for error in server.sync_services(&current.ports).await {
            tracing::error!(error = %error, "health-check node port not served");
        }
        server.sync_endpoints(&current.local_ready);
    }
}

/// Cancels on SIGTERM or SIGINT. The rules stay: a restarted proxy takes over without a gap.
async fn stop_on_signal(cancel: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping, rules stay in place"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping, rules stay in place"),
    }
    cancel.cancel();
}
