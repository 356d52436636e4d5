//! Parsers for option values: addresses, ports, marks, probabilities and counters.
//!
//! Each returns a plain reason string on failure; the caller wraps it with the option and value.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use crate::core::rules::{Counters, PortSpec, Probability};

/// `-s`/`-d` value: `ADDR` (a host: /32 or /128), `ADDR/LEN` or `ADDR/MASK` with a contiguous mask.
///
/// Host bits are cleared, as the kernel does: `10.0.0.1/8` is stored, and printed back, as `10.0.0.0/8`.
pub(crate) fn address(text: &str) -> Result<IpNet, String> {
    if let Some(net) = ipv4_net(text) {
        return Ok(net);
    }
    if text.contains(',') {
        return Err(
            "several addresses in one rule are not supported here: write one rule per address"
                .into(),
        );
    }
    let (addr_text, prefix_text) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: IpAddr = addr_text
        .parse()
        .map_err(|_| format!("`{addr_text}` is not an IPv4 or IPv6 address"))?;
    let max = match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let len = match prefix_text {
        None => max,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
            .parse::<u8>()
            .ok()
            .filter(|len| *len <= max)
            .ok_or_else(|| format!("prefix length `{p}` is larger than {max}"))?,
        Some(p) => mask_len(addr, p)?,
    };
    IpNet::new(addr, len)
        .map(|net| net.trunc())
        .map_err(|e| e.to_string())
}

/// The common case, `A.B.C.D` or `A.B.C.D/LEN` in plain decimal, read byte by byte; `None` for anything
/// else (which then goes the long way, and gets its error message there).
fn ipv4_net(text: &str) -> Option<IpNet> {
    let bytes = text.as_bytes();
    let mut octets = [0u8; 4];
    let mut pos = 0;
    for (i, octet) in octets.iter_mut().enumerate() {
        if i > 0 {
            if bytes.get(pos) != Some(&b'.') {
                return None;
            }
            pos += 1;
        }
        (*octet, pos) = small_decimal(bytes, pos)?;
    }
    let len = match bytes.get(pos) {
        None => 32,
        Some(b'/') => match small_decimal(bytes, pos + 1)? {
            (len, end) if end == bytes.len() && len <= 32 => len,
            _ => return None,
        },
        Some(_) => return None,
    };
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    let bits = u32::from(Ipv4Addr::from(octets)) & mask;
    Ipv4Net::new(Ipv4Addr::from(bits), len).ok().map(IpNet::V4)
}

/// A number from 0 to 255 at `pos`, written without leading zeros; returns it and the position after.
fn small_decimal(bytes: &[u8], pos: usize) -> Option<(u8, usize)> {
    let mut value: u32 = 0;
    let mut end = pos;
    while let Some(digit) = bytes.get(end).filter(|b| b.is_ascii_digit()) {
        value = value * 10 + u32::from(digit - b'0');
        end += 1;
        if end - pos > 3 {
            return None;
        }
    }
    let digits = end - pos;
    if digits == 0 || (digits > 1 && bytes.get(pos) == Some(&b'0')) {
        return None;
    }
    Some((u8::try_from(value).ok()?, end))
}

/// The prefix length of a dotted (or colon-hex) network mask of the same family as `addr`.
fn mask_len(addr: IpAddr, mask: &str) -> Result<u8, String> {
    let bad = || format!("`{mask}` is neither a prefix length nor a contiguous network mask");
    let mask: IpAddr = mask.parse().map_err(|_| bad())?;
    let (bits, width): (u128, u32) = match (addr, mask) {
        (IpAddr::V4(_), IpAddr::V4(m)) => (u128::from(u32::from(m)) << 96, 32),
        (IpAddr::V6(_), IpAddr::V6(m)) => (u128::from(m), 128),
        _ => return Err(bad()),
    };
    let ones = bits.leading_ones();
    if bits.checked_shl(ones).unwrap_or(0) != 0 || ones > width {
        return Err(bad());
    }
    u8::try_from(ones).map_err(|_| bad())
}

