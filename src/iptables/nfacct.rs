//! nfacct accounting objects through netlink (`nfnetlink_acct`): kube-proxy's rules count packets in
//! `ct_state_invalid_dropped_pkts` and `localhost_nps_accepted_pkts`, and `iptables-restore` rejects a
//! rule that names an object that does not exist.

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use thiserror::Error;

/// The objects kube-proxy's rules reference.
pub const OBJECTS: [&str; 2] = [
    "ct_state_invalid_dropped_pkts",
    "localhost_nps_accepted_pkts",
];

const NFNL_SUBSYS_ACCT: u16 = 7;
const NFNL_MSG_ACCT_NEW: u16 = 0;
const NFNL_MSG_ACCT_GET: u16 = 1;
const NFNL_MSG_ACCT_DEL: u16 = 3;
const NFACCT_NAME: u16 = 1;
const NFACCT_PKTS: u16 = 2;
const NFACCT_BYTES: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const EEXIST: i32 = 17;
const HEADER: usize = 16;

/// A failed nfacct operation.
#[derive(Debug, Error)]
pub enum NfacctError {
    /// The netlink socket failed.
    #[error("nfacct netlink socket: {0}; is the nfnetlink_acct module available?")]
    Socket(#[from] std::io::Error),
    /// The kernel refused the request.
    #[error("nfacct {operation} {name:?}: the kernel answered error {errno} ({})", std::io::Error::from_raw_os_error(*errno))]
    Kernel {
        /// What was asked.
        operation: &'static str,
        /// The object.
        name: String,
        /// The errno.
        errno: i32,
    },
    /// The answer could not be read.
    #[error("nfacct {operation} {name:?}: malformed netlink answer")]
    Malformed {
        /// What was asked.
        operation: &'static str,
        /// The object.
        name: String,
    },
}

/// Packet and byte counts of one accounting object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted.
    pub bytes: u64,
}

fn request(message: u16, flags: u16, name: &str) -> Vec<u8> {
    let name_len = name.len() + 1;
    let attr_len = 4 + name_len;
    let padded = (attr_len + 3) & !3;
    let total = HEADER + 4 + padded;
    let mut buf = Vec::with_capacity(total);
    buf.extend_from_slice(&(total as u32).to_ne_bytes());
    buf.extend_from_slice(&((NFNL_SUBSYS_ACCT << 8) | message).to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    buf.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel assigns ours
    buf.extend_from_slice(&[0, 0, 0, 0]); // nfgenmsg: AF_UNSPEC, version 0, resource id 0
    buf.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    buf.extend_from_slice(&NFACCT_NAME.to_ne_bytes());
    buf.extend_from_slice(name.as_bytes());
    buf.resize(total, 0);
    buf
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

fn exchange(
    operation: &'static str,
    message: u16,
    flags: u16,
    name: &str,
) -> Result<Vec<u8>, NfacctError> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.send_to(&request(message, flags, name), &SocketAddr::new(0, 0), 0)?;
    let (answer, _) = socket.recv_from_full()?;
    let malformed = || NfacctError::Malformed {
        operation,
        name: name.to_string(),
    };
    let kind = u16_at(&answer, 4).ok_or_else(malformed)?;
    if kind == NLMSG_ERROR {
        let errno = answer
            .get(HEADER..HEADER + 4)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_ne_bytes);
        return match errno.ok_or_else(malformed)? {
            0 => Ok(Vec::new()),
            e => Err(NfacctError::Kernel {
                operation,
                name: name.to_string(),
                errno: -e,
            }),
        };
    }
    Ok(answer)
}

/// Creates the object `name`; one that already exists is fine.
pub fn ensure(name: &str) -> Result<(), NfacctError> {
    match exchange(
        "create",
        NFNL_MSG_ACCT_NEW,
        NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        name,
    ) {
        Ok(_) => Ok(()),
        Err(NfacctError::Kernel { errno: EEXIST, .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes the object `name`.
pub fn delete(name: &str) -> Result<(), NfacctError> {
    exchange("delete", NFNL_MSG_ACCT_DEL, NLM_F_ACK, name).map(drop)
}

/// Reads the counters of `name`.
pub fn counts(name: &str) -> Result<Counts, NfacctError> {
    let answer = exchange("read", NFNL_MSG_ACCT_GET, 0, name)?;
    let malformed = || NfacctError::Malformed {
        operation: "read",
        name: name.to_string(),
    };
    let mut at = HEADER + 4;
    let (mut packets, mut bytes) = (None, None);
    while let (Some(len), Some(kind)) = (u16_at(&answer, at), u16_at(&answer, at + 2)) {
        let len = usize::from(len);
        if len < 4 {
            break;
        }
        let value = answer
            .get(at + 4..at + 12)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes);
        match kind & 0x7fff {
            NFACCT_PKTS => packets = value,
            NFACCT_BYTES => bytes = value,
            _ => {}
        }
        at += (len + 3) & !3;
    }
    Ok(Counts {
        packets: packets.ok_or_else(malformed)?,
        bytes: bytes.ok_or_else(malformed)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let buf = request(NFNL_MSG_ACCT_NEW, NLM_F_CREATE, "abc");
        assert_eq!(buf.len(), 16 + 4 + 8);
        assert_eq!(u16_at(&buf, 4), Some(0x0700));
        assert_eq!(
            u16_at(&buf, 20),
            Some(8),
            "attribute length: header + name + NUL"
        );
        assert_eq!(&buf[24..28], b"abc\0");
    }
}
