//! A node's ruleset with one Service per interesting shape, written the way kube-proxy writes it
//! (spec §1.3–§1.4), with the addresses of kube-proxy's test conventions (spec §6.1): pod CIDR 10.0.0.0/8
//! (ClusterCIDR detect-local mode), node IP 192.168.0.2, localhost NodePorts on, mark 0x4000.

use crate::core::rules::{Dump, IpFamily, Protocol};

use super::{DumpBuilder, R, r};

pub const POD_CIDR: &str = "10.0.0.0/8";
/// A pod on this node.
pub const POD: &str = "10.0.0.2";
/// A client outside the cluster, inside the LB source range.
pub const EXTERNAL: &str = "203.0.113.2";
/// A client outside the cluster and outside the LB source range.
pub const BLOCKED: &str = "203.0.113.130";
/// The node's primary IP.
pub const NODE: &str = "192.168.0.2";

/// One endpoint: its SEP chain, IP and port.
pub struct Ep {
    pub chain: &'static str,
    pub ip: &'static str,
    pub port: u16,
}

pub const fn ep(chain: &'static str, ip: &'static str, port: u16) -> Ep {
    Ep { chain, ip, port }
}

/// The cluster-IP masquerade rule: `! -s <podCIDR> -d <clusterIP> --dport <port> -j KUBE-MARK-MASQ`.
pub fn masq_rule(spn: &str, cluster_ip: &str, protocol: Protocol, port: u16) -> R {
    r().not_s(POD_CIDR)
        .d(cluster_ip)
        .dport(protocol, port)
        .comment(&format!("{spn} cluster IP"))
        .j("KUBE-MARK-MASQ")
}

/// The load-balancing rungs: `1/(n-i)` on every rung but the last, written as `iptables-save` prints them.
pub fn rungs(spn: &str, endpoints: &[Ep]) -> Vec<R> {
    let n = endpoints.len();
    endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let rung = r().comment(&format!("{spn} -> {}:{}", e.ip, e.port));
            let rung = if i + 1 < n {
                rung.probability(saved_probability(n - i))
            } else {
                rung
            };
            rung.j(e.chain)
        })
        .collect()
}

/// `1/k` after the kernel's fixed-point round trip, as `iptables-save` prints it.
fn saved_probability(k: usize) -> f64 {
    let quantized = (2_147_483_648.0 / k as f64).round();
    format!("{:.11}", quantized / 2_147_483_648.0)
        .parse()
        .unwrap()
}

/// A SEP chain: the hairpin masquerade rule, then the DNAT.
pub fn sep(b: &mut DumpBuilder, spn: &str, e: &Ep, protocol: Protocol) {
    b.nat(
        e.chain,
        [
            r().s(e.ip).comment(spn).j("KUBE-MARK-MASQ"),
            r().proto(protocol)
                .comment(spn)
                .dnat(&format!("{}:{}", e.ip, e.port)),
        ],
    );
}

/// A cluster-IP service: the KUBE-SERVICES capture rule, the SVC chain and its SEP chains.
fn cluster_ip(
    b: &mut DumpBuilder,
    spn: &str,
    svc: &str,
    vip: &str,
    protocol: Protocol,
    port: u16,
    eps: &[Ep],
) {
    b.nat(
        "KUBE-SERVICES",
        [r().d(vip)
            .dport(protocol.clone(), port)
            .comment(&format!("{spn} cluster IP"))
            .j(svc)],
    );
    let mut rules = vec![masq_rule(spn, vip, protocol.clone(), port)];
    rules.extend(rungs(spn, eps));
    b.nat(svc, rules);
    for e in eps {
        sep(b, spn, e, protocol.clone());
    }
}

/// An eTP=Cluster KUBE-EXT chain.
fn ext_cluster(b: &mut DumpBuilder, spn: &str, ext: &str, svc: &str) {
    b.nat(
        ext,
        [
            r().comment(&format!(
                "masquerade traffic for {spn} external destinations"
            ))
            .j("KUBE-MARK-MASQ"),
            r().j(svc),
        ],
    );
}

