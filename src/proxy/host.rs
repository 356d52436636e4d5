//! Facts about the host and its one-time set-up: local addresses, sysctls.

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;

/// The sysctl that lets packets to 127.0.0.0/8 be routed, needed for localhost NodePorts.
pub const ROUTE_LOCALNET: &str = "net/ipv4/conf/all/route_localnet";
/// When non-zero, conntrack accepts out-of-window TCP packets and the INVALID-drop rule is not needed.
pub const TCP_BE_LIBERAL: &str = "net/netfilter/nf_conntrack_tcp_be_liberal";

/// Where the conntrack settings appear once the `nf_conntrack` module is loaded.
pub const CONNTRACK_SYSCTLS: &str = "/proc/sys/net/netfilter/nf_conntrack_max";

/// Loads kernel module `module` with `modprobe` (from the host's `/lib/modules`, which the DaemonSet
/// mounts into the init container). The error says what failed, with `modprobe`'s own message.
pub fn load_module(module: &str) -> Result<(), String> {
    let output = std::process::Command::new("modprobe")
        .args(["--", module])
        .output()
        .map_err(|e| format!("cannot run modprobe {module}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "modprobe {module} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Every local address of this network namespace, IPv4 from `/proc/net/fib_trie` and IPv6 from
/// `/proc/net/if_inet6`; loopback included.
pub fn local_addresses() -> Vec<IpAddr> {
    let mut out = std::fs::read_to_string("/proc/net/fib_trie")
        .map(|t| ipv4_locals(&t))
        .unwrap_or_default();
    out.extend(
        std::fs::read_to_string("/proc/net/if_inet6")
            .map(|t| ipv6_locals(&t))
            .unwrap_or_default(),
    );
    out.sort();
    out.dedup();
    out
}

/// IPv4 addresses marked `/32 host LOCAL` in a `fib_trie` listing.
fn ipv4_locals(fib_trie: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut last: Option<IpAddr> = None;
    for line in fib_trie.lines() {
        let line = line.trim();
        if let Some(addr) = line
            .strip_prefix("|-- ")
            .or_else(|| line.strip_prefix("+-- "))
        {
            last = addr.split('/').next().and_then(|a| a.trim().parse().ok());
        } else if line.starts_with("/32 host LOCAL")
            && let Some(addr) = last
        {
            out.push(addr);
        }
    }
    out
}

/// Addresses in an `if_inet6` listing (32 hex digits first on each line).
fn ipv6_locals(if_inet6: &str) -> Vec<IpAddr> {
    if_inet6
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|hex| u128::from_str_radix(hex, 16).ok())
        .map(|bits| IpAddr::V6(Ipv6Addr::from(bits)))
        .collect()
}

/// Reads a sysctl (`net/ipv4/...`) as an integer.
pub fn read_sysctl(name: &str) -> std::io::Result<i64> {
    let text = std::fs::read_to_string(Path::new("/proc/sys").join(name))?;
    text.trim()
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Sets a sysctl, unless it already has the value.
pub fn write_sysctl(name: &str, value: i64) -> std::io::Result<()> {
    if read_sysctl(name).ok() == Some(value) {
        return Ok(());
    }
    std::fs::write(Path::new("/proc/sys").join(name), format!("{value}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_that_cannot_be_loaded_is_an_error_naming_it() {
        let error = load_module("svcproxy-no-such-module").expect_err("no such module");
        assert!(
            error.contains("modprobe svcproxy-no-such-module"),
            "{error}"
        );
    }

    #[test]
    fn fib_trie_local_addresses() {
        let text = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     \
                    |-- 10.0.0.5\n        /32 host LOCAL\n     |-- 10.0.0.255\n        /32 link BROADCAST\n\
                    Local:\n     |-- 127.0.0.1\n        /32 host LOCAL\n";
        let got = ipv4_locals(text);
        assert_eq!(
            got,
            vec![
                "10.0.0.5".parse::<IpAddr>().unwrap(),
                "127.0.0.1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn if_inet6_addresses() {
        let text = "00000000000000000000000000000001 01 80 10 80       lo\n\
                    20010db8000000000000000000000001 02 40 00 80     eth0\n";
        let got = ipv6_locals(text);
        assert_eq!(
            got,
            vec![
                "::1".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn this_host_has_loopback() {
        let all = local_addresses();
        assert!(all.contains(&"127.0.0.1".parse().unwrap()), "{all:?}");
    }
}
