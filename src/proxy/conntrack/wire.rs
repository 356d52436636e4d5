//! The ctnetlink wire format (`linux/netfilter/nfnetlink_conntrack.h`): the two requests the cleanup
//! sends (a dump of one family's table, a delete by original tuple) and the parts of the kernel's
//! answers it reads. No I/O here, so every byte is unit-tested.
//!
//! A message is a `nlmsghdr` (16 bytes, host byte order), a `nfgenmsg` (family, version, resource id)
//! and attributes. An attribute is a 4-byte header (length without padding, type) and its value,
//! padded to 4 bytes; nested attributes carry `NLA_F_NESTED` in the type. Addresses, ports and zones
//! are big-endian.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::UdpFlow;
use crate::core::rules::IpFamily;
use crate::netlink::{
    Message, NFGENMSG_LEN, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE,
    NLMSG_ERROR, NLMSG_NOOP, attributes, i32_at, messages,
};

// linux/netfilter/nfnetlink.h
const NFNL_SUBSYS_CTNETLINK: u16 = 1;

// linux/netfilter/nfnetlink_conntrack.h
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_TUPLE_ZONE: u16 = 3;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

const IPPROTO_UDP: u8 = 17;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// `EINTR`: the kernel gave up on a dump because the table changed under it.
pub(super) const EINTR: i32 = 4;

/// Why an answer could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AnswerError {
    /// The bytes do not parse; the text says what was wrong.
    Malformed(&'static str),
    /// The kernel answered `NLMSG_ERROR` (or a failed `NLMSG_DONE`) with this errno.
    Kernel(i32),
}

/// What one datagram of a dump answer said about the dump as a whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct DumpPart {
    /// The dump is over: `NLMSG_DONE` (or an interrupted dump's error) was read.
    pub done: bool,
    /// The kernel flagged the dump as interrupted (`NLM_F_DUMP_INTR`, or `EINTR`): the table changed
    /// while it was read, so some entries may be missing or repeated.
    pub interrupted: bool,
}

/// The request for every entry of `family`'s conntrack table.
pub(super) fn dump_request(family: IpFamily, seq: u32) -> Vec<u8> {
    let af = match family {
        IpFamily::V4 => AF_INET,
        IpFamily::V6 => AF_INET6,
    };
    Message::new(
        NFNL_SUBSYS_CTNETLINK,
        IPCTNL_MSG_CT_GET,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        af,
    )
    .finish()
}

/// The request deleting the UDP entry whose original tuple (and zone) is `flow`'s, acknowledged.
pub(super) fn delete_request(flow: &UdpFlow, seq: u32) -> Vec<u8> {
    let af = match flow.source.0 {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    };
    let mut message = Message::new(
        NFNL_SUBSYS_CTNETLINK,
        IPCTNL_MSG_CT_DELETE,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        af,
    );
    message.nested(CTA_TUPLE_ORIG, |m| {
        m.nested(CTA_TUPLE_IP, |m| {
            m.address(flow.source.0, CTA_IP_V4_SRC, CTA_IP_V6_SRC);
            m.address(flow.destination.0, CTA_IP_V4_DST, CTA_IP_V6_DST);
        });
        m.nested(CTA_TUPLE_PROTO, |m| {
            m.attribute(CTA_PROTO_NUM, &[IPPROTO_UDP]);
            m.attribute(CTA_PROTO_SRC_PORT, &flow.source.1.to_be_bytes());
            m.attribute(CTA_PROTO_DST_PORT, &flow.destination.1.to_be_bytes());
        });
        if let Some(zone) = flow.original_zone {
            m.attribute(CTA_TUPLE_ZONE, &zone.to_be_bytes());
        }
    });
    if let Some(zone) = flow.zone {
        message.attribute(CTA_ZONE, &zone.to_be_bytes());
    }
    message.finish()
}

