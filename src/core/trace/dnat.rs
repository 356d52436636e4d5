//! Reading a `DNAT --to-destination` value into the address and port the packet gets.

use std::net::{IpAddr, Ipv6Addr};

/// The first address and port of a `--to-destination` value: `10.0.0.1:80`, `[fd00::1]:80`, `10.0.0.1`,
/// `fd00::1`, or a range such as `10.0.0.1-10.0.0.3:80-82` (the first of each range). `None` for anything
/// else. A missing port means the port is left unchanged.
pub fn parse_to_destination(to: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Some(rest) = to.strip_prefix('[') {
        let (address, tail) = rest.split_once(']')?;
        let address = first_of_range(address).parse::<Ipv6Addr>().ok()?;
        let port = match tail.strip_prefix(':') {
            Some(port) => Some(first_of_range(port).parse().ok()?),
            None if tail.is_empty() => None,
            None => return None,
        };
        return Some((IpAddr::V6(address), port));
    }
    if let Ok(address) = to.parse::<IpAddr>() {
        return Some((address, None));
    }
    if let Some((address, port)) = to.rsplit_once(':')
        && let Ok(address) = first_of_range(address).parse::<IpAddr>()
    {
        return Some((address, Some(first_of_range(port).parse().ok()?)));
    }
    let address = first_of_range(to).parse::<IpAddr>().ok()?;
    Some((address, None))
}

fn first_of_range(value: &str) -> &str {
    value.split_once('-').map_or(value, |(first, _)| first)
}

/// `ip:port`, with the IPv6 address bracketed, as iptables prints a destination.
pub fn format_destination(address: IpAddr, port: u16) -> String {
    match address {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_destination_form() {
        let v4: IpAddr = "10.180.0.1".parse().unwrap();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(parse_to_destination("10.180.0.1:80"), Some((v4, Some(80))));
        assert_eq!(parse_to_destination("10.180.0.1"), Some((v4, None)));
        assert_eq!(
            parse_to_destination("10.180.0.1-10.180.0.9:80-90"),
            Some((v4, Some(80)))
        );
        assert_eq!(
            parse_to_destination("10.180.0.1-10.180.0.9"),
            Some((v4, None))
        );
        assert_eq!(
            parse_to_destination("[fd00::1]:8443"),
            Some((v6, Some(8443)))
        );
        assert_eq!(parse_to_destination("[fd00::1]"), Some((v6, None)));
        assert_eq!(parse_to_destination("fd00::1"), Some((v6, None)));
        assert_eq!(parse_to_destination("not-an-address:80"), None);
        assert_eq!(parse_to_destination("10.180.0.1:http"), None);
        assert_eq!(format_destination(v6, 80), "[fd00::1]:80");
        assert_eq!(format_destination(v4, 80), "10.180.0.1:80");
    }
}
