//! UDP conntrack cleanup through ctnetlink against a real conntrack table, in a throwaway network
//! namespace: UDP exchanges through DNAT rules (a fake Service VIP, a NodePort, a zoned flow) create
//! real entries; the library lists them with the right original destination and reply source, and
//! the cleanup deletes exactly the entries answered by a backend that no longer serves. The
//! `conntrack` tool checks the table independently.
//!
//! All traffic stays on the namespace's loopback interface, which carries the test's addresses.

mod support;

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use support::netns::{NetNs, skip_unless_available_with};
use svcproxy::core::rules::IpFamily;
use svcproxy::proxy::conntrack::{Conntrack, ConntrackSocket, Deleted, UdpFlow, UdpTarget};

const VIP: &str = "10.96.0.10";
const VIP6: &str = "fd00:96::a";
/// The client's address, and the "node" address NodePorts are reached on.
const CLIENT: &str = "10.99.0.1";
/// The backend that left the Service.
const GONE: &str = "10.99.0.2";
/// The backend that still serves.
const SERVING: &str = "10.99.0.3";
const CLIENT6: &str = "fd00:99::1";
const GONE6: &str = "fd00:99::2";
const SERVING6: &str = "fd00:99::3";
const NODE_PORT: u16 = 30053;
const ZONE: u16 = 7;
const TIMEOUT: Duration = Duration::from_secs(2);

/// Source port 40001 goes to the gone backend, 40002 to the serving one, 40003 talks to the gone
/// backend directly (no Service), 40004 reaches the gone backend through the NodePort, 40005 goes to
/// the gone backend in conntrack zone 7 (both directions, so the reply finds the entry).
const RULES_V4: &str = "\
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A OUTPUT -p udp -m udp --sport 40005 -j CT --zone 7
-A OUTPUT -p udp -m udp --dport 40005 -j CT --zone 7
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -d 10.96.0.10/32 -p udp -m udp --sport 40002 --dport 53 -j DNAT --to-destination 10.99.0.3:5353
-A OUTPUT -d 10.96.0.10/32 -p udp -m udp --dport 53 -j DNAT --to-destination 10.99.0.2:5353
-A OUTPUT -d 10.99.0.1/32 -p udp -m udp --dport 30053 -j DNAT --to-destination 10.99.0.2:5353
COMMIT
";

const RULES_V6: &str = "\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -d fd00:96::a/128 -p udp -m udp --dport 53 -j DNAT --to-destination [fd00:99::2]:5353
COMMIT
";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn addr(host: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(host), port)
}

fn flow(source: (&str, u16), destination: (&str, u16), reply: (&str, u16)) -> UdpFlow {
    UdpFlow {
        source: (ip(source.0), source.1),
        destination: (ip(destination.0), destination.1),
        reply_source: (ip(reply.0), reply.1),
        zone: None,
        original_zone: None,
    }
}

/// A namespace whose loopback carries the test's addresses, with routes for the fake VIPs (so a
/// datagram to them reaches the nat OUTPUT chain) and the DNAT rules above.
fn namespace() -> NetNs {
    let ns = NetNs::create("svcp-ct").expect("namespace");
    let run = |args: &[&str]| {
        ns.exec("ip", args, None)
            .unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    };
    for address in [CLIENT, GONE, SERVING] {
        run(&["addr", "add", &format!("{address}/32"), "dev", "lo"]);
    }
    for address in [CLIENT6, GONE6, SERVING6] {
        run(&["-6", "addr", "add", &format!("{address}/128"), "dev", "lo"]);
    }
    run(&["route", "add", "10.96.0.0/16", "dev", "lo"]);
    run(&["-6", "route", "add", "fd00:96::/64", "dev", "lo"]);
    ns.iptables_restore(IpFamily::V4, RULES_V4, false)
        .expect("IPv4 rules");
    ns.iptables_restore(IpFamily::V6, RULES_V6, false)
        .expect("IPv6 rules");
    ns
}

/// Runs `f` on a thread that entered `ns`'s network namespace: the sockets it opens (UDP, TCP and
/// netlink) live there. A panic in `f` is the caller's.
fn in_namespace<T: Send>(ns: &NetNs, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{}", ns.name());
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("enter the namespace");
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// One request and its answer, from `source` to `destination`, answered by `backend` (where the DNAT
/// rules send it). The answer must come back from `destination`: conntrack undid the DNAT.
fn exchange(source: SocketAddr, destination: SocketAddr, backend: &UdpSocket) {
    let client = UdpSocket::bind(source).expect("bind the client");
    client.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    client.send_to(b"ping", destination).expect("send");
    let mut buf = [0u8; 16];
    let (n, from) = backend
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("{source} -> {destination}: the backend got nothing: {e}"));
    assert_eq!(from, source, "no source NAT");
    backend.send_to(&buf[..n], from).expect("answer");
    let (_, answered_by) = client
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("{source} -> {destination}: no answer: {e}"));
    assert_eq!(answered_by, destination);
}

fn backend(address: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind(address).expect("bind a backend");
    socket.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    socket
}

