//! The packaging, checked: every manifest in `deploy/` parsed as the real Kubernetes types (and
//! nothing in it that those types do not know), the properties that make the DaemonSet a safe
//! kube-proxy replacement, the RBAC verb by verb, the container flags against the binary's own
//! `proxy --help` and parser, the capabilities against the real iptables tools in a network
//! namespace, and `plugin.yaml` against krew's rules.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use assert_cmd::Command as BinCommand;
use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Probe, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use support::builders::test_node;
use support::netns::{NetNs, skip_unless_available};
use svcproxy::cli::{Cli, Command as CliCommand, ProxyArgs};
use svcproxy::core::plan::{jump_rules, plan};
use svcproxy::core::render::render_full;
use svcproxy::core::rules::IpFamily;
use svcproxy::iptables::{Backend, Iptables};
use svcproxy::synthetic;

const NAMESPACE: &str = "kube-system";
const APP_LABEL: (&str, &str) = ("k8s-app", "svcproxy");
const BINARY_IN_IMAGE: &str = "/usr/local/bin/kubectl-svcproxy";
const HEALTHZ_PORT: i32 = 10256;
const METRICS_PORT: u16 = 10249;
/// The manifests `kubectl apply -k deploy/` installs, besides kustomization.yaml itself.
const PROXY_MANIFESTS: [&str; 5] = [
    "serviceaccount.yaml",
    "clusterrole.yaml",
    "clusterrolebinding.yaml",
    "configmap.yaml",
    "daemonset.yaml",
];
/// Optional, applied on its own.
const DIAGNOSTICS_RBAC: &str = "diagnostics-rbac.yaml";
/// Placeholders the operator replaces before applying, with a sample value of the right shape.
const PLACEHOLDERS: [(&str, &str); 1] = [("CLUSTER_CIDR", "10.244.0.0/16")];
/// A sample of what the kubelet puts in for `$(NODE_IP)` (the downward API's `status.hostIP`).
const SAMPLE_NODE_IP: (&str, Ipv4Addr) = ("$(NODE_IP)", Ipv4Addr::new(192, 0, 2, 10));

// ------------------------------------------------------------------------------------------------
// Loading

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One object from `deploy/`, typed by its `kind`.
#[derive(Debug, Clone)]
enum Object {
    ServiceAccount(ServiceAccount),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    ConfigMap(ConfigMap),
    DaemonSet(Box<DaemonSet>),
}

impl Object {
    fn kind_and_name(&self) -> (&'static str, String) {
        fn name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
            meta.name.clone().unwrap_or_default()
        }
        match self {
            Object::ServiceAccount(o) => (ServiceAccount::KIND, name(&o.metadata)),
            Object::ClusterRole(o) => (ClusterRole::KIND, name(&o.metadata)),
            Object::ClusterRoleBinding(o) => (ClusterRoleBinding::KIND, name(&o.metadata)),
            Object::ConfigMap(o) => (ConfigMap::KIND, name(&o.metadata)),
            Object::DaemonSet(o) => (DaemonSet::KIND, name(&o.metadata)),
        }
    }

    fn namespace(&self) -> Option<&str> {
        match self {
            Object::ServiceAccount(o) => o.metadata.namespace.as_deref(),
            Object::ClusterRole(o) => o.metadata.namespace.as_deref(),
            Object::ClusterRoleBinding(o) => o.metadata.namespace.as_deref(),
            Object::ConfigMap(o) => o.metadata.namespace.as_deref(),
            Object::DaemonSet(o) => o.metadata.namespace.as_deref(),
        }
    }

    fn labels(&self) -> Option<&BTreeMap<String, String>> {
        match self {
            Object::ServiceAccount(o) => o.metadata.labels.as_ref(),
            Object::ClusterRole(o) => o.metadata.labels.as_ref(),
            Object::ClusterRoleBinding(o) => o.metadata.labels.as_ref(),
            Object::ConfigMap(o) => o.metadata.labels.as_ref(),
            Object::DaemonSet(o) => o.metadata.labels.as_ref(),
        }
    }

    fn is_namespaced(&self) -> bool {
        !matches!(self, Object::ClusterRole(_) | Object::ClusterRoleBinding(_))
    }
}

/// `apiVersion` and `kind`, to pick the type a document is parsed as.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    api_version: String,
    kind: String,
}

/// Parses `doc` as the Kubernetes type `T`, and fails if the document holds anything `T` does not
/// know: k8s-openapi skips unknown fields silently, so a misspelt field (`readOnlyRootFileSystem`)
/// would otherwise pass. Serializing the typed value back must give the document exactly.
fn strict<T>(file: &str, index: usize, doc: &serde_json::Value) -> T
where
    T: DeserializeOwned + serde::Serialize + Resource,
{
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{file} document {index}: not a valid {}: {e}", T::KIND));
    let back = serde_json::to_value(&typed).expect("serialize");
    if &back != doc {
        let mut unknown = Vec::new();
        diff_paths("", doc, &back, &mut unknown);
        panic!(
            "{file} document {index} ({}): fields the Kubernetes type does not have, or values it \
             reads differently: {unknown:?}",
            T::KIND
        );
    }
    typed
}

/// The paths where `original` and `reparsed` differ.
fn diff_paths(
    at: &str,
    original: &serde_json::Value,
    reparsed: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (original, reparsed) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let path = format!("{at}.{key}");
                match b.get(key) {
                    Some(other) => diff_paths(&path, value, other, out),
                    None => out.push(path),
                }
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{at}.{key} (added)"));
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_paths(&format!("{at}[{i}]"), x, y, out);
            }
        }
        (a, b) if a == b => {}
        _ => out.push(at.to_owned()),
    }
}

