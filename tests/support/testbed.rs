//! A one-node cluster in network namespaces: a "node" namespace where the proxy runs (and the test API
//! server listens on its loopback), "pod" namespaces routed through the node (each runs a TCP and a UDP
//! server that answer with the pod's name), and an "outside" namespace for NodePort clients.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::apiserver::ApiServer;
use super::netns::{NetNs, NsChild};

/// The node's address toward the outside namespace.
pub const NODE_IP: &str = "192.168.50.1";
/// The outside client's address.
pub const OUTSIDE_IP: &str = "192.168.50.2";
/// The node's name.
pub const NODE_NAME: &str = "node-1";

const SERVER: &str = r#"
import socket, sys, threading
name = sys.argv[1].encode()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", 5353))
    while True:
        _, peer = u.recvfrom(2048)
        u.sendto(name, peer)
threading.Thread(target=udp, daemon=True).start()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080))
s.listen(128)
while True:
    c, _ = s.accept()
    try:
        c.recv(4096)
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(name) + name)
    finally:
        c.close()
"#;

const UDP_CLIENT: &str = r#"
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(2)
if len(sys.argv) > 3:
    u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    u.bind(("0.0.0.0", int(sys.argv[3])))
u.sendto(b"q", (sys.argv[1], int(sys.argv[2])))
print(u.recvfrom(2048)[0].decode())
"#;

/// One pod: its namespace and address.
pub struct Pod {
    /// The pod's namespace.
    pub ns: NetNs,
    /// Its name (what its servers answer).
    pub name: String,
    /// Its address.
    pub ip: String,
}

/// The whole test bed. Dropping it stops the proxy and the servers and deletes every namespace.
pub struct Testbed {
    /// The test API server, listening on the node namespace's loopback.
    pub api: ApiServer,
    /// The node namespace.
    pub node: NetNs,
    /// The pods.
    pub pods: Vec<Pod>,
    /// The outside client namespace.
    pub outside: NetNs,
    servers: Vec<NsChild>,
    proxy: Option<Child>,
    dir: tempfile::TempDir,
    links: usize,
}