/// Reads one datagram of the answer to the dump request `seq`, appending its UDP entries to `flows`
/// (entries of other protocols are skipped as soon as their original tuple is read).
pub(super) fn parse_dump(
    datagram: &[u8],
    seq: u32,
    flows: &mut Vec<UdpFlow>,
) -> Result<DumpPart, AnswerError> {
    let mut part = DumpPart::default();
    for message in messages(datagram) {
        let message = message.map_err(AnswerError::Malformed)?;
        if message.seq != seq {
            continue; // not an answer to this dump
        }
        part.interrupted |= message.flags & NLM_F_DUMP_INTR != 0;
        match message.kind {
            NLMSG_NOOP => {}
            NLMSG_DONE => {
                // The payload, when present, is the dump's status: 0 or a negative errno.
                if let Some(status) = i32_at(message.payload) {
                    match status.wrapping_neg() {
                        errno if errno <= 0 => {}
                        EINTR => part.interrupted = true,
                        errno => return Err(AnswerError::Kernel(errno)),
                    }
                }
                part.done = true;
                return Ok(part);
            }
            NLMSG_ERROR => {
                let status =
                    i32_at(message.payload).ok_or(AnswerError::Malformed("short NLMSG_ERROR"))?;
                match status.wrapping_neg() {
                    0 => {}
                    EINTR => part.interrupted = true,
                    errno => return Err(AnswerError::Kernel(errno)),
                }
                part.done = true;
                return Ok(part);
            }
            kind if kind >> 8 == NFNL_SUBSYS_CTNETLINK => {
                if let Some(flow) = parse_entry(message.payload).map_err(AnswerError::Malformed)? {
                    flows.push(flow);
                }
            }
            _ => {}
        }
    }
    Ok(part)
}

/// The acknowledgements in one datagram: `(sequence number, errno)`, errno 0 meaning success.
pub(super) fn parse_acks(datagram: &[u8]) -> Result<Vec<(u32, i32)>, &'static str> {
    let mut acks = Vec::new();
    for message in messages(datagram) {
        let message = message?;
        if message.kind == NLMSG_ERROR {
            let status = i32_at(message.payload).ok_or("short NLMSG_ERROR")?;
            acks.push((message.seq, status.wrapping_neg()));
        }
    }
    Ok(acks)
}

/// One conntrack entry (the payload of an `IPCTNL_MSG_CT_NEW` message): `None` when it is not UDP.
fn parse_entry(payload: &[u8]) -> Result<Option<UdpFlow>, &'static str> {
    let attrs = payload
        .get(NFGENMSG_LEN..)
        .ok_or("conntrack entry without nfgenmsg")?;
    let (mut original, mut reply, mut zone) = (None, None, None);
    for attr in attributes(attrs) {
        let (kind, value) = attr?;
        match kind {
            CTA_TUPLE_ORIG => {
                let tuple = parse_tuple(value)?;
                if tuple.protocol != Some(IPPROTO_UDP) {
                    return Ok(None);
                }
                original = Some(tuple);
            }
            CTA_TUPLE_REPLY => reply = Some(parse_tuple(value)?),
            CTA_ZONE => zone = Some(be16(value)?),
            _ => {}
        }
    }
    let (Some(original), Some(reply)) = (original, reply) else {
        return Ok(None);
    };
    let flow = || {
        Some(UdpFlow {
            source: (original.source?, original.source_port?),
            destination: (original.destination?, original.destination_port?),
            reply_source: (reply.source?, reply.source_port?),
            zone,
            original_zone: original.zone,
        })
    };
    Ok(flow())
}

/// The parts of a `CTA_TUPLE_*` the cleanup uses.
#[derive(Debug, Default)]
struct Tuple {
    source: Option<IpAddr>,
    destination: Option<IpAddr>,
    protocol: Option<u8>,
    source_port: Option<u16>,
    destination_port: Option<u16>,
    zone: Option<u16>,
}