/// Every object in `deploy/FILE`, in order.
fn load(file: &str) -> Vec<Object> {
    let relative = format!("deploy/{file}");
    let text = read(&relative);
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"));
    assert!(!docs.is_empty(), "{relative} holds no object");
    docs.iter()
        .enumerate()
        .map(|(i, doc)| {
            let meta: TypeMeta = serde_json::from_value(doc.clone())
                .unwrap_or_else(|e| panic!("{relative} document {i}: no apiVersion/kind: {e}"));
            match (meta.api_version.as_str(), meta.kind.as_str()) {
                (ServiceAccount::API_VERSION, ServiceAccount::KIND) => {
                    Object::ServiceAccount(strict(&relative, i, doc))
                }
                (ClusterRole::API_VERSION, ClusterRole::KIND) => {
                    Object::ClusterRole(strict(&relative, i, doc))
                }
                (ClusterRoleBinding::API_VERSION, ClusterRoleBinding::KIND) => {
                    Object::ClusterRoleBinding(strict(&relative, i, doc))
                }
                (ConfigMap::API_VERSION, ConfigMap::KIND) => {
                    Object::ConfigMap(strict(&relative, i, doc))
                }
                (DaemonSet::API_VERSION, DaemonSet::KIND) => {
                    Object::DaemonSet(Box::new(strict(&relative, i, doc)))
                }
                (api_version, kind) => panic!(
                    "{relative} document {i}: {api_version} {kind} is not a kind this test knows; \
                     add it here with the checks it needs"
                ),
            }
        })
        .collect()
}

/// The objects `kubectl apply -k deploy/` installs.
fn proxy_objects() -> &'static [Object] {
    static OBJECTS: OnceLock<Vec<Object>> = OnceLock::new();
    OBJECTS.get_or_init(|| PROXY_MANIFESTS.iter().flat_map(|f| load(f)).collect())
}

fn only<T>(what: &str, mut found: Vec<T>) -> T {
    assert_eq!(found.len(), 1, "expected exactly one {what}");
    found.remove(0)
}

fn daemonset() -> DaemonSet {
    only(
        "DaemonSet",
        proxy_objects()
            .iter()
            .filter_map(|o| match o {
                Object::DaemonSet(d) => Some((**d).clone()),
                _ => None,
            })
            .collect(),
    )
}