/// `--sport`/`--dport` value: `P`, `P:Q`, `:Q` (from 0) or `P:` (to 65535).
pub(crate) fn port_spec(text: &str) -> Result<PortSpec, String> {
    let port = |p: &str, default: u16| -> Result<u16, String> {
        if p.is_empty() {
            return Ok(default);
        }
        if !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "`{p}` is not a port number (service names are not resolved)"
            ));
        }
        p.parse::<u16>()
            .map_err(|_| format!("`{p}` is not a port number between 0 and 65535"))
    };
    let spec = match text.split_once(':') {
        None if text.is_empty() => return Err("empty port".into()),
        None => PortSpec::single(port(text, 0)?),
        Some((a, b)) => PortSpec {
            first: port(a, 0)?,
            last: port(b, u16::MAX)?,
        },
    };
    if spec.first > spec.last {
        return Err(format!(
            "the range starts after it ends ({} > {})",
            spec.first, spec.last
        ));
    }
    Ok(spec)
}

/// A mark number as iptables reads it: `0x…` hex, `0…` octal, else decimal; at most 32 bits.
pub(crate) fn mark_number(text: &str) -> Result<u32, String> {
    let parsed = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16)
            .ok()
            .filter(|_| !hex.is_empty())
    } else if text.len() > 1 && text.starts_with('0') {
        text.get(1..)
            .and_then(|octal| u32::from_str_radix(octal, 8).ok())
    } else {
        text.parse::<u32>().ok()
    };
    // `from_str_radix` accepts a leading `+`; iptables does not, and neither do we.
    parsed
        .filter(|_| !text.contains('+'))
        .ok_or_else(|| format!("`{text}` is not a 32-bit number (hex `0x…` or decimal)"))
}

/// `VALUE[/MASK]` for `--mark` and `--set-xmark`/`--set-mark`.
pub(crate) fn mark_and_mask(text: &str) -> Result<(u32, Option<u32>), String> {
    match text.split_once('/') {
        None => Ok((mark_number(text)?, None)),
        Some((v, m)) => Ok((mark_number(v)?, Some(mark_number(m)?))),
    }
}

/// `--probability` value: a decimal number from 0 to 1.
pub(crate) fn probability(text: &str) -> Result<Probability, String> {
    text.parse::<f64>()
        .ok()
        .filter(|p| (0.0..=1.0).contains(p))
        .map(Probability)
        .ok_or_else(|| format!("`{text}` is not a probability between 0 and 1"))
}

/// A decimal `u32` (`--seconds`).
pub(crate) fn decimal_u32(text: &str) -> Result<u32, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse()
            .map_err(|_| format!("`{text}` is larger than 4294967295"))
    } else {
        Err(format!("`{text}` is not a whole number"))
    }
}

