//! The netlink framing shared by our netfilter clients (nfacct objects, ctnetlink): message and
//! attribute layout, a message builder and readers for the kernel's answers. No I/O here.
//!
//! A message is a `nlmsghdr` (16 bytes, host byte order), for nfnetlink a `nfgenmsg` (family, version,
//! resource id), then attributes. An attribute is a 4-byte header (length without padding, type) and
//! its value, padded to 4 bytes; nested attributes carry `NLA_F_NESTED` in the type.

use std::net::IpAddr;

// linux/netlink.h
pub(crate) const NLMSG_HDRLEN: usize = 16;
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NLM_F_ROOT | NLM_F_MATCH`.
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLMSG_NOOP: u16 = 1;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const NLA_HDRLEN: usize = 4;
pub(crate) const NLA_F_NESTED: u16 = 0x8000;
pub(crate) const NLA_F_NET_BYTEORDER: u16 = 0x4000;
pub(crate) const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

// linux/netfilter/nfnetlink.h
pub(crate) const NFGENMSG_LEN: usize = 4;
pub(crate) const NFNETLINK_V0: u8 = 0;

/// One netlink message under construction: header, `nfgenmsg`, attributes.
pub(crate) struct Message {
    buf: Vec<u8>,
}

impl Message {
    /// A message of nfnetlink `subsystem`, type `kind`, for address `family`.
    pub(crate) fn new(subsystem: u16, kind: u16, flags: u16, seq: u32, family: u8) -> Message {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
        buf.extend_from_slice(&((subsystem << 8) | kind).to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel assigns ours
        buf.extend_from_slice(&[family, NFNETLINK_V0, 0, 0]); // resource id 0
        Message { buf }
    }

    /// Appends attribute `kind` with `value`, padded to 4 bytes.
    pub(crate) fn attribute(&mut self, kind: u16, value: &[u8]) {
        let len = NLA_HDRLEN + value.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(align(self.buf.len()), 0);
    }

    /// Appends `ip` as attribute `v4_kind` or `v6_kind`.
    pub(crate) fn address(&mut self, ip: IpAddr, v4_kind: u16, v6_kind: u16) {
        match ip {
            IpAddr::V4(ip) => self.attribute(v4_kind, &ip.octets()),
            IpAddr::V6(ip) => self.attribute(v6_kind, &ip.octets()),
        }
    }

    /// A nested attribute holding what `fill` adds; its length covers the padded children.
    pub(crate) fn nested(&mut self, kind: u16, fill: impl FnOnce(&mut Message)) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; NLA_HDRLEN]);
        fill(self);
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.buf[start + 2..start + 4].copy_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    }

    /// The message, its length set.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// `len` rounded up to the 4-byte alignment of messages and attributes.
pub(crate) fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// The native-endian `i32` at the start of `buf`.
pub(crate) fn i32_at(buf: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(buf.get(..4)?.try_into().ok()?))
}

/// The native-endian `u16` at `at`.
pub(crate) fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

/// The native-endian `u32` at `at`.
pub(crate) fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// One message of a datagram.
pub(crate) struct Netlink<'a> {
    /// The message type (`nlmsg_type`).
    pub(crate) kind: u16,
    /// Its flags.
    pub(crate) flags: u16,
    /// Its sequence number.
    pub(crate) seq: u32,
    /// What follows the header.
    pub(crate) payload: &'a [u8],
}

/// The messages of a datagram, in order; a message whose length does not fit ends the walk with an
/// error.
pub(crate) fn messages(datagram: &[u8]) -> impl Iterator<Item = Result<Netlink<'_>, &'static str>> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let header = (|| {
            let len = u32_at(rest, 0)? as usize;
            let message = Netlink {
                kind: u16_at(rest, 4)?,
                flags: u16_at(rest, 6)?,
                seq: u32_at(rest, 8)?,
                payload: rest.get(NLMSG_HDRLEN..len)?,
            };
            Some((len, message))
        })();
        match header {
            Some((len, message)) => {
                rest = &rest[align(len).min(rest.len())..];
                Some(Ok(message))
            }
            None => {
                rest = &[];
                Some(Err("netlink message length does not fit the datagram"))
            }
        }
    })
}

/// The attributes of `buf` as `(type without flag bits, value)`; an attribute whose length does not
/// fit ends the walk with an error.
pub(crate) fn attributes(buf: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), &'static str>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let attr = (|| {
            let len = usize::from(u16_at(rest, 0)?);
            let kind = u16_at(rest, 2)? & NLA_TYPE_MASK;
            let value = rest.get(NLA_HDRLEN..len)?;
            Some((len, kind, value))
        })();
        match attr {
            Some((len, kind, value)) => {
                rest = &rest[align(len).min(rest.len())..];
                Some(Ok((kind, value)))
            }
            None => {
                rest = &[];
                Some(Err("netlink attribute length does not fit its message"))
            }
        }
    })
}