fn service_account() -> ServiceAccount {
    only(
        "ServiceAccount",
        proxy_objects()
            .iter()
            .filter_map(|o| match o {
                Object::ServiceAccount(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
    )
}

fn config_map() -> ConfigMap {
    only(
        "ConfigMap",
        proxy_objects()
            .iter()
            .filter_map(|o| match o {
                Object::ConfigMap(c) => Some(c.clone()),
                _ => None,
            })
            .collect(),
    )
}

fn cluster_roles(objects: &[Object]) -> Vec<ClusterRole> {
    objects
        .iter()
        .filter_map(|o| match o {
            Object::ClusterRole(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn binding() -> ClusterRoleBinding {
    only(
        "ClusterRoleBinding",
        proxy_objects()
            .iter()
            .filter_map(|o| match o {
                Object::ClusterRoleBinding(b) => Some(b.clone()),
                _ => None,
            })
            .collect(),
    )
}

fn pod_spec(ds: &DaemonSet) -> PodSpec {
    ds.spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("the DaemonSet has a pod template spec")
}

fn init_container(spec: &PodSpec) -> Container {
    only(
        "init container",
        spec.init_containers.clone().unwrap_or_default(),
    )
}

fn main_container(spec: &PodSpec) -> Container {
    only("container", spec.containers.clone())
}

/// The full command line of a container: `command` followed by `args`.
fn argv(container: &Container) -> Vec<String> {
    let mut argv = container.command.clone().unwrap_or_default();
    argv.extend(container.args.clone().unwrap_or_default());
    argv
}

/// The flags after `kubectl-svcproxy proxy`.
fn proxy_flags(container: &Container) -> Vec<String> {
    let argv = argv(container);
    assert_eq!(
        argv.get(..2),
        Some(&[BINARY_IN_IMAGE.to_owned(), "proxy".to_owned()][..]),
        "container {} must run `{BINARY_IN_IMAGE} proxy`",
        container.name
    );
    argv[2..].to_vec()
}

/// The container's command line parsed by the binary's own parser, placeholders filled in.
fn parsed_proxy_args(container: &Container) -> (Cli, ProxyArgs) {
    let mut line = vec![BINARY_IN_IMAGE.to_owned(), "proxy".to_owned()];
    line.extend(proxy_flags(container).into_iter().map(|flag| {
        PLACEHOLDERS
            .iter()
            .fold(flag, |f, (placeholder, sample)| {
                f.replace(placeholder, sample)
            })
            .replace(SAMPLE_NODE_IP.0, &SAMPLE_NODE_IP.1.to_string())
    }));
    let (cli, _) = Cli::parse_args(&line).unwrap_or_else(|e| {
        panic!(
            "container {}: the proxy rejects its arguments {line:?}: {e}",
            container.name
        )
    });
    let CliCommand::Proxy(args) = &cli.command else {
        panic!("container {} does not run `proxy`", container.name)
    };
    let args = args.clone();
    (cli, args)
}

fn probe_port(container: &Container, probe: &Probe) -> i32 {
    let action = probe.http_get.as_ref().expect("an HTTP probe");
    match &action.port {
        IntOrString::Int(port) => *port,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .unwrap_or_else(|| panic!("probe port {name:?} is not a named container port")),
    }
}

// ------------------------------------------------------------------------------------------------
// The files themselves

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Kustomization {
    api_version: String,
    kind: String,
    resources: Vec<String>,
}

#[test]
fn every_manifest_in_deploy_parses_as_its_kubernetes_type() {
    let mut seen = BTreeSet::new();
    for entry in fs::read_dir(repo().join("deploy")).expect("deploy/") {
        let name = entry
            .expect("a directory entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if !(name.ends_with(".yaml") || name.ends_with(".yml")) || name == "kustomization.yaml" {
            continue;
        }
        let objects = load(&name);
        assert!(!objects.is_empty());
        seen.insert(name);
    }
    let expected: BTreeSet<String> = PROXY_MANIFESTS
        .iter()
        .chain([&DIAGNOSTICS_RBAC])
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        seen, expected,
        "deploy/ holds exactly the manifests this test checks (add a new one to the lists above)"
    );
}

#[test]
fn kustomization_installs_the_proxy_manifests_and_not_the_optional_rbac() {
    let k: Kustomization = serde_saphyr::from_str(&read("deploy/kustomization.yaml"))
        .expect("kustomization.yaml parses");
    assert_eq!(k.api_version, "kustomize.config.k8s.io/v1beta1");
    assert_eq!(k.kind, "Kustomization");
    let listed: BTreeSet<&str> = k.resources.iter().map(String::as_str).collect();
    assert_eq!(listed, PROXY_MANIFESTS.into_iter().collect::<BTreeSet<_>>());
    assert_eq!(listed.len(), k.resources.len(), "no resource listed twice");
    assert!(!listed.contains(DIAGNOSTICS_RBAC));
}

#[test]
fn objects_live_in_kube_system_and_carry_the_app_label() {
    let diagnostics = load(DIAGNOSTICS_RBAC);
    for object in proxy_objects().iter().chain(&diagnostics) {
        let (kind, name) = object.kind_and_name();
        if object.is_namespaced() {
            assert_eq!(object.namespace(), Some(NAMESPACE), "{kind} {name}");
        } else {
            assert_eq!(object.namespace(), None, "{kind} {name} is cluster-scoped");
        }
        let labels = object.labels().cloned().unwrap_or_default();
        assert_eq!(
            labels.get(APP_LABEL.0).map(String::as_str),
            Some(APP_LABEL.1),
            "{kind} {name} is labelled {}={}",
            APP_LABEL.0,
            APP_LABEL.1
        );
    }
}

// ------------------------------------------------------------------------------------------------
// The DaemonSet

#[test]
fn the_daemonset_is_a_node_critical_host_network_pod_on_every_linux_node() {
    let ds = daemonset();
    let spec = ds.spec.as_ref().expect("spec");
    let label = BTreeMap::from([(APP_LABEL.0.to_owned(), APP_LABEL.1.to_owned())]);
    assert_eq!(ds.metadata.name.as_deref(), Some("svcproxy"));
    assert_eq!(spec.selector.match_labels.as_ref(), Some(&label));
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    assert_eq!(template_labels.get(APP_LABEL.0), label.get(APP_LABEL.0));

    let pod = pod_spec(&ds);
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    assert_eq!(
        pod.node_selector,
        Some(BTreeMap::from([(
            "kubernetes.io/os".to_owned(),
            "linux".to_owned()
        )]))
    );
    assert_eq!(
        pod.dns_policy.as_deref(),
        Some("Default"),
        "never cluster DNS, which sits behind a Service"
    );
    assert_ne!(pod.host_pid, Some(true));
    assert_ne!(pod.host_ipc, Some(true));

    let tolerations = pod.tolerations.clone().unwrap_or_default();
    assert!(
        tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some("CriticalAddonsOnly")
                && t.operator.as_deref() == Some("Exists")),
        "tolerates CriticalAddonsOnly"
    );
    assert!(
        tolerations.iter().any(|t| t.key.is_none()
            && t.operator.as_deref() == Some("Exists")
            && t.effect.is_none()),
        "tolerates every taint"
    );

    let grace = pod
        .termination_grace_period_seconds
        .expect("an explicit terminationGracePeriodSeconds");
    assert!(
        (1..=30).contains(&grace),
        "a stopping proxy flushes nothing, so it needs little time ({grace}s)"
    );
}

#[test]
fn rolling_updates_replace_one_pod_at_a_time_without_surge() {
    let ds = daemonset();
    let strategy = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.clone())
        .expect("an update strategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let rolling = strategy.rolling_update.expect("rollingUpdate");
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(1)));
    // A surge pod would need the host ports its predecessor still holds.
    assert!(
        matches!(rolling.max_surge, None | Some(IntOrString::Int(0))),
        "maxSurge must be 0, found {:?}",
        rolling.max_surge
    );
}

#[test]
fn the_node_name_comes_from_the_downward_api_in_both_containers() {
    let pod = pod_spec(&daemonset());
    for container in [init_container(&pod), main_container(&pod)] {
        let env = container.env.clone().unwrap_or_default();
        let node_name = env
            .iter()
            .find(|e| e.name == "NODE_NAME")
            .unwrap_or_else(|| panic!("container {} has no NODE_NAME", container.name));
        let field = node_name
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        assert_eq!(field, Some("spec.nodeName"), "container {}", container.name);
        assert!(node_name.value.is_none());
        assert!(
            proxy_flags(&container).contains(&"--hostname-override=$(NODE_NAME)".to_owned()),
            "container {} passes the node name as --hostname-override",
            container.name
        );
        let (_, args) = parsed_proxy_args(&container);
        // Kubernetes expands $(NODE_NAME) from the container's env before the process starts.
        assert_eq!(args.hostname_override.as_deref(), Some("$(NODE_NAME)"));
    }
}

#[test]
fn the_init_container_is_privileged_and_only_does_the_node_setup() {
    let pod = pod_spec(&daemonset());
    let init = init_container(&pod);
    let main = main_container(&pod);
    let security = init.security_context.clone().expect("securityContext");
    assert_eq!(security.privileged, Some(true));
    assert_eq!(init.image, main.image, "one image for both containers");

    let (_, init_args) = parsed_proxy_args(&init);
    let (_, main_args) = parsed_proxy_args(&main);
    assert!(init_args.init_only, "the init container runs --init-only");
    assert!(!init_args.cleanup && !init_args.audit);
    assert!(!main_args.init_only && !main_args.cleanup && !main_args.audit);

    // The set-up is done for the settings the proxy then runs with: the same flags, plus one.
    let init_flags = proxy_flags(&init);
    let main_flags = proxy_flags(&main);
    let without_init_only: Vec<&String> = init_flags
        .iter()
        .filter(|f| f.as_str() != "--init-only")
        .collect();
    assert_eq!(init_flags.len(), without_init_only.len() + 1);
    assert_eq!(
        without_init_only,
        main_flags.iter().collect::<Vec<_>>(),
        "the init container gets the proxy's flags and --init-only"
    );
    assert_eq!(init.env, main.env);
}

#[test]
fn the_proxy_container_keeps_only_the_network_capabilities() {
    let pod = pod_spec(&daemonset());
    let main = main_container(&pod);
    let security = main.security_context.clone().expect("securityContext");
    assert_ne!(
        security.privileged,
        Some(true),
        "the proxy is not privileged"
    );
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(
        security.seccomp_profile.map(|p| p.type_),
        Some("RuntimeDefault".to_owned())
    );
    let caps = security.capabilities.expect("capabilities");
    assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]));
    let added: BTreeSet<String> = caps.add.unwrap_or_default().into_iter().collect();
    assert!(added.contains("NET_ADMIN"));
    let allowed: BTreeSet<String> = ["NET_ADMIN", "NET_RAW"].map(str::to_owned).into();
    assert!(
        added.is_subset(&allowed),
        "only NET_ADMIN and NET_RAW (each justified in daemonset.yaml), found {added:?}"
    );
}