fn parse_tuple(buf: &[u8]) -> Result<Tuple, &'static str> {
    let mut tuple = Tuple::default();
    for attr in attributes(buf) {
        let (kind, value) = attr?;
        match kind {
            CTA_TUPLE_IP => {
                for attr in attributes(value) {
                    let (kind, value) = attr?;
                    match kind {
                        CTA_IP_V4_SRC => tuple.source = Some(ipv4(value)?),
                        CTA_IP_V4_DST => tuple.destination = Some(ipv4(value)?),
                        CTA_IP_V6_SRC => tuple.source = Some(ipv6(value)?),
                        CTA_IP_V6_DST => tuple.destination = Some(ipv6(value)?),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for attr in attributes(value) {
                    let (kind, value) = attr?;
                    match kind {
                        CTA_PROTO_NUM => {
                            tuple.protocol = Some(*value.first().ok_or("empty CTA_PROTO_NUM")?);
                        }
                        CTA_PROTO_SRC_PORT => tuple.source_port = Some(be16(value)?),
                        CTA_PROTO_DST_PORT => tuple.destination_port = Some(be16(value)?),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_ZONE => tuple.zone = Some(be16(value)?),
            _ => {}
        }
    }
    Ok(tuple)
}

fn ipv4(value: &[u8]) -> Result<IpAddr, &'static str> {
    let octets: [u8; 4] = value
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or("short IPv4 address")?;
    Ok(IpAddr::V4(Ipv4Addr::from(octets)))
}

fn ipv6(value: &[u8]) -> Result<IpAddr, &'static str> {
    let octets: [u8; 16] = value
        .get(..16)
        .and_then(|b| b.try_into().ok())
        .ok_or("short IPv6 address")?;
    Ok(IpAddr::V6(Ipv6Addr::from(octets)))
}

fn be16(value: &[u8]) -> Result<u16, &'static str> {
    value
        .get(..2)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_be_bytes)
        .ok_or("short 16-bit attribute")
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::proxy::conntrack::tests::{flow, ip};

    /// Writes netlink bytes by hand, independently of `Message`: attributes are closed explicitly.
    #[derive(Default)]
    struct Bytes {
        buf: Vec<u8>,
        open: Vec<usize>,
    }

    impl Bytes {
        fn header(mut self, len: u32, kind: u16, flags: u16, seq: u32) -> Bytes {
            self.buf.extend(len.to_ne_bytes());
            self.buf.extend(kind.to_ne_bytes());
            self.buf.extend(flags.to_ne_bytes());
            self.buf.extend(seq.to_ne_bytes());
            self.buf.extend(0u32.to_ne_bytes());
            self
        }
        fn raw(mut self, bytes: &[u8]) -> Bytes {
            self.buf.extend(bytes);
            self
        }
        fn attr(mut self, kind: u16, value: &[u8]) -> Bytes {
            self.buf.extend(((4 + value.len()) as u16).to_ne_bytes());
            self.buf.extend(kind.to_ne_bytes());
            self.buf.extend(value);
            while !self.buf.len().is_multiple_of(4) {
                self.buf.push(0);
            }
            self
        }
        fn open(mut self, kind: u16) -> Bytes {
            self.open.push(self.buf.len());
            self.buf.extend([0, 0]);
            self.buf.extend((kind | 0x8000).to_ne_bytes());
            self
        }
        fn close(mut self) -> Bytes {
            let start = self.open.pop().unwrap();
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
            self
        }
        fn bytes(self) -> Vec<u8> {
            assert!(self.open.is_empty());
            self.buf
        }
    }

    /// A whole conntrack entry message as the kernel dumps it (IPCTNL_MSG_CT_NEW, NLM_F_MULTI).
    struct Entry<'a> {
        family: u8,
        protocol: u8,
        original: (&'a str, &'a str, u16, u16),
        reply: (&'a str, &'a str, u16, u16),
        zone: Option<u16>,
        flags: u16,
    }

    fn tuple(bytes: Bytes, kind: u16, t: (&str, &str, u16, u16), protocol: u8) -> Bytes {
        let (src, dst) = (ip(t.0), ip(t.1));
        let octets = |a: IpAddr| match a {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        let (src_kind, dst_kind) = if src.is_ipv4() { (1, 2) } else { (3, 4) };
        bytes
            .open(kind)
            .open(1)
            .attr(src_kind, &octets(src))
            .attr(dst_kind, &octets(dst))
            .close()
            .open(2)
            .attr(1, &[protocol])
            .attr(2, &t.2.to_be_bytes())
            .attr(3, &t.3.to_be_bytes())
            .close()
            .close()
    }

    fn entry(e: &Entry, seq: u32) -> Vec<u8> {
        let mut body = Bytes::default().raw(&[e.family, 0, 0, 0]);
        body = tuple(body, 1, e.original, e.protocol);
        body = tuple(body, 2, e.reply, e.protocol);
        if let Some(zone) = e.zone {
            body = body.attr(18, &zone.to_be_bytes());
        }
        // Attributes the parser must step over: CTA_STATUS, CTA_TIMEOUT (byte-order flag set),
        // CTA_COUNTERS_ORIG (nested).
        body = body
            .attr(3, &0x18u32.to_be_bytes())
            .attr(7 | 0x4000, &30u32.to_be_bytes())
            .open(9)
            .attr(1, &2u64.to_be_bytes())
            .close();
        let body = body.bytes();
        Bytes::default()
            .header((16 + body.len()) as u32, 0x0100, 0x2 | e.flags, seq)
            .raw(&body)
            .bytes()
    }

    fn done(seq: u32, status: i32, flags: u16) -> Vec<u8> {
        Bytes::default()
            .header(20, 3, 0x2 | flags, seq)
            .raw(&status.to_ne_bytes())
            .bytes()
    }

    fn error(seq: u32, errno: i32) -> Vec<u8> {
        Bytes::default()
            .header(36, 2, 0, seq)
            .raw(&(-errno).to_ne_bytes())
            .header(20, 0x0101, 0x301, seq)
            .bytes()
    }

    const UDP_V4: Entry = Entry {
        family: 2,
        protocol: 17,
        original: ("10.0.0.2", "10.96.0.10", 40000, 53),
        reply: ("10.244.1.5", "10.0.0.2", 5353, 40000),
        zone: None,
        flags: 0,
    };

    #[test]
    fn dump_request_bytes() {
        let mut expected = Vec::new();
        expected.extend(20u32.to_ne_bytes());
        expected.extend(0x0101u16.to_ne_bytes()); // CTNETLINK << 8 | IPCTNL_MSG_CT_GET
        expected.extend(0x0301u16.to_ne_bytes()); // NLM_F_REQUEST | NLM_F_DUMP
        expected.extend(7u32.to_ne_bytes());
        expected.extend(0u32.to_ne_bytes());
        expected.extend([10, 0, 0, 0]); // AF_INET6, NFNETLINK_V0, resource id 0
        assert_eq!(dump_request(IpFamily::V6, 7), expected);
        assert_eq!(dump_request(IpFamily::V4, 7)[16], 2, "AF_INET");
    }

    #[test]
    fn delete_request_bytes_ipv4() {
        let request = delete_request(
            &flow(
                ("10.0.0.2", 40000),
                ("10.96.0.10", 53),
                ("10.244.1.5", 5353),
            ),
            9,
        );
        let mut expected = Vec::new();
        expected.extend(72u32.to_ne_bytes());
        expected.extend(0x0102u16.to_ne_bytes()); // CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE
        expected.extend(0x0005u16.to_ne_bytes()); // NLM_F_REQUEST | NLM_F_ACK
        expected.extend(9u32.to_ne_bytes());
        expected.extend(0u32.to_ne_bytes());
        expected.extend([2, 0, 0, 0]);
        expected.extend(52u16.to_ne_bytes()); // CTA_TUPLE_ORIG | NLA_F_NESTED
        expected.extend(0x8001u16.to_ne_bytes());
        expected.extend(20u16.to_ne_bytes()); // CTA_TUPLE_IP | NLA_F_NESTED
        expected.extend(0x8001u16.to_ne_bytes());
        expected.extend(8u16.to_ne_bytes()); // CTA_IP_V4_SRC
        expected.extend(1u16.to_ne_bytes());
        expected.extend([10, 0, 0, 2]);
        expected.extend(8u16.to_ne_bytes()); // CTA_IP_V4_DST
        expected.extend(2u16.to_ne_bytes());
        expected.extend([10, 96, 0, 10]);
        expected.extend(28u16.to_ne_bytes()); // CTA_TUPLE_PROTO | NLA_F_NESTED
        expected.extend(0x8002u16.to_ne_bytes());
        expected.extend(5u16.to_ne_bytes()); // CTA_PROTO_NUM, padded
        expected.extend(1u16.to_ne_bytes());
        expected.extend([17, 0, 0, 0]);
        expected.extend(6u16.to_ne_bytes()); // CTA_PROTO_SRC_PORT 40000, padded
        expected.extend(2u16.to_ne_bytes());
        expected.extend([0x9c, 0x40, 0, 0]);
        expected.extend(6u16.to_ne_bytes()); // CTA_PROTO_DST_PORT 53, padded
        expected.extend(3u16.to_ne_bytes());
        expected.extend([0, 53, 0, 0]);
        assert_eq!(request, expected);
    }

    #[test]
    fn delete_request_bytes_ipv6_with_zones() {
        let mut f = flow(
            ("fd00::2", 40000),
            ("fd00:96::a", 53),
            ("fd00:244::5", 5353),
        );
        f.zone = Some(7);
        f.original_zone = Some(0x0102);
        let request = delete_request(&f, 0x01020304);
        let mut expected = Vec::new();
        expected.extend(112u32.to_ne_bytes());
        expected.extend(0x0102u16.to_ne_bytes());
        expected.extend(0x0005u16.to_ne_bytes());
        expected.extend(0x01020304u32.to_ne_bytes());
        expected.extend(0u32.to_ne_bytes());
        expected.extend([10, 0, 0, 0]); // AF_INET6
        expected.extend(84u16.to_ne_bytes()); // CTA_TUPLE_ORIG | NLA_F_NESTED
        expected.extend(0x8001u16.to_ne_bytes());
        expected.extend(44u16.to_ne_bytes()); // CTA_TUPLE_IP | NLA_F_NESTED
        expected.extend(0x8001u16.to_ne_bytes());
        expected.extend(20u16.to_ne_bytes()); // CTA_IP_V6_SRC
        expected.extend(3u16.to_ne_bytes());
        expected.extend([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        expected.extend(20u16.to_ne_bytes()); // CTA_IP_V6_DST
        expected.extend(4u16.to_ne_bytes());
        expected.extend([0xfd, 0, 0, 0x96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a]);
        expected.extend(28u16.to_ne_bytes()); // CTA_TUPLE_PROTO | NLA_F_NESTED
        expected.extend(0x8002u16.to_ne_bytes());
        expected.extend(5u16.to_ne_bytes());
        expected.extend(1u16.to_ne_bytes());
        expected.extend([17, 0, 0, 0]);
        expected.extend(6u16.to_ne_bytes());
        expected.extend(2u16.to_ne_bytes());
        expected.extend([0x9c, 0x40, 0, 0]);
        expected.extend(6u16.to_ne_bytes());
        expected.extend(3u16.to_ne_bytes());
        expected.extend([0, 53, 0, 0]);
        expected.extend(6u16.to_ne_bytes()); // CTA_TUPLE_ZONE, inside the original tuple
        expected.extend(3u16.to_ne_bytes());
        expected.extend([1, 2, 0, 0]);
        expected.extend(6u16.to_ne_bytes()); // CTA_ZONE
        expected.extend(18u16.to_ne_bytes());
        expected.extend([0, 7, 0, 0]);
        assert_eq!(request, expected);
    }

    #[test]
    fn a_delete_request_parses_back_as_the_same_flow() {
        let mut f = flow(
            ("10.0.0.2", 40000),
            ("10.96.0.10", 53),
            ("10.244.1.5", 5353),
        );
        f.zone = Some(3);
        let request = delete_request(&f, 1);
        let (kind, value) = attributes(&request[20..]).next().unwrap().unwrap();
        assert_eq!(kind, CTA_TUPLE_ORIG, "the nested flag is masked off");
        let tuple = parse_tuple(value).unwrap();
        assert_eq!(tuple.source, Some(ip("10.0.0.2")));
        assert_eq!(tuple.destination_port, Some(53));
        assert_eq!(tuple.protocol, Some(17));
    }

    #[test]
    fn parses_udp_entries_of_both_families_with_and_without_a_zone() {
        let v6 = Entry {
            family: 10,
            protocol: 17,
            original: ("fd00::2", "fd00:96::a", 40001, 53),
            reply: ("fd00:244::9", "fd00::2", 5353, 40001),
            zone: Some(5),
            flags: 0,
        };
        let mut datagram = entry(&UDP_V4, 4);
        datagram.extend(entry(&v6, 4));
        let mut flows = Vec::new();
        let part = parse_dump(&datagram, 4, &mut flows).unwrap();
        assert_eq!(part, DumpPart::default(), "more to come");
        assert_eq!(
            flows,
            vec![
                flow(
                    ("10.0.0.2", 40000),
                    ("10.96.0.10", 53),
                    ("10.244.1.5", 5353)
                ),
                UdpFlow {
                    zone: Some(5),
                    ..flow(
                        ("fd00::2", 40001),
                        ("fd00:96::a", 53),
                        ("fd00:244::9", 5353)
                    )
                },
            ]
        );
    }

    #[test]
    fn skips_other_protocols_and_ends_at_done() {
        let tcp = Entry {
            protocol: 6,
            original: ("10.0.0.3", "10.96.0.10", 41000, 80),
            reply: ("10.244.1.5", "10.0.0.3", 8080, 41000),
            ..UDP_V4
        };
        let mut datagram = entry(&tcp, 4);
        datagram.extend(entry(&UDP_V4, 4));
        datagram.extend(done(4, 0, 0));
        datagram.extend(entry(&UDP_V4, 4)); // after DONE: not read
        let mut flows = Vec::new();
        let part = parse_dump(&datagram, 4, &mut flows).unwrap();
        assert_eq!(
            part,
            DumpPart {
                done: true,
                interrupted: false
            }
        );
        assert_eq!(flows.len(), 1, "the TCP entry is not kept");
        assert_eq!(flows[0].destination, (ip("10.96.0.10"), 53));
        assert_eq!(flows[0].reply_source, (ip("10.244.1.5"), 5353));
    }

    #[test]
    fn answers_to_other_requests_are_ignored() {
        let mut flows = Vec::new();
        let part = parse_dump(&entry(&UDP_V4, 3), 4, &mut flows).unwrap();
        assert!(flows.is_empty());
        assert!(!part.done);
    }

    #[test]
    fn an_interrupted_dump_keeps_what_it_read() {
        let flagged = Entry {
            flags: NLM_F_DUMP_INTR,
            ..UDP_V4
        };
        let mut flows = Vec::new();
        let part = parse_dump(&entry(&flagged, 4), 4, &mut flows).unwrap();
        assert!(part.interrupted && !part.done);
        assert_eq!(flows.len(), 1);

        let part = parse_dump(&done(4, -EINTR, 0), 4, &mut flows).unwrap();
        assert!(part.interrupted && part.done, "DONE carrying -EINTR");
        let part = parse_dump(&done(4, 0, NLM_F_DUMP_INTR), 4, &mut flows).unwrap();
        assert!(
            part.interrupted && part.done,
            "DONE flagged NLM_F_DUMP_INTR"
        );
        let part = parse_dump(&error(4, EINTR), 4, &mut flows).unwrap();
        assert!(part.interrupted && part.done, "NLMSG_ERROR EINTR");
        assert_eq!(flows.len(), 1);
    }

    #[test]
    fn a_refused_dump_is_the_kernels_error() {
        let mut flows = Vec::new();
        assert_eq!(
            parse_dump(&error(4, 1), 4, &mut flows),
            Err(AnswerError::Kernel(1)),
            "EPERM"
        );
        assert_eq!(
            parse_dump(&done(4, -95, 0), 4, &mut flows),
            Err(AnswerError::Kernel(95)),
            "a failed dump's status"
        );
    }

    #[test]
    fn truncated_answers_are_malformed() {
        let datagram = entry(&UDP_V4, 4);
        let mut flows = Vec::new();
        assert!(matches!(
            parse_dump(&datagram[..datagram.len() - 4], 4, &mut flows),
            Err(AnswerError::Malformed(_))
        ));
        // The message length is right but an attribute claims more than the message holds.
        let mut bad = datagram.clone();
        bad[20..22].copy_from_slice(&0x0400u16.to_ne_bytes());
        assert!(matches!(
            parse_dump(&bad, 4, &mut flows),
            Err(AnswerError::Malformed(_))
        ));
        assert!(flows.is_empty());
    }

    #[test]
    fn acks_carry_sequence_and_errno() {
        let mut datagram = error(11, 0);
        datagram.extend(error(12, 2));
        assert_eq!(parse_acks(&datagram).unwrap(), vec![(11, 0), (12, 2)]);
    }
}