/// `[packets:bytes]`; `None` when the brackets or numbers are wrong.
pub(crate) fn counters(text: &str) -> Option<Counters> {
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    let (p, b) = inner.split_once(':')?;
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    Some(Counters {
        packets: number(p)?,
        bytes: number(b)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_their_host_prefix_and_lose_host_bits() {
        assert_eq!(address("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
        assert_eq!(
            address("10.244.0.0/16").unwrap().to_string(),
            "10.244.0.0/16"
        );
        assert_eq!(address("10.0.0.1/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(address("::1").unwrap().to_string(), "::1/128");
        assert_eq!(address("fd00::/64").unwrap().to_string(), "fd00::/64");
        assert_eq!(
            address("10.1.0.0/255.255.0.0").unwrap().to_string(),
            "10.1.0.0/16"
        );
        assert_eq!(address("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
    }

    #[test]
    fn the_ipv4_fast_path_agrees_with_the_general_parser() {
        for text in [
            "1.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1/8",
            "10.0.0.1/0",
            "10.0.0.1/32",
            "10.0.0.1/33",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.256",
            "1.2.3.4/",
            "1.2.3.4/08",
            "1..3.4",
            "1.2.3.4/255.0.0.0",
            "::1",
            "a.b.c.d",
            "1.2.3.+4",
            "1.2.3.4/-1",
        ] {
            let general = || -> Option<IpNet> {
                let (a, p) = text.split_once('/').unwrap_or((text, "32"));
                let addr: Ipv4Addr = a.parse().ok()?;
                if p.len() > 1 && p.starts_with('0') {
                    return None;
                }
                Some(IpNet::V4(Ipv4Net::new(addr, p.parse().ok()?).ok()?.trunc()))
            };
            if let Some(fast) = ipv4_net(text) {
                assert_eq!(Some(fast), general(), "{text}");
                assert_eq!(address(text), Ok(fast), "{text}");
            }
        }
        assert!(ipv4_net("10.1.2.3/16").is_some());
        assert!(ipv4_net("10.1.2.3").is_some());
    }

    #[test]
    fn bad_addresses_say_why() {
        assert!(address("10.0.0.300").is_err());
        assert!(address("10.0.0.0/33").is_err());
        assert!(address("::/129").is_err());
        assert!(address("10.0.0.0/255.0.255.0").is_err());
        assert!(address("10.0.0.0/ffff::").is_err());
        assert!(address("10.0.0.1,10.0.0.2").is_err());
        assert!(address("example.com").is_err());
        assert!(address("10.0.0.0/").is_err());
    }

    #[test]
    fn ports_and_ranges() {
        assert_eq!(port_spec("80").unwrap(), PortSpec::single(80));
        assert_eq!(
            port_spec("1000:2000").unwrap(),
            PortSpec {
                first: 1000,
                last: 2000
            }
        );
        assert_eq!(
            port_spec(":2000").unwrap(),
            PortSpec {
                first: 0,
                last: 2000
            }
        );
        assert_eq!(
            port_spec("1000:").unwrap(),
            PortSpec {
                first: 1000,
                last: 65535
            }
        );
        for bad in ["", "http", "65536", "2:1", "-1", "+5", "1:2:3"] {
            assert!(port_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn marks_in_hex_octal_and_decimal() {
        assert_eq!(mark_number("0x4000").unwrap(), 0x4000);
        assert_eq!(mark_number("0x00004000").unwrap(), 0x4000);
        assert_eq!(mark_number("16384").unwrap(), 0x4000);
        assert_eq!(mark_number("010").unwrap(), 8);
        assert_eq!(mark_number("0").unwrap(), 0);
        assert_eq!(mark_number("0xffffffff").unwrap(), u32::MAX);
        for bad in [
            "",
            "0x",
            "0x100000000",
            "4294967296",
            "08",
            "+1",
            "0x+1",
            "abc",
        ] {
            assert!(mark_number(bad).is_err(), "{bad}");
        }
        assert_eq!(
            mark_and_mask("0x4000/0x4000").unwrap(),
            (0x4000, Some(0x4000))
        );
        assert_eq!(mark_and_mask("0x4000").unwrap(), (0x4000, None));
    }

    #[test]
    fn probabilities() {
        assert_eq!(
            probability("0.33333333349").unwrap(),
            Probability(1.0 / 3.0)
        );
        assert_eq!(probability("0.3333333333").unwrap(), Probability(1.0 / 3.0));
        for bad in ["", "1.5", "-0.1", "NaN", "inf", "x"] {
            assert!(probability(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counters_need_brackets_and_two_numbers() {
        assert_eq!(
            counters("[12:345]"),
            Some(Counters {
                packets: 12,
                bytes: 345
            })
        );
        for bad in [
            "12:345", "[12]", "[a:1]", "[1:]", "[-1:2]", "[1:2", "[+1:2]",
        ] {
            assert_eq!(counters(bad), None, "{bad}");
        }
    }
}
