//! kube-proxy's "sloppy" IP and CIDR parsing.
//!
//! kube-proxy parses every address it reads from the API (cluster IPs, external IPs, load-balancer IPs,
//! endpoint addresses, node addresses, CIDRs) with `ParseIPSloppy` / `ParseCIDRSloppy`: a strict parse
//! first, and when that fails, a second try after stripping leading zeros from the numbers of a trailing
//! dotted quad. The numbers stay **decimal**: `010.001.002.003` is `10.1.2.3`, never the octal `8.1.2.3`.
//!
//! What these functions accept, in detail:
//! - everything the strict parser accepts (no zones such as `%eth0`, no surrounding whitespace);
//! - a dotted quad, alone or after the last `:` of an IPv6 address, whose numbers have any number of
//!   leading zeros, as long as each number is at most 255 once they are stripped;
//! - for CIDRs, a prefix length made of ASCII digits, leading zeros allowed.
//!
//! An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`) is an IPv4 address to kube-proxy (Go's `net.IP`
//! treats it so, in its family and when printing), so [`parse_ip`] returns the IPv4 address. CIDRs keep
//! the family they are written in, and are masked to their network address, as Go's `ParseCIDR` does:
//! `10.1.2.3/24` is `10.1.2.0/24`.

use std::net::IpAddr;

use ipnet::IpNet;

/// Parses an IP address the way kube-proxy's `ParseIPSloppy` does, and returns it in canonical form
/// (an IPv4-mapped IPv6 address becomes the IPv4 address). `None` when it is not an IP address.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    parse_ip_keep_mapped(text).map(|ip| ip.to_canonical())
}

/// Parses a CIDR the way kube-proxy's `ParseCIDRSloppy` does and masks it to its network address.
/// `None` when it is not a CIDR (a bare address without `/` is not one).
pub fn parse_cidr(text: &str) -> Option<IpNet> {
    let (addr, prefix) = text.split_once('/')?;
    let ip = parse_ip_keep_mapped(addr)?;
    let prefix = parse_prefix_len(prefix)?;
    IpNet::new(ip, prefix).ok().map(|net| net.trunc())
}

/// The address in the canonical text form kube-proxy prints (`Go net.IP.String()`), when `text` is an
/// IP address; `None` otherwise.
pub fn normalize_ip(text: &str) -> Option<String> {
    parse_ip(text).map(|ip| ip.to_string())
}

fn parse_ip_keep_mapped(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    strip_quad_zeros(text)?.parse::<IpAddr>().ok()
}

/// Rewrites a trailing dotted quad without leading zeros: `::ffff:010.001.2.3` → `::ffff:10.1.2.3`.
/// `None` when `text` does not end in a dotted quad of ASCII digits.
fn strip_quad_zeros(text: &str) -> Option<String> {
    let start = text.rfind(':').map_or(0, |i| i + 1);
    let (head, quad) = text.split_at(start);
    let numbers: Vec<&str> = quad.split('.').collect();
    if numbers.len() != 4 {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    out.push_str(head);
    for (i, number) in numbers.iter().enumerate() {
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if i > 0 {
            out.push('.');
        }
        let stripped = number.trim_start_matches('0');
        out.push_str(if stripped.is_empty() { "0" } else { stripped });
    }
    Some(out)
}

fn parse_prefix_len(text: &str) -> Option<u8> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = text.trim_start_matches('0');
    if digits.len() > 3 {
        return None;
    }
    if digits.is_empty() {
        Some(0)
    } else {
        digits.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<String> {
        parse_ip(text).map(|ip| ip.to_string())
    }

    fn cidr(text: &str) -> Option<String> {
        parse_cidr(text).map(|net| net.to_string())
    }

    #[test]
    fn strict_forms_parse_unchanged() {
        assert_eq!(ip("10.96.0.1").as_deref(), Some("10.96.0.1"));
        assert_eq!(ip("fd00::1").as_deref(), Some("fd00::1"));
        assert_eq!(ip("FD00:0:0::00A").as_deref(), Some("fd00::a"));
        assert_eq!(ip("1:2:3:4:5:6:7::").as_deref(), Some("1:2:3:4:5:6:7:0"));
    }

    #[test]
    fn leading_zeros_are_decimal() {
        assert_eq!(ip("010.001.002.003").as_deref(), Some("10.1.2.3"));
        assert_eq!(ip("192.168.001.010").as_deref(), Some("192.168.1.10"));
        assert_eq!(ip("000.0.00.0000000009").as_deref(), Some("0.0.0.9"));
        assert_eq!(ip("::ffff:010.001.002.003").as_deref(), Some("10.1.2.3"));
    }

    #[test]
    fn ipv4_mapped_is_ipv4() {
        assert_eq!(
            parse_ip("::ffff:10.1.2.3"),
            Some(IpAddr::from([10, 1, 2, 3]))
        );
    }

    #[test]
    fn rejects_what_kube_proxy_rejects() {
        for bad in [
            "",
            " 10.0.0.1",
            "10.0.0.1 ",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "0256.1.1.1",
            "1.2.3.x",
            "fe80::1%eth0",
            "fd00::00001",
            "None",
            "10.0.0.0/8",
        ] {
            assert_eq!(parse_ip(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cidrs_are_masked_and_sloppy() {
        assert_eq!(cidr("198.51.100.0/24").as_deref(), Some("198.51.100.0/24"));
        assert_eq!(cidr("198.51.100.7/24").as_deref(), Some("198.51.100.0/24"));
        assert_eq!(
            cidr("010.244.000.000/016").as_deref(),
            Some("10.244.0.0/16")
        );
        assert_eq!(cidr("fd00:10::/048").as_deref(), Some("fd00:10::/48"));
        assert_eq!(cidr("0.0.0.0/0").as_deref(), Some("0.0.0.0/0"));
    }

    #[test]
    fn rejects_bad_cidrs() {
        for bad in [
            "198.51.100.0",
            "198.51.100.0/33",
            "fd00::/129",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "1.2.3.4/ 8",
            "x/8",
        ] {
            assert_eq!(parse_cidr(bad), None, "{bad:?}");
        }
    }
}