/// An eTP=Local KUBE-EXT chain; `svl` is `None` when the node has no local endpoint.
fn ext_local(b: &mut DumpBuilder, spn: &str, ext: &str, svc: &str, svl: Option<&str>) {
    let mut rules = vec![
        r().s(POD_CIDR)
            .comment(&format!("pod traffic for {spn} external destinations"))
            .j(svc),
        r().comment(&format!(
            "masquerade LOCAL traffic for {spn} external destinations"
        ))
        .src_local()
        .j("KUBE-MARK-MASQ"),
        r().comment(&format!(
            "route LOCAL traffic for {spn} external destinations"
        ))
        .src_local()
        .j(svc),
    ];
    if let Some(svl) = svl {
        rules.push(r().j(svl));
    }
    b.nat(ext, rules);
}

fn capture(spn: &str, kind: &str, vip: &str, port: u16, chain: &str) -> R {
    r().d(vip)
        .tcp(port)
        .comment(&format!("{spn} {kind}"))
        .j(chain)
}

fn nodeport(spn: &str, port: u16, ext: &str) -> R {
    r().tcp(port).comment(spn).j(ext)
}

const TCP: Protocol = Protocol::Tcp;

/// The whole ruleset. Services:
///
/// - `ns1/svc1:p80`: ClusterIP 172.30.0.41:80 → 10.180.0.1:80.
/// - `ns2/svc2:p80`: LoadBalancer eTP=Local: ClusterIP 172.30.0.42, external IP 192.168.99.22, LB 1.2.3.4,
///   NodePort 3001, health check 30000; endpoints 10.180.0.2 (local) and 10.180.1.2 (remote).
/// - `ns3/svc3:p80`: NodePort 3003 eTP=Cluster (with the localhost variant): ClusterIP 172.30.0.43 →
///   10.180.0.3:80.
/// - `ns4/svc4:p80`: ClusterIP 172.30.0.44 and external IP 192.168.99.33 → 10.180.0.4:80, 10.180.0.5:80.
/// - `ns5/svc5:p80`: LoadBalancer 5.6.7.8 with source ranges 192.168.0.0/24 (holds the node IP) and
///   203.0.113.0/25, eTP=Cluster, NodePort 3002; ClusterIP 172.30.0.45 → 10.180.0.3:80.
/// - `ns6/svc6:p80`: no endpoints; ClusterIP 172.30.0.46, external IP 192.168.99.66, LB 1.2.3.6,
///   NodePort 3006.
/// - `ns7/svc7:p80`: eTP=Local, only a remote endpoint 10.180.2.7; ClusterIP 172.30.0.47, external IP
///   192.168.99.77, health check 30007.
/// - `ns8/svc8:p80`: iTP=Local: ClusterIP 172.30.0.48 → 10.180.0.8 (local) only; NodePort 3008 (eTP=Cluster)
///   → 10.180.0.8 and 10.180.1.8.
/// - `ns9/svc9:p80`: ClusterIP 172.30.0.49 → three endpoints 10.180.0.91..93:8080.
/// - `ns10/dns`: ClusterIP 172.30.0.50 port 53: TCP → 10.180.0.10:5353, UDP → 10.180.0.10:53.
pub fn cluster() -> Dump {
    let mut b = DumpBuilder::new(IpFamily::V4);
    b.nat(
        "PREROUTING",
        [r().comment("kubernetes service portals").j("KUBE-SERVICES")],
    );
    b.nat(
        "OUTPUT",
        [r().comment("kubernetes service portals").j("KUBE-SERVICES")],
    );
    b.nat(
        "POSTROUTING",
        [r().comment("kubernetes postrouting rules")
            .j("KUBE-POSTROUTING")],
    );
    b.nat("KUBE-MARK-MASQ", [r().mark(0x4000, 0x4000)]);
    b.nat(
        "KUBE-POSTROUTING",
        [r().mark(0x4000, 0)
            .comment("kubernetes service traffic requiring SNAT")],
    );
    b.filter(
        "INPUT",
        [
            r().comment("kubernetes health check service ports")
                .j("KUBE-NODEPORTS"),
            r().ctstate(false, &["NEW"])
                .comment("kubernetes externally-visible service portals")
                .j("KUBE-EXTERNAL-SERVICES"),
        ],
    );
    for chain in [
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
    ] {
        b.filter(chain, []);
    }

    // ns1/svc1
    let svc1 = "ns1/svc1:p80";
    cluster_ip(
        &mut b,
        svc1,
        "KUBE-SVC-1",
        "172.30.0.41",
        TCP,
        80,
        &[ep("KUBE-SEP-1A", "10.180.0.1", 80)],
    );

    // ns2/svc2: eTP=Local LoadBalancer
    let svc2 = "ns2/svc2:p80";
    let eps2 = [
        ep("KUBE-SEP-2A", "10.180.0.2", 80),
        ep("KUBE-SEP-2B", "10.180.1.2", 80),
    ];
    cluster_ip(&mut b, svc2, "KUBE-SVC-2", "172.30.0.42", TCP, 80, &eps2);
    b.nat(
        "KUBE-SERVICES",
        [
            capture(svc2, "external IP", "192.168.99.22", 80, "KUBE-EXT-2"),
            capture(svc2, "loadbalancer IP", "1.2.3.4", 80, "KUBE-EXT-2"),
        ],
    );
    ext_local(&mut b, svc2, "KUBE-EXT-2", "KUBE-SVC-2", Some("KUBE-SVL-2"));
    b.nat("KUBE-SVL-2", rungs(svc2, &eps2[..1]));
    b.filter(
        "KUBE-NODEPORTS",
        [r().tcp(30000)
            .comment(&format!("{svc2} health check node port"))
            .accept()],
    );

    // ns3/svc3: NodePort, eTP=Cluster
    let svc3 = "ns3/svc3:p80";
    cluster_ip(
        &mut b,
        svc3,
        "KUBE-SVC-3",
        "172.30.0.43",
        TCP,
        80,
        &[ep("KUBE-SEP-3A", "10.180.0.3", 80)],
    );
    ext_cluster(&mut b, svc3, "KUBE-EXT-3", "KUBE-SVC-3");

    // ns4/svc4: external IP, two endpoints
    let svc4 = "ns4/svc4:p80";
    let eps4 = [
        ep("KUBE-SEP-4A", "10.180.0.4", 80),
        ep("KUBE-SEP-4B", "10.180.0.5", 80),
    ];
    cluster_ip(&mut b, svc4, "KUBE-SVC-4", "172.30.0.44", TCP, 80, &eps4);
    b.nat(
        "KUBE-SERVICES",
        [capture(
            svc4,
            "external IP",
            "192.168.99.33",
            80,
            "KUBE-EXT-4",
        )],
    );
    ext_cluster(&mut b, svc4, "KUBE-EXT-4", "KUBE-SVC-4");

    // ns5/svc5: LoadBalancer with source ranges
    let svc5 = "ns5/svc5:p80";
    cluster_ip(
        &mut b,
        svc5,
        "KUBE-SVC-5",
        "172.30.0.45",
        TCP,
        80,
        &[ep("KUBE-SEP-5A", "10.180.0.3", 80)],
    );
    b.nat(
        "KUBE-SERVICES",
        [capture(svc5, "loadbalancer IP", "5.6.7.8", 80, "KUBE-FW-5")],
    );
    let lb5 = format!("{svc5} loadbalancer IP");
    b.nat(
        "KUBE-FW-5",
        [
            r().s("192.168.0.0/24").comment(&lb5).j("KUBE-EXT-5"),
            r().s("203.0.113.0/25").comment(&lb5).j("KUBE-EXT-5"),
            r().s("5.6.7.8").comment(&lb5).j("KUBE-EXT-5"),
            r().comment(&format!(
                "other traffic to {svc5} will be dropped by KUBE-PROXY-FIREWALL"
            )),
        ],
    );
    ext_cluster(&mut b, svc5, "KUBE-EXT-5", "KUBE-SVC-5");
    b.filter(
        "KUBE-PROXY-FIREWALL",
        [r().d("5.6.7.8")
            .tcp(80)
            .comment(&format!("{svc5} traffic not accepted by KUBE-FW-5"))
            .drop()],
    );

    // ns6/svc6: no endpoints
    let svc6 = "ns6/svc6:p80";
    let none6 = format!("{svc6} has no endpoints");
    b.filter(
        "KUBE-SERVICES",
        [r().d("172.30.0.46").tcp(80).comment(&none6).reject()],
    );
    b.filter(
        "KUBE-EXTERNAL-SERVICES",
        [
            r().d("192.168.99.66").tcp(80).comment(&none6).reject(),
            r().d("1.2.3.6").tcp(80).comment(&none6).reject(),
            r().dst_local().tcp(3006).comment(&none6).reject(),
        ],
    );

    // ns7/svc7: eTP=Local, no local endpoint
    let svc7 = "ns7/svc7:p80";
    cluster_ip(
        &mut b,
        svc7,
        "KUBE-SVC-7",
        "172.30.0.47",
        TCP,
        80,
        &[ep("KUBE-SEP-7A", "10.180.2.7", 80)],
    );
    b.nat(
        "KUBE-SERVICES",
        [capture(
            svc7,
            "external IP",
            "192.168.99.77",
            80,
            "KUBE-EXT-7",
        )],
    );
    ext_local(&mut b, svc7, "KUBE-EXT-7", "KUBE-SVC-7", None);
    let none7 = format!("{svc7} has no local endpoints");
    b.filter(
        "KUBE-EXTERNAL-SERVICES",
        [r().d("192.168.99.77").tcp(80).comment(&none7).drop()],
    );
    b.filter(
        "KUBE-NODEPORTS",
        [r().tcp(30007)
            .comment(&format!("{svc7} health check node port"))
            .accept()],
    );

    // ns8/svc8: iTP=Local cluster IP; the NodePort uses all endpoints
    let svc8 = "ns8/svc8:p80";
    let eps8 = [
        ep("KUBE-SEP-8A", "10.180.0.8", 80),
        ep("KUBE-SEP-8B", "10.180.1.8", 80),
    ];
    b.nat(
        "KUBE-SERVICES",
        [capture(svc8, "cluster IP", "172.30.0.48", 80, "KUBE-SVL-8")],
    );
    let mut svl8 = vec![masq_rule(svc8, "172.30.0.48", TCP, 80)];
    svl8.extend(rungs(svc8, &eps8[..1]));
    b.nat("KUBE-SVL-8", svl8);
    b.nat("KUBE-SVC-8", rungs(svc8, &eps8));
    for e in &eps8 {
        sep(&mut b, svc8, e, TCP);
    }
    ext_cluster(&mut b, svc8, "KUBE-EXT-8", "KUBE-SVC-8");

    // ns9/svc9: a ladder of three
    let svc9 = "ns9/svc9:p80";
    let eps9 = [
        ep("KUBE-SEP-9A", "10.180.0.91", 8080),
        ep("KUBE-SEP-9B", "10.180.0.92", 8080),
        ep("KUBE-SEP-9C", "10.180.0.93", 8080),
    ];
    cluster_ip(&mut b, svc9, "KUBE-SVC-9", "172.30.0.49", TCP, 80, &eps9);

    // ns10/dns: one port number, two protocols
    let dns_tcp = [ep("KUBE-SEP-10T", "10.180.0.10", 5353)];
    let dns_udp = [ep("KUBE-SEP-10U", "10.180.0.10", 53)];
    cluster_ip(
        &mut b,
        "ns10/dns:dns-tcp",
        "KUBE-SVC-10T",
        "172.30.0.50",
        TCP,
        53,
        &dns_tcp,
    );
    cluster_ip(
        &mut b,
        "ns10/dns:dns",
        "KUBE-SVC-10U",
        "172.30.0.50",
        Protocol::Udp,
        53,
        &dns_udp,
    );

    // The NodePorts, and the tail rule that must stay last in KUBE-SERVICES.
    b.nat(
        "KUBE-NODEPORTS",
        [
            nodeport(svc2, 3001, "KUBE-EXT-2"),
            nodeport(svc3, 3003, "KUBE-EXT-3")
                .d("127.0.0.0/8")
                .nfacct("localhost_nps_accepted_pkts"),
            nodeport(svc3, 3003, "KUBE-EXT-3"),
            nodeport(svc5, 3002, "KUBE-EXT-5"),
            nodeport(svc8, 3008, "KUBE-EXT-8"),
        ],
    );
    b.nat(
        "KUBE-SERVICES",
        [r().comment(
            "kubernetes service nodeports; NOTE: this must be the last rule in this chain",
        )
        .dst_local()
        .j("KUBE-NODEPORTS")],
    );
    b.build()
}
