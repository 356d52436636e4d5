//! nfacct accounting objects through netlink (`nfnetlink_acct`): kube-proxy's rules count packets in
//! `ct_state_invalid_dropped_pkts` and `localhost_nps_accepted_pkts`, and `iptables-restore` rejects a
//! rule that names an object that does not exist.

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use thiserror::Error;

use crate::netlink::{
    Message, NFGENMSG_LEN, NLM_F_ACK, NLM_F_REQUEST, NLMSG_ERROR, attributes, i32_at, messages,
};

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
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const EEXIST: i32 = 17;

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
    let mut request = Message::new(NFNL_SUBSYS_ACCT, message, NLM_F_REQUEST | flags, 1, 0);
    let mut value = name.as_bytes().to_vec();
    value.push(0);
    request.attribute(NFACCT_NAME, &value);
    request.finish()
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
    let first = messages(&answer)
        .next()
        .and_then(Result::ok)
        .ok_or_else(malformed)?;
    if first.kind == NLMSG_ERROR {
        return match i32_at(first.payload).ok_or_else(malformed)? {
            0 => Ok(Vec::new()),
            e => Err(NfacctError::Kernel {
                operation,
                name: name.to_string(),
                errno: e.wrapping_neg(),
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
    let payload = messages(&answer)
        .next()
        .and_then(Result::ok)
        .and_then(|m| m.payload.get(NFGENMSG_LEN..))
        .ok_or_else(malformed)?;
    let (mut packets, mut bytes) = (None, None);
    for attribute in attributes(payload) {
        let (kind, value) = attribute.map_err(|_| malformed())?;
        let value = value.try_into().ok().map(u64::from_be_bytes);
        match kind {
            NFACCT_PKTS => packets = value,
            NFACCT_BYTES => bytes = value,
            _ => {}
        }
    }
    Ok(Counts {
        packets: packets.ok_or_else(malformed)?,
        bytes: bytes.ok_or_else(malformed)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::u16_at;

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