fn ok(result: Result<String, String>) -> String {
    result.unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `ip …` in the root namespace (to create and move veth pairs).
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Testbed {
    /// Builds the node, `pods` pods (`pod-a` 10.244.1.10, `pod-b` 10.244.1.11, …) running their
    /// servers, a client pod `client` (10.244.1.100), and the outside namespace.
    pub fn new(pods: usize) -> Testbed {
        let node = NetNs::create("svcp-node").expect("node namespace");
        ok(node.exec(
            "sh",
            &["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"],
            None,
        ));
        let api = start_api_in(&node);
        let outside = NetNs::create("svcp-out").expect("outside namespace");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut bed = Testbed {
            api,
            node,
            pods: Vec::new(),
            outside,
            servers: Vec::new(),
            proxy: None,
            dir,
            links: 0,
        };
        bed.link_outside();
        for i in 0..pods {
            let name = format!("pod-{}", (b'a' + i as u8) as char);
            let ip = format!("10.244.1.{}", 10 + i);
            let pod = bed.add_pod(&name, &ip);
            let server = pod
                .ns
                .spawn("python3", &["-c", SERVER, &name])
                .expect("server starts");
            bed.servers.push(server);
            bed.pods.push(pod);
        }
        let client = bed.add_pod("client", "10.244.1.100");
        bed.pods.push(client);
        for pod in bed.pods.iter().filter(|p| p.name != "client") {
            wait_until(
                Duration::from_secs(10),
                || {
                    pod.ns
                        .exec("bash", &["-c", "exec 3<>/dev/tcp/127.0.0.1/8080"], None)
                        .is_ok()
                },
                &format!("{}'s server listens", pod.name),
            );
        }
        bed
    }

    fn veth_names(&mut self) -> (String, String) {
        static LINKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        self.links += 1;
        let n = LINKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = format!("sv{}x{n}", std::process::id() % 100_000);
        (base.clone(), format!("{base}p"))
    }

    fn add_pod(&mut self, name: &str, address: &str) -> Pod {
        let ns = NetNs::create("svcp-pod").expect("pod namespace");
        let (host, peer) = self.veth_names();
        ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &host, "netns", self.node.name()]);
        ip(&["link", "set", &peer, "netns", ns.name()]);
        let n = &self.node;
        // The pods' gateway, 169.254.1.1, lives on every pod link of the node.
        ok(n.exec("ip", &["addr", "add", "169.254.1.1/32", "dev", &host], None));
        ok(n.exec("ip", &["link", "set", &host, "up"], None));
        ok(n.exec(
            "ip",
            &["route", "add", &format!("{address}/32"), "dev", &host],
            None,
        ));
        ok(ns.exec("ip", &["link", "set", &peer, "name", "eth0"], None));
        ok(ns.exec(
            "ip",
            &["addr", "add", &format!("{address}/32"), "dev", "eth0"],
            None,
        ));
        ok(ns.exec("ip", &["link", "set", "eth0", "up"], None));
        ok(ns.exec(
            "ip",
            &[
                "route",
                "add",
                "169.254.1.1",
                "dev",
                "eth0",
                "scope",
                "link",
            ],
            None,
        ));
        ok(ns.exec(
            "ip",
            &[
                "route",
                "add",
                "default",
                "via",
                "169.254.1.1",
                "dev",
                "eth0",
            ],
            None,
        ));
        Pod {
            ns,
            name: name.to_string(),
            ip: address.to_string(),
        }
    }

    fn link_outside(&mut self) {
        let (host, peer) = self.veth_names();
        ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &host, "netns", self.node.name()]);
        ip(&["link", "set", &peer, "netns", self.outside.name()]);
        ok(self.node.exec(
            "ip",
            &["addr", "add", &format!("{NODE_IP}/24"), "dev", &host],
            None,
        ));
        ok(self.node.exec("ip", &["link", "set", &host, "up"], None));
        ok(self.outside.exec(
            "ip",
            &["addr", "add", &format!("{OUTSIDE_IP}/24"), "dev", &peer],
            None,
        ));
        ok(self.outside.exec("ip", &["link", "set", &peer, "up"], None));
        ok(self
            .outside
            .exec("ip", &["route", "add", "default", "via", NODE_IP], None));
    }

    /// The pod named `name`.
    pub fn pod(&self, name: &str) -> &Pod {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pod {name}"))
    }

    /// Starts `kubectl-svcproxy proxy` in the node namespace with `extra` flags; its log goes to a file
    /// printed by [`Testbed::proxy_log`].
    pub fn start_proxy(&mut self, extra: &[&str]) {
        let kubeconfig = self.api.write_kubeconfig(self.dir.path());
        let log = File::create(self.log_path()).expect("log file");
        let mut args: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            self.node.name().into(),
            env!("CARGO_BIN_EXE_kubectl-svcproxy").into(),
            "-v".into(),
            "proxy".into(),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--hostname-override={NODE_NAME}"),
            "--cluster-cidr=10.244.0.0/16".into(),
            "--iptables-min-sync-period=0".into(),
            "--healthz-bind-address=127.0.0.1:10256".into(),
            "--metrics-bind-address=127.0.0.1:10249".into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_string()));
        let child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("proxy starts");
        self.proxy = Some(child);
    }

    /// The PID of the running proxy process (inside `ip netns exec`, which execs it).
    pub fn proxy_pid(&self) -> Option<u32> {
        self.proxy.as_ref().map(Child::id)
    }

    /// Stops the proxy with SIGTERM (by its PID) and waits for it.
    pub fn stop_proxy(&mut self) {
        if let Some(mut child) = self.proxy.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("proxy.log")
    }

    /// The proxy's log so far.
    pub fn proxy_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `curl` from `ns` to `url`: the body, or the curl error (exit 7 refused, 28 timed out).
    pub fn http(ns: &NetNs, url: &str) -> Result<String, String> {
        ns.exec("curl", &["-sS", "--max-time", "2", url], None)
    }

    /// One UDP query from `ns` to `address:port`, from `source_port` if given.
    pub fn udp(
        ns: &NetNs,
        address: &str,
        port: u16,
        source_port: Option<u16>,
    ) -> Result<String, String> {
        let port = port.to_string();
        let mut args = vec!["-c", UDP_CLIENT, address, &port];
        let sport;
        if let Some(p) = source_port {
            sport = p.to_string();
            args.push(&sport);
        }
        ns.exec("python3", &args, None)
            .map(|s| s.trim().to_string())
    }

    /// The HTTP status of `path` on the node's loopback `port` (health, metrics, health-check ports).
    pub fn node_status(&self, port: u16, path: &str) -> String {
        let url = format!("http://127.0.0.1:{port}{path}");
        self.node
            .exec(
                "curl",
                &[
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "2",
                    &url,
                ],
                None,
            )
            .unwrap_or_else(|e| e)
    }

    /// The body of `path` on the node's loopback `port`.
    pub fn node_get(&self, port: u16, path: &str) -> String {
        let url = format!("http://127.0.0.1:{port}{path}");
        self.node
            .exec("curl", &["-s", "--max-time", "2", &url], None)
            .unwrap_or_else(|e| e)
    }

    /// The node's `iptables-save`.
    pub fn rules(&self) -> String {
        ok(self.node.exec("iptables-save", &[], None))
    }

    /// Applies a Service `name` in `default` with `spec` (JSON).
    pub fn service(&self, name: &str, spec: Value) {
        self.api.apply_json(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec,
        }));
    }

    /// Applies the EndpointSlice of Service `service` with `ports` and endpoints `(pod, node)`.
    pub fn endpoints(&self, service: &str, ports: Value, endpoints: &[(&str, &str)]) {
        let endpoints: Vec<Value> = endpoints
            .iter()
            .map(|(pod, node)| {
                let ip = &self.pod(pod).ip;
                json!({
                    "addresses": [ip],
                    "conditions": {"ready": true, "serving": true, "terminating": false},
                    "nodeName": node,
                    "targetRef": {"kind": "Pod", "namespace": "default", "name": pod},
                })
            })
            .collect();
        self.api.apply_json(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{service}-abc"), "namespace": "default",
                "labels": {"kubernetes.io/service-name": service},
                // As the EndpointSlice controller writes it: when the change was triggered.
                "annotations": {
                    "endpoints.kubernetes.io/last-change-trigger-time": jiff::Timestamp::now().to_string(),
                },
            },
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": endpoints,
        }));
    }

    /// The Node object for this node.
    pub fn node_object(&self) {
        self.api.apply_json(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME}},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]},
        }));
    }

    /// Waits until `check` holds, failing the test with the proxy's log otherwise.
    pub fn wait(&self, timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out waiting for {what}\n--- proxy log ---\n{}",
            self.proxy_log()
        );
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.stop_proxy();
        self.servers.clear();
    }
}

fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting until {what}");
}

/// Starts the test API server on the loopback of `ns`: the server's threads are created from a thread
/// that entered the namespace, so its sockets live there.
fn start_api_in(ns: &NetNs) -> ApiServer {
    let path = format!("/run/netns/{}", ns.name());
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("enter the node namespace");
        ApiServer::start()
    })
    .join()
    .expect("API server thread")
}