/// The original source ports of the UDP entries the `conntrack` tool lists for `family`.
fn listed_source_ports(ns: &NetNs, family: &str) -> BTreeSet<u16> {
    ns.exec("conntrack", &["-L", "-p", "udp", "-f", family], None)
        .expect("conntrack -L")
        .lines()
        .filter_map(|line| {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix("sport="))
                .and_then(|port| port.parse().ok())
        })
        .collect()
}

#[test]
fn udp_entries_are_listed_and_only_stale_ones_deleted() {
    let test = "udp_entries_are_listed_and_only_stale_ones_deleted";
    if !skip_unless_available_with(test, &["conntrack"]) {
        return;
    }
    let ns = namespace();

    // Real entries: five UDP flows for IPv4, one for IPv6, one TCP connection.
    let (v4, v6) = in_namespace(&ns, || {
        let gone = backend(addr(GONE, 5353));
        let serving = backend(addr(SERVING, 5353));
        exchange(addr(CLIENT, 40001), addr(VIP, 53), &gone);
        exchange(addr(CLIENT, 40002), addr(VIP, 53), &serving);
        exchange(addr(CLIENT, 40003), addr(GONE, 5353), &gone);
        exchange(addr(CLIENT, 40004), addr(CLIENT, NODE_PORT), &gone);
        exchange(addr(CLIENT, 40005), addr(VIP, 53), &gone);
        let gone6 = backend(addr(GONE6, 5353));
        exchange(addr(CLIENT6, 40011), addr(VIP6, 53), &gone6);
        let listener = TcpListener::bind(addr(GONE, 8080)).expect("listen");
        let _tcp = TcpStream::connect_timeout(&addr(GONE, 8080), TIMEOUT).expect("connect");
        let _accepted = listener.accept().expect("accept");

        let conntrack = Conntrack::new();
        let v4 = conntrack.udp_flows(IpFamily::V4).expect("list IPv4");
        let v6 = conntrack.udp_flows(IpFamily::V6).expect("list IPv6");
        (v4, v6)
    });
    assert!(
        ns.exec("conntrack", &["-L", "-p", "tcp"], None)
            .expect("conntrack -L -p tcp")
            .contains("dport=8080"),
        "the TCP connection has an entry"
    );

    // Listed with the original destination (VIP or NodePort) and the backend that answers; the TCP
    // entry and the other family's entries are not.
    assert!(!v4.interrupted && !v6.interrupted);
    let mut flows = v4.flows.clone();
    flows.sort_by_key(|f| f.source.1);
    assert_eq!(
        flows,
        vec![
            flow((CLIENT, 40001), (VIP, 53), (GONE, 5353)),
            flow((CLIENT, 40002), (VIP, 53), (SERVING, 5353)),
            flow((CLIENT, 40003), (GONE, 5353), (GONE, 5353)),
            flow((CLIENT, 40004), (CLIENT, NODE_PORT), (GONE, 5353)),
            UdpFlow {
                zone: Some(ZONE),
                ..flow((CLIENT, 40005), (VIP, 53), (GONE, 5353))
            },
        ]
    );
    assert_eq!(
        v6.flows,
        vec![flow((CLIENT6, 40011), (VIP6, 53), (GONE6, 5353))]
    );
    assert_eq!(
        listed_source_ports(&ns, "ipv4"),
        [40001, 40002, 40003, 40004, 40005].into()
    );

    // The Service is served by SERVING only now: the flows answered by GONE through the VIP, the
    // NodePort and in zone 7 are stale; the flow to SERVING and the direct one are not.
    let target = UdpTarget {
        vips: [(ip(VIP), 53)].into(),
        node_port: Some(NODE_PORT),
        serving: [(ip(SERVING), 5353)].into(),
    };
    let target6 = UdpTarget {
        vips: [(ip(VIP6), 53)].into(),
        node_port: None,
        serving: [(ip(SERVING6), 5353)].into(),
    };
    let (deleted, deleted6, again, already_gone) = in_namespace(&ns, || {
        let conntrack = Conntrack::new();
        let deleted = conntrack
            .cleanup(IpFamily::V4, std::slice::from_ref(&target))
            .expect("IPv4 cleanup");
        let deleted6 = conntrack
            .cleanup(IpFamily::V6, std::slice::from_ref(&target6))
            .expect("IPv6 cleanup");
        let again = conntrack
            .cleanup(IpFamily::V4, std::slice::from_ref(&target))
            .expect("second cleanup");
        let gone = flow((CLIENT, 40001), (VIP, 53), (GONE, 5353));
        let already_gone = ConntrackSocket::open()
            .and_then(|mut socket| socket.delete(&[&gone]))
            .expect("deleting a deleted entry is not an error");
        (deleted, deleted6, again, already_gone)
    });
    assert_eq!(deleted, 3, "via the VIP, via the NodePort, in zone 7");
    assert_eq!(deleted6, 1);
    assert_eq!(again, 0, "nothing stale is left");
    assert_eq!(
        already_gone,
        Deleted {
            deleted: 0,
            already_gone: 1
        }
    );
    assert_eq!(
        listed_source_ports(&ns, "ipv4"),
        [40002, 40003].into(),
        "the flow to the serving backend and the unrelated flow survive"
    );
    assert!(listed_source_ports(&ns, "ipv6").is_empty());
}