#[test]
fn the_xtables_lock_is_shared_with_the_host_and_modules_only_reach_the_init_container() {
    let pod = pod_spec(&daemonset());
    let volumes = pod.volumes.clone().unwrap_or_default();
    let host_path = |path: &str| {
        volumes
            .iter()
            .find(|v| v.host_path.as_ref().map(|h| h.path.as_str()) == Some(path))
            .unwrap_or_else(|| panic!("no hostPath volume for {path}"))
            .clone()
    };
    let lock = host_path("/run/xtables.lock");
    assert_eq!(
        lock.host_path.and_then(|h| h.type_).as_deref(),
        Some("FileOrCreate")
    );
    let modules = host_path("/lib/modules");

    let mounts = |c: &Container| c.volume_mounts.clone().unwrap_or_default();
    let main = main_container(&pod);
    let init = init_container(&pod);
    for container in [&main, &init] {
        let lock_mount = mounts(container)
            .into_iter()
            .find(|m| m.name == lock.name)
            .unwrap_or_else(|| panic!("container {} does not mount the lock", container.name));
        assert_eq!(lock_mount.mount_path, "/run/xtables.lock");
        assert_ne!(
            lock_mount.read_only,
            Some(true),
            "the lock is taken read-write"
        );
    }
    let module_mount = mounts(&init)
        .into_iter()
        .find(|m| m.name == modules.name)
        .expect("the init container mounts /lib/modules");
    assert_eq!(module_mount.mount_path, "/lib/modules");
    assert_eq!(module_mount.read_only, Some(true));
    assert!(
        !mounts(&main).iter().any(|m| m.name == modules.name),
        "the proxy cannot load modules (no SYS_MODULE), so it does not get /lib/modules"
    );
    for container in [&main, &init] {
        for mount in mounts(container) {
            let volume = volumes
                .iter()
                .find(|v| v.name == mount.name)
                .unwrap_or_else(|| panic!("mount {} names no volume", mount.name));
            if volume.host_path.is_some() && mount.name != lock.name {
                assert_eq!(
                    mount.read_only,
                    Some(true),
                    "host paths other than the lock are read-only ({})",
                    mount.mount_path
                );
            }
        }
    }
}

#[test]
fn the_probes_reach_the_health_server_and_metrics_listen_on_the_node_address() {
    let pod = pod_spec(&daemonset());
    let main = main_container(&pod);
    let (_, args) = parsed_proxy_args(&main);

    let liveness = main.liveness_probe.clone().expect("a liveness probe");
    let readiness = main.readiness_probe.clone().expect("a readiness probe");
    for (probe, path) in [(&liveness, "/livez"), (&readiness, "/healthz")] {
        let action = probe.http_get.as_ref().expect("an HTTP probe");
        assert_eq!(action.path.as_deref(), Some(path));
        assert_eq!(probe_port(&main, probe), HEALTHZ_PORT);
        assert!(action.host.is_none(), "probes go to the pod (node) IP");
        assert!(matches!(action.scheme.as_deref(), None | Some("HTTP")));
    }
    // The kubelet probes the node's IP: the health server must listen on every address.
    assert_eq!(
        args.healthz_bind_address,
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), HEALTHZ_PORT as u16)
    );
    // The diagnostics read /debug/iptables through the API server's pods/proxy, which connects to
    // the pod IP (the node's, with hostNetwork): the metrics server must listen there, and only
    // there, not on loopback (unreachable) nor on every interface.
    assert!(pod.host_network.unwrap_or(false));
    assert_eq!(
        args.metrics_bind_address,
        SocketAddr::new(IpAddr::V4(SAMPLE_NODE_IP.1), METRICS_PORT),
        "metrics on the node's address, from $(NODE_IP)"
    );
    for container in [init_container(&pod), main.clone()] {
        let env = container.env.clone().unwrap_or_default();
        let node_ip = env
            .iter()
            .find(|e| e.name == "NODE_IP")
            .unwrap_or_else(|| panic!("container {} has no NODE_IP", container.name));
        let field = node_ip
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        assert_eq!(field, Some("status.hostIP"), "container {}", container.name);
        // $(NODE_IP) is expanded only when the variable is defined before it is used.
        assert!(
            proxy_flags(&container).contains(&"--metrics-bind-address=$(NODE_IP):10249".to_owned()),
            "container {}",
            container.name
        );
    }
    let ports = main.ports.clone().unwrap_or_default();
    assert!(
        ports
            .iter()
            .any(|p| p.container_port == HEALTHZ_PORT && p.name.as_deref() == Some("healthz"))
    );
    let metrics_port = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .expect("a container port named metrics, which scrapers and the diagnostics look up");
    assert_eq!(metrics_port.container_port, i32::from(METRICS_PORT));
    assert!(
        metrics_port.host_port.is_none() || metrics_port.host_port == Some(i32::from(METRICS_PORT))
    );

    let requests = main
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();
    assert!(requests.contains_key("cpu") && requests.contains_key("memory"));
    let limits = main
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    assert!(
        !limits.contains_key("cpu"),
        "a CPU-throttled proxy delays every rule change"
    );
}

#[test]
fn every_flag_given_to_the_containers_is_one_the_proxy_has() {
    let output = BinCommand::cargo_bin("kubectl-svcproxy")
        .expect("the kubectl-svcproxy binary")
        .args(["proxy", "--help"])
        .env("NO_COLOR", "1")
        .output()
        .expect("run the binary");
    assert!(output.status.success(), "`proxy --help` fails");
    let help = String::from_utf8(output.stdout).expect("UTF-8 help");
    // Option lines look like `  -n, --namespace <NAMESPACE>` or `      --cleanup[=<BOOL>]`.
    let known: BTreeSet<String> = help
        .lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with('-'))
        .filter_map(|line| {
            line.split([' ', ',', '[', '='])
                .find(|word| word.starts_with("--"))
                .map(str::to_owned)
        })
        .collect();
    assert!(known.contains("--init-only") && known.contains("--hostname-override"));

    let pod = pod_spec(&daemonset());
    for container in [init_container(&pod), main_container(&pod)] {
        for flag in proxy_flags(&container) {
            assert!(
                flag.starts_with("--"),
                "container {}: {flag:?} is not a --flag (write values as --flag=value)",
                container.name
            );
            let name = flag.split('=').next().unwrap_or_default();
            assert!(
                known.contains(name),
                "container {}: {name} is not in `kubectl-svcproxy proxy --help`",
                container.name
            );
        }
    }
}

#[test]
fn the_image_is_the_release_of_this_version_and_the_dockerfile_matches_the_command() {
    let tag = format!(
        "ghcr.io/kubectl-svcproxy/kubectl-svcproxy:v{}",
        env!("CARGO_PKG_VERSION")
    );
    let pod = pod_spec(&daemonset());
    for container in [init_container(&pod), main_container(&pod)] {
        assert_eq!(container.image.as_deref(), Some(tag.as_str()));
        assert_eq!(container.image_pull_policy.as_deref(), Some("IfNotPresent"));
    }
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile.contains(&format!("ENTRYPOINT [\"{BINARY_IN_IMAGE}\"]")),
        "the Dockerfile installs the binary where the DaemonSet runs it"
    );
    assert!(dockerfile.contains("cargo build --release --locked"));
}

// ------------------------------------------------------------------------------------------------
// Identity and credentials

#[test]
fn the_daemonset_runs_as_the_service_account_the_binding_binds() {
    let sa = service_account();
    let sa_name = sa.metadata.name.clone().expect("a name");
    assert_eq!(sa_name, "svcproxy");
    assert_ne!(
        sa.automount_service_account_token,
        Some(false),
        "the kubeconfig reads the mounted token"
    );
    let pod = pod_spec(&daemonset());
    assert_eq!(pod.service_account_name.as_deref(), Some(sa_name.as_str()));
    assert_ne!(pod.automount_service_account_token, Some(false));

    let binding = binding();
    let subjects = binding.subjects.clone().unwrap_or_default();
    assert_eq!(subjects.len(), 1, "the binding names only the proxy");
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(subjects[0].name, sa_name);
    assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(binding.role_ref.api_group, "rbac.authorization.k8s.io");
    let role = only("ClusterRole", cluster_roles(proxy_objects()));
    assert_eq!(
        Some(binding.role_ref.name.as_str()),
        role.metadata.name.as_deref()
    );
}

#[test]
fn the_kubeconfig_reaches_the_control_plane_directly_with_the_pods_own_token() {
    use kube::config::Kubeconfig;

    let cm = config_map();
    let pod = pod_spec(&daemonset());
    let main = main_container(&pod);

    // --kubeconfig names a key of this ConfigMap, mounted where the flag says, in both containers.
    let (cli, _) = parsed_proxy_args(&main);
    let path = cli
        .global
        .kubeconfig
        .clone()
        .expect("--kubeconfig is given");
    let dir = path.parent().expect("a directory").to_string_lossy();
    let key = path
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.config_map.as_ref().map(|c| c.name.as_str()) == cm.metadata.name.as_deref())
        .expect("a volume of the ConfigMap");
    for container in [init_container(&pod), main.clone()] {
        let (cli, _) = parsed_proxy_args(&container);
        assert_eq!(cli.global.kubeconfig.as_ref(), Some(&path));
        let mount = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == volume.name)
            .unwrap_or_else(|| panic!("container {} does not mount the ConfigMap", container.name));
        assert_eq!(mount.mount_path, dir);
        assert_eq!(mount.read_only, Some(true));
    }

    let data = cm.data.clone().unwrap_or_default();
    let text = data
        .get(&key)
        .unwrap_or_else(|| panic!("the ConfigMap has no key {key:?}"));
    let config = Kubeconfig::from_yaml(text).expect("the kubeconfig parses");
    assert!(config.other.is_empty(), "unknown kubeconfig fields");
    let current = config.current_context.clone().expect("a current-context");
    let context = config
        .contexts
        .iter()
        .find(|c| c.name == current)
        .and_then(|c| c.context.clone())
        .expect("the current context exists");
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.clone())
        .expect("the context's cluster exists");
    let user = config
        .auth_infos
        .iter()
        .find(|a| Some(&a.name) == context.user.as_ref())
        .and_then(|a| a.auth_info.clone())
        .expect("the context's user exists");

    // Not the `kubernetes` Service: this proxy is what makes its ClusterIP work.
    assert_eq!(
        cluster.server.as_deref(),
        Some("https://CONTROL_PLANE_ENDPOINT:6443")
    );
    assert!(cluster.other.is_empty() && user.other.is_empty());
    assert_eq!(
        cluster.certificate_authority.as_deref(),
        Some("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
    );
    assert_ne!(cluster.insecure_skip_tls_verify, Some(true));
    assert_eq!(
        user.token_file.as_deref(),
        Some("/var/run/secrets/kubernetes.io/serviceaccount/token")
    );
    assert!(
        user.token.is_none()
            && user.client_key_data.is_none()
            && user.password.is_none()
            && user.exec.is_none()
            && user.auth_provider.is_none(),
        "no credential is stored in the ConfigMap"
    );
}

// ------------------------------------------------------------------------------------------------
// RBAC

/// One permission: (API group, resource, verb, resource name or "" for any).
type Grant = (String, String, String, String);

fn grants(role: &ClusterRole) -> BTreeSet<Grant> {
    let name = role.metadata.name.clone().unwrap_or_default();
    assert!(
        role.aggregation_rule.is_none(),
        "{name}: no aggregation, every rule is spelled out"
    );
    let mut out = BTreeSet::new();
    for rule in role.rules.iter().flatten() {
        assert!(
            rule.non_resource_urls.is_none(),
            "{name}: no non-resource URLs"
        );
        assert!(
            rule.api_groups.as_ref().is_some_and(|g| !g.is_empty())
                && rule.resources.as_ref().is_some_and(|r| !r.is_empty())
                && !rule.verbs.is_empty(),
            "{name}: every rule names its API groups, resources and verbs: {rule:?}"
        );
        let names = match &rule.resource_names {
            Some(names) => names.clone(),
            None => vec![String::new()],
        };
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    for resource_name in &names {
                        for field in [group, resource, verb] {
                            assert!(!field.contains('*'), "{name}: wildcard in {rule:?}");
                        }
                        assert_ne!(resource, "secrets", "{name}: no access to secrets");
                        out.insert((
                            group.clone(),
                            resource.clone(),
                            verb.clone(),
                            resource_name.clone(),
                        ));
                    }
                }
            }
        }
    }
    out
}

fn grant_set(list: &[(&str, &str, &[&str], &str)]) -> BTreeSet<Grant> {
    list.iter()
        .flat_map(|(group, resource, verbs, name)| {
            verbs.iter().map(move |verb| {
                (
                    group.to_string(),
                    resource.to_string(),
                    verb.to_string(),
                    name.to_string(),
                )
            })
        })
        .collect()
}

#[test]
fn the_proxy_role_is_exactly_what_it_needs_and_within_system_node_proxier() {
    let role = only("ClusterRole", cluster_roles(proxy_objects()));
    let actual = grants(&role);
    let expected = grant_set(&[
        ("", "services", &["list", "watch"], ""),
        ("discovery.k8s.io", "endpointslices", &["list", "watch"], ""),
        ("", "nodes", &["get", "list", "watch"], ""),
        ("", "events", &["create", "patch", "update"], ""),
        (
            "events.k8s.io",
            "events",
            &["create", "patch", "update"],
            "",
        ),
    ]);
    assert_eq!(actual, expected);

    // Kubernetes' built-in role for kube-proxy (plugin/pkg/auth/authorizer/rbac/bootstrappolicy):
    // nothing beyond it.
    let node_proxier = grant_set(&[
        ("", "services", &["list", "watch"], ""),
        ("", "endpoints", &["list", "watch"], ""),
        ("", "nodes", &["get", "list", "watch"], ""),
        ("", "events", &["create", "patch", "update"], ""),
        (
            "events.k8s.io",
            "events",
            &["create", "patch", "update"],
            "",
        ),
        ("discovery.k8s.io", "endpointslices", &["list", "watch"], ""),
    ]);
    assert!(
        actual.is_subset(&node_proxier),
        "beyond system:node-proxier: {:?}",
        actual.difference(&node_proxier).collect::<Vec<_>>()
    );
}

#[test]
fn the_diagnostics_roles_read_and_reach_nodes_and_nothing_more() {
    let roles = cluster_roles(&load(DIAGNOSTICS_RBAC));
    let by_name: BTreeMap<String, BTreeSet<Grant>> = roles
        .iter()
        .map(|r| (r.metadata.name.clone().unwrap_or_default(), grants(r)))
        .collect();
    let expected = BTreeMap::from([
        (
            "svcproxy-diagnostics".to_owned(),
            grant_set(&[
                ("", "services", &["get", "list", "watch"], ""),
                ("", "pods", &["get", "list", "watch"], ""),
                ("", "nodes", &["get", "list", "watch"], ""),
                (
                    "discovery.k8s.io",
                    "endpointslices",
                    &["get", "list", "watch"],
                    "",
                ),
            ]),
        ),
        (
            "svcproxy-diagnostics-rules".to_owned(),
            grant_set(&[
                ("", "pods/proxy", &["get"], ""),
                ("", "configmaps", &["get"], "kube-proxy"),
            ]),
        ),
        (
            "svcproxy-diagnostics-exec".to_owned(),
            grant_set(&[("", "pods/exec", &["get", "create"], "")]),
        ),
    ]);
    assert_eq!(by_name, expected);
    // Only the first is read-only; the others are meant for a RoleBinding in kube-system.
    let writes = ["create", "update", "patch", "delete", "deletecollection"];
    for (group, resource, verb, _) in &by_name["svcproxy-diagnostics"] {
        assert!(
            !writes.contains(&verb.as_str()),
            "{group}/{resource} {verb}"
        );
    }
}

// ------------------------------------------------------------------------------------------------
// The capabilities, against the real tools

/// The full path of a program, from PATH or the sbin directories.
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A command prefix that runs a program in `ns` as root holding exactly `caps` (as a container with
/// `capabilities: {drop: [ALL], add: caps}` and `allowPrivilegeEscalation: false` does).
fn confined(ns: &NetNs, caps: &[String]) -> Vec<String> {
    let setpriv = find_tool("setpriv").expect(
        "setpriv (util-linux) is needed to run the tools with the DaemonSet's capabilities",
    );
    let list: String = caps
        .iter()
        .map(|c| format!(",+{}", c.to_ascii_lowercase()))
        .collect();
    vec![
        "ip".into(),
        "netns".into(),
        "exec".into(),
        ns.name().into(),
        setpriv.to_string_lossy().into_owned(),
        format!("--inh-caps=-all{list}"),
        format!("--ambient-caps=-all{list}"),
        format!("--bounding-set=-all{list}"),
        "--no-new-privs".into(),
        "--".into(),
        "env".into(),
        "PATH=/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin".into(),
    ]
}

/// What the proxy does to a node's tables, run with `prefix`: the canaries, the jumps from the
/// built-in chains, a full restore, and a save with counters.
fn program_node(backend: Backend, prefix: Vec<String>, payload: &str) -> Result<String, String> {
    let tools = Iptables::new(IpFamily::V4, backend).with_prefix(prefix);
    tools.ensure_canaries().map_err(|e| e.to_string())?;
    tools
        .ensure_jumps(&jump_rules())
        .map_err(|e| e.to_string())?;
    tools.restore(payload).map_err(|e| e.to_string())?;
    tools.save(true).map_err(|e| e.to_string())
}

fn run_prefixed(prefix: &[String], args: &[&str]) -> Result<String, String> {
    let output = std::process::Command::new(&prefix[0])
        .args(&prefix[1..])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {args:?}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

#[test]
fn the_proxy_containers_capabilities_are_enough_to_program_a_node() {
    let test = "the_proxy_containers_capabilities_are_enough_to_program_a_node";
    if !skip_unless_available(test) {
        return;
    }
    let security = main_container(&pod_spec(&daemonset()))
        .security_context
        .and_then(|s| s.capabilities)
        .expect("capabilities");
    assert_eq!(security.drop, Some(vec!["ALL".to_owned()]));
    let caps = security.add.unwrap_or_default();

    let rules = plan(&synthetic::cluster(20, 3), &test_node(), IpFamily::V4);
    let payload = render_full(&rules);
    let ns_prefix = |ns: &NetNs| -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), ns.name().into()]
    };

    for backend in [Backend::Nft, Backend::Legacy] {
        let ns = NetNs::create("svcp-caps").expect("namespace");
        // With every capability first: a backend this kernel lacks is not the manifest's fault.
        let full = Iptables::new(IpFamily::V4, backend).with_prefix(ns_prefix(&ns));
        if let Err(err) = full.save(false) {
            assert_ne!(backend, Backend::Nft, "iptables-nft must work here: {err}");
            eprintln!(
                "note: {test}: iptables-legacy is unusable on this kernel ({err}); skipped it"
            );
            continue;
        }
        let prefix = confined(&ns, &caps);
        for name in [
            "ct_state_invalid_dropped_pkts",
            "localhost_nps_accepted_pkts",
        ] {
            run_prefixed(&prefix, &["nfacct", "add", name])
                .unwrap_or_else(|e| panic!("nfacct with {caps:?}: {e}"));
        }
        let saved = program_node(backend, prefix.clone(), &payload)
            .unwrap_or_else(|e| panic!("{backend:?} backend with only {caps:?}: {e}"));
        assert!(
            saved.contains(":KUBE-SERVICES") && saved.contains("-j KUBE-SVC-"),
            "{backend:?}: the payload landed"
        );
        if find_tool("conntrack").is_some() {
            run_prefixed(&prefix, &["conntrack", "-L"])
                .unwrap_or_else(|e| panic!("conntrack with {caps:?}: {e}"));
        }

        // NET_RAW is listed for the legacy backend: without it, legacy fails.
        if backend == Backend::Legacy {
            let without_raw: Vec<String> =
                caps.iter().filter(|c| *c != "NET_RAW").cloned().collect();
            let fresh = NetNs::create("svcp-caps").expect("namespace");
            assert!(
                program_node(backend, confined(&fresh, &without_raw), &payload).is_err(),
                "iptables-legacy works without NET_RAW; drop it from daemonset.yaml"
            );
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The krew manifest

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Plugin {
    api_version: String,
    kind: String,
    metadata: PluginMetadata,
    spec: PluginSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginMetadata {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PluginSpec {
    version: String,
    homepage: Option<String>,
    short_description: String,
    description: String,
    caveats: Option<String>,
    platforms: Vec<Platform>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Platform {
    selector: Option<Selector>,
    uri: String,
    sha256: String,
    bin: String,
    files: Option<Vec<FileOperation>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Selector {
    match_labels: Option<BTreeMap<String, String>>,
    match_expressions: Option<Vec<SelectorRequirement>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectorRequirement {
    key: String,
    operator: String,
    values: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOperation {
    from: String,
    to: String,
}

impl Selector {
    /// Kubernetes label-selector semantics over the labels krew sets: `os` and `arch`.
    fn matches(&self, os: &str, arch: &str) -> bool {
        let labels = BTreeMap::from([("os", os), ("arch", arch)]);
        let labels_ok = self
            .match_labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k.as_str()) == Some(&v.as_str()));
        let expressions_ok = self.match_expressions.iter().flatten().all(|req| {
            let value = labels.get(req.key.as_str());
            let values = req.values.clone().unwrap_or_default();
            match req.operator.as_str() {
                "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
                "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                other => panic!("unknown selector operator {other:?}"),
            }
        });
        labels_ok && expressions_ok
    }
}

/// The platforms krew runs on (GOOS/GOARCH pairs), as its manifest validator checks selectors.
const KREW_PLATFORMS: [(&str, &str); 11] = [
    ("darwin", "amd64"),
    ("darwin", "arm64"),
    ("linux", "386"),
    ("linux", "amd64"),
    ("linux", "arm"),
    ("linux", "arm64"),
    ("linux", "ppc64le"),
    ("linux", "s390x"),
    ("windows", "386"),
    ("windows", "amd64"),
    ("windows", "arm64"),
];

/// Semantic version with the leading `v` krew requires: vMAJOR.MINOR.PATCH[-pre][+build].
fn is_krew_version(version: &str) -> bool {
    let Some(rest) = version.strip_prefix('v') else {
        return false;
    };
    let (rest, build) = match rest.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (rest, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    let number_ok = |n: &&str| {
        !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && (n.len() == 1 || !n.starts_with('0'))
    };
    let ident_ok = |s: &str| {
        s.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    };
    numbers.len() == 3
        && numbers.iter().all(number_ok)
        && pre.is_none_or(ident_ok)
        && build.is_none_or(ident_ok)
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[test]
fn the_version_check_follows_krew() {
    for good in ["v0.1.0", "v1.22.333", "v1.0.0-rc.1", "v1.0.0+build.5"] {
        assert!(is_krew_version(good), "{good}");
    }
    for bad in ["0.1.0", "v0.1", "v01.0.0", "v1.0.0-", "V1.0.0", ""] {
        assert!(!is_krew_version(bad), "{bad}");
    }
    assert!(is_sha256(&"a".repeat(64)));
    assert!(!is_sha256(&"A".repeat(64)));
    assert!(!is_sha256(&"a".repeat(63)));
}

#[test]
fn the_krew_manifest_follows_krews_rules() {
    let text = read("plugin.yaml");
    let plugin: Plugin = serde_saphyr::from_str(&text).expect("plugin.yaml parses");
    let spec = &plugin.spec;

    assert_eq!(
        plugin.api_version,
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(plugin.kind, "Plugin");
    let name = &plugin.metadata.name;
    assert_eq!(name, "svcproxy");
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "lowercase kebab-case (krew: ^[\\w-]+$)"
    );
    let windows_reserved = [
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
        "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    ];
    assert!(
        !windows_reserved
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name))
    );

    assert!(is_krew_version(&spec.version), "{}", spec.version);
    assert_eq!(
        spec.version,
        format!("v{}", env!("CARGO_PKG_VERSION")),
        "the plugin version is the crate's"
    );
    assert_eq!(
        spec.homepage.as_deref(),
        Some(env!("CARGO_PKG_REPOSITORY")),
        "homepage is the repository"
    );

    // shortDescription: required, one line, about 50 characters at most (the review bot's rule).
    let short = &spec.short_description;
    assert!(!short.trim().is_empty());
    assert!(!short.contains(['\n', '\r']));
    assert!(
        short.chars().count() <= 50,
        "{short:?} is over 50 characters"
    );

    // description and caveats: wrapped at 80 columns; no usage examples or command lists.
    assert!(!spec.description.trim().is_empty());
    for (field, text) in [
        ("description", spec.description.as_str()),
        ("caveats", spec.caveats.as_deref().unwrap_or("")),
    ] {
        for line in text.lines() {
            assert!(
                line.chars().count() <= 80,
                "{field} line over 80 columns: {line:?}"
            );
        }
    }
    for line in spec.description.lines() {
        let line = line.trim_start();
        assert!(
            !line.starts_with('$')
                && !line.starts_with("kubectl")
                && !line.starts_with('-')
                && !line.starts_with('*'),
            "description has an example or a list: {line:?}"
        );
    }

    // Platforms.
    assert!(!spec.platforms.is_empty());
    let download = format!(
        "{}/releases/download/{}/",
        env!("CARGO_PKG_REPOSITORY"),
        spec.version
    );
    for (i, platform) in spec.platforms.iter().enumerate() {
        let selector = platform
            .selector
            .as_ref()
            .unwrap_or_else(|| panic!("platform {i}: no selector"));
        assert!(
            selector.match_labels.is_some() || selector.match_expressions.is_some(),
            "platform {i}: empty selector"
        );
        assert!(
            selector.match_labels.as_ref().is_none_or(|m| !m.is_empty()),
            "platform {i}: matchLabels present but empty"
        );
        assert!(
            selector
                .match_expressions
                .as_ref()
                .is_none_or(|m| !m.is_empty()),
            "platform {i}: matchExpressions present but empty"
        );
        let keys = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .chain(
                selector
                    .match_expressions
                    .iter()
                    .flatten()
                    .map(|e| e.key.as_str()),
            );
        for key in keys {
            assert!(
                key == "os" || key == "arch",
                "platform {i}: selector key {key:?}"
            );
        }
        let matched: Vec<_> = KREW_PLATFORMS
            .iter()
            .filter(|(os, arch)| selector.matches(os, arch))
            .collect();
        assert!(
            !matched.is_empty(),
            "platform {i}: selector matches no platform krew supports"
        );

        assert!(
            platform.uri.starts_with(&download),
            "platform {i}: {} is not an asset of the {} release",
            platform.uri,
            spec.version
        );
        assert!(
            platform.uri.ends_with(".tar.gz") || platform.uri.ends_with(".zip"),
            "platform {i}: archives are .tar.gz or .zip"
        );
        assert!(
            is_sha256(&platform.sha256),
            "platform {i}: sha256 must match ^[a-f0-9]{{64}}$"
        );
        assert!(!platform.bin.is_empty(), "platform {i}: bin");
        let windows = matched.iter().all(|(os, _)| *os == "windows");
        assert_eq!(
            platform.bin.ends_with(".exe"),
            windows,
            "platform {i}: .exe exactly on Windows"
        );
        assert_eq!(
            platform.uri.ends_with(".zip"),
            windows,
            "platform {i}: .zip on Windows, .tar.gz elsewhere"
        );
        if let Some(files) = &platform.files {
            assert!(!files.is_empty(), "platform {i}: files present but empty");
            assert!(files.iter().all(|f| !f.from.is_empty() && !f.to.is_empty()));
        }
    }

    // No supported platform is matched by two entries; the ones we ship are all covered.
    for (os, arch) in KREW_PLATFORMS {
        let matching: Vec<usize> = spec
            .platforms
            .iter()
            .enumerate()
            .filter(|(_, p)| p.selector.as_ref().is_some_and(|s| s.matches(os, arch)))
            .map(|(i, _)| i)
            .collect();
        assert!(
            matching.len() <= 1,
            "platforms {matching:?} overlap on {os}/{arch}"
        );
    }
    for (os, arch) in [
        ("linux", "amd64"),
        ("linux", "arm64"),
        ("darwin", "amd64"),
        ("darwin", "arm64"),
        ("windows", "amd64"),
    ] {
        assert!(
            spec.platforms
                .iter()
                .any(|p| p.selector.as_ref().is_some_and(|s| s.matches(os, arch))),
            "no build for {os}/{arch}"
        );
    }
}
